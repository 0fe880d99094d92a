"""The models the sections compare and the calls timed on them, made one way for all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

FORWARD_CALLS = {
    "predict_on_batch": (
        "model.predict_on_batch(numpy batch): Keras' compiled predict function, what "
        "predict()/predict_on_batch() users get by default (a tf.function; XLA only "
        "when a GPU is visible, Keras' jit_compile='auto')"
    ),
    "tf.function": (
        "tf.function(lambda x: model(x, training=False)) called on a tf.constant: "
        "TF's default tf.function, no XLA"
    ),
}
TRAIN_OPTIMIZER = "SGD(learning_rate=0.01, momentum=0.9)"
TRAIN_LOSS = "sparse_categorical_crossentropy"


def model_pair(name: str, **kwargs: Any):
    """keras_resnet's and keras.applications' `name`, ours holding the reference's weights."""
    import keras

    import keras_resnet

    reference = getattr(keras.applications, name)(weights=None, **kwargs)
    ours = getattr(keras_resnet, name)(weights=None, **kwargs)
    if [w.shape for w in ours.weights] != [w.shape for w in reference.weights]:
        raise RuntimeError(f"{name}: keras_resnet and keras.applications weights differ in shape")
    ours.set_weights(reference.get_weights())
    return ours, reference


def forward_call(model, images: np.ndarray, call: str) -> Callable[[], Any]:
    """One forward pass of `images` through `model` by one of `FORWARD_CALLS`."""
    if call == "predict_on_batch":
        return lambda: model.predict_on_batch(images)
    import tensorflow as tf

    forward = tf.function(lambda x: model(x, training=False))
    tensor = tf.constant(images)
    return lambda: forward(tensor).numpy()


def compile_for_training(model, *, jit_compile: bool | str = "auto") -> None:
    """SGD with momentum and sparse cross-entropy: the train step every section times."""
    import keras

    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        loss=TRAIN_LOSS,
        jit_compile=jit_compile,
    )


def train_call(model, images: np.ndarray, labels: np.ndarray) -> Callable[[], Any]:
    """One `train_on_batch` (Keras' compiled train function, what `fit` runs).

    The optimizer and metrics are built first, as `keras_resnet.training` builds them,
    so the first (untimed) call traces the step once instead of twice, for either model.
    """
    from keras_resnet.training.tracing import build_training_state

    build_training_state(model, images, labels)
    return lambda: model.train_on_batch(images, labels)
