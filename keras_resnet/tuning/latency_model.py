"""A per-host latency model: a candidate's batch-1 latency predicted from its spec, unbuilt.

A candidate is cut into parts whose cost depends only on what the part is:

- the **stem** (kind, version, input shape, filters, bias);
- each **block** (type, version, input height x width x channels, filters,
  stride, groups and width per group, SE ratio, shortcut kind, expansion, where
  a bottleneck strides, bias); a stage's repeated blocks share one entry;
- the **head** (v2's final BN-ReLU, global pooling, the classifier) at the last
  feature map, with the fixed per-model cost (one invoke, input and output).

Each part is profiled once, on first need, as a micro-model of just that part at
its input shape, closed by the same pooling and classifier so that it converts
and runs as a candidate does: `Input -> part -> GlobalAveragePooling2D ->
Dense(classes)`. It is timed by the target itself (`LatencyTarget.measure`: the
same conversion and LiteRT interpreter at the same threads for `tflite-*`, the
same `tf.function` timing for `keras`). An *identity* micro-model (`Input ->
GlobalAveragePooling2D -> Dense`) at the part's output shape is timed too, and
the part's cost is the difference, which removes the fixed cost of one invoke
and the probe's own pooling and classifier from every part: summed as they are,
the micro-models over-predict a candidate (an invoke's fixed cost counted once a
part), with the identity subtracted the bias is about nil and what is left is
mostly timing noise (`python -m benchmarks.latency_model`; its figures are in
docs/tuning.md).
The prediction is

    head(last feature map)  +  stem - identity  +  sum over blocks (block - identity)

where the head's micro-model *is* the per-model overhead (the identity model for
v1, with the final BN-ReLU for v2).

Entries live in a JSON table per (host, target, threads, input shape), beside
the search's `latency_cache.json`, merged and written atomically as the cache
is (`LatencyCache`), so a resumed search and every worker on the host share it;
each entry is keyed by the part and the runtime (LiteRT or TensorFlow version),
so an upgraded runtime profiles again. The prediction's error against measured
candidates is in `benchmarks/latency_model.py` and docs/tuning.md.

Example:

>>> model = LatencyModel(LatencyTarget("tflite-int8", 1), (16, 16, 1), 10, directory="runs/t")
>>> model.predict(get_spec("resnet20"))  # doctest: +SKIP
0.071
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras

from keras_resnet import plan
from keras_resnet._checks import check_image_shape, check_positive_int, is_number, received
from keras_resnet.network import plan_model
from keras_resnet.spec import ResNetSpec
from keras_resnet.tuning.latency import LatencyCache, LatencyTarget

DEFAULT_MARGIN = 0.5
"""A candidate is rejected unmeasured when predicted over `max_latency_ms * (1 + margin)`.

Above the benchmark's worst over-prediction (tflite-int8, 30 random candidates: +31%
against the median a search measures, +43% against the 10th percentile; docs/tuning.md),
so a candidate within the budget is not rejected on a prediction; nearer the budget,
candidates are converted and measured."""

PROFILE_STATISTIC = "p10_ms"
"""What a micro-model's timing keeps: its 10th percentile, not the median a candidate is
measured by. A table entry is timed once and then used for every candidate, so one timing
taken while other jobs held the cores would skew every prediction that uses it; the lower
percentile is what the part costs when it gets a core (see the module doc)."""

PROFILE_RUNS = 100
"""Samples per micro-model timing (a candidate's: 30). A sample lasts about 1 ms, so this
adds 0.1 s to a conversion of seconds, and a steadier 10th percentile serves every
candidate that shares the part."""

_BLOCK_FIELDS = (
    "block", "version", "shortcut", "groups", "width_per_group", "se_ratio", "expansion",
    "bottleneck_stride", "use_bias",
)  # fmt: skip
"""What, besides shapes and stride, sets a block's cost (drop path is gone at inference)."""


def table_name(target: LatencyTarget, input_shape: Sequence[int]) -> str:
    """The table's file name: target, threads, input shape and host."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:64] or "host"
    threads = f"-{target.num_threads}t" if target.variant is not None else ""
    shape = "x".join(str(int(d)) for d in input_shape)
    return f"latency_model-{target.name}{threads}-{shape}-{host}.json"


def parts(spec: ResNetSpec, input_shape: Sequence[int], classes: int) -> list[dict[str, Any]]:
    """`spec`'s parts in network order: the stem, every block, the head.

    Each part is a JSON-able dict with its `kind`, input shape `in` and output shape
    `out` (height, width, channels) and what else sets its cost; the shapes are the
    layer plan's (`keras_resnet.plan`).
    """
    h, w, c = (int(d) for d in input_shape)
    outputs = {layer.part: list(layer.output_shape) for layer in plan.plan(spec, (h, w, c))}
    out = outputs["stem"]
    result = [
        {
            "kind": "stem",
            "stem": spec.stem,
            "version": spec.version,
            "filters": spec.scaled_stem_filters,
            "use_bias": spec.use_bias,
            "in": [h, w, c],
            "out": out,
        }
    ]
    fields = {name: getattr(spec, name) for name in _BLOCK_FIELDS}
    if spec.block == "basic":
        fields = {k: v for k, v in fields.items() if k not in ("expansion", "bottleneck_stride")}
    for name, filters, stride, _ in plan.block_layout(spec):
        block = {"kind": "block", **fields, "filters": filters, "stride": stride}
        result.append({**block, "in": out, "out": outputs[name]})
        out = outputs[name]
    result.append({"kind": "head", "version": spec.version, "classes": classes, "in": out})
    return result


def _identity(shape: Sequence[int], classes: int) -> dict[str, Any]:
    """The per-model overhead at a feature map of `shape`: v1's head, which has no layers
    of its own besides pooling and the classifier."""
    return {"kind": "head", "version": "v1", "classes": classes, "in": list(shape)}


def _micro_model(part: dict[str, Any], spec: ResNetSpec, classes: int) -> keras.Model:
    """`Input -> part -> GlobalAveragePooling2D -> Dense(classes)`: the part's slice of
    the layer plan, made by the same functions as the whole network's."""
    p = plan.Planner(spec, "channels_last", {plan.INPUT: tuple(part["in"])})
    x = plan.INPUT
    if part["kind"] == "stem":
        x = plan.add_stem(p, x)
    elif part["kind"] == "block":
        x = plan.add_block(p, x, part["filters"], part["stride"], "probe")
    elif part["version"] == "v2":
        x = plan.add_post(p, x)
    plan.add_top(p, x, classes=classes)
    return plan_model(p.layers, name=f"probe_{part['kind']}")


class LatencyModel:
    """Predicts a candidate's batch-1 latency on `target` from its spec (see the module doc).

    Args:
        target: the `LatencyTarget` (or its name) predictions are for.
        input_shape: `(H, W, C)` of the candidates' input.
        classes: the classifier's classes.
        directory: where the table is kept (a search's run directory); None keeps it in
            memory until `attach`.
        margin: how far over the budget a prediction must be to reject a candidate
            unmeasured (`clearly_over`).

    Attributes:
        measured: micro-models this object has timed (the rest came from the table).
    """

    def __init__(
        self,
        target: LatencyTarget | str,
        input_shape: Sequence[int],
        classes: int,
        *,
        directory: str | os.PathLike | None = None,
        margin: float = DEFAULT_MARGIN,
    ):
        self.target = target if isinstance(target, LatencyTarget) else LatencyTarget(target)
        input_shape = check_image_shape("input_shape", input_shape)
        check_positive_int("classes", classes)
        if not is_number(margin) or margin < 0:
            raise ValueError(f"`margin` must be a number >= 0. {received('margin', margin)}")
        self.input_shape = input_shape
        self.classes = classes
        self.margin = float(margin)
        self.table = LatencyCache()
        self.measured = 0
        if directory is not None:
            self.attach(directory)

    @property
    def path(self) -> Path | None:
        return self.table.path

    def attach(self, directory: str | os.PathLike) -> None:
        """Keeps the table in `directory` (merging what it already holds)."""
        self.table.attach(Path(directory) / table_name(self.target, self.input_shape))

    def _key(self, part: dict[str, Any]) -> str:
        data = {
            "part": part,
            "statistic": PROFILE_STATISTIC,
            "runs": PROFILE_RUNS,
            "runtime": self.target.runtime(),
            **self.target.key_fields(),
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:20]

    def part_latency(self, part: dict[str, Any], spec: ResNetSpec) -> float:
        """A micro-model's latency in ms: from the table, else built, timed and kept."""
        part = {k: v for k, v in part.items() if k != "out"}
        key = self._key(part)
        cached = self.table.get(key)
        if cached is not None:
            return cached
        micro_model = _micro_model(part, spec, self.classes)
        value = self.target.measure(micro_model, PROFILE_STATISTIC, runs=PROFILE_RUNS)
        self.measured += 1
        self.table.store(
            key,
            {
                "latency_ms": value,
                "part": part,
                "statistic": PROFILE_STATISTIC,
                "runtime": self.target.runtime(),
                "host": socket.gethostname(),
                **self.target.key_fields(),
            },
        )
        return value

    def breakdown(self, spec: ResNetSpec) -> list[tuple[dict[str, Any], float]]:
        """Each part with its cost in ms (the head's includes the per-model overhead)."""
        result = []
        for part in parts(spec, self.input_shape, self.classes):
            cost = self.part_latency(part, spec)
            if part["kind"] != "head":
                cost -= self.part_latency(_identity(part["out"], self.classes), spec)
            result.append((part, cost))
        return result

    def predict(self, spec: ResNetSpec) -> float:
        """`spec`'s predicted batch-1 latency in ms (profiling the parts not yet in the table).

        Never below a tenth of the head's time: the parts' differences are noisy, and a
        model cannot run faster than its own invoke.
        """
        costs = self.breakdown(spec)
        total = math.fsum(cost for _, cost in costs)
        return max(total, 0.1 * costs[-1][1])

    def clearly_over(self, predicted: float | None, budget_ms: float | None) -> bool:
        """Whether `predicted` is over `budget_ms` by more than the margin."""
        if predicted is None or budget_ms is None:
            return False
        return predicted > budget_ms * (1.0 + self.margin)

    def to_dict(self) -> dict[str, Any]:
        """What summary.json records of the model."""
        return {
            "table": None if self.path is None else self.path.name,
            "entries": len(self.table.entries),
            "profiled_here": self.measured,
            "margin": self.margin,
        }
