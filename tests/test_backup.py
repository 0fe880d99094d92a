"""The run's backup (keras_resnet.training.backup): every state a kill can leave resumes."""

import json

import keras
import numpy as np
import pytest

from keras_resnet.training import backup

X = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
Y = (X.sum(axis=1) > 0).astype("int32")


def _model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(2)])
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy"
    )
    return model


def _train(model, epochs=1):
    model.fit(X, Y, batch_size=8, epochs=epochs, verbose=0)  # 2 steps an epoch
    return [w.copy() for w in model.get_weights()]


def _same(model, weights) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights, strict=True))


@pytest.fixture
def run(tmp_path):
    """A run directory whose backup holds epoch 2 (current) and epoch 1 (previous)."""
    model = _model()
    after = [_train(model)]
    backup.save(model, tmp_path / "backup", 1)
    after.append(_train(model))
    backup.save(model, tmp_path / "backup", 2)
    return tmp_path, after


def test_the_files_are_keras_own_and_hold_the_pair_hash(run):
    run_dir, _ = run
    names = sorted(p.name for p in (run_dir / "backup").iterdir())
    assert names == [
        "latest.weights.h5", "latest.weights.h5.bkp",
        "training_metadata.json", "training_metadata.json.bkp",
    ]  # fmt: skip
    meta = json.loads((run_dir / "backup" / "training_metadata.json").read_text())
    assert meta["epoch"] == 2 and meta["batch"] == 0 and len(meta["weights_sha256"]) == 64
    # Keras' own BackupAndRestore resumes from them: epoch 3 of 3 is all that is left.
    model = _model(seed=1)
    restore = keras.callbacks.BackupAndRestore(str(run_dir / "backup"), delete_checkpoint=False)
    history = model.fit(X, Y, batch_size=8, epochs=3, callbacks=[restore], verbose=0)
    assert len(history.history["loss"]) == 1


def test_a_whole_backup_restores_weights_optimizer_and_epoch(run):
    run_dir, after = run
    model = _model(seed=1)
    assert backup.restore(model, run_dir, run_dir / "last.keras", steps_per_epoch=2) == 2
    assert _same(model, after[1]) and int(model.optimizer.iterations) == 4


def test_a_torn_weights_file_falls_back_to_the_previous_pair(run, capsys):
    """What a Ctrl-C during Keras' in-place save_weights left (issue #26)."""
    run_dir, after = run
    latest = run_dir / "backup" / "latest.weights.h5"
    torn = latest.read_bytes()[: latest.stat().st_size // 2]
    latest.write_bytes(torn)
    model = _model(seed=1)
    assert backup.restore(model, run_dir, run_dir / "last.keras", steps_per_epoch=2) == 1
    assert _same(model, after[0])
    out = capsys.readouterr().out
    assert "latest.weights.h5 is not the file training_metadata.json was written for" in out
    kept = list((run_dir / "backup-set-aside").rglob("latest.weights.h5"))
    assert [p.read_bytes() for p in kept] == [torn] and not latest.exists()


def test_weights_newer_than_their_metadata_are_not_trusted(run):
    """A kill between the weights' rename and the metadata's: the pair disagrees."""
    run_dir, after = run
    model = _model(seed=2)
    _train(model)
    model.save_weights(run_dir / "backup" / "latest.weights.h5")  # epoch-3 weights, epoch-2 meta
    fresh = _model(seed=1)
    assert backup.restore(fresh, run_dir, run_dir / "last.keras", steps_per_epoch=2) == 1
    assert _same(fresh, after[0])


def test_nothing_loads_then_last_keras_then_the_first_epoch(run, capsys):
    run_dir, after = run
    for path in (run_dir / "backup").iterdir():
        path.write_bytes(b"\x89HDF\r\n")  # damaged by something else than us
    model = _model()
    _train(model, epochs=3)
    model.save(run_dir / "last.keras")
    fresh = _model(seed=1)
    assert backup.restore(fresh, run_dir, run_dir / "last.keras", steps_per_epoch=2) == 3
    assert _same(fresh, model.get_weights())
    assert "resuming from last.keras (after epoch 3)" in capsys.readouterr().out

    (run_dir / "last.keras").write_bytes(b"PK")
    backup.save(model, run_dir / "backup", 3)
    (run_dir / "backup" / "training_metadata.json").write_text("{")
    initial = _model(seed=1)
    start = [w.copy() for w in initial.get_weights()]
    assert backup.restore(initial, run_dir, run_dir / "last.keras", steps_per_epoch=2) == 0
    assert _same(initial, start)  # no half-loaded weights left behind
    out = capsys.readouterr().out
    assert "training_metadata.json is not JSON" in out and "starts again from the first" in out
    assert len(list((run_dir / "backup-set-aside").iterdir())) == 3  # never deleted


def test_no_backup_is_none(tmp_path):
    assert backup.restore(_model(), tmp_path, tmp_path / "last.keras", steps_per_epoch=2) is None


def test_removing_the_backup_removes_only_what_train_wrote(tmp_path):
    """Once training is done the backup goes, but a file we did not write stays."""
    from keras_resnet.training import multiworker

    backup_dir = tmp_path / "backup"
    backup.save(_model(), backup_dir, 1)
    backup.save(_model(), backup_dir, 2)  # and the previous pair, .bkp
    checkpoints = backup_dir / multiworker.CHECKPOINTS
    (checkpoints / "ckpt-3_temp").mkdir(parents=True)
    for name in ("checkpoint", "ckpt-3.index", "ckpt-3.data-00000-of-00001", "notes.txt"):
        (checkpoints / name).write_text("x")
    (checkpoints / "ckpt-3_temp" / "part-00000-of-00001.index").write_text("x")
    (backup_dir / "mine.txt").write_text("kept")
    backup.remove(backup_dir)
    multiworker.remove_checkpoints(checkpoints)
    multiworker.remove_empty_dirs(backup_dir)
    assert sorted(p.relative_to(backup_dir).as_posix() for p in backup_dir.rglob("*")) == [
        "checkpoints", "checkpoints/notes.txt", "mine.txt"
    ]  # fmt: skip
