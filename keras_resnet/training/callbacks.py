"""The callbacks `train` gives `fit`: throughput, divergence, checkpoints, backup, history, signals.

Each is a Keras callback (or a subclass of Keras' own) changed only where a
run must not lose work: files written through a temporary file, nothing saved
from an epoch that diverged, the backup kept until the run records it is done.
"""

from __future__ import annotations

import csv
import io
import math
import shutil
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_resnet._io import commit, temp_path_for, write_text_atomic
from keras_resnet._signals import raise_if_pending
from keras_resnet.training import backup
from keras_resnet.training.run_dir import read_history


class Throughput(keras.callbacks.Callback):
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


class StopOnDivergence(keras.callbacks.Callback):
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


class AtomicCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint that writes through a temporary file (a kill never truncates it)
    and saves nothing from an epoch that diverged. `saved_epoch`: the last epoch it saved.

    `same_as`: a checkpoint called before this one; in an epoch it saved, this one copies
    its file instead of saving the same model again (last.keras after an epoch that was
    the best: a quarter of a second per epoch for a ResNet-20, about one for a ResNet50).
    """

    def __init__(
        self,
        filepath: Path,
        divergence: StopOnDivergence,
        same_as: AtomicCheckpoint | None = None,
        **kwargs: Any,
    ):
        super().__init__(str(filepath), **kwargs)
        self._divergence, self._same_as = divergence, same_as
        self.saved_epoch: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        if self._divergence.epoch is not None:
            return
        target = self.filepath
        tmp = temp_path_for(target)
        self.filepath = str(tmp)
        try:
            if self._same_as is not None and self._same_as.saved_epoch == epoch:
                shutil.copyfile(self._same_as.filepath, tmp)
            else:
                super().on_epoch_end(epoch, logs)
            if tmp.exists():
                commit(tmp, target)
                self.saved_epoch = epoch
        finally:
            self.filepath = target
            tmp.unlink(missing_ok=True)


class Backup(keras.callbacks.Callback):
    """Keras' BackupAndRestore files, written atomically (`keras_resnet.training.backup`),
    and nothing from an epoch that diverged: the last good epoch stays the backup.

    It only saves: `train` restores before `fit` and starts it at `initial_epoch`. The
    backup is not deleted at the end of `fit`: `train` removes it only after `run.json`
    records that training finished, so no kill in between can make a rerun start over.
    """

    def __init__(self, backup_dir: Path, divergence: StopOnDivergence):
        super().__init__()
        self.backup_dir, self._divergence = backup_dir, divergence

    def on_epoch_end(self, epoch, logs=None):
        if self._divergence.epoch is None:
            backup.save(self.model, self.backup_dir, epoch + 1)


class StopOnSignal(keras.callbacks.Callback):
    """Raises a SIGINT/SIGTERM noted during `fit` at the next batch or epoch boundary
    (`keras_resnet._signals.deferred`). Last in the list: an epoch's checkpoints and
    backup are written before it raises at the epoch's end."""

    def on_train_batch_end(self, batch, logs=None):
        raise_if_pending()

    def on_test_batch_end(self, batch, logs=None):
        raise_if_pending()

    def on_epoch_end(self, epoch, logs=None):
        raise_if_pending()


class History(keras.callbacks.Callback):
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
            int(r["epoch"]): {**r, "epoch": int(r["epoch"])} for r in read_history(self.path)
        }

    def on_epoch_end(self, epoch, logs=None):
        self.rows[epoch] = {"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}}
        columns = ["epoch", *sorted({k for r in self.rows.values() for k in r} - {"epoch"})]
        text = io.StringIO()
        writer = csv.DictWriter(text, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows[e] for e in sorted(self.rows))
        write_text_atomic(self.path, text.getvalue())
