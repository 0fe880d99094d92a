"""The Keras model's own batch-1 latency (timed by `keras_resnet.timing`, like every other)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from keras_resnet.export.export_utils import check_classifier
from keras_resnet.timing import latency


def keras_latency(model: keras.Model, *, runs: int = 50, warmup: int = 5) -> dict[str, Any]:
    """Batch-1 latency of the Keras model called through a compiled `tf.function`.

    Example:
        >>> keras_latency(keras_resnet.ResNet20(), runs=20)["median_ms"]
    """
    h, w, c, _ = check_classifier(model)
    x = tf.random.uniform((1, h, w, c))

    @tf.function(reduce_retracing=True)
    def forward(images):
        return model(images, training=False)

    result = latency(lambda: forward(x).numpy(), samples=runs, warmup=warmup)
    return {**result, "runtime": f"tensorflow {tf.__version__} tf.function"}
