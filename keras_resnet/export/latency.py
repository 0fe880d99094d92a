"""The Keras models' own batch-1 latency (timed by `keras_resnet.timing`, like every other)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import keras
import tensorflow as tf

from keras_resnet.export.export_utils import check_classifier
from keras_resnet.timing import interleaved_latency, latency


def _forward(model: keras.Model) -> Callable[[], Any]:
    """One batch-1 call of `model` through a compiled `tf.function`, on a random image."""
    h, w, c, _ = check_classifier(model)
    x = tf.random.uniform((1, h, w, c))

    @tf.function(reduce_retracing=True)
    def forward(images):
        return model(images, training=False)

    return lambda: forward(x).numpy()


def keras_latency(model: keras.Model, *, runs: int = 50, warmup: int = 5) -> dict[str, Any]:
    """Batch-1 latency of the Keras model called through a compiled `tf.function`.

    Example:
        >>> keras_latency(keras_resnet.ResNet20(), runs=20)["median_ms"]
    """
    result = latency(_forward(model), samples=runs, warmup=warmup)
    return {**result, "runtime": f"tensorflow {tf.__version__} tf.function"}


def interleaved_keras_latency(
    models: Mapping[str, keras.Model], *, runs: int = 50, warmup: int = 5
) -> dict[str, dict[str, Any]]:
    """`keras_latency` of several models timed in turns (`timing.interleaved_latency`).

    Example:
        >>> interleaved_keras_latency({"keras": folded, "keras_bf16": fast}, runs=20)
    """
    calls = {name: _forward(model) for name, model in models.items()}
    timed = interleaved_latency(calls, samples=runs, warmup=warmup)
    runtime = f"tensorflow {tf.__version__} tf.function"
    return {
        name: {**record, "runtime": runtime, "interleaved_with": sorted(set(calls) - {name})}
        for name, record in timed.items()
    }
