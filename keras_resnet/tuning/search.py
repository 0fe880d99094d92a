"""`search`: one call from a dataset to a run directory, and `SearchConfig`, what it takes.

The story: check (`SearchConfig`, then the space and memory before any data is
read), prepare (data, hypermodel, run directory), run (keras-tuner's search,
single, chief or worker), write (`keras_resnet.tuning.results`).

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

from keras_resnet._checks import (
    check_choice,
    check_positive_int,
    check_positive_number,
    config_with_overrides,
    is_int,
    received,
    require_tensorflow_backend,
)
from keras_resnet._io import locked_run_dir, write_json
from keras_resnet.constants import (
    DEFAULT_LATENCY_TARGET,
    DEFAULT_ORACLE_TIMEOUT,
    OBJECTIVES,
    TUNERS,
)
from keras_resnet.data import DataOptions, DatasetSplits, load_splits
from keras_resnet.spec import ResNetSpec, check_fits_in_memory, resolve_spec
from keras_resnet.tuning.distributed import check_distributed, tuner_environment, wait_for_chief
from keras_resnet.tuning.hypermodel import HyperResNet, TrialData, check_budgets_reachable
from keras_resnet.tuning.latency import LatencyTarget
from keras_resnet.tuning.results import trial_rows, write_results, write_trials_csv
from keras_resnet.tuning.run_dir import (
    LATENCY_CACHE,
    TRIALS_CSV,
    TUNE_CONFIG,
    fingerprint_check,
    lock_name,
    remove_outputs,
)
from keras_resnet.tuning.space import SearchSpace, default_base
from keras_resnet.tuning.tuners import make_tuner
from keras_resnet.version import __version__


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """What `search` does besides its dataset and run directory; checked when made.

    Attributes:
        base: the spec the space derives from (a name, spec or dict; default
            by image size). Stored resolved, as a `ResNetSpec`.
        tuner: `"hyperband"`, `"random"` or `"bayesian"`.
        objective: `"val_accuracy"` (default) or `"val_loss"`.
        max_trials: trials at most, rejected ones included (they train nothing).
        max_epochs: epochs per trial (random, bayesian), or the most epochs a
            Hyperband trial reaches.
        hyperband_factor: Hyperband's reduction factor.
        max_params: parameter budget.
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
            else fp32).
        latency_threads: LiteRT's interpreter threads for a tflite target
            (default: every core, as the export times its files).
        latency_model: with `max_latency_ms`, predict each new candidate's
            latency from its spec (`keras_resnet.tuning.latency_model`, a table
            of per-part latencies profiled on this host, kept in the run
            directory) and reject one predicted over the budget by more than the
            model's margin before converting or building it; candidates nearer
            the budget, and every trained one, are measured. False: measure every
            candidate (the behaviour before the model).
        space: a `SearchSpace` (default `SearchSpace()`).
        image_size, channels, label_mode, data_dir, download, augment: how the
            dataset is read, checked as one `keras_resnet.data.DataOptions`
            (`SearchConfig.data`); image_size is an int here (default: the base
            spec's input size). An image size at which the base spec cannot
            train at the smallest batch size in this machine's memory is
            refused before the data is read.
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

    Example:

    >>> config = SearchConfig(tuner="random", max_trials=10, max_params=100_000)
    >>> search("digits", output_dir="runs/tune", config=config, image_size=16)  # doctest: +SKIP
    """

    base: ResNetSpec | str | dict | None = None
    tuner: str = "hyperband"
    objective: str = "val_accuracy"
    max_trials: int = 20
    max_epochs: int = 10
    hyperband_factor: int = 3
    max_params: int | None = None
    max_latency_ms: float | None = None
    latency_target: str = DEFAULT_LATENCY_TARGET
    latency_threads: int | None = None
    latency_model: bool = True
    space: SearchSpace | None = None
    image_size: int | None = None
    channels: int | None = None
    label_mode: str = "int"
    data_dir: str | None = None
    download: bool = False
    augment: bool = True
    seed: int = 0
    overwrite: bool = False
    role: str | None = None
    oracle_address: str | None = None
    tuner_id: str | None = None
    oracle_timeout: float = DEFAULT_ORACLE_TIMEOUT
    allow_remote_oracle: bool = False
    retrain_epochs: int = 0
    max_search_seconds: float | None = None
    max_consecutive_failed_trials: int = 3
    verbose: int = 1

    def __post_init__(self) -> None:
        check_choice("tuner", self.tuner, TUNERS)
        check_choice("objective", self.objective, OBJECTIVES)
        for name in ("max_trials", "max_epochs", "max_consecutive_failed_trials"):
            check_positive_int(name, getattr(self, name))
        if not is_int(self.hyperband_factor) or self.hyperband_factor < 2:
            raise ValueError(
                "`hyperband_factor` must be an integer >= 2. "
                f"{received('hyperband_factor', self.hyperband_factor)}"
            )
        check_positive_int("max_params", self.max_params, allow_none=True)
        check_positive_number("max_latency_ms", self.max_latency_ms, allow_none=True)
        LatencyTarget(self.latency_target, self.latency_threads)  # checks both
        if not isinstance(self.latency_model, bool):
            raise ValueError(
                f"`latency_model` must be a bool. {received('latency_model', self.latency_model)}"
            )
        check_positive_number("max_search_seconds", self.max_search_seconds, allow_none=True)
        check_positive_number("oracle_timeout", self.oracle_timeout)
        check_positive_int("image_size", self.image_size, allow_none=True)  # square images
        # The data keywords, checked once, as the DataOptions the search loads with.
        object.__setattr__(
            self,
            "_data",
            DataOptions(
                image_size=self.image_size,
                channels=self.channels,
                label_mode=self.label_mode,
                data_dir=self.data_dir,
                download=self.download,
                augment=self.augment,
            ),
        )
        if not is_int(self.retrain_epochs) or self.retrain_epochs < 0:
            raise ValueError(
                "`retrain_epochs` must be an integer >= 0. "
                f"{received('retrain_epochs', self.retrain_epochs)}"
            )
        check_distributed(
            self.role, self.oracle_address, self.tuner_id, self.overwrite, self.allow_remote_oracle
        )
        if self.space is not None and not isinstance(self.space, SearchSpace):
            raise ValueError(f"`space` must be a SearchSpace. {received('space', self.space)}")
        if self.base is not None:
            object.__setattr__(self, "base", resolve_spec(self.base))

    @property
    def data(self) -> DataOptions:
        """The data keywords as the `DataOptions` the search loads its dataset with."""
        return self._data


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
        **keywords: any `SearchConfig` field (`max_params=100_000`, ...),
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
    splits, hypermodel = _prepare(dataset, config)
    run_dir = Path(output_dir)
    record = _record(splits, hypermodel, config)
    fingerprint_check(run_dir, record, config.overwrite)
    with locked_run_dir(run_dir, lock_name(config.role, config.tuner_id)) as lock:
        # Again: another run may just have ended.
        fingerprint_check(run_dir, record, config.overwrite)
        if lock.stale and config.verbose:
            pid = lock.stale.get("pid")
            print(f"{run_dir}: took over the lock of pid {pid}, which is no longer running")
        _check_before_writing(hypermodel, run_dir, config)
        if config.overwrite:
            remove_outputs(run_dir)
        write_json(run_dir / TUNE_CONFIG, record)
        hypermodel.screen.attach(run_dir)
        keras.utils.set_random_seed(config.seed)
        kt_tuner, is_worker = _run(splits, hypermodel, run_dir, config)
        if is_worker:
            print(f"worker {config.tuner_id}: no trials left; the chief writes the results.")
            return {"role": "worker", "tuner_id": config.tuner_id}
        return write_results(
            kt_tuner,
            hypermodel,
            splits,
            run_dir,
            dataset=dataset,
            config=config,
            record=record,
            started=started,
        )


# --- check and prepare ----------------------------------------------------------------------


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


def _prepare(
    dataset: str | DatasetSplits, config: SearchConfig
) -> tuple[DatasetSplits, HyperResNet]:
    """The data (after the checks that need none of it) and the hypermodel."""
    base = config.base
    if base is None and not isinstance(dataset, DatasetSplits):
        base = resolve_spec(default_base(config.image_size))
    _check_fits(dataset, config, base)
    if isinstance(dataset, DatasetSplits):
        splits = dataset
    else:
        data = config.data
        splits = load_splits(
            dataset,
            dataclasses.replace(data, image_size=data.image_size or base.default_input_size),
            batch_size=64,
            seed=config.seed,
        )
    hypermodel = HyperResNet(
        splits.image_shape,
        splits.num_classes,
        base,
        space=config.space,
        objective=config.objective,
        max_params=config.max_params,
        max_latency_ms=config.max_latency_ms,
        latency_target=config.latency_target,
        latency_threads=config.latency_threads,
        latency_model=config.latency_model,
        label_mode=splits.label_mode,
    )
    return splits, hypermodel


def _record(splits: DatasetSplits, hm: HyperResNet, config: SearchConfig) -> dict[str, Any]:
    """tune.json: the fingerprint a rerun must match, and the versions that ran.

    A tflite target joins the fingerprint (with the threads asked for); the keras
    target leaves it as it was before targets existed, so those runs still resume.
    """
    target = {}
    if config.latency_target != DEFAULT_LATENCY_TARGET:
        target = {  # "auto" as what it stands for here: another machine may choose another
            "latency_target": hm.screen.target.name,
            "latency_threads": config.latency_threads,
        }
    return {
        "fingerprint": {
            "dataset": splits.name,
            "image_shape": list(splits.image_shape),
            "label_mode": splits.label_mode,
            "base": hm.base.to_dict(),
            "space": hm.space.to_dict(),
            "tuner": config.tuner,
            "objective": config.objective,
            "max_epochs": config.max_epochs,
            "hyperband_factor": config.hyperband_factor,
            "max_params": config.max_params,
            "max_latency_ms": config.max_latency_ms,
            "seed": config.seed,
            "augment": config.augment,
            **target,
        },
        "keras_resnet": __version__,
        "keras_tuner": kt.__version__,
        "tensorflow": tf.__version__,
        "latency_runtime": hm.screen.target.runtime(),
    }


def _check_before_writing(hm: HyperResNet, run_dir: Path, config: SearchConfig) -> None:
    """The budgets (with a resumed search's latencies), and a worker's chief."""
    if (run_dir / LATENCY_CACHE).exists():  # a resumed search measures nothing again
        hm.screen.cache.attach(run_dir / LATENCY_CACHE)
    check_budgets_reachable(hm)
    if config.role == "worker":
        # After this worker's own data and budget checks, which the chief does too.
        with tuner_environment(config.role, config.oracle_address, config.tuner_id):
            wait_for_chief(config.oracle_timeout)


# --- run ------------------------------------------------------------------------------------


def _run(
    splits: DatasetSplits, hm: HyperResNet, run_dir: Path, config: SearchConfig
) -> tuple[kt.Tuner, bool]:
    """keras-tuner's search, in this process's role: the tuner, and whether it is a worker
    (keras-tuner decides that from its environment)."""
    with tuner_environment(config.role, config.oracle_address, config.tuner_id):
        kt_tuner = make_tuner(
            hm,
            config.tuner,
            directory=run_dir,
            max_trials=config.max_trials,
            max_epochs=config.max_epochs,
            hyperband_factor=config.hyperband_factor,
            seed=config.seed,
            overwrite=config.overwrite,
            max_consecutive_failed_trials=config.max_consecutive_failed_trials,
            max_search_seconds=config.max_search_seconds,
            oracle_timeout=config.oracle_timeout,
        )
        is_worker = kt_tuner._is_worker()
        try:
            # Unbatched with a known size and label mode: each trial batches it.
            kt_tuner.search(
                TrialData.from_splits(splits),
                validation_data=splits.validation,
                epochs=config.max_epochs,
                verbose=2 if config.verbose else 0,
            )
        except RuntimeError as e:
            if "consecutive failures" not in str(e):
                raise
            write_trials_csv(trial_rows(kt_tuner.oracle, hm, hm.screen), run_dir / TRIALS_CSV)
            raise RuntimeError(
                f"The search stopped after {config.max_consecutive_failed_trials} failed trials "
                f"in a row; see {run_dir / TRIALS_CSV} for their errors."
            ) from e
    return kt_tuner, is_worker
