"""keras-tuner's tuners and oracles with the budgets built in, `TunerOptions` and
`make_tuner`.

Each algorithm is keras-tuner's own oracle and tuner with two mixins: random
draws over `max_params` are redrawn (up to `MAX_DRAWS` times, so the trial
budget goes to models that fit), and trials over a budget are rejected before
their model is built (by the hypermodel's `Screen`). `TUNER_CLASSES` is the one
registry: a name of `keras_resnet.constants.TUNERS` -> (oracle class, tuner class).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import warnings
from collections.abc import Iterator
from typing import Any, NamedTuple

import keras_tuner as kt

from keras_resnet._checks import (
    check_choice,
    check_int_at_least,
    check_positive_int,
    check_positive_number,
    config_with_overrides,
)
from keras_resnet._io import atomic_path
from keras_resnet.constants import DEFAULT_ORACLE_TIMEOUT, OBJECTIVES, TUNERS
from keras_resnet.tuning._kt_internals import is_chief_oracle, save_json
from keras_resnet.tuning.budgets import MAX_DRAWS
from keras_resnet.tuning.distributed import PatientClient, serve
from keras_resnet.tuning.hypermodel import HyperResNet
from keras_resnet.tuning.run_dir import PROJECT
from keras_resnet.tuning.screen import Screen


@dataclasses.dataclass(frozen=True)
class TunerOptions:
    """Which keras-tuner algorithm searches, and for how long; checked when made.

    Attributes:
        tuner: `"hyperband"`, `"random"` or `"bayesian"`.
        max_trials: trials at most, rejected ones included (they train nothing).
            Hyperband's too: it runs brackets until the cap.
        max_epochs: epochs per trial (random, bayesian), or the most epochs a
            Hyperband trial reaches.
        hyperband_factor: Hyperband's reduction factor.
        max_search_seconds: hand out no new trial after this long.
        max_consecutive_failed_trials: keras-tuner stops a search after this
            many crashed trials in a row (rejections do not count).

    Example:

    >>> TunerOptions("random", max_trials=10).max_epochs
    10
    """

    tuner: str = "hyperband"
    max_trials: int = 20
    max_epochs: int = 10
    hyperband_factor: int = 3
    max_search_seconds: float | None = None
    max_consecutive_failed_trials: int = 3

    def __post_init__(self) -> None:
        check_choice("tuner", self.tuner, TUNERS)
        for name in ("max_trials", "max_epochs", "max_consecutive_failed_trials"):
            check_positive_int(name, getattr(self, name))
        check_int_at_least("hyperband_factor", self.hyperband_factor, 2)
        check_positive_number("max_search_seconds", self.max_search_seconds, allow_none=True)


def _save_state(obj: Any, fname: str) -> None:
    """keras-tuner's `Stateful.save`, but atomic (`keras_resnet._io`: a unique temporary
    file, fsync, rename).

    keras-tuner writes its JSON state in place; a kill during a write would
    leave a truncated file that stops every later resume.
    """
    with atomic_path(fname) as tmp:
        save_json(str(tmp), obj.get_state())


@contextlib.contextmanager
def weights_only_restore() -> Iterator[None]:
    """Trial checkpoints hold the trained optimizer's slots too; restoring one into a
    freshly compiled model skips them (it trains on with a new optimizer), and
    Keras warns about it every time."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        yield


# --- oracles --------------------------------------------------------------------------------


class _BudgetedOracle:
    """Mixed into keras-tuner's oracles: random draws over `max_params` are redrawn.

    `feasible` (values -> bool) is set by `make_tuner`; `deadline` (a
    `time.time()`) stops handing out new trials once passed. The private
    methods overridden here are listed in `_kt_internals.PRIVATE_MEMBERS`.
    """

    feasible = None
    deadline: float | None = None
    infeasible_draws = 0
    failure: str | None = None  # set on a chief when too many trials failed in a row

    @classmethod
    def create(cls, options: TunerOptions, **common: Any):
        """The oracle for `options` (here: every trial `max_epochs` long)."""
        return cls(max_trials=options.max_trials, **common)

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
            if "consecutive failures" not in str(e) or not is_chief_oracle():
                raise
            # On a chief this runs in the gRPC handler of a worker's EndTrial: the
            # error would crash that worker and leave its trial "ongoing", so the
            # chief would wait for it forever. Let the trial go, stop handing out
            # trials, and let `serve` raise once every worker has stopped.
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


class BudgetedRandomSearchOracle(_BudgetedOracle, kt.oracles.RandomSearchOracle):
    """keras-tuner's random search, redrawing over `max_params`."""


class BudgetedHyperbandOracle(_BudgetedOracle, kt.oracles.HyperbandOracle):
    """keras-tuner's Hyperband, redrawing over `max_params`, capped at `max_trials`."""

    @classmethod
    def create(cls, options: TunerOptions, **common: Any):
        """`max_epochs` is the most a trial reaches; brackets run until `max_trials`."""
        oracle = cls(
            max_epochs=options.max_epochs,
            factor=options.hyperband_factor,
            hyperband_iterations=None,
            **common,
        )
        oracle.max_trials = options.max_trials  # not an argument of keras-tuner's Hyperband
        return oracle


class BudgetedBayesianOptimizationOracle(_BudgetedOracle, kt.oracles.BayesianOptimizationOracle):
    """keras-tuner's Gaussian-process oracle, its random initial points redrawn."""

    @classmethod
    def create(cls, options: TunerOptions, **common: Any):
        """`max_trials // 3` (at least 3) random points first: keras-tuner's default of 3
        per hyperparameter would spend a 20-trial budget on random draws alone."""
        trials = options.max_trials
        return cls(max_trials=trials, num_initial_points=max(3, trials // 3), **common)


# --- tuners ---------------------------------------------------------------------------------


class _BudgetedTuner:
    """Mixed into keras-tuner's tuners: `screen` rejects over-budget trials before `build`."""

    def __init__(
        self,
        oracle: kt.Oracle,
        hypermodel: HyperResNet,
        *,
        screen: Screen,
        oracle_timeout: float = DEFAULT_ORACLE_TIMEOUT,
        **kwargs: Any,
    ):
        # The stock tuner classes only differ in the oracle they create; ours is given.
        kt.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)
        self.screen = screen
        if self._is_worker():
            self.oracle = PatientClient(self.oracle, oracle_timeout)

    def run_trial(self, trial, *args, **kwargs):
        hp = trial.hyperparameters
        spec = self.hypermodel.declare_spec(hp.copy())
        latency, parent = self.screen.cached_latency(spec), {}
        if latency is None:
            parent = self._parent_latency_if_rejected(hp)
            latency = parent.get("latency_ms")
        # Over a budget, or predicted clearly over the latency budget: never built.
        rejected = self.screen.before_build(spec, latency)
        if rejected is not None:
            return {**rejected, **parent}
        with weights_only_restore():  # Hyperband loads the promoted trial's checkpoint
            return super().run_trial(trial, *args, **kwargs)

    def _parent_latency_if_rejected(self, hp: kt.HyperParameters) -> dict[str, float]:
        """The latency a Hyperband parent was rejected with (`latency_ms`, and whether it
        was predicted), else {}.

        A promoted trial loads its parent's checkpoint; a rejected parent never
        wrote one. The latency cache would catch it on the parent's host (it is
        keyed by host); on another worker host the parent's own record does.
        """
        parent_id = hp.values.get("tuner/trial_id")
        if parent_id is None:
            return {}
        metrics = self.oracle.get_trial(parent_id).metrics
        rejected = metrics.exists("rejected") and metrics.get_last_value("rejected") == 1.0
        if not (rejected and metrics.exists("latency_ms")):
            return {}
        names = ("latency_ms", "latency_predicted", "predicted_latency_ms")
        return {n: float(metrics.get_last_value(n)) for n in names if metrics.exists(n)}

    def save(self):
        if not self._is_worker():
            self.oracle.save()
        _save_state(self, self._get_tuner_fname())

    def search(self, *args, **kwargs):
        if is_chief_oracle():
            self.oracle.verbose = kwargs.get("verbose", 1)
            self.save()
            serve(self.oracle)
            return
        super().search(*args, **kwargs)


class BudgetedRandomSearch(_BudgetedTuner, kt.RandomSearch):
    """keras-tuner's `RandomSearch`, rejecting over-budget trials before `build`."""


class BudgetedHyperband(_BudgetedTuner, kt.Hyperband):
    """keras-tuner's `Hyperband`, rejecting over-budget trials before `build`."""


class BudgetedBayesianOptimization(_BudgetedTuner, kt.BayesianOptimization):
    """keras-tuner's `BayesianOptimization`, rejecting over-budget trials before `build`."""


class TunerClasses(NamedTuple):
    oracle: type[_BudgetedOracle]
    tuner: type[_BudgetedTuner]


TUNER_CLASSES: dict[str, TunerClasses] = {
    "hyperband": TunerClasses(BudgetedHyperbandOracle, BudgetedHyperband),
    "random": TunerClasses(BudgetedRandomSearchOracle, BudgetedRandomSearch),
    "bayesian": TunerClasses(BudgetedBayesianOptimizationOracle, BudgetedBayesianOptimization),
}


def make_tuner(
    hypermodel: HyperResNet,
    tuner: str | TunerOptions = "hyperband",
    *,
    directory: str | os.PathLike,
    project_name: str = PROJECT,
    seed: int = 0,
    overwrite: bool = False,
    oracle_timeout: float = DEFAULT_ORACLE_TIMEOUT,
    **options: Any,
) -> kt.Tuner:
    """A keras-tuner tuner for `hypermodel` that knows its budgets (its `screen`).

    It is keras-tuner's `Hyperband`, `RandomSearch` or `BayesianOptimization`
    with two additions: random draws over `max_params` are redrawn, and
    trials over a budget are rejected before their model is built.
    Distributed mode follows keras-tuner's `KERASTUNER_*` environment variables
    (see `search`); a worker gives each call to the chief `oracle_timeout`
    seconds, then raises `OracleUnreachableError`.

    Args:
        hypermodel: the `HyperResNet`.
        tuner: a name of `TUNERS`, or `TunerOptions`.
        directory, project_name, overwrite: where keras-tuner keeps its project.
        seed: the oracle's draws.
        oracle_timeout: a worker's patience with its chief, in seconds.
        **options: `TunerOptions` fields (`max_trials`, `max_epochs`, ...) on top of `tuner`.

    Example:

    >>> tuner = make_tuner(HyperResNet((16, 16, 1), 10), "random", directory="runs/t")
    >>> tuner.search(splits.train, validation_data=splits.validation, epochs=2)
    """
    settings = tuner if isinstance(tuner, TunerOptions) else TunerOptions(tuner)
    settings = config_with_overrides(
        TunerOptions, settings, options, arg="tuner", caller="make_tuner"
    )
    screen, classes = hypermodel.screen, TUNER_CLASSES[settings.tuner]
    objective = screen.budget.objective
    oracle = classes.oracle.create(
        settings,
        objective=kt.Objective(objective, OBJECTIVES[objective]),
        seed=seed + 1,  # keras-tuner treats seed 0 as "no seed" (a random one)
        max_consecutive_failed_trials=settings.max_consecutive_failed_trials,
    )
    if screen.budget.max_params is not None:

        def feasible(values: dict[str, Any]) -> bool:
            hp = oracle.hyperparameters.copy()
            hp.values = dict(values)
            return hypermodel.count_params(hp) <= screen.budget.max_params

        oracle.feasible = feasible
    if settings.max_search_seconds is not None:
        oracle.deadline = time.time() + settings.max_search_seconds
    return classes.tuner(
        oracle,
        hypermodel,
        screen=screen,
        directory=str(directory),
        project_name=project_name,
        overwrite=overwrite,
        oracle_timeout=oracle_timeout,
    )
