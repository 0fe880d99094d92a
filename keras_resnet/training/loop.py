"""`train`: check, load the data, fit (resuming), then evaluate and write the run's results."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from keras_resnet._checks import config_with_overrides, require_tensorflow_backend
from keras_resnet._io import check_fingerprint, locked_run_dir
from keras_resnet._io import write_json as _write_json
from keras_resnet._signals import deferred
from keras_resnet.data import DataOptions, DatasetSplits, load_splits
from keras_resnet.errors import TrainingDivergedError
from keras_resnet.precision import explain_mixed_precision
from keras_resnet.spec import ResNetSpec, check_fits_in_memory, resolve_spec
from keras_resnet.training import backup, multiworker
from keras_resnet.training.callbacks import (
    AtomicCheckpoint,
    Backup,
    History,
    StopOnDivergence,
    StopOnSignal,
    Throughput,
)
from keras_resnet.training.config import (
    TrainConfig,
    check_init_weights,
    compile_model,
    count_steps_per_epoch,
    default_strategy,
    to_one_hot,
)
from keras_resnet.training.run_dir import (
    BEST,
    CURVES,
    HISTORY,
    LAST,
    METRICS,
    RUN_CONFIG,
    discard_corrupt_checkpoints,
    finished_metrics,
    plot_curves,
    print_summary,
    read_history,
    remove_stale_temp_files,
)
from keras_resnet.training.tracing import build_training_state
from keras_resnet.version import __version__


def check_memory(spec, image_size, channels, batch_size) -> None:
    """Sizes whose model or activations cannot fit in memory are refused before loading data."""
    if spec is None:
        return
    side = image_size or spec.default_input_size
    check_fits_in_memory(
        spec,
        (side, side, channels or 3),
        batch_size=batch_size,
        classes=None,
        training=True,
        received_text=f"Received: image_size={side}, batch_size={batch_size}",
    )


def train(
    model: ResNetSpec | str | dict | keras.Model = "resnet20",
    dataset: str | DatasetSplits = "digits",
    *,
    output_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    strategy: tf.distribute.Strategy | None = None,
    width: float | None = None,
    channels: int | None = None,
    label_mode: str = "int",
    data_dir: str | None = None,
    download: bool = False,
    max_image_pixels: int | None = None,
    verbose: int | str = "auto",
    callbacks: list[keras.callbacks.Callback] | None = None,
    **hyperparameters: Any,
) -> dict[str, Any]:
    """Trains a ResNet and writes a run directory (see the package doc).

    Args:
        model: a named spec (`"resnet20"`), a `ResNetSpec`, its dict, or a
            built `keras.Model` (its input must match the dataset's images).
        dataset: a `load_dataset` reference (`"digits"`, a tfds name, an image
            folder) or already loaded `DatasetSplits`.
        output_dir: the run directory; rerunning with the same arguments
            resumes (or returns a finished run's metrics); another
            configuration there is refused.
        config: the hyperparameters (`TrainConfig`; default `TrainConfig()`).
        strategy: a `tf.distribute.Strategy`; default `default_strategy()`. A
            `MultiWorkerMirroredStrategy` trains through the custom loop of
            `keras_resnet.training.multiworker` (Keras 3's `fit` cannot), every
            worker calling `train` with the same arguments; only the chief
            writes `output_dir` and returns the metrics, the other workers
            return what they did. Any other strategy trains with `model.fit`.
        width: width multiplier applied to the spec.
        channels, label_mode, data_dir, download, max_image_pixels: how the dataset is read;
            with the config's `image_size` and `augment` they make the run's
            `keras_resnet.data.DataOptions`, loaded with the config's
            `batch_size` and `seed`.
        verbose: Keras' fit verbosity ("auto": progress bars on a terminal,
            one line per epoch otherwise).
        callbacks: more Keras callbacks for `fit` (after the run's own, before its
            backup), e.g. benchmarks/cifar10.py's per-epoch test accuracy. Not part of
            the run's fingerprint.
        **hyperparameters: any `TrainConfig` field, over `config`: `epochs`,
            `batch_size` (global, over all replicas), `optimizer` (`"sgd"`
            with momentum 0.9, Nesterov's unless `nesterov=False`, `"adam"`, `"adamw"`),
            `learning_rate` (peak; default by optimizer), `schedule`
            (`"cosine"` with `warmup_epochs` of linear warm-up, `"step"`: /10
            at 50% and 75%, `"constant"`), `weight_decay` (decoupled, on
            kernels only; default by optimizer), `label_smoothing`,
            `mixed_precision` (`"mixed_float16"`/`"mixed_bfloat16"`, or
            `"auto"`: bfloat16 on a CPU with avx512_bf16/amx_bf16, float16 on
            a GPU of compute capability 7.0+, else float32; see
            `keras_resnet.precision`; the output stays float32, and the policy
            used is printed and recorded in run.json and metrics.json as
            `dtype_policy`), `image_size` (default the spec's input size),
            `seed`, `augment`, `augmentation` (`"translate"` or `"random-resized-crop"`),
            `eval_crop` (evaluation's center-crop fraction, e.g. 0.875), `recipe` (a
            `keras_resnet.recipes` name: its defaults, under the other keywords; not with
            `config`), `init_weights` (a `.weights.h5` of the spec, e.g. from
            `keras-resnet convert-weights`: the backbone starts from it, by layer name, and
            the classifier too when its classes are the dataset's; a built model is refused).

    Returns:
        The contents of `metrics.json`.

    Raises:
        ValueError: a bad argument, before anything is written.
        TrainingDivergedError: the loss or a weight became NaN or infinite.

    Example:

    >>> metrics = train("resnet20", "digits", output_dir="runs/digits", epochs=30)
    >>> metrics["test_accuracy"] > 0.98
    True
    """
    require_tensorflow_backend("train()", "tf.data pipelines and tf.distribute")
    start = time.perf_counter()
    config = _config(config, hyperparameters)
    data = DataOptions(
        image_size=config.image_size,
        channels=channels,
        label_mode=label_mode,
        data_dir=data_dir,
        download=download,
        augment=config.augment,
        augmentation=config.augmentation,
        eval_crop=config.eval_crop,
        max_image_pixels=max_image_pixels,
    )
    spec, built_model = _resolve_model(model, width)
    splits = _load(dataset, spec, built_model, config, data)
    # Checked before the run directory is created, so a refused run leaves no files.
    check_init_weights(spec, built_model, splits, config)
    strategy = strategy or default_strategy()
    task = multiworker.custom_loop_task(strategy)  # None: one machine, model.fit
    precision = _precision(config)
    run_dir = Path(output_dir)
    record = {
        "fingerprint": {
            "spec": spec.to_dict() if spec else {"model": built_model.name},
            "dataset": splits.name,
            "image_shape": list(splits.image_shape),
            **dataclasses.asdict(config),
        },
        "precision": precision,
        "keras_resnet": __version__,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
    }
    fingerprint = record["fingerprint"] = _as_recorded(record["fingerprint"], run_dir)
    if task is not None:
        fingerprint["loop"] = "multi-worker"  # its checkpoints are not fit's backup
        if not task.is_chief:
            policy = record["precision"]["dtype_policy"]
            return multiworker.run_worker(
                spec, built_model, splits, config, strategy, task, run_dir, policy, verbose
            )
    # The other workers wait for the chief's word: train, or stop (finished or refused).
    with multiworker.Plan(strategy, task) as plan:
        check_fingerprint(run_dir, RUN_CONFIG, fingerprint, kind="run")
        with locked_run_dir(run_dir):
            # Checked again under the lock: another process may have started this run meanwhile.
            previous = check_fingerprint(run_dir, RUN_CONFIG, fingerprint, kind="run") or {}
            remove_stale_temp_files(run_dir)
            finished = finished_metrics(run_dir)
            if finished is not None:
                print(f"{run_dir} is a finished run; nothing to do.")
                return finished
            if previous.get("status") == "trained":
                record, best = previous, None
                print(f"{run_dir}: training finished earlier; evaluating its best.keras.")
            else:
                _write_json(run_dir / RUN_CONFIG, {**record, "status": "training"})
                record, best = _fit(
                    spec, built_model, splits, config, strategy, run_dir, record, verbose, plan,
                    callbacks or [],
                )  # fmt: skip
            metrics = _evaluate(splits, config, run_dir, record, spec, start, best)
    print_summary(metrics, run_dir)
    return metrics


ADDED_FIELDS = ("recipe", "augmentation", "eval_crop", "nesterov")
"""TrainConfig fields added after runs were recorded without them (#27)."""


def _as_recorded(fingerprint: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """`fingerprint` without the `ADDED_FIELDS` a run recorded before them lacks, when they
    hold their defaults: such a run resumes as it was asked (anything else is compared)."""
    try:
        before = json.loads((run_dir / RUN_CONFIG).read_text(encoding="utf-8"))["fingerprint"]
    except (OSError, ValueError, TypeError, KeyError):
        return fingerprint  # a new run, or one check_fingerprint will refuse with its reason
    if not isinstance(before, dict):
        return fingerprint
    defaults = TrainConfig()
    return {
        key: value
        for key, value in fingerprint.items()
        if not (key in ADDED_FIELDS and key not in before and value == getattr(defaults, key))
    }


def _config(config: TrainConfig | None, hyperparameters: dict[str, Any]) -> TrainConfig:
    """`config` (or a recipe's defaults) with the keyword overrides."""
    recipe = hyperparameters.get("recipe")
    if recipe is not None:
        if config is not None:
            raise ValueError(
                "`recipe` sets a new config's defaults; pass `recipe` or `config`, not both. "
                f"Received: recipe={recipe!r}"
            )
        config = TrainConfig.from_recipe(recipe)
    return config_with_overrides(TrainConfig, config, hyperparameters, arg="config", caller="train")


def _precision(config: TrainConfig) -> dict[str, str | None]:
    """The dtype policy the run trains under (what `auto` stands for here), printed if `auto`.

    Recorded outside the fingerprint: a run asked with `auto` resumes on another machine
    under that machine's choice (the checkpoints' variables are float32 either way).
    """
    policy, reason = explain_mixed_precision(config.mixed_precision)
    policy = policy or "float32"
    if config.mixed_precision == "auto":
        print(f"mixed_precision='auto': training in {policy} ({reason})")
    return {"mixed_precision": config.mixed_precision, "dtype_policy": policy, "reason": reason}


def _resolve_model(model: Any, width: float | None) -> tuple[ResNetSpec | None, Any]:
    """(spec, None) for a spec reference, (None, model) for a built keras.Model."""
    if isinstance(model, keras.Model):
        if width is not None:
            raise ValueError(
                f"`width` applies to a spec, not a built model. Received: width={width}"
            )
        return None, model
    spec = resolve_spec(model)
    return (dataclasses.replace(spec, width=width) if width is not None else spec), None


def _load(dataset, spec, built_model, config: TrainConfig, data: DataOptions) -> DatasetSplits:
    """The dataset's splits at the model's input size (one-hot when smoothing labels)."""
    if isinstance(dataset, DatasetSplits):
        splits = dataset
    else:
        check_memory(spec, data.image_size, data.channels, config.batch_size)
        size = data.image_size
        if size is None:
            size = spec.default_input_size if spec else built_model.input_shape[1]
        splits = load_splits(
            dataset,
            dataclasses.replace(data, image_size=size),
            batch_size=config.batch_size,
            seed=config.seed,
        )
    if config.label_smoothing and splits.label_mode == "int":
        splits = to_one_hot(splits)
    return splits


def _fit(
    spec, built_model, splits, config, strategy, run_dir, record, verbose, plan, extra_callbacks
) -> tuple[dict, keras.Model | None]:
    """Trains (resuming from the backup), then records in run.json that training finished.

    With `model.fit`, or with the multi-worker loop when `plan` is for several workers.
    Returns the record and, when the trained model holds best.keras's weights (its last
    epoch was the best) outside any distribution strategy, that model, else None.
    """
    backup_dir = run_dir / "backup"
    task = plan.task
    if task is not None:
        plan.send(multiworker.TRAIN)  # the other workers build the model along with us
        keras.utils.set_random_seed(config.seed)  # the chief's initial weights go to all
    discarded = discard_corrupt_checkpoints(run_dir, trained=False)

    policy = record["precision"]["dtype_policy"]
    net = compile_model(spec, built_model, splits, config, strategy, policy)
    if task is None:
        steps = count_steps_per_epoch(splits, config.batch_size)
        resumed_from = backup.restore(net, run_dir, run_dir / LAST, steps)
    else:
        resumed_from = multiworker.resume_epoch(backup_dir / multiworker.CHECKPOINTS)

    throughput = Throughput(config.batch_size)
    divergence = StopOnDivergence()
    fresh_best = BEST in discarded or not resumed_from
    best_checkpoint, last_checkpoint = _checkpoints(run_dir, divergence, fresh_best)
    callbacks = [
        divergence,  # first: the checkpoints below skip an epoch it flags
        History(run_dir / HISTORY),
        best_checkpoint,
        last_checkpoint,
        keras.callbacks.TensorBoard(str(run_dir / "logs"), profile_batch=0),
        throughput,
        *extra_callbacks,
    ]
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    if task is None:
        # Last, so the backup of an epoch is written after everything else of it (and
        # a signal noted meanwhile is raised after that).
        callbacks += [Backup(backup_dir, divergence), StopOnSignal()]
        keras.utils.set_random_seed(config.seed)
        with deferred():  # a signal stops fit between two steps, not inside one
            net.fit(
                splits.train,
                validation_data=splits.validation,
                epochs=config.epochs,
                initial_epoch=resumed_from or 0,
                callbacks=callbacks,
                verbose=verbose,
                shuffle=False,  # the train pipeline shuffles itself (seeded, every epoch)
            )
    else:
        multiworker.fit_with_custom_loop(
            net, splits, config, strategy, task, callbacks, backup_dir, verbose
        )
    if divergence.epoch is not None:
        raise TrainingDivergedError(
            f"training diverged in epoch {divergence.epoch + 1} ({divergence.reason}); "
            f"{run_dir} keeps the checkpoints of the last good epoch. Try a lower learning "
            f"rate. Received: learning_rate={config.lr}, weight_decay={config.wd}"
        )
    record = {
        **record,
        "status": "trained",
        "trained": {
            "params": int(net.count_params()),
            "model_name": net.name,
            "resumed_from_epoch": resumed_from,
            "train_images_per_second": throughput.images_per_second,
        },
    }
    _write_json(run_dir / RUN_CONFIG, record)
    shutil.rmtree(backup_dir, ignore_errors=True)  # only now: the status says training is done
    holds_best = (
        task is None
        and best_checkpoint.saved_epoch == config.epochs - 1
        and net.distribute_strategy is tf.distribute.get_strategy()
    )
    return record, net if holds_best else None


def _checkpoints(
    run_dir: Path, divergence: StopOnDivergence, fresh_best: bool
) -> tuple[AtomicCheckpoint, AtomicCheckpoint]:
    """best.keras and last.keras; best.keras must beat the history's best val_loss unless
    `fresh_best` (a new run, or its best.keras was discarded)."""
    history_rows = read_history(run_dir / HISTORY)
    best_so_far = min((r.get("val_loss", math.inf) for r in history_rows), default=None)
    best = AtomicCheckpoint(
        run_dir / BEST,
        divergence,
        # val_loss, not val_accuracy: a small validation split reaches 100%
        # accuracy early, and the first such epoch would then stay "best".
        monitor="val_loss",
        mode="min",
        save_best_only=True,
        initial_value_threshold=None if fresh_best else best_so_far,
    )
    return best, AtomicCheckpoint(run_dir / LAST, divergence, same_as=best)


def _evaluate(splits, config, run_dir, record, spec, start, best=None) -> dict[str, Any]:
    """Scores best.keras on the test split, plots the curves, writes metrics.json.

    `best`: the model just trained when it holds best.keras's weights; evaluating it reuses
    the test step `fit` traced for validation (loading the file and tracing again cost
    ~1 s for a ResNet-20, several for a ResNet50). Otherwise the file is loaded.
    """
    discard_corrupt_checkpoints(run_dir, trained=True)
    if best is None:
        best = keras.saving.load_model(run_dir / BEST, safe_mode=True)
        build_training_state(best, splits.test)
    with deferred():
        test_loss, test_accuracy = best.evaluate(splits.test, verbose=0, callbacks=[StopOnSignal()])
    history_rows = read_history(run_dir / HISTORY)
    plot_curves(history_rows, run_dir / CURVES)
    trained = record["trained"]
    metrics = {
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "best_val_accuracy": max(r.get("val_accuracy", math.nan) for r in history_rows),
        "params": trained["params"],
        "epochs_run": len(history_rows),
        "resumed_from_epoch": trained["resumed_from_epoch"],
        "wall_seconds": round(time.perf_counter() - start, 2),
        "train_images_per_second": trained["train_images_per_second"],
        # A run trained before the policy was recorded used the one it asked for.
        "dtype_policy": record.get("precision", {}).get(
            "dtype_policy", config.mixed_precision or "float32"
        ),
        "spec": spec.to_dict() if spec else None,
        "model_name": trained["model_name"],
        "dataset": splits.to_dict(),
        "recipe": config.recipe,
        "split_sizes": dict(splits.sizes),
        "config": dataclasses.asdict(config),
        "files": {"best": BEST, "last": LAST, "history": HISTORY, "curves": CURVES},
    }
    _write_json(run_dir / METRICS, metrics)
    return metrics
