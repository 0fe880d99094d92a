"""`search`: one call from a dataset to a run directory.

The story: check (`SearchConfig`, then the space and memory before any data is
read), prepare (data, screen, hypermodel, run directory), run (keras-tuner's
search, single, chief or worker), write (`keras_resnet.tuning.results`). A
`_Search` holds what one search is, and its steps are its methods.

Resume is keras-tuner's `overwrite=False`: rerunning the same call after a kill
(even SIGKILL) reloads every finished trial and continues; the trial that was
running is run again.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import tensorflow as tf

from keras_resnet._checks import config_with_overrides, require_tensorflow_backend
from keras_resnet._io import locked_run_dir, write_json
from keras_resnet.constants import OBJECTIVES
from keras_resnet.data import DatasetSplits, load_splits
from keras_resnet.spec import ResNetSpec, check_fits_in_memory, resolve_spec
from keras_resnet.training.tracing import build_training_state
from keras_resnet.tuning.config import SearchConfig
from keras_resnet.tuning.distributed import wait_for_chief
from keras_resnet.tuning.hypermodel import HyperResNet, TrialData, check_budgets_reachable
from keras_resnet.tuning.results import (
    BEST_RULE,
    best_summary,
    front_summary,
    pareto_trials,
    plot_pareto,
    print_report,
    rank_trials,
    restore_best_trial,
    retrain_best,
    status_counts,
    train_command,
    trial_rows,
    write_trials_csv,
)
from keras_resnet.tuning.run_dir import (
    BEST_MODEL,
    BEST_SPEC,
    LATENCY_CACHE,
    PARETO_PNG,
    SUMMARY,
    TRIALS_CSV,
    TUNE_CONFIG,
    fingerprint_check,
    lock_name,
    remove_outputs,
)
from keras_resnet.tuning.screen import Screen
from keras_resnet.tuning.space import SearchSpace, default_base
from keras_resnet.tuning.tuners import make_tuner
from keras_resnet.version import __version__

__all__ = ["SearchConfig", "search"]

FINGERPRINT_KEYWORDS = (
    "tuner", "objective", "max_epochs", "hyperband_factor", "max_params", "max_latency_ms",
    "seed", "augment",
)  # fmt: skip
"""The keywords tune.json's fingerprint records, in its order, after the data and the space
(a tflite latency target adds itself last). A rerun must match them to resume."""


def search(
    dataset: str | DatasetSplits = "digits",
    *,
    output_dir: str | os.PathLike,
    config: SearchConfig | None = None,
    **keywords: Any,
) -> dict[str, Any]:
    """Searches ResNet width, depth and training settings; writes a run directory.

    Args:
        dataset: a `load_dataset` reference (`"digits"`, a tfds name, an image
            folder) or loaded `DatasetSplits`. The search sees its train and
            validation splits only; the test split scores the best model.
        output_dir: the run directory (`keras_resnet.tuning.run_dir`).
            Rerunning the same call resumes; another configuration there is
            refused. It is locked while the search runs: a second search there
            (or a second worker with the same `tuner_id`) is refused at once,
            naming the holder.
        config: a `SearchConfig` (default: `SearchConfig()`).
        **keywords: any `SearchConfig` keyword (`max_params=100_000`, ...),
            applied on top of `config`.

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
    require_tensorflow_backend("search()", "tf.data pipelines and its latency targets")
    started = time.perf_counter()
    config = config_with_overrides(SearchConfig, config, keywords, arg="config", caller="search")
    run = _Search.prepare(dataset, Path(output_dir), config, started)
    fingerprint_check(run.run_dir, run.record, config.overwrite)
    cluster = config.cluster
    with locked_run_dir(run.run_dir, lock_name(cluster.role, cluster.tuner_id)) as lock:
        # Again: another run may just have ended.
        fingerprint_check(run.run_dir, run.record, config.overwrite)
        if lock.stale and config.verbose:
            pid = lock.stale.get("pid")
            print(f"{run.run_dir}: took over the lock of pid {pid}, which is no longer running")
        run.check_before_writing()
        run.start()
        kt_tuner, is_worker = run.run()
        if is_worker:
            print(f"worker {cluster.tuner_id}: no trials left; the chief writes the results.")
            return {"role": "worker", "tuner_id": cluster.tuner_id}
        return run.write(kt_tuner)


@dataclasses.dataclass(frozen=True)
class _Search:
    """One search: what was asked, its data, its screen and hypermodel, its directory.

    Attributes:
        dataset: as given (a reference, or splits): retraining reads it again,
            the train command names it.
        config: the `SearchConfig`.
        run_dir: the run directory.
        splits: the loaded data; `examples` the training examples every trial
            batches (`TrialData`, prepared once).
        screen: the `Screen` the hypermodel, the tuner and the results share.
        hypermodel: the `HyperResNet`.
        record: tune.json (`_record`).
        started: `time.perf_counter()` when `search` was called.
    """

    dataset: str | DatasetSplits
    config: SearchConfig
    run_dir: Path
    splits: DatasetSplits
    examples: TrialData
    screen: Screen
    hypermodel: HyperResNet
    record: dict[str, Any]
    started: float

    @classmethod
    def prepare(
        cls, dataset: str | DatasetSplits, run_dir: Path, config: SearchConfig, started: float
    ) -> _Search:
        """The data (after the checks that need none of it), screen and hypermodel."""
        base = config.base
        if base is None and not isinstance(dataset, DatasetSplits):
            base = resolve_spec(default_base(config.data.image_size))
        _check_fits(dataset, config, base)
        if isinstance(dataset, DatasetSplits):
            splits = dataset
        else:
            side = config.data.image_size or base.default_input_size
            options = dataclasses.replace(config.data, image_size=side)
            splits = load_splits(dataset, options, batch_size=64, seed=config.seed)
        shape, classes = splits.image_shape, splits.num_classes
        screen = Screen(config.budget, shape, classes)
        hypermodel = HyperResNet(
            shape, classes, base, space=config.space, screen=screen, label_mode=splits.label_mode
        )
        record = _record(splits, hypermodel, screen, config)
        examples = TrialData.from_splits(splits)
        return cls(dataset, config, run_dir, splits, examples, screen, hypermodel, record, started)

    def check_before_writing(self) -> None:
        """The budgets (with a resumed search's latencies), and a worker's chief."""
        if (self.run_dir / LATENCY_CACHE).exists():  # a resumed search measures nothing again
            self.screen.cache.attach(self.run_dir / LATENCY_CACHE)
        check_budgets_reachable(self.hypermodel)
        cluster = self.config.cluster
        if cluster.is_worker:
            # After this worker's own data and budget checks, which the chief does too.
            with cluster.environment():
                wait_for_chief(cluster.oracle_timeout)

    def start(self) -> None:
        """Starts writing: over a previous search when overwriting, tune.json, the caches."""
        if self.config.overwrite:
            remove_outputs(self.run_dir)
        write_json(self.run_dir / TUNE_CONFIG, self.record)
        self.screen.attach(self.run_dir)
        keras.utils.set_random_seed(self.config.seed)

    def run(self) -> tuple[kt.Tuner, bool]:
        """keras-tuner's search, in this process's role: the tuner, and whether it is a
        worker (keras-tuner decides that from its environment)."""
        config = self.config
        with config.cluster.environment():
            kt_tuner = make_tuner(
                self.hypermodel,
                config.tuning,
                directory=self.run_dir,
                seed=config.seed,
                overwrite=config.overwrite,
                oracle_timeout=config.cluster.oracle_timeout,
            )
            is_worker = kt_tuner._is_worker()
            try:
                kt_tuner.search(
                    self.examples,
                    validation_data=self.splits.validation,
                    epochs=config.tuning.max_epochs,
                    verbose=2 if config.verbose else 0,
                )
            except RuntimeError as e:
                if "consecutive failures" not in str(e):
                    raise
                rows = trial_rows(kt_tuner.oracle, self.hypermodel, self.screen)
                write_trials_csv(rows, self.run_dir / TRIALS_CSV)
                raise RuntimeError(
                    f"The search stopped after {config.tuning.max_consecutive_failed_trials} "
                    f"failed trials in a row; see {self.run_dir / TRIALS_CSV} for their errors."
                ) from e
        return kt_tuner, is_worker

    def write(self, kt_tuner: kt.Tuner) -> dict[str, Any]:
        """Writes every output of the finished search and returns the summary.

        trials.csv, pareto.png, best_spec.json, best.keras (the best trial's
        weights, or retrained), its test-split score, summary.json; prints the
        top trials.
        """
        run_dir, objective = self.run_dir, self.screen.budget.objective
        rows = trial_rows(kt_tuner.oracle, self.hypermodel, self.screen)
        write_trials_csv(rows, run_dir / TRIALS_CSV)
        ranked = rank_trials(rows, objective, self.screen.budget)
        if not ranked:
            raise RuntimeError(
                f"No trial finished training ({len(rows)} trials); see {run_dir / TRIALS_CSV}."
            )
        best, front = ranked[0], pareto_trials(rows, objective)
        front_ids = [r["trial_id"] for r in front]
        plot_pareto(rows, self.screen, best["trial_id"], run_dir / PARETO_PNG, front_ids)
        write_json(run_dir / BEST_SPEC, best["spec"].to_dict())
        model = self._best_model(kt_tuner, best)
        build_training_state(model, self.splits.test)  # one trace of the test step, not two
        scores = model.evaluate(self.splits.test, verbose=0)
        draws = getattr(kt_tuner.oracle, "infeasible_draws", 0)
        summary = {
            **self._summary(rows, best, front, model, scores, draws),
            **self._closing(best),
        }
        write_json(run_dir / SUMMARY, summary)
        print_report(ranked, summary, objective, run_dir)
        return summary

    def _best_model(self, kt_tuner: kt.Tuner, best: dict[str, Any]) -> keras.Model:
        """best.keras, the best trial's own weights or retrained (`retrain_epochs`), loaded."""
        config = self.config
        if config.retrain_epochs:
            retrain_best(
                best,
                self.run_dir,
                self.splits,
                config.data,
                dataset=self.dataset,
                seed=config.seed,
                epochs=config.retrain_epochs,
                verbose=config.verbose,
            )
        else:
            restore_best_trial(kt_tuner, best["trial_id"], self.run_dir)
        return keras.saving.load_model(self.run_dir / BEST_MODEL, safe_mode=True)

    def _summary(
        self,
        rows: list[dict[str, Any]],
        best: dict[str, Any],
        front: list[dict[str, Any]],
        model: keras.Model,
        scores: list[float],
        infeasible_draws: int,
    ) -> dict[str, Any]:
        """summary.json up to the budgets: the best, the front, the test scores, the counts."""
        objective, retrain_epochs = self.screen.budget.objective, self.config.retrain_epochs
        test_loss, test_accuracy = scores
        return {
            "best": best_summary(best, model),
            "best_rule": BEST_RULE,
            "pareto_front": front_summary(front, objective),
            "pareto_axes": {objective: OBJECTIVES[objective], "params": "min", "latency_ms": "min"},
            "test_accuracy": float(test_accuracy),
            "test_loss": float(test_loss),
            "best_model": "retrained" if retrain_epochs else "trial checkpoint",
            "retrain_epochs": retrain_epochs,
            "trials": status_counts(rows),
            "infeasible_draws": infeasible_draws,
            **self.screen.summary(sum(r["latency_source"] == "predicted" for r in rows)),
        }

    def _closing(self, best: dict[str, Any]) -> dict[str, Any]:
        """summary.json's last fields: the data, the time, the fingerprint, the command."""
        config = self.config
        epochs = config.retrain_epochs or int(best.get("epochs") or 1)
        command = train_command(
            self.run_dir,
            best,
            epochs,
            self.splits,
            config.data,
            dataset=self.dataset,
            seed=config.seed,
        )
        return {
            "dataset": self.splits.to_dict(),
            "wall_seconds": round(time.perf_counter() - self.started, 2),
            "fingerprint": self.record["fingerprint"],
            "train_command": command,
            "files": {
                "trials": TRIALS_CSV,
                "pareto": PARETO_PNG,
                "best_spec": BEST_SPEC,
                "best_model": BEST_MODEL,
            },
        }


# --- check and record -----------------------------------------------------------------------


def _check_fits(dataset: Any, config: SearchConfig, base: ResNetSpec | None) -> None:
    """Refuses, before the data is read, an image size at which the base spec cannot
    train at the space's smallest batch size in this machine's memory.

    The space is resolved here too, so its own errors come before the data as
    well. Larger candidates may still run out of memory; keras-tuner records
    those trials as failed.
    """
    if isinstance(dataset, DatasetSplits):
        shape, classes = dataset.image_shape, dataset.num_classes
    else:
        data = config.data
        side = data.image_size or base.default_input_size
        shape, classes = (side, side, data.channels or 3), None
    if base is None:
        base = resolve_spec(default_base(min(shape[:2])))
    resolved = (config.space or SearchSpace()).resolve(base, shape)
    check_fits_in_memory(
        base,
        tuple(shape),
        batch_size=min(resolved.batch_sizes),
        classes=classes,
        training=True,
        arg="image_size",
        value=shape[0],
    )


def _record(
    splits: DatasetSplits, hypermodel: HyperResNet, screen: Screen, config: SearchConfig
) -> dict[str, Any]:
    """tune.json: the fingerprint a rerun must match, and the versions that ran.

    A tflite target joins the fingerprint (with the threads asked for); the keras
    target leaves it as it was before targets existed, so those runs still resume.
    """
    target = {}
    if screen.target.variant is not None:
        target = {  # "auto" as what it stands for here: another machine may choose another
            "latency_target": screen.target.name,
            "latency_threads": screen.target.threads,
        }
    return {
        "fingerprint": {
            "dataset": splits.name,
            "image_shape": list(splits.image_shape),
            "label_mode": splits.label_mode,
            "base": hypermodel.base.to_dict(),
            "space": hypermodel.space.to_dict(),
            **{name: getattr(config, name) for name in FINGERPRINT_KEYWORDS},
            **target,
        },
        "keras_resnet": __version__,
        "keras_tuner": kt.__version__,
        "tensorflow": tf.__version__,
        "latency_runtime": screen.target.runtime(),
    }
