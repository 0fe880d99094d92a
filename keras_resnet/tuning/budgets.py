"""Parameter and latency budgets: what is over them, what a rejected trial reports, and
whether any candidate can meet them at all.

`max_params` is exact, from `ResNetSpec.count_params`, so no model is built
to check it; `max_latency_ms` is the measured batch-1 latency
(`keras_resnet.tuning.latency`). A candidate over a budget is never trained:
its trial is recorded with its parameters and latency and scored as a useless
model (accuracy 0, or the loss of a uniform guess, ln(classes)). Scoring it,
rather than failing it, is deliberate: keras-tuner stops a search after
`max_consecutive_failed_trials` failures in a row, and its Bayesian oracle
ignores failed trials, so it would keep proposing the same oversized region; a
low score steers it away, and Hyperband ranks it below every trained one.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from keras_resnet._checks import check_choice, check_positive_int, check_positive_number
from keras_resnet.constants import OBJECTIVES
from keras_resnet.spec import ResNetSpec
from keras_resnet.tuning.space import SearchSpace, candidate_spec, stage_template

if TYPE_CHECKING:
    from keras_resnet.tuning.hypermodel import HyperResNet

MAX_DRAWS = 100
"""Random draws per trial while a candidate is over `max_params` (each costs microseconds)."""
_ALL_PROBES = 8  # up to this many candidates, the latency pre-check times them all


@dataclasses.dataclass(frozen=True)
class Budget:
    """The budgets of a search and how a candidate over them is scored.

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


def check_budgets_reachable(hm: HyperResNet) -> None:
    """Budgets no candidate can meet, alone or together, are an error before any training."""
    corners = corner_specs(hm.space, hm.base)
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
    fits = [s for s in corners if hm.max_params is None or params(s) <= hm.max_params]
    fastest = min(hm.latency_ms(spec) for spec in _latency_probes(fits, params))
    if fastest > hm.max_latency_ms:
        within = "" if hm.max_params is None else f" within max_params={hm.max_params}"
        raise ValueError(
            "`max_latency_ms` is below the batch-1 latency of the fastest candidates of "
            f"the search space{within} ({fastest:.3g} ms, {hm.latency_target.runtime()}). "
            f"Received: max_latency_ms={hm.max_latency_ms}"
        )


def _latency_probes(
    fits: list[ResNetSpec], params: Callable[[ResNetSpec], int]
) -> list[ResNetSpec]:
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
