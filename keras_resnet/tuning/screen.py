"""`Screen`: which candidates may train, decided before they do.

One object holds what judges a candidate: the budgets (`budgets.Budget`), the
latency target, the cache of measured latencies and, with a latency budget, the
latency model that predicts a candidate's latency from its spec. The search
makes one and hands it to whoever judges or reports candidates: the hypermodel
(`fit` of a trial keras-tuner did not screen), the tuner (every trial, before its
model is built) and the results (why a trial was rejected, the budgets in
summary.json).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import keras

from keras_resnet.spec import ResNetSpec
from keras_resnet.tuning.budgets import Budget, BudgetOptions, latency_probes
from keras_resnet.tuning.latency import LatencyCache
from keras_resnet.tuning.latency_model import LatencyModel
from keras_resnet.tuning.run_dir import LATENCY_CACHE


class Screening(NamedTuple):
    """What `Screen.before_training` found: a rejection, or the candidate's size and latency."""

    params: int
    latency_ms: float | None
    predicted_ms: float | None  # the latency model's prediction, when it made one
    rejected: dict[str, float] | None  # the result of a rejected candidate, else None

    def report(self, result: dict[str, float]) -> dict[str, float]:
        """A trial's result with the prediction beside the measurement, if there was one."""
        if self.predicted_ms is None:
            return result
        return {**result, "latency_predicted": 0.0, "predicted_latency_ms": self.predicted_ms}


class Screen:
    """The budgets a candidate must meet and the latencies it is judged by.

    Args:
        options: the objective, budgets and latency target (`BudgetOptions`).
        input_shape: `(H, W, C)` of the images.
        classes: number of classes.
        cache: a `LatencyCache` or a JSON file path (default: in memory).

    Attributes:
        budget: the `Budget` (objective, `max_params`, `max_latency_ms`, the penalty).
        target: the `LatencyTarget` latencies are measured on.
        cache: the `LatencyCache` of measured latencies.
        model: the `LatencyModel`, with a latency budget and `options.latency_model`;
            else None (nothing is predicted).

    Example:

    >>> screen = Screen(BudgetOptions(max_params=10_000), (8, 8, 1), 10)
    >>> screen.before_build(get_spec("resnet20"), None)["rejected"]
    1.0
    """

    def __init__(
        self,
        options: BudgetOptions,
        input_shape: Sequence[int],
        classes: int,
        cache: LatencyCache | str | os.PathLike | None = None,
    ):
        self.input_shape, self.classes = tuple(input_shape), int(classes)
        self.budget = Budget(
            options.objective, self.classes, options.max_params, options.max_latency_ms
        )
        self.target = options.target()
        self.cache = cache if isinstance(cache, LatencyCache) else LatencyCache(cache)
        # Only a latency budget has use for predictions (none: the behaviour before #19).
        predicts = options.latency_model and options.max_latency_ms is not None
        self.model = LatencyModel(self.target, input_shape, classes) if predicts else None

    def attach(self, run_dir: Path) -> None:
        """Keeps the latency cache (and the latency model's table) in `run_dir`."""
        self.cache.attach(run_dir / LATENCY_CACHE)
        if self.model is not None:
            self.model.attach(run_dir)

    # --- sizes and latencies ------------------------------------------------------------

    def params(self, spec: ResNetSpec) -> int:
        """Exact parameters of `spec` for this input and these classes, without building it."""
        return spec.count_params(channels=self.input_shape[-1], classes=self.classes)

    def cached_latency(self, spec: ResNetSpec) -> float | None:
        """The candidate's latency if already measured (no build), else None."""
        key = LatencyCache.key(spec, self.input_shape, self.classes, self.target)
        return self.cache.get(key)

    def latency_ms(self, spec: ResNetSpec, model: keras.Model | None = None) -> float:
        """Batch-1 latency on the target (measured once per spec and target, then cached)."""
        return self.cache.measure(spec, self.input_shape, self.classes, model, self.target)

    def predicted_latency(self, spec: ResNetSpec) -> float | None:
        """The latency model's prediction in ms (None without a model or a latency budget)."""
        return None if self.model is None else self.model.predict(spec)

    # --- verdicts -----------------------------------------------------------------------

    def before_build(self, spec: ResNetSpec, latency_ms: float | None) -> dict[str, float] | None:
        """The result of a candidate rejected before its model is built, else None.

        Over `max_params`, or over `max_latency_ms` by `latency_ms` (a cached or
        recorded latency, or None), or, with no latency known, predicted clearly
        over it by the latency model.
        """
        params = self.params(spec)
        if self.budget.violation(params, latency_ms):
            return self.budget.rejected_result(params, latency_ms)
        return self._predicted_rejection(spec, params) if latency_ms is None else None

    def before_training(self, spec: ResNetSpec, model: keras.Model | None) -> Screening:
        """Whether a built candidate may train: its size, then its latency (predicted for a
        candidate not yet measured, then measured on `model` unless predicted clearly over)."""
        params = self.params(spec)
        if self.budget.violation(params, None):
            return Screening(params, None, None, self.budget.rejected_result(params, None))
        predicted = None
        if self.cached_latency(spec) is None:
            rejected = self._predicted_rejection(spec, params)
            if rejected is not None:
                return Screening(params, None, None, rejected)
            predicted = self.predicted_latency(spec)
        latency = self.latency_ms(spec, model)
        screening = Screening(params, latency, predicted, None)
        if self.budget.violation(params, latency):
            rejected = screening.report(self.budget.rejected_result(params, latency))
            return screening._replace(rejected=rejected)
        return screening

    def _predicted_rejection(self, spec: ResNetSpec, params: int) -> dict[str, float] | None:
        """The result of a candidate predicted clearly over the latency budget (rejected
        before any conversion or build), else None."""
        predicted = self.predicted_latency(spec)
        if predicted is None or not self.model.clearly_over(predicted, self.budget.max_latency_ms):
            return None
        result = self.budget.rejected_result(params, predicted)
        return {**result, "latency_predicted": 1.0, "predicted_latency_ms": predicted}

    def rejection_message(self, metrics: dict[str, float]) -> str:
        """Why a trial with these metrics (`rejected` 1) was rejected, for trials.csv."""
        message = self.budget.violation(int(metrics["params"]), metrics.get("latency_ms")) or ""
        if metrics.get("latency_predicted") and self.model is not None:
            message = (
                f"predicted {message} by more than the latency model's "
                f"{self.model.margin:.0%} margin (not measured)"
            )
        return message

    def check_reachable(
        self,
        corners: list[ResNetSpec],
        latency_ms: Callable[[ResNetSpec], float] | None = None,
    ) -> None:
        """Budgets no candidate can meet, alone or together, are an error before any training.

        Args:
            corners: the smallest candidate of every discrete choice of the space
                (`budgets.corner_specs`).
            latency_ms: how a candidate is timed (default: `latency_ms`, cached).
        """
        budget, params = self.budget, self.params
        smallest = min(corners, key=params)
        least = params(smallest)
        if budget.max_params is not None and least > budget.max_params:
            raise ValueError(
                "`max_params` is below the smallest model in the search space "
                f"({least:,} parameters: width {smallest.width}, "
                f"{[s.blocks for s in smallest.stages]} {smallest.block} blocks). "
                f"Received: max_params={budget.max_params}"
            )
        if budget.max_latency_ms is None:
            return
        fits = [s for s in corners if budget.max_params is None or params(s) <= budget.max_params]
        fastest = min(map(latency_ms or self.latency_ms, latency_probes(fits, params)))
        if fastest > budget.max_latency_ms:
            within = "" if budget.max_params is None else f" within max_params={budget.max_params}"
            raise ValueError(
                "`max_latency_ms` is below the batch-1 latency of the fastest candidates of "
                f"the search space{within} ({fastest:.3g} ms, {self.target.runtime()}). "
                f"Received: max_latency_ms={budget.max_latency_ms}"
            )

    def summary(self, rejected_unmeasured: int) -> dict[str, Any]:
        """summary.json's objective, budgets and how latency was measured (and predicted)."""
        target, model = self.target, self.model
        return {
            "objective": self.budget.objective,
            "max_params": self.budget.max_params,
            "max_latency_ms": self.budget.max_latency_ms,
            "latency_target": target.name,
            "latency_threads": target.num_threads,
            "latency_runtime": target.runtime(),
            "latency_model": None
            if model is None
            else {**model.to_dict(), "rejected_unmeasured": rejected_unmeasured},
        }
