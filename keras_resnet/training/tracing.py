"""One trace of the train step instead of two: the optimizer and metrics built before `fit`.

Keras 3 (TensorFlow backend, measured on 3.15.1 / TF 2.21) creates the optimizer's slot
variables and the compiled metrics' variables ("accuracy": `total`, `count`) inside the
first trace of the train step when the model was compiled outside a distribution
strategy (`Trainer._maybe_symbolic_build` defers building then, "for backwards
compatibility"). A `tf.function` that creates variables while tracing is traced again
without them, so every `fit` traced its train step twice, and tracing is most of a short
run's time. Building both first (the optimizer on the trainable variables, the metrics
eagerly on one zero example) leaves nothing to create in the trace; `fit` and
`evaluate` reset metric state before use.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


def build_training_state(model: keras.Model, x: Any, y: Any = None) -> None:
    """Builds `model`'s optimizer and compiled metrics now, for `fit(x, y)`'s data.

    `x` is a `tf.data.Dataset` of (images, labels) batches, or arrays with their labels
    `y`. Does nothing for a model of a distribution strategy (Keras builds them itself
    there). Metric state is reset afterwards, so calling it again changes nothing.
    """
    default = tf.distribute.get_strategy()
    if tf.distribute.has_strategy() or model.distribute_strategy is not default:
        return
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)
    if isinstance(x, tf.data.Dataset):
        x_spec, y_spec = x.element_spec[:2]
        x = tf.zeros((1, *x_spec.shape[1:]), x_spec.dtype)
        y = tf.zeros((1, *y_spec.shape[1:]), y_spec.dtype)
    else:
        x, y = x[:1], y[:1]
    model.compute_metrics(x, y, model(x, training=False))
    model.reset_metrics()
