"""Parameter and latency budgets: the search's budget options, what is over them, what a
rejected trial reports, and the candidates whose sizes say whether any can meet them.

`max_params` is exact, from `ResNetSpec.count_params`, so no model is built
to check it; `max_latency_ms` is the measured batch-1 latency
(`keras_resnet.tuning.latency`). A candidate over a budget is never trained:
its trial is recorded with its parameters and latency and scored as a useless
model (accuracy 0, or the loss of a uniform guess, ln(classes)). Scoring it,
rather than failing it, is deliberate: keras-tuner stops a search after
`max_consecutive_failed_trials` failures in a row, and its Bayesian oracle
ignores failed trials, so it would keep proposing the same oversized region; a
low score steers it away, and Hyperband ranks it below every trained one.
`keras_resnet.tuning.screen.Screen` applies these rules to candidates.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable

import numpy as np

from keras_resnet._checks import check_choice, check_positive_int, check_positive_number, received
from keras_resnet.constants import DEFAULT_LATENCY_TARGET, OBJECTIVES
from keras_resnet.spec import ResNetSpec
from keras_resnet.tuning.latency import LatencyTarget
from keras_resnet.tuning.space import SearchSpace, candidate_spec, stage_template

EPOCH_METRICS = ("val_accuracy", "val_loss", "accuracy", "loss")
"""The metrics a trained trial reports of its epoch best for the objective."""
MAX_DRAWS = 100
"""Random draws per trial while a candidate is over `max_params` (each costs microseconds)."""
_ALL_PROBES = 8  # up to this many candidates, the latency pre-check times them all


@dataclasses.dataclass(frozen=True)
class BudgetOptions:
    """A search's objective and budgets, and how latency is measured; checked when made.

    Attributes:
        objective: `"val_accuracy"` (default) or `"val_loss"`.
        max_params: parameter budget (classifier included).
        max_latency_ms: batch-1 latency budget in ms on `latency_target`, on
            this machine; every trial's latency is measured and recorded.
        latency_target: what latency is measured on (budget, trials.csv,
            summary): `"keras"` (default: a `tf.function` on TensorFlow's
            runtime, as before targets existed) or `"tflite-fp32"`,
            `"tflite-fp16"`, `"tflite-int8"`: the candidate with random
            weights converted by `keras_resnet.export.convert_tflite` (int8
            calibrated on random images) and timed batch 1 in LiteRT.
            `"auto"`: the form `keras_resnet.precision.expected_fastest_tflite`
            expects to run fastest on this CPU (int8 with int8 dot products,
            else fp32). Or a `LatencyTarget`.
        latency_threads: LiteRT's interpreter threads for a tflite target
            (default: every core, as the export times its files).
        latency_model: with `max_latency_ms`, predict each new candidate's
            latency from its spec (`keras_resnet.tuning.latency_model`, a table
            of per-part latencies profiled on this host, kept in the run
            directory) and reject one predicted over the budget by more than the
            model's margin before converting or building it; candidates nearer
            the budget, and every trained one, are measured. False: measure every
            candidate (the behaviour before the model).

    Example:

    >>> BudgetOptions(max_params=100_000, latency_target="tflite-int8").target().variant
    'int8'
    """

    objective: str = "val_accuracy"
    max_params: int | None = None
    max_latency_ms: float | None = None
    latency_target: str | LatencyTarget = DEFAULT_LATENCY_TARGET
    latency_threads: int | None = None
    latency_model: bool = True

    def __post_init__(self) -> None:
        check_choice("objective", self.objective, OBJECTIVES)
        check_positive_int("max_params", self.max_params, allow_none=True)
        check_positive_number("max_latency_ms", self.max_latency_ms, allow_none=True)
        self.target()  # checks the target and its threads
        if not isinstance(self.latency_model, bool):
            raise ValueError(
                f"`latency_model` must be a bool. {received('latency_model', self.latency_model)}"
            )

    def target(self) -> LatencyTarget:
        """The `LatencyTarget` latencies are measured on ("auto" resolved on this CPU)."""
        if isinstance(self.latency_target, LatencyTarget):
            return self.latency_target
        return LatencyTarget(self.latency_target, self.latency_threads)


@dataclasses.dataclass(frozen=True)
class Budget:
    """The budgets of a search and how a candidate is scored: over them, or trained.

    Example:

    >>> Budget("val_accuracy", 10, max_params=10_000).violation(19_354, None)
    'params 19,354 > max_params 10,000'
    """

    objective: str
    classes: int
    max_params: int | None = None
    max_latency_ms: float | None = None

    def __post_init__(self) -> None:
        check_choice("objective", self.objective, OBJECTIVES)
        check_positive_int("max_params", self.max_params, allow_none=True)
        check_positive_number("max_latency_ms", self.max_latency_ms, allow_none=True)

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

    def violation(self, params: int | None, latency_ms: float | None) -> str | None:
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

    def trained_result(
        self, history: dict[str, list], params: int, latency_ms: float, initial_epoch: int
    ) -> dict[str, float]:
        """What a trained trial reports: `EPOCH_METRICS` of the epoch best for the
        objective (from a Keras `History.history`), or the penalty if every epoch diverged."""
        scores = np.array(history.get(self.objective, []), dtype=float)
        if not scores.size:
            raise ValueError(
                f"Training reported no {self.objective!r}; it needs validation data. "
                f"Received: metrics={sorted(history)}"
            )
        result = {"params": float(params), "latency_ms": latency_ms, "rejected": 0.0}
        result["epochs"] = float(initial_epoch + len(scores))
        # An epoch whose training loss is NaN or infinite diverged (TerminateOnNaN
        # stopped it), whatever its validation accuracy says: Keras still validates
        # the NaN weights, and their accuracy (about chance) is a number.
        losses = np.array(history.get("loss", []), dtype=float)
        if losses.size == scores.size:
            scores = np.where(np.isfinite(losses), scores, np.nan)
        if np.isnan(scores).all():  # diverged: a result, not a crash
            return {**result, self.objective: self.penalty, "diverged": 1.0}
        pick = np.nanargmax if OBJECTIVES[self.objective] == "max" else np.nanargmin
        best = int(pick(scores))
        for name in EPOCH_METRICS:
            values = history.get(name, [])
            if best < len(values) and np.isfinite(values[best]):
                result[name] = float(values[best])
        return result


def corner_specs(space: SearchSpace, base: ResNetSpec) -> list[ResNetSpec]:
    """The smallest candidate of every discrete choice of a resolved space (min blocks)."""
    low_blocks = space.blocks[0] if space.blocks else None
    stage_counts = range(space.num_stages[0], space.num_stages[1] + 1)
    return [
        candidate_spec(
            base,
            width=width,
            blocks=[low_blocks or stage_template(base, i).blocks for i in range(n)],
            block=block,
            version=version,
            stem=stem,
        )
        for width, n, block, version, stem in itertools.product(
            space.widths, stage_counts, space.block_types, space.versions, space.stems
        )
    ]


def latency_probes(fits: list[ResNetSpec], params: Callable[[ResNetSpec], int]) -> list[ResNetSpec]:
    """The candidates (within the parameter budget) whose latency is timed up front.

    A few are all timed; of more, per stem (which sets most of a small model's
    cost) the two with the fewest parameters and the shallowest one: latency at
    batch 1 follows depth as much as size.
    """
    if len(fits) <= _ALL_PROBES:
        return fits
    probes: list[ResNetSpec] = []
    for stem in dict.fromkeys(s.stem for s in fits):
        mine = [s for s in fits if s.stem == stem]
        shallowest = min(mine, key=lambda s: (sum(st.blocks for st in s.stages), params(s)))
        for spec in [*sorted(mine, key=params)[:2], shallowest]:
            if spec not in probes:
                probes.append(spec)
    return probes
