"""Training: one call from a spec (or model) and a dataset to a finished run directory.

`train` builds the model from a spec with `build_resnet`, feeds it the
pipelines of `keras_resnet.data.load_dataset`, and leaves one run directory:

```
run_dir/
  run.json          what was asked (spec, dataset, hyperparameters): a rerun must match
  best.keras        the epoch with the lowest validation loss
  last.keras        the last finished epoch
  history.csv       per-epoch metrics (CSVLogger's columns, rewritten atomically)
  logs/             TensorBoard
  backup/           Keras' BackupAndRestore state while a run is unfinished
  curves.png        loss and accuracy, train vs validation
  metrics.json      the result (test accuracy/loss of best.keras, params, timing, ...)
```

Resume: the run state is kept by Keras' `BackupAndRestore` (with its double
checkpoint), so a process killed at any moment, even with SIGKILL, loses at most
the epoch in progress: rerunning the same call continues from the last
finished epoch and `metrics.json` says where it resumed. Once the last epoch
is done, `run.json` says `"status": "trained"`; a run that stopped after that
(while evaluating, plotting or writing metrics) is finished by the rerun
without training again. Rerunning a finished run returns its metrics.

Safety: every file is written atomically (`keras_resnet._io`), so a kill never
leaves a truncated `best.keras`; one found anyway (damaged by something else)
is discarded on resume and written again by the next epoch. The directory is
locked while a process trains in it. A loss that turns NaN or infinite stops
the run at once with `TrainingDivergedError`, keeping the checkpoints of the
last good epoch.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_resnet._io import (
    LOCK_FILE,
    DirectoryLock,
    atomic_path,
    check_writable_dir,
    commit,
    read_json_object,
    temp_path_for,
    write_text_atomic,
)
from keras_resnet._io import write_json as _write_json
from keras_resnet.builder import build_resnet
from keras_resnet.constants import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LEARNING_RATE,
    DEFAULT_WARMUP_EPOCHS,
    DEFAULT_WEIGHT_DECAY,
    MIXED_PRECISION,
    OPTIMIZERS,
    SCHEDULES,
)
from keras_resnet.data import DatasetSplits, load_dataset
from keras_resnet.errors import TrainingDivergedError
from keras_resnet.spec import ResNetSpec, check_fits_in_memory, resolve_spec
from keras_resnet.version import __version__

# Files of a run directory.
RUN_CONFIG, METRICS, HISTORY = "run.json", "metrics.json", "history.csv"
BEST, LAST, CURVES = "best.keras", "last.keras", "curves.png"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of a run (what `run.json` records besides spec and dataset)."""

    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    optimizer: str = OPTIMIZERS[0]
    learning_rate: float | None = None
    schedule: str = SCHEDULES[0]
    warmup_epochs: int = DEFAULT_WARMUP_EPOCHS
    weight_decay: float | None = None
    label_smoothing: float = 0.0
    mixed_precision: str | None = None
    image_size: int | None = None
    seed: int = 0
    augment: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
        if (
            isinstance(self.warmup_epochs, bool)
            or not isinstance(self.warmup_epochs, int)
            or (self.warmup_epochs < 0)
        ):
            raise ValueError(
                "`warmup_epochs` must be an integer >= 0. "
                f"Received: warmup_epochs={self.warmup_epochs!r}"
            )
        choices = {
            "optimizer": OPTIMIZERS,
            "schedule": SCHEDULES,
            "mixed_precision": MIXED_PRECISION,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"`{name}` must be one of {list(allowed)}. "
                    f"Received: {name}={getattr(self, name)!r}"
                )
        for name, low, high in (
            ("learning_rate", 0.0, 10.0),
            ("weight_decay", -1e-12, 1.0),
            ("label_smoothing", -1e-12, 1.0),
        ):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, (int, float)) or not (low < value < high):
                raise ValueError(
                    f"`{name}` must be a number in ({max(low, 0.0)}, {high}). "
                    f"Received: {name}={value!r}"
                )
        if self.image_size is not None and (
            not isinstance(self.image_size, int) or self.image_size < 1
        ):
            raise ValueError(
                f"`image_size` must be a positive integer. Received: image_size={self.image_size!r}"
            )

    @property
    def lr(self) -> float:
        return self.learning_rate or DEFAULT_LEARNING_RATE[self.optimizer]

    @property
    def wd(self) -> float:
        wd = self.weight_decay
        return DEFAULT_WEIGHT_DECAY[self.optimizer] if wd is None else wd


def default_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy over the visible GPUs when there are several, else the default."""
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimizer with its learning-rate schedule (Keras' own schedules)."""
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(config.warmup_epochs * steps_per_epoch, total - 1)
    lr: Any = config.lr
    if config.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else config.lr,
            decay_steps=total - warmup,
            warmup_target=config.lr if warmup else None,
            warmup_steps=warmup,
        )
    elif config.schedule == "step":
        # He et al. 2015, CIFAR: divide by 10 at 50% and 75% of training.
        lr = keras.optimizers.schedules.PiecewiseConstantDecay(
            [int(total * 0.5), int(total * 0.75)], [config.lr, config.lr / 10, config.lr / 100]
        )
    wd = config.wd or None
    if config.optimizer == "sgd":
        opt = keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, weight_decay=wd)
    elif config.optimizer == "adam":
        opt = keras.optimizers.Adam(lr, weight_decay=wd)
    else:
        opt = keras.optimizers.AdamW(lr, weight_decay=config.wd)
    if wd:
        # Decay conv/dense kernels only, not BatchNormalization or biases.
        opt.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return opt


class _Throughput(keras.callbacks.Callback):
    """Images per second of the training phase of each epoch (validation excluded)."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size
        self.images = 0
        self.seconds = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._steps = time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1
        self._end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self._steps:
            self.images += self._steps * self.batch_size
            self.seconds += self._end - self._start

    @property
    def images_per_second(self) -> float | None:
        return self.images / self.seconds if self.seconds else None


class _StopOnDivergence(keras.callbacks.Callback):
    """Keras' TerminateOnNaN that also remembers where, so the checkpoints can skip the epoch.

    An epoch also counts as diverged when it ends with a non-finite weight (BatchNorm's
    moving variance overflows before the loss shows it).
    """

    def __init__(self):
        super().__init__()
        self.epoch: int | None = None
        self.reason = ""
        self._current = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._current = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and self.epoch is None and not math.isfinite(float(loss)):
            self.epoch, self.reason = self._current, f"the loss became {float(loss)}"
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.epoch is None and not all(np.isfinite(w).all() for w in self.model.get_weights()):
            self.epoch, self.reason = epoch, "a weight became NaN or infinite"
            self.model.stop_training = True


class _AtomicCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint that writes through a temporary file (a kill never truncates it)
    and saves nothing from an epoch that diverged."""

    def __init__(self, filepath: Path, divergence: _StopOnDivergence, **kwargs: Any):
        super().__init__(str(filepath), **kwargs)
        self._divergence = divergence

    def on_epoch_end(self, epoch, logs=None):
        if self._divergence.epoch is not None:
            return
        target = self.filepath
        tmp = temp_path_for(target)
        self.filepath = str(tmp)
        try:
            super().on_epoch_end(epoch, logs)
            if tmp.exists():
                commit(tmp, target)
        finally:
            self.filepath = target
            tmp.unlink(missing_ok=True)


class _Backup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that keeps the last good epoch when one diverges.

    The backup is not deleted at the end of `fit`: `train` removes it only
    after `run.json` records that training finished, so no kill in between can
    make a rerun start over.
    """

    def __init__(self, backup_dir: Path, divergence: _StopOnDivergence):
        super().__init__(str(backup_dir), double_checkpoint=True, delete_checkpoint=False)
        self._divergence = divergence

    def on_epoch_end(self, epoch, logs=None):
        if self._divergence.epoch is None:
            super().on_epoch_end(epoch, logs)


def _is_complete_keras_file(path: Path) -> bool:
    """A `.keras` zip whose every member reads back with its CRC (a truncated one does not)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


def _discard_corrupt_checkpoints(run_dir: Path, trained: bool) -> list[str]:
    """Removes checkpoints of ours that are damaged, so none survives into a resume.

    Before the last epoch the next epochs write them again. After it, a damaged
    best.keras cannot be rebuilt without retraining: that is an error.
    """
    discarded = []
    for name in (BEST, LAST):
        path = run_dir / name
        if not path.exists() or _is_complete_keras_file(path):
            continue
        if trained and name == BEST:
            raise ValueError(
                f"{path} is damaged (not a complete .keras archive) and the run's training "
                "has finished, so it cannot be rebuilt without training again: train into "
                f"a new directory. Received: output_dir={str(run_dir)!r}"
            )
        path.unlink()
        discarded.append(name)
    if discarded:
        print(f"{run_dir}: discarded damaged {', '.join(discarded)}; the next epoch rewrites it.")
    return discarded


class _History(keras.callbacks.Callback):
    """Keras' CSVLogger, but the file is rewritten atomically each epoch instead of appended.

    An append cut by a kill leaves a torn last row whose number may still parse (0.98 cut
    to 0.9); a rename never does. A resumed run's rows replace the repeated epochs.
    """

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.rows: dict[int, dict[str, float]] = {}

    def on_train_begin(self, logs=None):
        self.rows = {
            int(r["epoch"]): {**r, "epoch": int(r["epoch"])} for r in _read_history(self.path)
        }

    def on_epoch_end(self, epoch, logs=None):
        self.rows[epoch] = {"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}}
        columns = ["epoch", *sorted({k for r in self.rows.values() for k in r} - {"epoch"})]
        text = io.StringIO()
        writer = csv.DictWriter(text, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows[e] for e in sorted(self.rows))
        write_text_atomic(self.path, text.getvalue())


def _read_history(path: Path) -> list[dict[str, float]]:
    """history.csv rows, one per epoch (a repeated epoch after a resume keeps the last)."""
    if not path.exists():
        return []
    rows: dict[int, dict[str, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            with contextlib.suppress(ValueError, KeyError):
                rows[int(row["epoch"])] = {k: float(v) for k, v in row.items() if v != ""}
    return [rows[e] for e in sorted(rows)]


def _plot_curves(history: list[dict[str, float]], path: Path) -> None:
    # A bare Figure, not pyplot: no GUI backend is needed, and the caller's backend (a
    # notebook's inline one) is left alone; matplotlib.use("Agg") would switch it for good.
    from matplotlib.figure import Figure

    epochs = [int(r["epoch"]) + 1 for r in history]
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, label in (("", "train"), ("val_", "validation")):
            values = [r.get(prefix + metric, math.nan) for r in history]
            ax.plot(epochs, values, marker="o", markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)


def _repair_backup(backup_dir: Path) -> None:
    """Falls back to the previous backup when a kill left the metadata half-written.

    Keras' BackupAndRestore recovers from a corrupt weights file with its
    double checkpoint, but a truncated `training_metadata.json` fails with a
    JSONDecodeError it does not catch.
    """
    meta = backup_dir / "training_metadata.json"
    if not meta.exists():
        return
    try:
        json.loads(meta.read_text())
    except ValueError:
        for name in ("training_metadata.json", "latest.weights.h5"):
            previous = backup_dir / f"{name}.bkp"
            if previous.exists():
                shutil.copy(previous, backup_dir / name)
            elif name == "training_metadata.json":
                meta.unlink()


def _resume_epoch(backup_dir: Path) -> int | None:
    meta = backup_dir / "training_metadata.json"
    if meta.exists():
        return int(json.loads(meta.read_text())["epoch"])
    return None


def _refuse_multi_worker(strategy: tf.distribute.Strategy) -> None:
    """model.fit fails under MultiWorkerMirroredStrategy with 2+ workers in Keras 3.15.

    See docs/distributed.md: refuse up front instead of failing inside fit.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    workers = sum(len(cluster.get(role, [])) for role in ("chief", "worker"))
    if workers > 1:
        raise ValueError(
            "`strategy` is a MultiWorkerMirroredStrategy over several workers, which "
            "Keras 3's model.fit does not support (see docs/distributed.md for the working "
            f"custom-loop route). Received: strategy with {workers} workers"
        )


def make_loss(label_mode: str, label_smoothing: float = 0.0) -> keras.losses.Loss:
    """Cross-entropy for sparse (`"int"`) or one-hot (`"categorical"`) labels."""
    if label_mode == "categorical":
        return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def _to_one_hot(splits: DatasetSplits) -> DatasetSplits:
    """Label smoothing needs one-hot targets (Keras' sparse loss has no smoothing)."""
    depth = splits.num_classes

    def convert(ds):
        return ds.map(lambda x, y: (x, tf.one_hot(tf.cast(y, tf.int32), depth)))

    return dataclasses.replace(
        splits,
        train=convert(splits.train),
        validation=convert(splits.validation),
        test=convert(splits.test),
        label_mode="categorical",
    )


def _build(spec, model, splits: DatasetSplits, config: TrainConfig) -> keras.Model:
    if model is not None:
        return model
    # The classifier output stays float32 under mixed precision (Keras' advice):
    # logits from the (mixed) Dense, then a float32 softmax.
    mixed = config.mixed_precision is not None
    net = build_resnet(
        spec,
        input_shape=splits.image_shape,
        classes=splits.num_classes,
        classifier_activation=None if mixed else "softmax",
    )
    if not mixed:
        return net
    probs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(net.output)
    return keras.Model(net.input, probs, name=net.name)


def _steps_per_epoch(splits: DatasetSplits, batch_size: int) -> int:
    """Batches per epoch, for the learning-rate schedule.

    The pipeline's own count when it knows it: splits loaded by the caller were batched
    with their own batch size, which need not be `batch_size`.
    """
    batches = int(splits.train.cardinality())
    if batches > 0:
        return batches
    return max(1, math.ceil(splits.sizes["train"] / batch_size))


def _check_run_dir(run_dir: Path, record: dict) -> dict | None:
    """Refuses a run directory made for another run (or not a run at all).

    Returns the previous run.json, or None for a new run.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(
            f"`output_dir` is a file, not a directory. Received: output_dir={str(run_dir)!r}"
        )
    config_path = run_dir / RUN_CONFIG
    if not config_path.exists():
        if run_dir.exists() and any(p.name != LOCK_FILE for p in run_dir.iterdir()):
            raise ValueError(
                f"`output_dir` exists and is not a keras_resnet run directory. "
                f"Received: output_dir={str(run_dir)!r}"
            )
        return None
    previous = read_json_object(config_path, "a keras_resnet run.json", "output_dir")
    before = previous.get("fingerprint")
    if not isinstance(before, dict):
        raise ValueError(
            f"{config_path} is not a keras_resnet run.json (it has no fingerprint). "
            f"Received: output_dir={str(run_dir)!r}"
        )
    now = record["fingerprint"]
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    if changed:
        raise ValueError(
            f"`output_dir` {str(run_dir)!r} holds a run with another configuration "
            f"(differs in: {', '.join(changed)}); use a new directory. "
            f"Received: output_dir={str(run_dir)!r}"
        )
    return previous


def _finished_metrics(run_dir: Path) -> dict | None:
    """The metrics of a finished run (metrics.json written and no backup left), else None."""
    metrics_path = run_dir / METRICS
    if metrics_path.is_file() and not (run_dir / "backup").exists():
        return read_json_object(metrics_path, "a keras_resnet metrics.json", "output_dir")
    return None


def _check_memory(spec, image_size, channels, batch_size) -> None:
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
    epochs: int = 30,
    batch_size: int = 64,
    optimizer: str = "sgd",
    learning_rate: float | None = None,
    schedule: str = "cosine",
    warmup_epochs: int = 1,
    weight_decay: float | None = None,
    label_smoothing: float = 0.0,
    mixed_precision: str | None = None,
    strategy: tf.distribute.Strategy | None = None,
    width: float | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    label_mode: str = "int",
    data_dir: str | None = None,
    download: bool = False,
    seed: int = 0,
    augment: bool = True,
    verbose: int | str = "auto",
) -> dict[str, Any]:
    """Trains a ResNet and writes a run directory (see the module doc).

    Args:
        model: a named spec (`"resnet20"`), a `ResNetSpec`, its dict, or a
            built `keras.Model` (its input must match the dataset's images).
        dataset: a `load_dataset` reference (`"digits"`, a tfds name, an image
            folder) or already loaded `DatasetSplits`.
        output_dir: the run directory; rerunning with the same arguments
            resumes (or returns a finished run's metrics); another
            configuration there is refused.
        epochs, batch_size: as in `model.fit` (batch_size is global, over all replicas).
        optimizer: `"sgd"` (momentum 0.9, Nesterov), `"adam"` or `"adamw"`.
        learning_rate: peak learning rate (default 0.1 for SGD, 1e-3 for Adam/AdamW).
        schedule: `"cosine"` (with `warmup_epochs` of linear warm-up),
            `"step"` (/10 at 50% and 75%, as in the paper) or `"constant"`.
        weight_decay: decoupled weight decay on kernels (default 1e-4 for
            SGD, 0 for Adam, 0.05 for AdamW); BN and biases are not decayed.
        label_smoothing: for the cross-entropy (labels are one-hot encoded for it).
        mixed_precision: None, `"mixed_float16"` or `"mixed_bfloat16"`; the
            classifier output stays float32.
        strategy: a `tf.distribute.Strategy`; default `default_strategy()`.
        width: width multiplier applied to the spec.
        image_size: side images are resized to; default the spec's natural
            input size (32 for the CIFAR stem, 224 for the ImageNet stem).
        channels, label_mode, data_dir, download, seed, augment: passed to
            `load_dataset`.
        verbose: Keras' fit verbosity ("auto": progress bars on a terminal,
            one line per epoch otherwise).

    Returns:
        The contents of `metrics.json`.

    Example:

    >>> metrics = train("resnet20", "digits", output_dir="runs/digits", epochs=30)
    >>> metrics["test_accuracy"] > 0.98
    True
    """
    start = time.perf_counter()
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        learning_rate=learning_rate,
        schedule=schedule,
        warmup_epochs=warmup_epochs,
        weight_decay=weight_decay,
        label_smoothing=label_smoothing,
        mixed_precision=mixed_precision,
        image_size=image_size,
        seed=seed,
        augment=augment,
    )
    built_model = model if isinstance(model, keras.Model) else None
    spec = None
    if built_model is None:
        spec = resolve_spec(model)
        if width is not None:
            spec = dataclasses.replace(spec, width=width)
    elif width is not None:
        raise ValueError(f"`width` applies to a spec, not a built model. Received: width={width}")

    if isinstance(dataset, DatasetSplits):
        splits = dataset
    else:
        _check_memory(spec, image_size, channels, batch_size)
        size = image_size
        if size is None:
            size = spec.default_input_size if spec else built_model.input_shape[1]
        splits = load_dataset(
            dataset,
            image_size=size,
            batch_size=batch_size,
            seed=seed,
            data_dir=data_dir,
            download=download,
            augment=augment,
            label_mode=label_mode,
            channels=channels,
        )
    if label_smoothing and splits.label_mode == "int":
        splits = _to_one_hot(splits)

    # Checked before the run directory is created, so a refused run leaves no files.
    strategy = strategy or default_strategy()
    _refuse_multi_worker(strategy)

    run_dir = Path(output_dir)
    record = {
        "fingerprint": {
            "spec": spec.to_dict() if spec else {"model": built_model.name},
            "dataset": splits.name,
            "image_shape": list(splits.image_shape),
            **dataclasses.asdict(config),
        },
        "keras_resnet": __version__,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
    }
    _check_run_dir(run_dir, record)
    check_writable_dir(run_dir, "output_dir")
    with DirectoryLock(run_dir, arg="output_dir"):
        # Checked again under the lock: another process may have started this run meanwhile.
        previous = _check_run_dir(run_dir, record) or {}
        finished = _finished_metrics(run_dir)
        if finished is not None:
            print(f"{run_dir} is a finished run; nothing to do.")
            return finished
        trained = previous.get("status") == "trained"
        if trained:
            record = previous
            print(f"{run_dir}: training finished earlier; evaluating its best.keras.")
        else:
            _write_json(run_dir / RUN_CONFIG, {**record, "status": "training"})
            record = _fit(spec, built_model, splits, config, strategy, run_dir, record, verbose)
        metrics = _evaluate(splits, config, run_dir, record, spec, start)
    print_summary(metrics, run_dir)
    return metrics


def _fit(spec, built_model, splits, config, strategy, run_dir, record, verbose) -> dict:
    """Trains (resuming from the backup), then records in run.json that training finished."""
    backup_dir = run_dir / "backup"
    _repair_backup(backup_dir)
    resumed_from = _resume_epoch(backup_dir)
    discarded = _discard_corrupt_checkpoints(run_dir, trained=False)

    previous_policy = keras.config.dtype_policy()
    if config.mixed_precision:
        keras.config.set_dtype_policy(config.mixed_precision)
    try:
        with strategy.scope():
            net = _build(spec, built_model, splits, config)
            steps = _steps_per_epoch(splits, config.batch_size)
            net.compile(
                optimizer=make_optimizer(config, steps),
                loss=make_loss(splits.label_mode, config.label_smoothing),
                metrics=["accuracy"],
            )
    finally:
        keras.config.set_dtype_policy(previous_policy)

    history_rows = _read_history(run_dir / HISTORY)
    best_so_far = min((r.get("val_loss", math.inf) for r in history_rows), default=None)
    if BEST in discarded or not resumed_from:
        best_so_far = None
    throughput = _Throughput(config.batch_size)
    divergence = _StopOnDivergence()
    callbacks = [
        divergence,  # first: the checkpoints below skip an epoch it flags
        _History(run_dir / HISTORY),
        _AtomicCheckpoint(
            run_dir / BEST,
            divergence,
            # val_loss, not val_accuracy: a small validation split reaches 100%
            # accuracy early, and the first such epoch would then stay "best".
            monitor="val_loss",
            mode="min",
            save_best_only=True,
            initial_value_threshold=best_so_far,
        ),
        _AtomicCheckpoint(run_dir / LAST, divergence),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), profile_batch=0),
        throughput,
        # Last, so the backup of an epoch is written after everything else of it.
        _Backup(backup_dir, divergence),
    ]
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    keras.utils.set_random_seed(config.seed)
    net.fit(
        splits.train,
        validation_data=splits.validation,
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the train pipeline shuffles itself (seeded, every epoch)
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
    return record


def _evaluate(splits, config, run_dir, record, spec, start) -> dict[str, Any]:
    """Scores best.keras on the test split, plots the curves, writes metrics.json."""
    _discard_corrupt_checkpoints(run_dir, trained=True)
    best = keras.saving.load_model(run_dir / BEST, safe_mode=True)
    test_loss, test_accuracy = best.evaluate(splits.test, verbose=0)
    history_rows = _read_history(run_dir / HISTORY)
    _plot_curves(history_rows, run_dir / CURVES)
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
        "spec": spec.to_dict() if spec else None,
        "model_name": trained["model_name"],
        "dataset": splits.to_dict(),
        "split_sizes": dict(splits.sizes),
        "config": dataclasses.asdict(config),
        "files": {"best": BEST, "last": LAST, "history": HISTORY, "curves": CURVES},
    }
    _write_json(run_dir / METRICS, metrics)
    return metrics


def print_summary(metrics: dict[str, Any], run_dir: Path | str) -> None:
    """The short table printed at the end of a run."""
    rows = [
        ("model", metrics["model_name"]),
        ("parameters", f"{metrics['params']:,}"),
        ("dataset", f"{metrics['dataset']['name']} {metrics['split_sizes']}"),
        (
            "epochs",
            f"{metrics['epochs_run']}"
            + (
                f" (resumed from {metrics['resumed_from_epoch']})"
                if metrics["resumed_from_epoch"]
                else ""
            ),
        ),
        ("test accuracy", f"{metrics['test_accuracy']:.4f}"),
        ("test loss", f"{metrics['test_loss']:.4f}"),
        ("wall time", f"{metrics['wall_seconds']:.1f} s"),
        ("train images/s", f"{metrics['train_images_per_second'] or float('nan'):.0f}"),
        ("run directory", str(run_dir)),
        ("best model", str(Path(run_dir) / BEST)),
        ("curves", str(Path(run_dir) / CURVES)),
    ]
    width = max(len(k) for k, _ in rows)
    print("-" * (width + 40))
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print("-" * (width + 40))


__all__ = [
    "TrainConfig",
    "TrainingDivergedError",
    "default_strategy",
    "make_loss",
    "make_optimizer",
    "print_summary",
    "train",
]
