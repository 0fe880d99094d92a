"""Keras Tuner search over ResNet width and depth, under parameter and latency budgets.

`HyperResNet` is a `keras_tuner.HyperModel` that maps hyperparameters to a
`ResNetSpec` and calls `build_resnet`; it has no layer code. `search` runs
keras-tuner's Hyperband, random search or Bayesian optimisation with it on a
`keras_resnet.data` dataset and leaves one run directory:

```
run_dir/
  .keras_resnet.lock  held while a search runs here (a worker: .keras_resnet-worker-<id>.lock)
  tune.json           what was asked (a rerun must match; resume needs it)
  keras_tuner/        keras-tuner's own project: oracle.json, trial_*/trial.json, checkpoints
  latency_cache.json  batch-1 latencies already measured (spec + input shape + runtime + host)
  trials.csv          every trial: status, hyperparameters, params, latency, metrics
  pareto.png          objective against parameters and latency, Pareto front marked
  best_spec.json      the best spec (`ResNetSpec.from_dict`, `keras-resnet train --spec`)
  best.keras          the best model: its trial checkpoint, or retrained (`retrain_epochs`)
  summary.json        best trial, its test-split accuracy, budgets, counts, timing
```

Every output is written atomically (`keras_resnet._io`), JSON strictly (no NaN).

The search space (`SearchSpace`): width multiplier, number of stages, blocks per
stage (one integer hyperparameter per stage, `conv2_blocks`, `conv3_blocks`, ...),
block type, version, stem, optimizer, learning rate (log), weight decay (log)
and batch size. Every part can be switched off (None: the base spec's value)
or bounded; the defaults derive from a base spec (`resnet20` for images under
64 px, `resnet18` from 64 px) and the input size.

Budgets: `max_params` (exact, from `ResNetSpec.count_params`, so no model is
built to check it) and `max_latency_ms` (the median batch-1 inference time of
the built candidate in TensorFlow's graph runtime, a `tf.function` on this
machine; see `latency_runtime`). A candidate over a budget is never trained:
its trial is recorded with its parameters and latency and scored as a useless
model (accuracy 0, or the loss of a uniform guess, ln(classes)). Scoring it, rather than
failing it, is deliberate: keras-tuner stops a search after
`max_consecutive_failed_trials` failures in a row, and its Bayesian oracle
ignores failed trials, so it would keep proposing the same oversized region; a
low score steers it away, and Hyperband ranks it below every trained one. Random draws
(random search, Hyperband's brackets, Bayesian optimisation's initial points)
are also redrawn up to `MAX_DRAWS` times while over `max_params`, so the trial
budget goes to models that fit. Trials that crash (out of memory, ...) are
keras-tuner's failed trials: recorded with their error, and the search goes on.

Resume: keras-tuner's `overwrite=False`. Rerunning the same call after a kill
(even SIGKILL) reloads every finished trial and continues; the trial that was
running is run again.

Distributed: keras-tuner's chief/worker mode (`KERASTUNER_TUNER_ID`,
`KERASTUNER_ORACLE_IP`, `KERASTUNER_ORACLE_PORT`), set by `role`,
`oracle_address` and `tuner_id`. The chief runs the oracle over gRPC and writes
the outputs; workers train. The oracle has no authentication, so a chief
listens on loopback only unless `allow_remote_oracle`; a worker gives up on its
chief after `oracle_timeout` seconds. See docs/tuning.md.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import ipaddress
import itertools
import json
import math
import os
import platform
import re
import shlex
import shutil
import socket
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
import tensorflow as tf
from keras_tuner.src import utils as kt_utils
from keras_tuner.src.distribute import utils as dist_utils

from keras_resnet._checks import (
    check_positive_int as _check_positive_int,
)
from keras_resnet._checks import (
    check_positive_number as _check_positive_number,
)
from keras_resnet._checks import is_int as _is_int
from keras_resnet._checks import is_number as _is_number
from keras_resnet._checks import received as _received
from keras_resnet._io import LOCK_FILE, DirectoryLock, atomic_path, check_writable_dir
from keras_resnet._io import write_json as _write_json
from keras_resnet._io import write_text_atomic as _write_text_atomic
from keras_resnet.builder import build_resnet
from keras_resnet.data import DatasetSplits, load_dataset
from keras_resnet.spec import (
    BLOCKS,
    MAX_STAGE_BLOCKS,
    MAX_STAGES,
    MAX_TOTAL_BLOCKS,
    STEMS,
    VERSIONS,
    ResNetSpec,
    StageSpec,
    check_fits_in_memory,
    resolve_spec,
)
from keras_resnet.training import (
    DEFAULT_LEARNING_RATE,
    DEFAULT_WEIGHT_DECAY,
    OPTIMIZERS,
    TrainConfig,
    make_loss,
    make_optimizer,
    train,
)
from keras_resnet.version import __version__

TUNERS = ("hyperband", "random", "bayesian")
OBJECTIVES = {"val_accuracy": "max", "val_loss": "min"}
ROLES = ("chief", "worker")
AUTO = "auto"

DEFAULT_WIDTHS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
DEFAULT_OPTIMIZERS = ("sgd", "adam")
DEFAULT_LEARNING_RATES = {"sgd": (0.01, 0.2), "adam": (3e-4, 3e-3), "adamw": (3e-4, 3e-3)}
# Keras applies weight decay decoupled and scaled by the learning rate, so
# Adam's useful range sits far above SGD's.
DEFAULT_WEIGHT_DECAYS = {"sgd": (1e-5, 1e-3), "adam": (1e-3, 0.1), "adamw": (1e-3, 0.1)}
DEFAULT_BATCH_SIZES = (32, 64, 128)

SMALL_IMAGE = 64
"""Below this side the default base spec is resnet20 (CIFAR stem), from it resnet18."""
IMAGENET_STEM_MIN, CIFAR_STEM_MAX = 32, 128
"""Default stems: CIFAR only below 32 px, both up to 127 px, ImageNet only from 128 px."""
MAX_DRAWS = 100
"""Random draws per trial while a candidate is over `max_params` (each costs microseconds)."""

TUNE_CONFIG, TRIALS_CSV, PARETO_PNG, SUMMARY = (
    "tune.json",
    "trials.csv",
    "pareto.png",
    "summary.json",
)
BEST_SPEC, BEST_MODEL, LATENCY_CACHE = "best_spec.json", "best.keras", "latency_cache.json"
PROJECT, RETRAIN = "keras_tuner", "retrain"

_TUNER_ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")

DEFAULT_ORACLE_TIMEOUT = 30.0
"""Seconds a worker waits for its chief: to connect, and for each call (keras-tuner: 1 hour)."""
TUNER_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
# keras-tuner's project directory holds `oracle.json`, one `<tuner id>.json` per tuner
# (`tuner0` when not distributed, `chief`) and `trial_<id>/`; any id containing "chief"
# makes keras-tuner treat the process as the chief (keras_tuner.src.distribute.utils).
RESERVED_TUNER_IDS = ("oracle", "tuner0")
_METRICS = ("val_accuracy", "val_loss", "accuracy", "loss")


# --- argument checks ---------------------------------------------------------


def _choices(name: str, value: Any, allowed: Sequence[str]) -> tuple[str, ...] | None | str:
    if value is None or value == AUTO:
        return value
    values = (value,) if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not values or any(v not in allowed for v in values):
        raise ValueError(
            f"`{name}` must be a non-empty sequence of values from {list(allowed)}. "
            f"{_received(name, value)}"
        )
    return tuple(dict.fromkeys(values))


def _int_range(
    name: str, value: Any, maximum: int, limit: str
) -> tuple[int | None, int | None] | None | str:
    """An int (fixed), a (min, max) pair (either may be None: derived), AUTO or None.

    `maximum` is the spec's own limit (`keras_resnet.spec.<limit>`), so an
    absurd range is refused before any candidate is built.
    """
    if value is None or value == AUTO:
        return value
    pair = (value, value) if _is_int(value) else value
    ok = isinstance(pair, (list, tuple)) and len(pair) == 2
    ok = ok and all(v is None or (_is_int(v) and 1 <= v <= maximum) for v in pair)
    if ok and None not in pair and pair[0] > pair[1]:
        ok = False
    if not ok:
        raise ValueError(
            f"`{name}` must be a positive integer or a (min, max) pair of positive integers "
            f"with min <= max, at most {maximum} (keras_resnet.spec.{limit}). "
            f"{_received(name, value)}"
        )
    return int(pair[0]) if pair[0] is not None else None, (
        int(pair[1]) if pair[1] is not None else None
    )


def _derive_range(name: str, value: Any, auto_low: int, auto_high: int) -> tuple[int, int]:
    """A checked `_int_range` value (or AUTO) with its missing bounds derived."""
    low, high = (None, None) if value == AUTO else value
    low = auto_low if low is None else low
    high = max(low, auto_high) if high is None else high
    if low > high:
        raise ValueError(
            f"`{name}` must be a (min, max) pair with min <= max. {_received(name, value)}"
        )
    return low, high


def _float_range(name: str, value: Any, allow_zero: bool) -> tuple[float, float]:
    """A number (fixed) or a (min, max) pair for log sampling (min > 0)."""
    pair = (value, value) if _is_number(value) else value
    ok = isinstance(pair, (list, tuple)) and len(pair) == 2 and all(_is_number(v) for v in pair)
    if ok:
        low, high = float(pair[0]), float(pair[1])
        ok = low <= high and (low > 0 or (allow_zero and low == high == 0.0))
    if not ok:
        zero = ">= 0" if allow_zero else "> 0"
        raise ValueError(
            f"`{name}` must be a number {zero} or a (min, max) pair with 0 < min <= max "
            f"(sampled on a log scale). {_received(name, value)}"
        )
    return low, high


def _per_optimizer(name: str, value: Any, allow_zero: bool) -> Any:
    if value is None or value == AUTO:
        return value
    if isinstance(value, dict):
        unknown = [k for k in value if k not in OPTIMIZERS]
        if unknown:
            raise ValueError(
                f"`{name}` keys must be optimizers from {list(OPTIMIZERS)}. "
                f"{_received(name, value)}"
            )
        return {k: _float_range(name, v, allow_zero) for k, v in value.items()}
    return _float_range(name, value, allow_zero)


# --- the search space --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """What `HyperResNet` searches. Each field: None switches it off (the base spec's
    value, or the training default), a single value fixes it, a sequence or a
    (min, max) pair searches it, `"auto"` derives the range from the base spec
    and the input size (see `resolve`).

    Attributes:
        widths: width multipliers to choose from (`ResNetSpec.width`).
        num_stages: (min, max) number of stages. Stages beyond the base spec's
            double the previous filters and stride 2; fewer stages keep the
            first ones. Auto: one fewer than the base up to one more, while
            the last feature map keeps at least 2x2 pixels.
        blocks: (min, max) blocks of every stage, one integer hyperparameter per
            stage (`conv2_blocks`, `conv3_blocks`, ...). Auto: 1 to the base's
            deepest stage. None: the base's blocks.
        block_types: `"basic"` and/or `"bottleneck"`.
        versions: `"v1"` and/or `"v2"`.
        stems: `"cifar"` and/or `"imagenet"`. Auto: by input size (CIFAR stem
            below 32 px, both up to 127 px, ImageNet stem from 128 px).
        optimizers: from `keras_resnet.training.OPTIMIZERS`.
        learning_rate: a number, a (min, max) pair (log-sampled) for every
            optimizer, or a dict optimizer -> either. Auto:
            `DEFAULT_LEARNING_RATES`. None: `training.DEFAULT_LEARNING_RATE`.
        weight_decay: as `learning_rate` (0 allowed as a fixed value). Auto:
            `DEFAULT_WEIGHT_DECAYS`. None: `training.DEFAULT_WEIGHT_DECAY`.
        batch_sizes: batch sizes to choose from (applied in `HyperResNet.fit`).

    Example:

    >>> from keras_resnet.spec import get_spec
    >>> space = SearchSpace(widths=(0.5, 1.0), blocks=(1, 2), block_types="basic")
    >>> space.resolve(get_spec("resnet20"), (16, 16, 1)).num_stages
    (2, 4)
    """

    widths: Sequence[float] | float | None = DEFAULT_WIDTHS
    num_stages: Any = AUTO
    blocks: Any = AUTO
    block_types: Sequence[str] | str | None = BLOCKS
    versions: Sequence[str] | str | None = VERSIONS
    stems: Sequence[str] | str | None = AUTO
    optimizers: Sequence[str] | str | None = DEFAULT_OPTIMIZERS
    learning_rate: Any = AUTO
    weight_decay: Any = AUTO
    batch_sizes: Sequence[int] | int | None = DEFAULT_BATCH_SIZES

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        widths = self.widths
        if widths is not None:
            values = (widths,) if _is_number(widths) else widths
            if (
                not isinstance(values, (list, tuple))
                or not values
                or not all(_is_number(w) and 0 < w < 16 for w in values)
            ):
                raise ValueError(
                    "`widths` must be a non-empty sequence of numbers in (0, 16). "
                    f"{_received('widths', widths)}"
                )
            set_("widths", tuple(sorted({float(w) for w in values})))
        set_("num_stages", _int_range("num_stages", self.num_stages, MAX_STAGES, "MAX_STAGES"))
        set_("blocks", _int_range("blocks", self.blocks, MAX_STAGE_BLOCKS, "MAX_STAGE_BLOCKS"))
        set_("block_types", _choices("block_types", self.block_types, BLOCKS))
        set_("versions", _choices("versions", self.versions, VERSIONS))
        set_("stems", _choices("stems", self.stems, STEMS))
        set_("optimizers", _choices("optimizers", self.optimizers, OPTIMIZERS))
        if self.block_types == AUTO or self.versions == AUTO or self.optimizers == AUTO:
            raise ValueError(
                "`block_types`, `versions` and `optimizers` have no 'auto' setting. "
                f"Received: block_types={self.block_types!r}, versions={self.versions!r}, "
                f"optimizers={self.optimizers!r}"
            )
        set_("learning_rate", _per_optimizer("learning_rate", self.learning_rate, False))
        set_("weight_decay", _per_optimizer("weight_decay", self.weight_decay, True))
        sizes = self.batch_sizes
        if sizes is not None:
            values = (sizes,) if _is_int(sizes) else sizes
            if (
                not isinstance(values, (list, tuple))
                or not values
                or not all(_is_int(b) and b >= 1 for b in values)
            ):
                raise ValueError(
                    "`batch_sizes` must be a non-empty sequence of positive integers. "
                    f"{_received('batch_sizes', sizes)}"
                )
            set_("batch_sizes", tuple(sorted({int(b) for b in values})))

    def resolve(self, base: ResNetSpec, image_shape: Sequence[int]) -> SearchSpace:
        """Replaces every None and "auto" with concrete values for `base` and the input.

        Raises:
            ValueError: a setting the input size rules out (the ImageNet stem
                below 32 px), or candidates deeper or wider than a `ResNetSpec`
                may be (`keras_resnet.spec.MAX_TOTAL_BLOCKS`, ...).
        """
        side = min(image_shape[0], image_shape[1])
        stems = self.stems
        if stems == AUTO:
            stems = (
                ("cifar",)
                if side < IMAGENET_STEM_MIN
                else ("cifar", "imagenet")
                if side < CIFAR_STEM_MAX
                else ("imagenet",)
            )
        elif stems is None:
            stems = (base.stem,)
        if "imagenet" in stems and side < IMAGENET_STEM_MIN:
            raise ValueError(
                f"`stems` 'imagenet' needs images of at least {IMAGENET_STEM_MIN} px (its "
                f"stride-4 stem); these are {side} px. {_received('stems', self.stems)}"
            )
        n = len(base.stages)
        num_stages = self.num_stages
        if num_stages is None:
            num_stages = (n, n)
        else:
            auto_low, auto_high = max(1, n - 1), n
            stem_stride = 1 if "cifar" in stems else 4
            while (
                auto_high < n + 1 and side / (stem_stride * _total_stride(base, auto_high + 1)) >= 2
            ):
                auto_high += 1
            num_stages = _derive_range("num_stages", num_stages, auto_low, auto_high)
        blocks = self.blocks
        if blocks is not None:
            blocks = _derive_range("blocks", blocks, 1, max(s.blocks for s in base.stages))
        deepest = [
            blocks[1] if blocks else base.stages[min(i, n - 1)].blocks for i in range(num_stages[1])
        ]
        if sum(deepest) > MAX_TOTAL_BLOCKS:
            raise ValueError(
                f"The deepest candidate of the search space would have {sum(deepest):,} blocks "
                f"({deepest}), more than {MAX_TOTAL_BLOCKS:,} "
                "(keras_resnet.spec.MAX_TOTAL_BLOCKS); lower `blocks` or `num_stages`. "
                f"Received: blocks={self.blocks!r}, num_stages={self.num_stages!r}"
            )
        widths = self.widths or (base.width,)
        block_types = self.block_types or (base.block,)
        try:  # the widest candidate: every spec limit (channels, strides) checked up front
            _candidate(
                base,
                width=max(widths),
                blocks=deepest,
                block="bottleneck" if "bottleneck" in block_types else block_types[0],
                version=base.version,
                stem=stems[0],
            )
        except ValueError as e:
            raise ValueError(
                f"The largest candidate of the search space (width {max(widths):g}, "
                f"{len(deepest)} stages) is not a valid spec: {str(e).splitlines()[0]}"
            ) from None
        optimizers = self.optimizers or ("sgd",)

        def per_optimizer(value, auto, default):
            out = {}
            for opt in optimizers:
                if value is None:
                    out[opt] = (default[opt], default[opt])
                elif value == AUTO:
                    out[opt] = auto[opt]
                elif isinstance(value, dict):
                    out[opt] = value.get(opt, auto[opt])
                else:
                    out[opt] = value
            return out

        return dataclasses.replace(
            self,
            widths=widths,
            num_stages=num_stages,
            blocks=blocks,
            block_types=block_types,
            versions=self.versions or (base.version,),
            stems=tuple(stems),
            optimizers=optimizers,
            learning_rate=per_optimizer(
                self.learning_rate, DEFAULT_LEARNING_RATES, DEFAULT_LEARNING_RATE
            ),
            weight_decay=per_optimizer(
                self.weight_decay, DEFAULT_WEIGHT_DECAYS, DEFAULT_WEIGHT_DECAY
            ),
            batch_sizes=self.batch_sizes or (64,),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _stage_template(base: ResNetSpec, i: int) -> StageSpec:
    """Stage i of a candidate: the base's, or for extra stages twice the last filters."""
    if i < len(base.stages):
        return base.stages[i]
    last = base.stages[-1]
    return StageSpec(last.filters * 2 ** (i - len(base.stages) + 1), last.blocks, 2)


def _candidate(
    base: ResNetSpec, *, width: float, blocks: Sequence[int], block: str, version: str, stem: str
) -> ResNetSpec:
    """The spec for explicit choices (`len(blocks)` stages) on top of the base spec."""
    stages = tuple(
        dataclasses.replace(_stage_template(base, i), blocks=int(b)) for i, b in enumerate(blocks)
    )
    return dataclasses.replace(
        base, stages=stages, width=width, block=block, version=version, stem=stem
    )


def _total_stride(base: ResNetSpec, num_stages: int) -> int:
    return math.prod(_stage_template(base, i).stride for i in range(num_stages))


# --- latency -----------------------------------------------------------------


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

    The model runs as a traced `tf.function` in inference mode; the first
    calls (tracing, warm-up) are not timed. At least 5 runs, at most `runs`,
    and no more after `max_seconds`.
    """
    x = tf.zeros((1, *model.input_shape[1:]), dtype=model.inputs[0].dtype)
    infer = tf.function(lambda t: model(t, training=False))
    for _ in range(3):
        infer(x).numpy()
    samples: list[float] = []
    deadline = time.perf_counter() + max_seconds
    while len(samples) < runs and (len(samples) < 5 or time.perf_counter() < deadline):
        start = time.perf_counter()
        infer(x).numpy()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples)) * 1e3


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
            _write_json(self.path, self.entries)

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
            _write_json(self.path, self.entries)


# --- the hypermodel ----------------------------------------------------------


class HyperResNet(kt.HyperModel):
    """A keras-tuner HyperModel: hyperparameters -> `ResNetSpec` -> `build_resnet`.

    Args:
        input_shape: `(H, W, C)` of the images.
        classes: number of classes.
        base: the spec the defaults derive from (name, spec or dict). Default:
            `resnet20` for images under 64 px, else `resnet18`.
        space: a `SearchSpace` (default `SearchSpace()`).
        objective: `"val_accuracy"` or `"val_loss"`; `fit` reports the epoch
            that is best for it.
        max_params: parameter budget (classifier included).
        max_latency_ms: batch-1 latency budget in ms (see `latency_runtime`).
        label_mode: `"int"` or `"categorical"` for the loss `build` compiles
            with; `fit` picks it from the data it gets.
        latency_cache: a `LatencyCache` or a JSON file path.

    Over-budget candidates are never trained: `fit` returns their size and
    latency with `rejected=1` and the score of a useless model, whichever
    tuner drives it. With `search` (or `make_tuner`) the parameter budget is
    checked before the candidate is even built.

    Example:

    >>> hm = HyperResNet((16, 16, 1), 10, max_params=100_000)
    >>> hp = keras_tuner.HyperParameters()
    >>> hm.declare_hyperparameters(hp)  # defaults: the base spec, resnet20
    >>> hm.spec(hp).depth, hm.count_params(hp)
    (20, 270810)
    >>> model = hm.build(hp)   # compiled keras.Model
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        classes: int,
        base: ResNetSpec | str | dict | None = None,
        *,
        space: SearchSpace | None = None,
        objective: str = "val_accuracy",
        max_params: int | None = None,
        max_latency_ms: float | None = None,
        label_mode: str | None = None,
        latency_cache: LatencyCache | str | os.PathLike | None = None,
        name: str | None = "HyperResNet",
        tunable: bool = True,
    ):
        super().__init__(name=name, tunable=tunable)
        if (
            not isinstance(input_shape, (list, tuple))
            or len(input_shape) != 3
            or not all(_is_int(d) and d >= 1 for d in input_shape)
        ):
            raise ValueError(
                "`input_shape` must be (height, width, channels), positive integers. "
                f"{_received('input_shape', input_shape)}"
            )
        _check_positive_int("classes", classes)
        if objective not in OBJECTIVES:
            raise ValueError(
                f"`objective` must be one of {list(OBJECTIVES)}. "
                f"{_received('objective', objective)}"
            )
        _check_positive_int("max_params", max_params, allow_none=True)
        _check_positive_number("max_latency_ms", max_latency_ms, allow_none=True)
        if label_mode not in (None, "int", "categorical"):
            raise ValueError(
                "`label_mode` must be None, 'int' or 'categorical'. "
                f"{_received('label_mode', label_mode)}"
            )
        if space is not None and not isinstance(space, SearchSpace):
            raise ValueError(f"`space` must be a SearchSpace. {_received('space', space)}")
        self.input_shape = tuple(int(d) for d in input_shape)
        self.classes = int(classes)
        side = min(self.input_shape[:2])
        if base is None:
            base = "resnet20" if side < SMALL_IMAGE else "resnet18"
        self.base = resolve_spec(base)
        self.space = (space or SearchSpace()).resolve(self.base, self.input_shape)
        self.objective = objective
        self.max_params = max_params
        self.max_latency_ms = max_latency_ms
        self.label_mode = label_mode or "int"
        self.latency_cache = (
            latency_cache
            if isinstance(latency_cache, LatencyCache)
            else LatencyCache(latency_cache)
        )
        self._example_counts: dict[int, tuple[Any, int | None]] = {}

    # hyperparameters -> spec ----------------------------------------------

    def spec(self, hp: kt.HyperParameters) -> ResNetSpec:
        """The candidate's spec (declares the architecture hyperparameters in `hp`)."""
        s = self.space
        width = _choice(hp, "width", s.widths, self.base.width)
        low, high = s.num_stages
        num_stages = low
        if low < high:
            default = _clip(len(self.base.stages), low, high)
            num_stages = hp.Int("num_stages", low, high, default=default)
        blocks = []
        for i in range(high):
            default = _stage_template(self.base, i).blocks
            if s.blocks is None or s.blocks[0] == s.blocks[1]:
                value = default if s.blocks is None else s.blocks[0]
            elif i < low:
                value = hp.Int(f"conv{i + 2}_blocks", *s.blocks, default=_clip(default, *s.blocks))
            else:
                # Only the stages a candidate has are tuned (keras-tuner's conditional scopes).
                with hp.conditional_scope("num_stages", list(range(i + 1, high + 1))):
                    value = hp.Int(
                        f"conv{i + 2}_blocks", *s.blocks, default=_clip(default, *s.blocks)
                    )
            blocks.append(value)
        return self.make_spec(
            width=width,
            blocks=blocks[:num_stages],
            block=_choice(hp, "block", s.block_types, self.base.block),
            version=_choice(hp, "version", s.versions, self.base.version),
            stem=_choice(hp, "stem", s.stems, self.base.stem),
        )

    def make_spec(
        self, *, width: float, blocks: Sequence[int], block: str, version: str, stem: str
    ) -> ResNetSpec:
        """The spec for explicit choices (`len(blocks)` stages) on top of the base spec."""
        return _candidate(
            self.base, width=width, blocks=blocks, block=block, version=version, stem=stem
        )

    def training_hyperparameters(self, hp: kt.HyperParameters) -> dict[str, Any]:
        """Optimizer, learning rate, weight decay and batch size of the candidate.

        With several optimizers, each has its own `learning_rate_<optimizer>`
        and `weight_decay_<optimizer>` (conditional on `optimizer`), because
        their useful ranges differ by orders of magnitude.
        """
        s = self.space
        optimizer = _choice(hp, "optimizer", s.optimizers, s.optimizers[0])
        several = len(s.optimizers) > 1
        chosen: dict[str, float] = {}
        for opt in s.optimizers:
            suffix = f"_{opt}" if several else ""
            scope = (
                hp.conditional_scope("optimizer", [opt]) if several else contextlib.nullcontext()
            )
            with scope:
                for name, ranges, usual in (
                    ("learning_rate", s.learning_rate, DEFAULT_LEARNING_RATE),
                    ("weight_decay", s.weight_decay, DEFAULT_WEIGHT_DECAY),
                ):
                    low, high = ranges[opt]
                    value = low
                    if low < high:
                        default = min(max(usual[opt], low), high)
                        value = hp.Float(
                            f"{name}{suffix}", low, high, sampling="log", default=default
                        )
                    if opt == optimizer:
                        chosen[name] = value
        batch_size = _choice(hp, "batch_size", s.batch_sizes, 64)
        return {"optimizer": optimizer, "batch_size": batch_size, **chosen}

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        """Declares the whole space up front, so batch size is searched from trial 1."""
        self.spec(hp)
        self.training_hyperparameters(hp)

    def count_params(self, hp: kt.HyperParameters) -> int:
        """Exact parameters of the candidate, without building it."""
        return self.spec_params(self.spec(hp))

    def spec_params(self, spec: ResNetSpec) -> int:
        """Exact parameters of `spec` for this input and these classes, without building it."""
        return spec.count_params(channels=self.input_shape[-1], classes=self.classes)

    # budgets ----------------------------------------------------------------

    @property
    def penalty(self) -> float:
        """The score of a rejected (or diverged) candidate.

        Accuracy 0, the least a trained model can score, so Hyperband never
        promotes a rejected candidate over a trained one. For the loss, the
        loss of a uniform guess, ln(classes): a finite value keeps the Bayesian
        oracle's Gaussian process well-conditioned.
        """
        if self.objective == "val_loss":
            return math.log(self.classes)
        return 0.0

    def budget_violation(self, params: int | None, latency_ms: float | None) -> str | None:
        """Why a candidate is over budget, or None."""
        if self.max_params is not None and params is not None and params > self.max_params:
            return f"params {params:,} > max_params {self.max_params:,}"
        if (
            self.max_latency_ms is not None
            and latency_ms is not None
            and latency_ms > self.max_latency_ms
        ):
            return f"latency {latency_ms:.3g} ms > max_latency_ms {self.max_latency_ms:g}"
        return None

    def rejected_result(self, params: int, latency_ms: float | None) -> dict[str, float]:
        """What a trial over budget reports to the oracle (it was not trained)."""
        result = {self.objective: self.penalty, "params": float(params), "rejected": 1.0}
        result["epochs"] = 0.0
        if latency_ms is not None:
            result["latency_ms"] = latency_ms
        return result

    def cached_latency(self, spec: ResNetSpec) -> float | None:
        """The candidate's latency if already measured (no build), else None."""
        return self.latency_cache.get(LatencyCache.key(spec, self.input_shape, self.classes))

    def latency_ms(self, spec: ResNetSpec, model: keras.Model | None = None) -> float:
        """Batch-1 latency of the candidate (measured once per spec, then cached)."""
        cached = self.cached_latency(spec)
        if cached is not None:
            return cached
        if model is None:
            model = build_resnet(spec, input_shape=self.input_shape, classes=self.classes)
        value = measure_latency(model)
        self.latency_cache.put(LatencyCache.key(spec, self.input_shape, self.classes), value, spec)
        return value

    def corner_specs(self) -> list[ResNetSpec]:
        """The smallest candidate of every discrete choice (min blocks): budget pre-checks."""
        s = self.space
        low_blocks = s.blocks[0] if s.blocks else None
        stage_counts = range(s.num_stages[0], s.num_stages[1] + 1)
        return [
            self.make_spec(
                width=width,
                blocks=[low_blocks or _stage_template(self.base, i).blocks for i in range(n)],
                block=block,
                version=version,
                stem=stem,
            )
            for width, n, block, version, stem in itertools.product(
                s.widths, stage_counts, s.block_types, s.versions, s.stems
            )
        ]

    # build and fit ------------------------------------------------------------

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        """Builds the candidate, compiled for `label_mode` at a constant learning rate.

        `fit` compiles again with the schedule for the epochs it actually runs
        (keras-tuner decides those, e.g. Hyperband's rounds).
        """
        spec = self.spec(hp)
        model = build_resnet(spec, input_shape=self.input_shape, classes=self.classes)
        train_hp = self.training_hyperparameters(hp)
        config = _train_config(train_hp, epochs=1, schedule="constant")
        model.compile(
            optimizer=make_optimizer(config, steps_per_epoch=1),
            loss=make_loss(self.label_mode),
            metrics=["accuracy"],
        )
        return model

    def fit(
        self,
        hp: kt.HyperParameters,
        model: keras.Model,
        x: Any = None,
        y: Any = None,
        *,
        validation_data: Any = None,
        epochs: int = 1,
        initial_epoch: int = 0,
        callbacks: list | None = None,
        verbose: int | str = 0,
        **kwargs: Any,
    ) -> dict[str, float]:
        """Trains the candidate unless it is over budget; returns its metrics.

        Args:
            hp: the trial's hyperparameters.
            model: the model `build(hp)` returned (weights may be loaded by Hyperband).
            x, y: as in `keras.Model.fit`: arrays, or a `tf.data.Dataset` of
                batched or unbatched `(image, label)` pairs. A dataset is
                rebatched to the trial's batch size.
            validation_data: needed: the objective is a validation metric.
            epochs, initial_epoch, callbacks, verbose, **kwargs: as in `Model.fit`.

        Returns:
            The metrics of the epoch best for the objective, plus `params`,
            `latency_ms`, `epochs` (total trained) and `rejected` (0 or 1).
        """
        spec = self.spec(hp)
        params = self.spec_params(spec)
        reason = self.budget_violation(params, None)
        latency = None if reason else self.latency_ms(spec, model)
        if reason or self.budget_violation(params, latency):
            return self.rejected_result(params, latency)
        if validation_data is None:
            raise ValueError(
                f"`validation_data` is needed: the objective is {self.objective!r}. "
                "Received: validation_data=None"
            )
        train_hp = self.training_hyperparameters(hp)
        batch_size = train_hp["batch_size"]
        fit_kwargs = dict(kwargs)
        if isinstance(x, tf.data.Dataset):
            examples = self._count_examples(x)
            labels = x.element_spec[1]
            batched = len(x.element_spec[0].shape) == len(self.input_shape) + 1
            x = (x.unbatch() if batched else x).batch(batch_size).prefetch(tf.data.AUTOTUNE)
            label_shape = labels.shape[1:] if batched else labels.shape
            fit_kwargs["shuffle"] = False  # a dataset shuffles itself
        else:
            examples = len(x)
            fit_kwargs.update(y=y, batch_size=batch_size)
            label_shape = np.shape(y)[1:]
        self.label_mode = _label_mode(label_shape, self.classes)
        steps = math.ceil(examples / batch_size) if examples else None
        config = _train_config(
            train_hp,
            epochs=max(1, epochs - initial_epoch),
            schedule="cosine" if steps else "constant",
        )
        model.compile(
            optimizer=make_optimizer(config, steps_per_epoch=steps or 1),
            loss=make_loss(self.label_mode),
            metrics=["accuracy"],
        )
        with warnings.catch_warnings():
            # A rebatched dataset has no known size until its first epoch ends, which
            # Keras reports as running out of data.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            history = model.fit(
                x,
                validation_data=validation_data,
                epochs=epochs,
                initial_epoch=initial_epoch,
                callbacks=[*(callbacks or []), keras.callbacks.TerminateOnNaN()],
                verbose=verbose,
                **fit_kwargs,
            )
        return self._best_epoch(history.history, params, latency, initial_epoch)

    def _best_epoch(
        self, history: dict[str, list], params: int, latency: float, initial_epoch: int
    ) -> dict[str, float]:
        scores = np.array(history.get(self.objective, []), dtype=float)
        if not scores.size:
            raise ValueError(
                f"Training reported no {self.objective!r}; it needs validation data. "
                f"Received: metrics={sorted(history)}"
            )
        result = {"params": float(params), "latency_ms": latency, "rejected": 0.0}
        result["epochs"] = float(initial_epoch + len(scores))
        # An epoch whose training loss is NaN or infinite diverged (TerminateOnNaN
        # stopped it), whatever its validation accuracy says: Keras still validates
        # the NaN weights, and their accuracy (about chance) is a number.
        losses = np.array(history.get("loss", []), dtype=float)
        if losses.size == scores.size:
            scores = np.where(np.isfinite(losses), scores, np.nan)
        if np.isnan(scores).all():
            # Diverged: a result, not a crash.
            result.update({self.objective: self.penalty, "diverged": 1.0})
            return result
        pick = np.nanargmax if OBJECTIVES[self.objective] == "max" else np.nanargmin
        best = int(pick(scores))
        for name in _METRICS:
            values = history.get(name, [])
            if best < len(values) and np.isfinite(values[best]):
                result[name] = float(values[best])
        return result

    def _count_examples(self, ds: tf.data.Dataset) -> int | None:
        """Examples in a dataset (for the schedule), from its cardinality and first batch.

        The first batch gives the batch size; a short last batch makes this
        at most one step long, which a cosine schedule does not notice.
        """
        key = id(ds)
        if key not in self._example_counts:
            cardinality = int(ds.cardinality())
            count = None
            if cardinality > 0:
                if len(ds.element_spec[0].shape) == len(self.input_shape) + 1:
                    first = next(iter(ds.take(1)))[0]
                    count = cardinality * int(first.shape[0])
                else:
                    count = cardinality
            self._example_counts[key] = (ds, count)  # keeps ds alive, so its id stays unique
        return self._example_counts[key][1]


def _choice(hp: kt.HyperParameters, name: str, values: Sequence[Any], default: Any) -> Any:
    if len(values) == 1:
        return values[0]
    default = min(values, key=lambda v: (v != default, abs(_rank(v) - _rank(default))))
    return hp.Choice(name, list(values), default=default)


def _rank(value: Any) -> float:
    return float(value) if _is_number(value) else 0.0


def _clip(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _label_mode(label_shape: Sequence[int | None], classes: int) -> str:
    """Sparse integer labels, or one-hot labels with a last axis of `classes`."""
    shape = tuple(label_shape)
    if shape == () or shape == (1,):
        return "int"
    if shape == (classes,):
        return "categorical"
    raise ValueError(
        f"Labels must be class indices or one-hot vectors of {classes} classes. "
        f"Received: label shape {shape}"
    )


def _train_config(train_hp: dict[str, Any], *, epochs: int, schedule: str) -> TrainConfig:
    return TrainConfig(
        epochs=epochs,
        batch_size=train_hp["batch_size"],
        optimizer=train_hp["optimizer"],
        learning_rate=train_hp["learning_rate"],
        weight_decay=train_hp["weight_decay"],
        schedule=schedule,
        warmup_epochs=0,
    )


# --- tuners and oracles --------------------------------------------------------


class _BudgetedOracle:
    """Mixed into keras-tuner's oracles: random draws over `max_params` are redrawn.

    `feasible` (values -> bool) is set by `make_tuner`; `deadline` (a
    `time.time()`) stops handing out new trials once passed.
    """

    feasible = None
    deadline: float | None = None
    infeasible_draws = 0
    failure: str | None = None  # set on a chief when too many trials failed in a row

    def _random_values(self):
        values = last = super()._random_values()
        for _ in range(MAX_DRAWS - 1):
            if values is None or self.feasible is None or self.feasible(values):
                break
            self.infeasible_draws += 1
            last, values = values, super()._random_values()
        # None means "nothing new left"; an unseen over-budget candidate is still new,
        # and its trial records the rejection.
        return values if values is not None else last

    def populate_space(self, trial_id):
        if self.failure or (self.deadline is not None and time.time() > self.deadline):
            return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
        return super().populate_space(trial_id)

    def end_trial(self, trial):
        try:
            super().end_trial(trial)
        except RuntimeError as e:
            if "consecutive failures" not in str(e) or not dist_utils.is_chief_oracle():
                raise
            # On a chief this runs in the gRPC handler of a worker's EndTrial: the
            # error would crash that worker and leave its trial "ongoing", so the
            # chief would wait for it forever. Let the trial go, stop handing out
            # trials, and let `_serve` raise once every worker has stopped.
            self.failure = str(e)
            for tuner_id, ongoing in list(self.ongoing_trials.items()):
                if ongoing.trial_id == trial.trial_id:
                    self.ongoing_trials.pop(tuner_id)

    def get_state(self):
        return {**super().get_state(), "infeasible_draws": self.infeasible_draws}

    def set_state(self, state):
        super().set_state(state)
        self.infeasible_draws = state.get("infeasible_draws", 0)

    def save(self):
        _save_state(self, self._get_oracle_fname())

    def _save_trial(self, trial):
        _save_state(trial, os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"))


@contextlib.contextmanager
def _weights_only_restore() -> Iterator[None]:
    """Trial checkpoints hold the trained optimizer's slots too; restoring one into a
    freshly compiled model skips them (it trains on with a new optimizer), and
    Keras warns about it every time."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        yield


def _save_state(obj: Any, fname: str) -> None:
    """keras-tuner's `Stateful.save`, but atomic.

    keras-tuner writes its JSON state in place; a kill during a write would
    leave a truncated file that stops every later resume.
    """
    tmp = f"{fname}.tmp"
    kt_utils.save_json(tmp, obj.get_state())
    tf.io.gfile.rename(tmp, fname, overwrite=True)


class OracleUnreachableError(kt.errors.FatalRuntimeError):
    """A worker got no answer from its chief in time.

    A keras-tuner `FatalError`, so keras-tuner's search loop stops on it
    instead of recording the trial as failed and asking the chief again.
    """


def _oracle_target() -> str:
    """The chief's address as keras-tuner's client dials it (set by `_tuner_environment`)."""
    return f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"


def _unreachable(target: str, timeout: float) -> OracleUnreachableError:
    return OracleUnreachableError(
        f"cannot reach the chief at {target} within {timeout:g} s: start the chief first "
        "(same --output, --role chief) or wait longer with --oracle-timeout (oracle_timeout)."
    )


def _wait_for_chief(timeout: float) -> None:
    """Waits until the chief's gRPC port answers, at most `timeout` seconds."""
    import grpc

    target = _oracle_target()
    channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise _unreachable(target, timeout) from None
    finally:
        channel.close()


class _BoundedStub:
    """keras-tuner's gRPC stub with `timeout` seconds per call instead of its hour."""

    def __init__(self, stub: Any, timeout: float, target: str):
        self._stub, self._timeout, self._target = stub, timeout, target

    def __getattr__(self, name: str) -> Any:
        import grpc

        method = getattr(self._stub, name)

        def call(request: Any, **kwargs: Any) -> Any:
            try:
                return method(request, **{**kwargs, "timeout": self._timeout})
            except grpc.RpcError as e:
                if e.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
                    raise _unreachable(self._target, self._timeout) from None
                raise

        return call


class _PatientClient:
    """A worker's oracle client: waits a second when the chief says IDLE, and gives
    every call to the chief `timeout` seconds.

    keras-tuner's worker loop asks again at once, which on a small machine
    spins a core while Hyperband waits for a round to finish elsewhere. Its
    client waits up to an hour per call for a chief that is gone.
    """

    def __init__(self, client: Any, timeout: float):
        self._client = client
        # Private: keras-tuner's OracleClient makes every call through its `stub`
        # attribute with a fixed 1-hour timeout (keras_tuner.src.distribute.oracle_client);
        # tests/test_tuning.py fails if `stub` goes away.
        client.stub = _BoundedStub(client.stub, timeout, _oracle_target())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def create_trial(self, tuner_id: str):
        trial = self._client.create_trial(tuner_id)
        if trial.status == kt.engine.trial.TrialStatus.IDLE:
            time.sleep(1.0)
        return trial


class _BudgetedTuner:
    """Mixed into keras-tuner's tuners: over-budget trials are rejected before `build`."""

    def __init__(
        self,
        oracle: kt.Oracle,
        hypermodel: HyperResNet,
        *,
        oracle_timeout: float = DEFAULT_ORACLE_TIMEOUT,
        **kwargs: Any,
    ):
        # The stock tuner classes only differ in the oracle they create; ours is given.
        kt.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)
        if self._is_worker():
            self.oracle = _PatientClient(self.oracle, oracle_timeout)

    def run_trial(self, trial, *args, **kwargs):
        hm: HyperResNet = self.hypermodel
        hp = trial.hyperparameters
        spec = hm.spec(hp.copy())
        params = hm.spec_params(spec)
        latency = hm.cached_latency(spec)
        if latency is None:
            latency = self._parent_latency_if_rejected(hp)
        if hm.budget_violation(params, latency):
            return hm.rejected_result(params, latency)
        with _weights_only_restore():  # Hyperband loads the promoted trial's checkpoint
            return super().run_trial(trial, *args, **kwargs)

    def _parent_latency_if_rejected(self, hp: kt.HyperParameters) -> float | None:
        """The latency a Hyperband parent was rejected with, else None.

        A promoted trial loads its parent's checkpoint; a rejected parent never
        wrote one. The latency cache would catch it on the parent's host (it is
        keyed by host); on another worker host the parent's own record does.
        """
        parent_id = hp.values.get("tuner/trial_id")
        if parent_id is None:
            return None
        metrics = self.oracle.get_trial(parent_id).metrics
        rejected = metrics.exists("rejected") and metrics.get_last_value("rejected") == 1.0
        if rejected and metrics.exists("latency_ms"):
            return float(metrics.get_last_value("latency_ms"))
        return None

    def save(self):
        if not self._is_worker():
            self.oracle.save()
        _save_state(self, self._get_tuner_fname())

    def search(self, *args, **kwargs):
        if dist_utils.is_chief_oracle():
            self.oracle.verbose = kwargs.get("verbose", 1)
            self.save()
            _serve(self.oracle)
            return
        super().search(*args, **kwargs)


def _serve(oracle: kt.Oracle, poll_seconds: float = 0.5) -> None:
    """The chief: serves the oracle over gRPC until every worker has been told to stop.

    keras-tuner's own `start_server` serves the same `OracleServicer`, but
    polls only every 20 s once the first worker stopped and never stops the
    server.
    """
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    if server.add_insecure_port(address) == 0:
        raise RuntimeError(f"The chief cannot listen on {address} (in use or not this host).")
    server.start()
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(poll_seconds)
    finally:
        server.stop(grace=5).wait()
    if getattr(oracle, "failure", None):
        raise RuntimeError(oracle.failure)


_ORACLES = {
    "hyperband": kt.oracles.HyperbandOracle,
    "random": kt.oracles.RandomSearchOracle,
    "bayesian": kt.oracles.BayesianOptimizationOracle,
}
_TUNERS = {
    "hyperband": kt.Hyperband,
    "random": kt.RandomSearch,
    "bayesian": kt.BayesianOptimization,
}
_ORACLE_CLASSES = {
    name: type(f"Budgeted{cls.__name__}", (_BudgetedOracle, cls), {})
    for name, cls in _ORACLES.items()
}
_TUNER_CLASSES = {
    name: type(f"Budgeted{cls.__name__}", (_BudgetedTuner, cls), {})
    for name, cls in _TUNERS.items()
}


def make_tuner(
    hypermodel: HyperResNet,
    tuner: str = "hyperband",
    *,
    directory: str | os.PathLike,
    project_name: str = PROJECT,
    max_trials: int = 20,
    max_epochs: int = 10,
    hyperband_factor: int = 3,
    seed: int = 0,
    overwrite: bool = False,
    max_consecutive_failed_trials: int = 3,
    max_search_seconds: float | None = None,
    oracle_timeout: float = DEFAULT_ORACLE_TIMEOUT,
) -> kt.Tuner:
    """A keras-tuner tuner for `hypermodel` that knows its budgets.

    It is keras-tuner's `Hyperband`, `RandomSearch` or `BayesianOptimization`
    with two additions: random draws over `max_params` are redrawn, and
    trials over a budget are rejected before their model is built.
    `max_trials` caps the trials of every tuner (Hyperband's too: it runs
    brackets until the cap). Distributed mode follows keras-tuner's
    `KERASTUNER_*` environment variables (see `search`); a worker gives each
    call to the chief `oracle_timeout` seconds, then raises
    `OracleUnreachableError`.

    Example:

    >>> tuner = make_tuner(HyperResNet((16, 16, 1), 10), "random", directory="runs/t")
    >>> tuner.search(splits.train, validation_data=splits.validation, epochs=2)
    """
    if tuner not in TUNERS:
        raise ValueError(f"`tuner` must be one of {list(TUNERS)}. {_received('tuner', tuner)}")
    objective = kt.Objective(hypermodel.objective, OBJECTIVES[hypermodel.objective])
    # keras-tuner treats seed 0 as "no seed" (a random one).
    common = dict(
        objective=objective,
        seed=seed + 1,
        max_consecutive_failed_trials=max_consecutive_failed_trials,
    )
    if tuner == "hyperband":
        oracle = _ORACLE_CLASSES[tuner](
            max_epochs=max_epochs, factor=hyperband_factor, hyperband_iterations=None, **common
        )
        oracle.max_trials = max_trials
    elif tuner == "bayesian":
        oracle = _ORACLE_CLASSES[tuner](
            max_trials=max_trials, num_initial_points=max(3, max_trials // 3), **common
        )
    else:
        oracle = _ORACLE_CLASSES[tuner](max_trials=max_trials, **common)
    if hypermodel.max_params is not None:

        def feasible(values: dict[str, Any]) -> bool:
            hp = oracle.hyperparameters.copy()
            hp.values = dict(values)
            return hypermodel.count_params(hp) <= hypermodel.max_params

        oracle.feasible = feasible
    if max_search_seconds is not None:
        oracle.deadline = time.time() + max_search_seconds
    return _TUNER_CLASSES[tuner](
        oracle,
        hypermodel,
        directory=str(directory),
        project_name=project_name,
        overwrite=overwrite,
        oracle_timeout=oracle_timeout,
    )


# --- the search ----------------------------------------------------------------


@contextlib.contextmanager
def _tuner_environment(
    role: str | None, oracle_address: str | None, tuner_id: str | None
) -> Iterator[None]:
    """keras-tuner's distributed mode is configured only by environment variables."""
    saved = {name: os.environ.get(name) for name in _TUNER_ENV}
    if role is not None:
        host, port = oracle_address.rsplit(":", 1)
        os.environ["KERASTUNER_TUNER_ID"] = "chief" if role == "chief" else tuner_id
        # keras-tuner and gRPC join IP and port with ":": an IPv6 host keeps brackets.
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        os.environ["KERASTUNER_ORACLE_IP"] = host
        os.environ["KERASTUNER_ORACLE_PORT"] = port
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (bracketed or not) or localhost."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def _check_tuner_id(tuner_id: Any) -> None:
    """A worker's id names its files (`<id>.json` in keras-tuner's project, our lock)."""
    if not isinstance(tuner_id, str) or not TUNER_ID_PATTERN.fullmatch(tuner_id):
        raise ValueError(
            "A worker's `tuner_id` must be 1-64 characters from A-Z, a-z, 0-9, '_' and '-' "
            "(unique, stable across restarts). "
            f"{_received('tuner_id', tuner_id)}"
        )
    lowered = tuner_id.lower()  # case-insensitive file systems would collide too
    if lowered in RESERVED_TUNER_IDS or "chief" in lowered or lowered.startswith("trial_"):
        raise ValueError(
            "A worker's `tuner_id` may not be one of keras-tuner's own names in the project "
            f"directory ({', '.join(map(repr, RESERVED_TUNER_IDS))}, anything containing "
            f"'chief' or starting with 'trial_'). {_received('tuner_id', tuner_id)}"
        )


def _check_distributed(
    role: Any,
    oracle_address: Any,
    tuner_id: Any,
    overwrite: bool,
    allow_remote_oracle: bool = False,
) -> None:
    if not isinstance(allow_remote_oracle, bool):
        raise ValueError(
            "`allow_remote_oracle` must be a bool. "
            f"{_received('allow_remote_oracle', allow_remote_oracle)}"
        )
    if role is None:
        if oracle_address is not None:
            raise ValueError(
                "`oracle_address` needs `role` ('chief' or 'worker'). "
                f"{_received('oracle_address', oracle_address)}"
            )
        return
    if role not in ROLES:
        raise ValueError(f"`role` must be one of {list(ROLES)}. {_received('role', role)}")
    ok = isinstance(oracle_address, str) and ":" in oracle_address
    if ok:
        host, port = oracle_address.rsplit(":", 1)
        ok = bool(host) and port.isdigit() and 0 < int(port) < 65536
    if not ok:
        raise ValueError(
            "`oracle_address` must be HOST:PORT (the chief's address, port 1-65535). "
            f"{_received('oracle_address', oracle_address)}"
        )
    if role == "chief" and not allow_remote_oracle and not _is_loopback(host):
        raise ValueError(
            f"The chief would serve the oracle on {host}, not a loopback address, and its gRPC "
            "port accepts unauthenticated connections from anyone who can reach it; pass "
            "allow_remote_oracle=True (--allow-remote-oracle) on a trusted private network. "
            f"{_received('oracle_address', oracle_address)}"
        )
    if role == "worker":
        _check_tuner_id(tuner_id)
        if overwrite:
            raise ValueError(
                "Only the chief may overwrite the search (a worker would delete the shared "
                "project). Received: overwrite=True"
            )


def _lock_name(role: str | None, tuner_id: str | None) -> str:
    """One process, or the chief, takes the run directory's lock; each worker its own, so
    workers share the directory but two with the same id do not."""
    return f".keras_resnet-worker-{tuner_id}.lock" if role == "worker" else LOCK_FILE


def _is_lock_file(path: Path) -> bool:
    return path.name.startswith(".keras_resnet") and path.name.endswith(".lock")


def _contents(run_dir: Path) -> Iterator[Path]:
    """What a run directory holds besides lock files."""
    return (path for path in run_dir.iterdir() if not _is_lock_file(path))


@contextlib.contextmanager
def _locked_run_dir(run_dir: Path, name: str) -> Iterator[DirectoryLock]:
    """Holds `run_dir`'s lock `name` (see `keras_resnet._io.DirectoryLock`).

    A directory this call creates and that holds nothing but the lock when the
    block fails (a check refused the search before anything was written) is
    removed again.
    """
    created = not run_dir.exists()
    check_writable_dir(run_dir, "output_dir")
    lock = DirectoryLock(run_dir, arg="output_dir", name=name).acquire()
    try:
        yield lock
    except BaseException:
        if created and not any(_contents(run_dir)):
            # Unlinked while still held, so no other process can take this lock meanwhile.
            with contextlib.suppress(OSError):
                lock.path.unlink()
                run_dir.rmdir()
        raise
    finally:
        lock.release()


def _fingerprint_check(run_dir: Path, record: dict[str, Any], overwrite: bool) -> None:
    config_path = run_dir / TUNE_CONFIG
    if config_path.exists() and not overwrite:
        previous = json.loads(config_path.read_text()).get("fingerprint", {})
        new = record["fingerprint"]
        changed = sorted(k for k in set(previous) | set(new) if previous.get(k) != new.get(k))
        if changed:
            raise ValueError(
                f"`output_dir` {str(run_dir)!r} holds a search with another configuration "
                f"(differs in: {', '.join(changed)}); use overwrite=True (--overwrite) or a "
                f"new directory. Received: output_dir={str(run_dir)!r}"
            )
    elif not config_path.exists() and run_dir.is_dir() and any(_contents(run_dir)):
        raise ValueError(
            "`output_dir` exists and is not a keras_resnet search directory. "
            f"Received: output_dir={str(run_dir)!r}"
        )


def _check_fits(
    dataset: Any,
    base: ResNetSpec | None,
    space: SearchSpace | None,
    image_size: int | None,
    channels: int | None,
) -> None:
    """Refuses, before the data is read, an image size at which the base spec cannot
    train at the space's smallest batch size in this machine's memory.

    The space is resolved here too, so its own errors come before the data as
    well. Larger candidates may still run out of memory; keras-tuner records
    those trials as failed.
    """
    if isinstance(dataset, DatasetSplits):
        shape, classes = dataset.image_shape, dataset.num_classes
    else:
        side = image_size or base.default_input_size
        shape, classes = (side, side, channels or 3), None
    if base is None:
        base = resolve_spec("resnet20" if min(shape[:2]) < SMALL_IMAGE else "resnet18")
    resolved = (space or SearchSpace()).resolve(base, shape)
    check_fits_in_memory(
        base,
        tuple(shape),
        batch_size=min(resolved.batch_sizes),
        classes=classes,
        training=True,
        arg="image_size",
        value=shape[0],
    )


_ALL_PROBES = 8  # up to this many candidates, the latency pre-check times them all


def _check_budgets_reachable(hm: HyperResNet) -> None:
    """Budgets no candidate can meet, alone or together, are an error before any training."""
    corners = hm.corner_specs()
    params = hm.spec_params
    smallest = min(corners, key=params)
    least = params(smallest)
    if hm.max_params is not None and least > hm.max_params:
        raise ValueError(
            "`max_params` is below the smallest model in the search space "
            f"({least:,} parameters: width {smallest.width}, "
            f"{[s.blocks for s in smallest.stages]} {smallest.block} blocks). "
            f"Received: max_params={hm.max_params}"
        )
    if hm.max_latency_ms is None:
        return
    # Only candidates within the parameter budget count. A few are all timed;
    # of more, per stem (which sets most of a small model's cost) the two with
    # the fewest parameters and the shallowest one: latency at batch 1 follows
    # depth as much as size.
    fits = [s for s in corners if hm.max_params is None or params(s) <= hm.max_params]
    probes: list[ResNetSpec] = []
    for stem in dict.fromkeys(s.stem for s in fits):
        mine = [s for s in fits if s.stem == stem]
        shallowest = min(mine, key=lambda s: (sum(st.blocks for st in s.stages), params(s)))
        for spec in [*sorted(mine, key=params)[:2], shallowest]:
            if spec not in probes:
                probes.append(spec)
    if len(fits) <= _ALL_PROBES:
        probes = fits
    fastest = min(hm.latency_ms(spec) for spec in probes)
    if fastest > hm.max_latency_ms:
        within = "" if hm.max_params is None else f" within max_params={hm.max_params}"
        raise ValueError(
            "`max_latency_ms` is below the batch-1 latency of the fastest candidates of "
            f"the search space{within} ({fastest:.3g} ms, {latency_runtime()}). "
            f"Received: max_latency_ms={hm.max_latency_ms}"
        )


def search(
    dataset: str | DatasetSplits = "digits",
    *,
    output_dir: str | os.PathLike,
    base: ResNetSpec | str | dict | None = None,
    tuner: str = "hyperband",
    objective: str = "val_accuracy",
    max_trials: int = 20,
    max_epochs: int = 10,
    hyperband_factor: int = 3,
    max_params: int | None = None,
    max_latency_ms: float | None = None,
    space: SearchSpace | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    label_mode: str = "int",
    data_dir: str | None = None,
    download: bool = False,
    augment: bool = True,
    seed: int = 0,
    overwrite: bool = False,
    role: str | None = None,
    oracle_address: str | None = None,
    tuner_id: str | None = None,
    oracle_timeout: float = DEFAULT_ORACLE_TIMEOUT,
    allow_remote_oracle: bool = False,
    retrain_epochs: int = 0,
    max_search_seconds: float | None = None,
    max_consecutive_failed_trials: int = 3,
    verbose: int = 1,
) -> dict[str, Any]:
    """Searches ResNet width, depth and training settings; writes a run directory.

    Args:
        dataset: a `load_dataset` reference (`"digits"`, a tfds name, an image
            folder) or loaded `DatasetSplits`. The search sees its train and
            validation splits only; the test split scores the best model.
        output_dir: the run directory (see the module doc). Rerunning the same
            call resumes; another configuration there is refused. It is locked
            while the search runs: a second search there (or a second worker
            with the same `tuner_id`) is refused at once, naming the holder.
        base: the spec the space derives from (default by image size).
        tuner: `"hyperband"`, `"random"` or `"bayesian"`.
        objective: `"val_accuracy"` (default) or `"val_loss"`.
        max_trials: trials at most, rejected ones included (they train nothing).
        max_epochs: epochs per trial (random, bayesian), or the most epochs a
            Hyperband trial reaches.
        hyperband_factor: Hyperband's reduction factor.
        max_params: parameter budget.
        max_latency_ms: batch-1 latency budget in ms on this machine (see
            `latency_runtime`); every trial's latency is measured and recorded.
        space: a `SearchSpace` (default `SearchSpace()`).
        image_size, channels, label_mode, data_dir, download, augment: passed to
            `load_dataset` (image_size default: the base spec's input size). An
            image size at which the base spec cannot train at the smallest batch
            size in this machine's memory is refused before the data is read.
        seed: data split, shuffling, initialisation and the oracle's draws.
        overwrite: start over (keeps the latency cache).
        role: None (one process), `"chief"` (serves the oracle, trains
            nothing, writes the outputs when all trials are done) or
            `"worker"` (trains trials the chief hands out).
        oracle_address: the chief's `HOST:PORT` (with `role`). A chief listens
            on loopback addresses only (127.0.0.0/8, ::1, localhost) unless
            `allow_remote_oracle`.
        tuner_id: a worker's id, 1-64 characters from `[A-Za-z0-9_-]`, none of
            keras-tuner's names (`oracle`, `tuner0`, containing `chief`,
            starting with `trial_`); a worker restarted with the same id reruns
            the trial it was given.
        oracle_timeout: seconds a worker waits for the chief to answer, when it
            starts and on every later call; then it raises
            `OracleUnreachableError` ("cannot reach the chief at HOST:PORT
            within N s").
        allow_remote_oracle: let a chief listen on a non-loopback address.
            keras-tuner's gRPC oracle has no authentication and no encryption:
            anyone who reaches the port can read and steer the search.
        retrain_epochs: 0 keeps the best trial's own weights as `best.keras`;
            N > 0 retrains the best candidate for N epochs with
            `keras_resnet.training.train` (in `run_dir/retrain`).
        max_search_seconds: hand out no new trial after this long.
        max_consecutive_failed_trials: keras-tuner stops a search after this
            many crashed trials in a row (rejections do not count).
        verbose: 0 silent, 1 keras-tuner's trial reports and one line per epoch.

    Returns:
        The contents of `summary.json` (a worker returns its id and role only).

    Raises:
        ValueError: a bad argument, an empty or inverted range, a model too
            large for this machine, or budgets no candidate meets, before
            anything is trained or written; `output_dir` in use by another process.
        OracleUnreachableError: a worker's chief did not answer in `oracle_timeout`.

    Example:

    >>> summary = search("digits", output_dir="runs/tune", image_size=16,
    ...                  max_params=100_000, max_trials=20, max_epochs=9)
    >>> summary["best"]["params"] <= 100_000
    True
    """
    started = time.perf_counter()
    if tuner not in TUNERS:
        raise ValueError(f"`tuner` must be one of {list(TUNERS)}. {_received('tuner', tuner)}")
    if objective not in OBJECTIVES:
        raise ValueError(
            f"`objective` must be one of {list(OBJECTIVES)}. {_received('objective', objective)}"
        )
    for name, value in (
        ("max_trials", max_trials),
        ("max_epochs", max_epochs),
        ("max_consecutive_failed_trials", max_consecutive_failed_trials),
    ):
        _check_positive_int(name, value)
    if not _is_int(hyperband_factor) or hyperband_factor < 2:
        raise ValueError(
            "`hyperband_factor` must be an integer >= 2. "
            f"{_received('hyperband_factor', hyperband_factor)}"
        )
    _check_positive_int("max_params", max_params, allow_none=True)
    _check_positive_number("max_latency_ms", max_latency_ms, allow_none=True)
    _check_positive_number("max_search_seconds", max_search_seconds, allow_none=True)
    _check_positive_number("oracle_timeout", oracle_timeout)
    _check_positive_int("image_size", image_size, allow_none=True)
    _check_positive_int("channels", channels, allow_none=True)
    if not _is_int(retrain_epochs) or retrain_epochs < 0:
        raise ValueError(
            "`retrain_epochs` must be an integer >= 0. "
            f"{_received('retrain_epochs', retrain_epochs)}"
        )
    _check_distributed(role, oracle_address, tuner_id, overwrite, allow_remote_oracle)
    if space is not None and not isinstance(space, SearchSpace):
        raise ValueError(f"`space` must be a SearchSpace. {_received('space', space)}")
    if base is None and not isinstance(dataset, DatasetSplits):
        # As `train`: without an image size, the CIFAR net at its 32 px.
        base = "resnet20" if image_size is None or image_size < SMALL_IMAGE else "resnet18"
    base_spec = resolve_spec(base) if base is not None else None
    _check_fits(dataset, base_spec, space, image_size, channels)

    if isinstance(dataset, DatasetSplits):
        splits = dataset
    else:
        splits = load_dataset(
            dataset,
            image_size=image_size or base_spec.default_input_size,
            batch_size=64,
            seed=seed,
            data_dir=data_dir,
            download=download,
            augment=augment,
            label_mode=label_mode,
            channels=channels,
        )
    hypermodel = HyperResNet(
        splits.image_shape,
        splits.num_classes,
        base_spec,
        space=space,
        objective=objective,
        max_params=max_params,
        max_latency_ms=max_latency_ms,
        label_mode=splits.label_mode,
    )

    run_dir = Path(output_dir)
    record = {
        "fingerprint": {
            "dataset": splits.name,
            "image_shape": list(splits.image_shape),
            "label_mode": splits.label_mode,
            "base": hypermodel.base.to_dict(),
            "space": hypermodel.space.to_dict(),
            "tuner": tuner,
            "objective": objective,
            "max_epochs": max_epochs,
            "hyperband_factor": hyperband_factor,
            "max_params": max_params,
            "max_latency_ms": max_latency_ms,
            "seed": seed,
            "augment": augment,
        },
        "keras_resnet": __version__,
        "keras_tuner": kt.__version__,
        "tensorflow": tf.__version__,
        "latency_runtime": latency_runtime(),
    }
    _fingerprint_check(run_dir, record, overwrite)
    with _locked_run_dir(run_dir, _lock_name(role, tuner_id)) as lock:
        _fingerprint_check(run_dir, record, overwrite)  # again: another run may just have ended
        if lock.stale and verbose:
            pid = lock.stale.get("pid")
            print(f"{run_dir}: took over the lock of pid {pid}, which is no longer running")
        if (run_dir / LATENCY_CACHE).exists():  # a resumed search measures nothing again
            hypermodel.latency_cache.attach(run_dir / LATENCY_CACHE)
        _check_budgets_reachable(hypermodel)
        if role == "worker":
            # After this worker's own data and budget checks, which the chief does too.
            with _tuner_environment(role, oracle_address, tuner_id):
                _wait_for_chief(oracle_timeout)

        if overwrite:
            for name in (TRIALS_CSV, PARETO_PNG, SUMMARY, BEST_SPEC, BEST_MODEL):
                (run_dir / name).unlink(missing_ok=True)
            shutil.rmtree(run_dir / RETRAIN, ignore_errors=True)
        _write_json(run_dir / TUNE_CONFIG, record)
        hypermodel.latency_cache.attach(run_dir / LATENCY_CACHE)
        keras.utils.set_random_seed(seed)

        with _tuner_environment(role, oracle_address, tuner_id):
            kt_tuner = make_tuner(
                hypermodel,
                tuner,
                directory=run_dir,
                max_trials=max_trials,
                max_epochs=max_epochs,
                hyperband_factor=hyperband_factor,
                seed=seed,
                overwrite=overwrite,
                max_consecutive_failed_trials=max_consecutive_failed_trials,
                max_search_seconds=max_search_seconds,
                oracle_timeout=oracle_timeout,
            )
            is_worker = kt_tuner._is_worker()
            try:
                # Unbatched with a known size: each trial batches it to its batch size.
                train_examples = splits.train.unbatch().apply(
                    tf.data.experimental.assert_cardinality(splits.sizes["train"])
                )
                kt_tuner.search(
                    train_examples,
                    validation_data=splits.validation,
                    epochs=max_epochs,
                    verbose=2 if verbose else 0,
                )
            except RuntimeError as e:
                if "consecutive failures" not in str(e):
                    raise
                _write_trials_csv(_trial_rows(kt_tuner.oracle, hypermodel), run_dir / TRIALS_CSV)
                raise RuntimeError(
                    f"The search stopped after {max_consecutive_failed_trials} failed trials "
                    f"in a row; see {run_dir / TRIALS_CSV} for their errors."
                ) from e
        if is_worker:
            print(f"worker {tuner_id}: no trials left; the chief writes the results.")
            return {"role": "worker", "tuner_id": tuner_id}

        return _finish(
            kt_tuner,
            hypermodel,
            splits,
            run_dir,
            dataset=dataset,
            record=record,
            retrain_epochs=retrain_epochs,
            data_dir=data_dir,
            download=download,
            seed=seed,
            augment=augment,
            verbose=verbose,
            started=started,
        )


# --- outputs -------------------------------------------------------------------


def _trial_rows(oracle: kt.Oracle, hm: HyperResNet) -> list[dict[str, Any]]:
    """One row per trial: status, metrics, the spec's choices and the training settings."""
    rows = []
    for trial in sorted(oracle.trials.values(), key=lambda t: t.trial_id):
        hp = trial.hyperparameters.copy()
        metrics = {
            name: trial.metrics.get_last_value(name)
            for name in (*_METRICS, "params", "latency_ms", "epochs", "rejected", "diverged")
            if trial.metrics.exists(name)
        }
        status = {
            "COMPLETED": "completed",
            "FAILED": "failed",
            "INVALID": "failed",
            "RUNNING": "running",
        }.get(trial.status, str(trial.status).lower())
        message = ""
        if status == "completed" and metrics.get("rejected"):
            status = "rejected"
            message = hm.budget_violation(int(metrics["params"]), metrics.get("latency_ms")) or ""
            metrics.pop(hm.objective, None)
        elif status == "completed" and metrics.get("diverged"):
            status, message = "diverged", "loss became NaN"
        elif status == "failed" and trial.message:
            message = [line for line in trial.message.strip().splitlines() if line][-1]
        spec = hm.spec(hp)
        train_hp = hm.training_hyperparameters(hp)
        params = metrics.get("params")
        rows.append(
            {
                "trial_id": trial.trial_id,
                "status": status,
                **{name: metrics.get(name) for name in _METRICS},
                "params": int(params) if params is not None else None,
                "latency_ms": metrics.get("latency_ms"),
                "epochs": int(metrics["epochs"]) if "epochs" in metrics else None,
                "parent_trial": hp.values.get("tuner/trial_id"),
                "width": spec.width,
                "num_stages": len(spec.stages),
                "blocks": "-".join(str(s.blocks) for s in spec.stages),
                "block": spec.block,
                "version": spec.version,
                "stem": spec.stem,
                **train_hp,
                "message": message,
                "spec": spec,
            }
        )
    return rows


_CSV_FIELDS = (
    "trial_id", "status", *_METRICS, "params", "latency_ms", "epochs", "parent_trial", "width",
    "num_stages", "blocks", "block", "version", "stem", "optimizer", "learning_rate",
    "weight_decay", "batch_size", "message",
)  # fmt: skip


def _write_trials_csv(rows: list[dict[str, Any]], path: Path) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=_CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in _CSV_FIELDS})
    _write_text_atomic(path, text.getvalue())


def _ranked(rows: list[dict[str, Any]], objective: str) -> list[dict[str, Any]]:
    """Trained trials, best first; ties (a small validation split saturates) go to the
    lower validation loss, then to fewer parameters."""
    sign = -1.0 if OBJECTIVES[objective] == "max" else 1.0
    done = [r for r in rows if r["status"] == "completed" and r.get(objective) is not None]
    return sorted(
        done,
        key=lambda r: (
            sign * r[objective],
            r["val_loss"] if r.get("val_loss") is not None else math.inf,
            r["params"],
        ),
    )


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower cost and higher score.

    Example:

    >>> pareto_front([(10, 0.9), (20, 0.95), (30, 0.93), (5, 0.5)])
    [3, 0, 1]
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _plot_pareto(
    rows: list[dict[str, Any]], hm: HyperResNet, best_id: str | None, path: Path
) -> None:
    # A bare Figure, not pyplot: the caller's backend (a notebook's inline one) is left alone.
    from matplotlib import ticker
    from matplotlib.figure import Figure

    objective = hm.objective
    maximize = OBJECTIVES[objective] == "max"
    # One point per architecture: Hyperband retrains promoted candidates as new trials.
    by_spec: dict[str, dict[str, Any]] = {}
    for row in _ranked(rows, objective):
        by_spec.setdefault(row["spec"].to_json(), row)
    trained = list(by_spec.values())
    rejected = [r for r in rows if r["status"] == "rejected"]
    fig = Figure(figsize=(12, 4.5))
    axes = fig.subplots(1, 2)
    for ax, cost, label, budget in (
        (axes[0], "params", "parameters", hm.max_params),
        (axes[1], "latency_ms", f"batch-1 latency (ms)\n{latency_runtime()}", hm.max_latency_ms),
    ):
        points = [r for r in trained if r.get(cost) is not None]
        xs = [r[cost] for r in points]
        ys = [r[objective] for r in points]
        ax.scatter(xs, ys, s=18, color="tab:blue", alpha=0.6, label="trained trials")
        front = pareto_front([(x, y if maximize else -y) for x, y in zip(xs, ys, strict=True)])
        ax.plot(
            [xs[i] for i in front],
            [ys[i] for i in front],
            "-o",
            color="tab:red",
            markersize=6,
            label="Pareto front",
        )
        for r in points:
            if r["trial_id"] == best_id:
                ax.scatter([r[cost]], [r[objective]], marker="*", s=250, color="gold",
                           edgecolor="black", zorder=5, label="best")  # fmt: skip
        over = [r[cost] for r in rejected if r.get(cost) is not None]
        if over and ys:
            floor = min(ys)
            ax.scatter(over, [floor] * len(over), marker="x", color="gray",
                       label="rejected (over budget, not trained)")  # fmt: skip
        if budget is not None:
            ax.axvline(budget, color="gray", linestyle="--", linewidth=1, label="budget")
        ax.set_xscale("log")
        # Plain numbers at 1-2-5 steps: a cost axis often spans a decade or less.
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.6g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel(objective)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{len(trained)} trained candidates, {len(rejected)} rejected")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)


def _print_top(rows: list[dict[str, Any]], objective: str, top: int = 5) -> None:
    header = (
        f"{'trial':>5} {objective:>12} {'params':>10} {'latency':>9} {'width':>5} "
        f"{'blocks':>9} {'block':>10} {'ver':>3} {'stem':>8} {'optimizer':>9} "
        f"{'lr':>8} {'batch':>5} {'epochs':>6}"
    )
    print(f"Top {min(top, len(rows))} of {len(rows)} trained trials:")
    print(header)
    for r in rows[:top]:
        print(
            f"{r['trial_id']:>5} {r[objective]:>12.4f} {r['params']:>10,} "
            f"{r['latency_ms']:>7.3g}ms {r['width']:>5g} {r['blocks']:>9} {r['block']:>10} "
            f"{r['version']:>3} {r['stem']:>8} {r['optimizer']:>9} {r['learning_rate']:>8.2g} "
            f"{r['batch_size']:>5} {r['epochs']:>6}"
        )


def _train_command(
    run_dir: Path,
    splits: DatasetSplits,
    best: dict[str, Any],
    epochs: int,
    *,
    dataset: Any,
    data_dir: str | None,
    seed: int,
    augment: bool,
) -> str:
    """The `keras-resnet train` command that retrains the best candidate from scratch."""
    name = os.fspath(dataset) if isinstance(dataset, (str, os.PathLike)) else splits.name
    parts = [
        f"keras-resnet train --spec {shlex.quote(str(run_dir / BEST_SPEC))}",
        f"--dataset {shlex.quote(name)}",
        f"--image-size {splits.image_shape[0]} --channels {splits.image_shape[-1]}",
        f"--optimizer {best['optimizer']} --lr {best['learning_rate']:.3g}",
        f"--weight-decay {best['weight_decay']:.3g} --batch-size {best['batch_size']}",
        f"--epochs {epochs} --seed {seed}",
    ]
    if data_dir:
        parts.append(f"--data-dir {shlex.quote(os.fspath(data_dir))}")
    if not augment:
        parts.append("--no-augment")
    return " ".join([*parts, "--output runs/best"])


def _finish(
    kt_tuner: kt.Tuner,
    hm: HyperResNet,
    splits: DatasetSplits,
    run_dir: Path,
    *,
    dataset: Any,
    record: dict[str, Any],
    retrain_epochs: int,
    data_dir: str | None,
    download: bool,
    seed: int,
    augment: bool,
    verbose: int,
    started: float,
) -> dict[str, Any]:
    rows = _trial_rows(kt_tuner.oracle, hm)
    _write_trials_csv(rows, run_dir / TRIALS_CSV)
    ranked = _ranked(rows, hm.objective)
    if not ranked:
        raise RuntimeError(
            f"No trial finished training ({len(rows)} trials); see {run_dir / TRIALS_CSV}."
        )
    best = ranked[0]
    _plot_pareto(rows, hm, best["trial_id"], run_dir / PARETO_PNG)
    spec: ResNetSpec = best["spec"]
    _write_json(run_dir / BEST_SPEC, spec.to_dict())

    retrained = None
    if retrain_epochs:
        retrained = train(
            spec,
            splits if isinstance(dataset, DatasetSplits) else dataset,
            output_dir=run_dir / RETRAIN,
            epochs=retrain_epochs,
            batch_size=best["batch_size"],
            optimizer=best["optimizer"],
            learning_rate=best["learning_rate"],
            weight_decay=best["weight_decay"],
            image_size=splits.image_shape[0],
            channels=splits.image_shape[-1],
            label_mode=splits.label_mode,
            data_dir=data_dir,
            download=download,
            seed=seed,
            augment=augment,
            verbose=2 if verbose else 0,
        )
        with atomic_path(run_dir / BEST_MODEL) as tmp:
            shutil.copyfile(run_dir / RETRAIN / "best.keras", tmp)
    else:
        trial = kt_tuner.oracle.get_trial(best["trial_id"])
        try:
            with _weights_only_restore():
                model = kt_tuner.load_model(trial)
        except (OSError, ValueError) as e:
            raise RuntimeError(
                f"Cannot restore trial {best['trial_id']}'s weights ({e}). In a distributed "
                "search the chief needs the workers' output directory (a shared file "
                "system), or set retrain_epochs."
            ) from e
        # Saved with built optimizer slots, so loading it back matches them.
        model.optimizer.build(model.trainable_variables)
        with atomic_path(run_dir / BEST_MODEL) as tmp:
            model.save(tmp)
    model = keras.saving.load_model(run_dir / BEST_MODEL, safe_mode=True)
    test_loss, test_accuracy = model.evaluate(splits.test, verbose=0)

    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    train_hp = {k: best[k] for k in ("optimizer", "learning_rate", "weight_decay", "batch_size")}
    summary = {
        "best": {
            "trial_id": best["trial_id"],
            **{name: best[name] for name in _METRICS if best.get(name) is not None},
            "params": int(model.count_params()),
            "latency_ms": best["latency_ms"],
            "epochs": best["epochs"],
            "spec": spec.to_dict(),
            "training": train_hp,
        },
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "best_model": "retrained" if retrained else "trial checkpoint",
        "retrain_epochs": retrain_epochs,
        "trials": counts,
        "infeasible_draws": getattr(kt_tuner.oracle, "infeasible_draws", 0),
        "objective": hm.objective,
        "max_params": hm.max_params,
        "max_latency_ms": hm.max_latency_ms,
        "latency_runtime": latency_runtime(),
        "dataset": splits.to_dict(),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "fingerprint": record["fingerprint"],
        "train_command": _train_command(
            run_dir,
            splits,
            best,
            retrain_epochs or int(best.get("epochs") or 1),
            dataset=dataset,
            data_dir=data_dir,
            seed=seed,
            augment=augment,
        ),
        "files": {
            "trials": TRIALS_CSV,
            "pareto": PARETO_PNG,
            "best_spec": BEST_SPEC,
            "best_model": BEST_MODEL,
        },
    }
    _write_json(run_dir / SUMMARY, summary)
    _print_top(ranked, hm.objective)
    print(
        f"best: trial {best['trial_id']}, {summary['best']['params']:,} parameters, "
        f"{best['latency_ms']:.3g} ms batch-1 ({latency_runtime()}), "
        f"{hm.objective} {best[hm.objective]:.4f}, test accuracy {test_accuracy:.4f} "
        f"({summary['best_model']})"
    )
    print(
        f"trials: {counts}; results in {run_dir} ({TRIALS_CSV}, {PARETO_PNG}, {BEST_SPEC}, "
        f"{BEST_MODEL}, {SUMMARY})"
    )
    return summary


__all__ = [
    "DEFAULT_BATCH_SIZES",
    "DEFAULT_LEARNING_RATES",
    "DEFAULT_OPTIMIZERS",
    "DEFAULT_ORACLE_TIMEOUT",
    "DEFAULT_WEIGHT_DECAYS",
    "DEFAULT_WIDTHS",
    "OBJECTIVES",
    "TUNERS",
    "HyperResNet",
    "LatencyCache",
    "OracleUnreachableError",
    "SearchSpace",
    "latency_runtime",
    "make_tuner",
    "measure_latency",
    "pareto_front",
    "search",
]
