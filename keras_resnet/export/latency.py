"""Batch-1 latency: the timing loop every export measurement uses, and the Keras model's own."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from keras_resnet.export.export_utils import check_classifier


def median_latency(step: Callable[[], Any], runs: int, warmup: int) -> dict[str, Any]:
    """Median, p10 and p90 milliseconds of `runs` calls of `step`, after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000.0)
    q = statistics.quantiles(times, n=10) if len(times) >= 2 else [times[0]] * 9
    return {
        "median_ms": round(statistics.median(times), 4),
        "p10_ms": round(q[0], 4),
        "p90_ms": round(q[-1], 4),
        "runs": runs,
    }


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

    result = median_latency(lambda: forward(x).numpy(), runs, warmup)
    return {**result, "runtime": f"tensorflow {tf.__version__} tf.function"}
