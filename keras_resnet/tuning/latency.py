"""Batch-1 latency: the measurement, the runtime it is measured in, and its cache.

The latency of a candidate is the median batch-1 inference time of the built
model in TensorFlow's graph runtime, a `tf.function` on this machine (see
`latency_runtime`). `LatencyCache` keeps measurements by spec, input shape,
classes, runtime and host, in memory and in `latency_cache.json`, so a
candidate is measured once per host.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from keras_resnet._io import write_json
from keras_resnet.builder import build_resnet
from keras_resnet.spec import ResNetSpec
from keras_resnet.timing import latency


def latency_runtime() -> str:
    """The runtime latencies are measured in, as recorded in the outputs.

    Example:

    >>> latency_runtime()  # doctest: +SKIP
    'TensorFlow 2.21.0 graph (tf.function), CPU x86_64, 2 cores, batch 1, float32'
    """
    device = "GPU" if tf.config.list_logical_devices("GPU") else f"CPU {platform.machine()}"
    return (
        f"TensorFlow {tf.__version__} graph (tf.function), {device}, "
        f"{os.cpu_count()} cores, batch 1, float32"
    )


def measure_latency(model: keras.Model, runs: int = 30, max_seconds: float = 2.0) -> float:
    """Median batch-1 inference time of `model` in milliseconds.

    The model runs as a traced `tf.function` in inference mode, timed by
    `keras_resnet.timing.latency` (warm-up untimed; samples sized by time; at
    least 5 samples, at most `runs`, and no more after `max_seconds`).

    Example:

    >>> model = build_resnet(get_spec("resnet20"), input_shape=(16, 16, 1), classes=10)
    >>> measure_latency(model)  # doctest: +SKIP
    1.96
    """
    x = tf.zeros((1, *model.input_shape[1:]), dtype=model.inputs[0].dtype)
    infer = tf.function(lambda t: model(t, training=False))
    result = latency(lambda: infer(x).numpy(), samples=runs, max_seconds=max_seconds)
    return result["median_ms"]


class LatencyCache:
    """Measured latencies by spec, input shape, classes, runtime and host.

    Kept in memory and, once `path` is set, in a JSON file that several
    processes may share: every write merges what is on disk first, so a lost
    race costs one measurement, never a wrong value.
    """

    def __init__(self, path: str | os.PathLike | None = None):
        self.entries: dict[str, dict[str, Any]] = {}
        self.path: Path | None = None
        if path is not None:
            self.attach(path)

    def attach(self, path: str | os.PathLike) -> None:
        """Starts persisting to `path` (merging what it already holds)."""
        self.path = Path(path)
        self._merge_disk()
        if self.entries:
            write_json(self.path, self.entries)

    def _merge_disk(self) -> None:
        if self.path is not None and self.path.exists():
            with contextlib.suppress(ValueError, OSError):
                self.entries = {**json.loads(self.path.read_text()), **self.entries}

    @staticmethod
    def key(spec: ResNetSpec, input_shape: Sequence[int], classes: int) -> str:
        """The cache key: spec, input shape, classes, runtime and host."""
        data = {
            "spec": spec.to_dict(),
            "input_shape": list(input_shape),
            "classes": classes,
            "runtime": latency_runtime(),
            "host": socket.gethostname(),
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:20]

    def get(self, key: str) -> float | None:
        """The cached latency in ms, or None (another process may have added it)."""
        if key not in self.entries:
            self._merge_disk()
        entry = self.entries.get(key)
        return None if entry is None else float(entry["latency_ms"])

    def put(self, key: str, latency_ms: float, spec: ResNetSpec) -> None:
        """Records a measurement (and writes the file, when attached)."""
        self.entries[key] = {
            "latency_ms": latency_ms,
            "runtime": latency_runtime(),
            "host": socket.gethostname(),
            "spec": spec.to_dict(),
        }
        if self.path is not None:
            self._merge_disk()
            write_json(self.path, self.entries)

    def measure(
        self,
        spec: ResNetSpec,
        input_shape: Sequence[int],
        classes: int,
        model: keras.Model | None = None,
    ) -> float:
        """`spec`'s latency: from the cache, else measured (on `model`, or a build) and kept."""
        key = self.key(spec, input_shape, classes)
        cached = self.get(key)
        if cached is not None:
            return cached
        if model is None:
            model = build_resnet(spec, input_shape=input_shape, classes=classes)
        value = measure_latency(model)
        self.put(key, value, spec)
        return value
