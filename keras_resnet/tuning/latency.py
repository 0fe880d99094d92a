"""Batch-1 latency: the target it is measured on, the measurement, and its cache.

The latency of a candidate is its median batch-1 inference time on a
`LatencyTarget`: by default (`keras`) the built model in TensorFlow's graph
runtime, a `tf.function` on this machine (see `latency_runtime`); or the
candidate, with its random initial weights, converted to a TFLite variant
(`tflite-fp32`, `tflite-fp16`, `tflite-int8`, the latter calibrated on random
images) and timed in the LiteRT interpreter at a stated thread count, as the
shipped artifact runs. One way to time a model on a target:
`LatencyTarget.latency` (every statistic of one timing, a dict as
`keras_resnet.timing.latency` and `keras_resnet.export.tflite_latency` return)
and `LatencyTarget.measure` (one statistic in ms, a float; `measure_latency` is
the keras target's). `LatencyCache` keeps measurements by spec, input shape,
classes, target (and threads), runtime and host, in memory and in
`latency_cache.json`, so a candidate is measured (and converted) once per host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_resnet._checks import check_choice, check_positive_int
from keras_resnet._io import write_json
from keras_resnet.builder import build_resnet
from keras_resnet.constants import AUTO_TARGET, DEFAULT_LATENCY_TARGET, LATENCY_TARGETS
from keras_resnet.export import convert_tflite, tflite_latency
from keras_resnet.export.export_utils import package_version
from keras_resnet.precision import expected_fastest_tflite
from keras_resnet.spec import ResNetSpec
from keras_resnet.timing import latency

CALIBRATION_IMAGES = 8
"""Random images the int8 variant is calibrated on: its speed does not depend on them."""


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


def measure_latency(
    model: keras.Model, runs: int = 30, max_seconds: float = 2.0, statistic: str = "median_ms"
) -> float:
    """Median batch-1 inference time of `model` in milliseconds (or another `statistic`
    of `keras_resnet.timing.latency`'s result, e.g. `"p10_ms"`): the keras target's
    measurement, `LatencyTarget().measure(model)`.

    The model runs as a traced `tf.function` in inference mode, timed by
    `keras_resnet.timing.latency` (warm-up untimed; samples sized by time; at
    least 5 samples, at most `runs`, and no more after `max_seconds`).

    Example:

    >>> model = build_resnet(get_spec("resnet20"), input_shape=(16, 16, 1), classes=10)
    >>> measure_latency(model)  # doctest: +SKIP
    1.96
    """
    return _keras_latency(model, runs, max_seconds)[statistic]


def _keras_latency(model: keras.Model, runs: int, max_seconds: float = 2.0) -> dict[str, Any]:
    """`keras_resnet.timing.latency` of `model` as a traced `tf.function`, batch 1."""
    x = tf.zeros((1, *model.input_shape[1:]), dtype=model.inputs[0].dtype)
    infer = tf.function(lambda t: model(t, training=False))
    return latency(lambda: infer(x).numpy(), samples=runs, max_seconds=max_seconds)


def _tflite_latency(model: keras.Model, variant: str, threads: int, runs: int) -> dict[str, Any]:
    """`keras_resnet.export.tflite_latency` of `model` converted to a TFLite `variant`.

    The conversion is `keras_resnet.export.convert_tflite` (int8: calibrated
    on `CALIBRATION_IMAGES` random images in [0, 1)), timed with `threads`
    interpreter threads.
    """
    representative = None
    if variant == "int8":
        shape = (CALIBRATION_IMAGES, *model.input_shape[1:])
        representative = np.random.default_rng(0).uniform(0.0, 1.0, shape).astype(np.float32)
    flatbuffer = convert_tflite(model, variant, representative)
    return tflite_latency(flatbuffer, runs=runs, num_threads=threads)


@dataclasses.dataclass(frozen=True)
class LatencyTarget:
    """What a candidate's batch-1 latency is measured on; checked when made.

    Attributes:
        name: one of `LATENCY_TARGETS`: `"keras"` (a `tf.function` in
            TensorFlow's own thread pool, the default) or `"tflite-fp32"`,
            `"tflite-fp16"`, `"tflite-int8"` (the converted candidate in LiteRT);
            `"auto"` is replaced by the form expected to run fastest on this CPU
            (`keras_resnet.precision.expected_fastest_tflite`: int8 where the CPU
            has int8 dot products, else fp32), the reason kept in `auto_reason`.
        threads: LiteRT's interpreter threads (tflite targets only); None: every
            core, as `keras_resnet.export.tflite_latency` times the export.

    Example:

    >>> LatencyTarget("tflite-int8", threads=1).runtime()  # doctest: +SKIP
    'LiteRT (ai_edge_litert 2.3.0) int8, XNNPACK, CPU x86_64, 1 thread, batch 1'
    """

    name: str = DEFAULT_LATENCY_TARGET
    threads: int | None = None
    auto_reason = None  # why "auto" chose `name` (set by __post_init__), else None

    def __post_init__(self) -> None:
        check_choice("latency_target", self.name, LATENCY_TARGETS)
        if self.name == AUTO_TARGET:
            name, why = expected_fastest_tflite()
            object.__setattr__(self, "name", name)
            object.__setattr__(self, "auto_reason", why)
        check_positive_int("latency_threads", self.threads, allow_none=True)
        if self.variant is None and self.threads is not None:
            raise ValueError(
                "`latency_threads` sets LiteRT's threads: it needs a tflite latency target "
                "(keras runs in TensorFlow's own thread pool). "
                f"Received: latency_threads={self.threads!r} with latency_target={self.name!r}"
            )

    @property
    def variant(self) -> str | None:
        """The TFLite variant (`"int8"`, ...), or None for the keras target."""
        return self.name.removeprefix("tflite-") if self.name.startswith("tflite-") else None

    @property
    def num_threads(self) -> int | None:
        """The interpreter threads used (None for the keras target)."""
        if self.variant is None:
            return None
        return self.threads or os.cpu_count() or 1

    def runtime(self) -> str:
        """Where latencies are measured, as recorded in the outputs."""
        if self.variant is None:
            return latency_runtime()
        n = self.num_threads
        return (
            f"LiteRT (ai_edge_litert {package_version('ai-edge-litert')}) {self.variant}, "
            f"XNNPACK, CPU {platform.machine()}, {n} thread{'s' if n > 1 else ''}, batch 1"
        )

    def key_fields(self) -> dict[str, Any]:
        """What the cache key adds for this target (nothing for keras: its keys predate targets)."""
        if self.variant is None:
            return {}
        return {"target": self.name, "threads": self.num_threads}

    def to_dict(self) -> dict[str, Any]:
        chosen = {} if self.auto_reason is None else {"auto": self.auto_reason}
        return {"name": self.name, "threads": self.num_threads, "runtime": self.runtime(), **chosen}

    def latency(self, model: keras.Model, runs: int = 30) -> dict[str, Any]:
        """Every statistic of one batch-1 timing of `model` on this target (converted
        first for a tflite target), as `keras_resnet.timing.latency` returns them
        (`median_ms`, `p10_ms`, ...), from at most `runs` samples."""
        if self.variant is None:
            return _keras_latency(model, runs)
        return _tflite_latency(model, self.variant, self.num_threads, runs)

    def measure(self, model: keras.Model, statistic: str = "median_ms", runs: int = 30) -> float:
        """`model`'s median batch-1 latency in ms on this target (or another `statistic`
        of `latency`'s, e.g. `"p10_ms"`)."""
        return self.latency(model, runs)[statistic]


KERAS_TARGET = LatencyTarget()


class LatencyCache:
    """Measured latencies by spec, input shape, classes, target, runtime and host.

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
    def key(
        spec: ResNetSpec,
        input_shape: Sequence[int],
        classes: int,
        target: LatencyTarget = KERAS_TARGET,
    ) -> str:
        """The cache key: spec, input shape, classes, target (with its threads), runtime, host."""
        data = {
            "spec": spec.to_dict(),
            "input_shape": list(input_shape),
            "classes": classes,
            "runtime": target.runtime(),
            "host": socket.gethostname(),
            **target.key_fields(),
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:20]

    def get(self, key: str) -> float | None:
        """The cached latency in ms, or None (another process may have added it)."""
        if key not in self.entries:
            self._merge_disk()
        entry = self.entries.get(key)
        return None if entry is None else float(entry["latency_ms"])

    def put(
        self,
        key: str,
        latency_ms: float,
        spec: ResNetSpec,
        target: LatencyTarget = KERAS_TARGET,
    ) -> None:
        """Records a measurement (and writes the file, when attached)."""
        self.store(
            key,
            {
                "latency_ms": latency_ms,
                "runtime": target.runtime(),
                "host": socket.gethostname(),
                "spec": spec.to_dict(),
                **target.key_fields(),
            },
        )

    def store(self, key: str, entry: dict[str, Any]) -> None:
        """Records `entry` (a dict with `latency_ms`) under `key`, merged with the file's."""
        self.entries[key] = entry
        if self.path is not None:
            self._merge_disk()
            write_json(self.path, self.entries)

    def measure(
        self,
        spec: ResNetSpec,
        input_shape: Sequence[int],
        classes: int,
        model: keras.Model | None = None,
        target: LatencyTarget = KERAS_TARGET,
    ) -> float:
        """`spec`'s latency on `target`: from the cache, else measured (on `model`, or a
        build with random weights; converted first for a tflite target) and kept."""
        key = self.key(spec, input_shape, classes, target)
        cached = self.get(key)
        if cached is not None:
            return cached
        if model is None:
            model = build_resnet(spec, input_shape=input_shape, classes=classes)
        value = target.measure(model)
        self.put(key, value, spec, target)
        return value
