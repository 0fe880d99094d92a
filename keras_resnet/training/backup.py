"""The run's backup: Keras' BackupAndRestore files, written so that no kill can spoil them.

The files are Keras' own (`latest.weights.h5` and `training_metadata.json`,
the previous pair as `*.bkp`), but Keras writes them in place: a Ctrl-C or a
kill during `save_weights` left a torn `latest.weights.h5` that its restore
fails on with a ValueError it does not catch, and the run could not go on.
Keras' callback cannot be made atomic from outside (it writes through
`model.save_weights` to a fixed path), so `Backup` owns the writes:

- each file goes through a temporary file, fsync and a rename (`keras_resnet._io`);
- the metadata, written last, records the SHA-256 of the weights it belongs to,
  so a kill between the two renames leaves a pair that is seen to disagree;
- the previous pair is copied (atomically, weights first) before the new one
  is written, so at every instant one of the two pairs is whole.

`restore` tries the newest pair, then the previous one; a pair that does not
load is set aside (renamed into `backup-set-aside/`, never deleted) with one
line saying so, and the run goes on from the newest one that loads, or from
`last.keras`, or from the first epoch with a line saying what was lost.
Restoring happens before `fit`, which then starts at `initial_epoch` (public
API, instead of BackupAndRestore's private `_initial_epoch`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import keras

from keras_resnet._io import atomic_path, commit, remove_temp_files, temp_path_for, write_json
from keras_resnet.training.run_dir import HISTORY, read_history

WEIGHTS, METADATA = "latest.weights.h5", "training_metadata.json"
PREVIOUS = ".bkp"  # Keras' suffix for the previous pair (double_checkpoint)
FILES = (WEIGHTS, METADATA, WEIGHTS + PREVIOUS, METADATA + PREVIOUS)  # what `save` writes
SET_ASIDE = "backup-set-aside"  # beside backup/, which train removes when it is done
_MAX_METADATA_BYTES = 64 * 1024


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy_atomic(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def save(model: keras.Model, backup_dir: Path, epoch: int) -> None:
    """Backs up `model` (weights and optimizer) as having finished `epoch` epochs."""
    backup_dir.mkdir(parents=True, exist_ok=True)
    weights, metadata = backup_dir / WEIGHTS, backup_dir / METADATA
    if weights.exists() and metadata.exists():
        # Weights first: a kill between the two copies leaves a previous pair whose
        # hash disagrees (set aside on restore) beside a current pair that is whole.
        _copy_atomic(weights, backup_dir / (WEIGHTS + PREVIOUS))
        _copy_atomic(metadata, backup_dir / (METADATA + PREVIOUS))
    tmp = temp_path_for(weights)
    try:
        model.save_weights(tmp)
        digest = _sha256(tmp)
        commit(tmp, weights)
    finally:
        tmp.unlink(missing_ok=True)
    write_json(metadata, {"epoch": epoch, "batch": 0, "weights_sha256": digest}, indent=None)


def _read_metadata(path: Path) -> dict[str, Any]:
    """The metadata of one pair; ValueError (the reason) when it cannot be trusted."""
    if path.stat().st_size > _MAX_METADATA_BYTES:
        raise ValueError(f"{path.name} is over {_MAX_METADATA_BYTES} bytes")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path.name} is not JSON ({type(e).__name__})") from None
    epoch = data.get("epoch") if isinstance(data, dict) else None
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ValueError(f"{path.name} has no epoch")
    return data


def _load_pair(model: keras.Model, weights: Path, metadata: Path) -> int:
    """Loads one pair into `model`; its epoch. ValueError (the reason) if it is not whole."""
    if not weights.exists():
        raise ValueError(f"{weights.name} is missing")
    data = _read_metadata(metadata)
    # Pairs written before the hash was recorded (Keras' own) are trusted if they load.
    if "weights_sha256" in data and data["weights_sha256"] != _sha256(weights):
        raise ValueError(f"{weights.name} is not the file {metadata.name} was written for")
    # Keras loads only names ending in .weights.h5; its own fallback copies the .bkp too.
    readable = (
        weights
        if weights.name.endswith(".weights.h5")
        else temp_path_for(weights.with_name(WEIGHTS))
    )
    try:
        if readable != weights:
            shutil.copyfile(weights, readable)
        model.load_weights(readable)
    except Exception as e:  # h5py and Keras raise many kinds for a torn file
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{weights.name} does not load ({reason[:200]})") from None
    finally:
        if readable != weights:
            readable.unlink(missing_ok=True)
    return data["epoch"]


def _set_aside(paths: list[Path], run_dir: Path) -> Path:
    """Moves `paths` (those that exist) into `run_dir/backup-set-aside/<time>/`."""
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S%f")
    target = run_dir / SET_ASIDE / stamp
    target.mkdir(parents=True, exist_ok=True)
    for path in paths:
        if path.exists():
            os.replace(path, target / path.name)
    return target


def _state(model: keras.Model) -> list:
    variables = list(model.weights)
    if model.optimizer is not None:
        variables += list(model.optimizer.variables)
    return variables


def restore(model: keras.Model, run_dir: Path, last: Path, steps_per_epoch: int) -> int | None:
    """Loads the newest backup that is whole into `model` (built and compiled); the number
    of epochs it had finished, or None when there was no backup to resume from.

    A pair that does not load is set aside with a line saying why. When none loads,
    `last` (last.keras: weights and optimizer of the last finished epoch) is tried,
    its epoch read from the optimizer's step count; failing that the run restarts
    from the first epoch, and the line says how many finished epochs are lost.
    """
    backup_dir = run_dir / "backup"
    pairs = [
        (backup_dir / (WEIGHTS + suffix), backup_dir / (METADATA + suffix))
        for suffix in ("", PREVIOUS)
    ]
    pairs = [(w, m) for w, m in pairs if w.exists() or m.exists()]
    if not pairs:
        return None
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    initial = [v.numpy() for v in _state(model)]
    for weights, metadata in pairs:
        try:
            return _load_pair(model, weights, metadata)
        except (OSError, ValueError) as e:
            _reset(model, initial)  # a load that failed half-way leaves no weights behind
            where = _set_aside([weights, metadata], run_dir)
            print(f"{run_dir}: the backup {e}; set aside in {where}.")
    if last.exists():
        try:
            model.load_weights(last)
            epoch = int(model.optimizer.iterations.numpy()) // steps_per_epoch
        except Exception as e:  # a torn archive fails in zipfile, h5py or Keras
            _reset(model, initial)
            print(f"{run_dir}: {last.name} does not load either ({type(e).__name__}).")
        else:
            print(f"{run_dir}: resuming from {last.name} (after epoch {epoch}).")
            return epoch
    lost = len(read_history(run_dir / HISTORY))
    print(
        f"{run_dir}: no backup loads; training starts again from the first epoch "
        f"({lost} finished epoch(s) are trained again)."
    )
    return 0


def _reset(model: keras.Model, values: list) -> None:
    for variable, value in zip(_state(model), values, strict=True):
        variable.assign(value)


def remove(backup_dir: Path) -> None:
    """The backup once training is done: the files `save` writes and their temporary
    files, nothing else (a file we did not write stays, and with it `backup_dir`)."""
    for name in FILES:
        (backup_dir / name).unlink(missing_ok=True)
        remove_temp_files(backup_dir / name)
