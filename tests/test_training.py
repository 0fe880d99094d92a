"""Training on real data (the offline digits): run directory, resume after SIGKILL, labels."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_resnet.data import load_dataset
from keras_resnet.training import TrainConfig, train
from keras_resnet.training.config import count_steps_per_epoch as _steps_per_epoch
from keras_resnet.training.run_dir import plot_curves as _plot_curves
from keras_resnet.training.run_dir import read_history
from tests.helpers import DIGITS_SPEC, run_cli, run_until

FAST = dict(image_size=8, batch_size=64, verbose=0, warmup_epochs=0)


def _count_traces(monkeypatch, step: str) -> list:
    """Each trace of `keras.Model.<step>` (a tf.function runs the Python once per trace)."""
    traces, original = [], getattr(keras.Model, step)

    def counted(self, data):
        traces.append(step)
        return original(self, data)

    monkeypatch.setattr(keras.Model, step, counted)
    return traces


def test_tiny_spec_learns_digits(tmp_path, monkeypatch):
    train_traces = _count_traces(monkeypatch, "train_step")
    test_traces = _count_traces(monkeypatch, "test_step")
    metrics = train(DIGITS_SPEC, "digits", output_dir=tmp_path / "run", epochs=8, **FAST)
    # Traced once each (keras_resnet.training.tracing): fit's train and validation steps
    # (Keras alone traces the train step twice), and best.keras's test step only when the
    # best epoch was not the last (else the trained model itself is scored).
    losses = [row["val_loss"] for row in read_history(tmp_path / "run" / "history.csv")]
    last_is_best = losses.index(min(losses)) == len(losses) - 1
    assert (len(train_traces), len(test_traces)) == (1, 1 if last_is_best else 2)
    assert metrics["test_accuracy"] >= 0.90, metrics["test_accuracy"]
    assert metrics["epochs_run"] == 8 and metrics["resumed_from_epoch"] is None
    assert metrics["params"] == DIGITS_SPEC.count_params(channels=1, classes=10)
    assert metrics["split_sizes"] == {"train": 1258, "validation": 180, "test": 359}
    assert metrics["train_images_per_second"] > 0
    assert metrics["spec"] == DIGITS_SPEC.to_dict()
    run = tmp_path / "run"
    for name in (
        "best.keras",
        "last.keras",
        "history.csv",
        "curves.png",
        "metrics.json",
        "run.json",
    ):
        assert (run / name).stat().st_size > 0, name
    assert any((run / "logs").rglob("*tfevents*"))
    assert not (run / "backup").exists()  # removed once the run finished
    assert json.loads((run / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    # best.keras is a plain Keras file that reproduces the reported test accuracy.
    best = keras.saving.load_model(run / "best.keras", safe_mode=True)
    splits = load_dataset("digits", image_size=8, batch_size=64)
    _, acc = best.evaluate(splits.test, verbose=0)
    assert acc == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    # last.keras is the last epoch's state (a copy of best.keras's file when that epoch was
    # the best, written anew otherwise).
    last = keras.saving.load_model(run / "last.keras", safe_mode=True)
    assert int(last.optimizer.iterations) == 8 * _steps_per_epoch(splits, 64)
    same = all(np.array_equal(a, b) for a, b in zip(best.weights, last.weights, strict=True))
    assert same == last_is_best

    # Rerunning a finished run trains nothing and returns the same metrics.
    started = time.perf_counter()
    again = train(DIGITS_SPEC, "digits", output_dir=run, epochs=8, **FAST)
    assert again == json.loads(json.dumps(metrics))
    assert time.perf_counter() - started < 10

    # Another configuration in the same directory is refused, not mixed in.
    with pytest.raises(ValueError, match="differs in: epochs"):
        train(DIGITS_SPEC, "digits", output_dir=run, epochs=9, **FAST)


def test_one_hot_labels_and_label_smoothing(tmp_path):
    splits = load_dataset("digits", image_size=8, label_mode="categorical", batch_size=64)
    metrics = train(DIGITS_SPEC, splits, output_dir=tmp_path / "onehot", epochs=4, **FAST)
    assert metrics["test_accuracy"] > 0.6
    smooth = train(
        DIGITS_SPEC, "digits", output_dir=tmp_path / "smooth", epochs=4, label_smoothing=0.1, **FAST
    )
    assert smooth["test_accuracy"] > 0.6


@pytest.mark.parametrize("optimizer, schedule", [("adam", "step"), ("adamw", "constant")])
def test_optimizers_and_schedules(tmp_path, optimizer, schedule):
    metrics = train(
        DIGITS_SPEC, "digits", output_dir=tmp_path / "r", epochs=3, optimizer=optimizer,
        schedule=schedule, **FAST,
    )  # fmt: skip
    assert metrics["config"]["optimizer"] == optimizer
    assert metrics["test_accuracy"] > 0.5


def test_mixed_precision_keeps_float32_output(tmp_path):
    metrics = train(
        DIGITS_SPEC, "digits", output_dir=tmp_path / "mp", epochs=2,
        mixed_precision="mixed_bfloat16", **FAST,
    )  # fmt: skip
    model = keras.saving.load_model(tmp_path / "mp" / "best.keras")
    assert model.layers[-1].dtype_policy.compute_dtype == "float32"
    assert model.get_layer("conv1_conv").dtype_policy.name == "mixed_bfloat16"
    assert model.predict_on_batch(np.zeros((1, 8, 8, 1), "float32")).dtype == np.float32
    assert keras.config.dtype_policy().name == "float32"  # restored afterwards
    assert metrics["test_accuracy"] > 0.2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(epochs=0), "`epochs` must be a positive integer. Received: epochs=0"),
        (dict(batch_size=-1), "Received: batch_size=-1"),
        (dict(optimizer="rmsprop"), "Received: optimizer='rmsprop'"),
        (dict(schedule="linear"), "Received: schedule='linear'"),
        (dict(learning_rate=0.0), "Received: learning_rate=0.0"),
        (dict(label_smoothing=1.5), "Received: label_smoothing=1.5"),
        (dict(mixed_precision="float16"), "Received: mixed_precision='float16'"),
        (dict(warmup_epochs=-1), "Received: warmup_epochs=-1"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError) as e:
        TrainConfig(**kwargs)
    assert message in str(e.value)


def test_width_with_a_built_model_is_an_error(tmp_path):
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    with pytest.raises(ValueError, match="Received: width=0.5"):
        train(model, "digits", output_dir=tmp_path / "x", width=0.5)


def test_schedule_counts_the_batches_of_given_splits():
    # Splits batched by 32 given to a train() call left at batch_size=64: the schedule
    # must span 40 steps per epoch, not ceil(1258 / 64) = 20 (it would end halfway).
    splits = load_dataset("digits", image_size=8, batch_size=32)
    assert _steps_per_epoch(splits, batch_size=64) == 40


def test_curves_leave_the_matplotlib_backend_alone(tmp_path):
    """A notebook's inline backend must survive train() (its curves.png)."""
    import matplotlib

    previous = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        rows = [{"epoch": 0.0, "loss": 1.0, "val_loss": 1.2, "accuracy": 0.5, "val_accuracy": 0.4}]
        _plot_curves(rows, tmp_path / "curves.png")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(previous)
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")


def _history_rows(path):
    if not path.exists():
        return 0
    return max(0, len(path.read_text().strip().splitlines()) - 1)


def _train_cmd(run, *extra):
    return [
        sys.executable, "-m", "keras_resnet.cli", "train", "--spec", str(run.parent / "spec.json"),
        "--dataset", "digits", "--image-size", "8", "--output", str(run), "--warmup-epochs", "0",
        *extra,
    ]  # fmt: skip


ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _status(run) -> str | None:
    try:
        return json.loads((run / "run.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


@pytest.mark.slow
def test_a_stop_after_the_last_epoch_is_finished_without_retraining(tmp_path, capsys):
    """SIGKILL while evaluating, then a plot and a metrics.json that cannot be written:
    each rerun (in this process, after the killed one) picks up after training and never
    trains again."""
    (tmp_path / "spec.json").write_text(json.dumps(DIGITS_SPEC.to_dict()))
    run = tmp_path / "run"
    cmd = _train_cmd(run, "--epochs", "2")
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert run_until(proc, lambda: _status(run) == "trained", timeout=240, poll=0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "metrics.json").exists(), "the kill came too late to test anything"
    trained = {name: (run / name).read_bytes() for name in ("best.keras", "history.csv")}

    for blocker in ("curves.png", "metrics.json"):  # a directory where the file must go
        (run / blocker).mkdir()
        code, _, err = run_cli(capsys, *cmd[3:])
        error = "keras-resnet train: error: training failed: Is a directory:"
        assert code == 1 and err.strip() == f"{error} {run / blocker}", err
        (run / blocker).rmdir()

    code, out, err = run_cli(capsys, *cmd[3:])
    assert code == 0, err[-2000:]
    assert "training finished earlier" in out and "Epoch" not in out
    assert {name: (run / name).read_bytes() for name in trained} == trained
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["test_accuracy"] > 0.5


def _strict_json(path):
    def refuse(constant):
        raise AssertionError(f"{path} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_a_diverging_run_stops_at_once_and_keeps_its_last_good_epoch(tmp_path, capsys):
    (tmp_path / "spec.json").write_text(json.dumps(DIGITS_SPEC.to_dict()))
    run = tmp_path / "run"
    # Decoupled weight decay of lr * wd = 2.97 a step flips the kernels and doubles them.
    argv = _train_cmd(run, "--epochs", "8", "--lr", "9.9", "--weight-decay", "0.3")[3:]
    code, _, err = run_cli(capsys, *argv)
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "training diverged" in err, err
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    # Stopped in the first epoch whose loss or weights went non-finite; the ones before were fine.
    assert 1 < len(rows) < 8 and f"diverged in epoch {len(rows)} " in err, err
    assert all(math.isfinite(float(r["loss"])) for r in rows[:-1])
    assert not (run / "metrics.json").exists()
    for name in ("best.keras", "last.keras"):
        weights = keras.saving.load_model(run / name).get_weights()
        assert all(np.isfinite(w).all() for w in weights), name
    assert _strict_json(run / "run.json")["status"] == "training"


def test_a_full_disk_is_one_line(tmp_path, capsys):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)])
    if mounted.returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        (disk / "spec.json").write_text(json.dumps(DIGITS_SPEC.to_dict()))
        code, _, err = run_cli(capsys, *_train_cmd(disk / "run", "--epochs", "1")[3:])
    finally:
        subprocess.run(["umount", "-l", str(disk)])
    assert code == 1, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "training failed: No space left on device" in err
