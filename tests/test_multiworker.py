"""Multi-worker training (issue #18): real worker processes on 127.0.0.1, real signals.

One two-worker job of `keras-resnet train --strategy multiworker` (ResNet-20 at width 0.25
on the 8x8 digits, 3 epochs, global batch 64) in three phases. First, worker 1 is killed
with SIGKILL as soon as the chief's checkpoint of epoch 1 exists. TensorFlow cannot let a
restarted worker rejoin a running cluster: the chief's next collective op fails (the peer
reset the connection), it exits with one line, and every worker is started again with the
same command; the job resumes from the last finished epoch. Second, once that rerun has
finished epoch 2, worker 1 gets SIGTERM (a preemption notice): both workers save at the
same step of epoch 3 and exit with status 42. Third, the same command again finishes the
job from that step. Beside it, one process trains the same recipe with the same loop on
two replicas (MirroredStrategy over two logical CPUs), uninterrupted: the same arithmetic
as two workers, and, each epoch's batches being a function of the seed and the epoch, the
same batches, so the job's every epoch equals it. Both run in the background while the
one-replica runs of this file train in this process, sharing the cores.

Every subprocess has a timeout and is killed in a `finally`.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resnet.data import DataOptions, DatasetSplits, load_splits
from keras_resnet.spec import get_spec
from keras_resnet.training import multiworker, train
from keras_resnet.training.cluster import LOCAL, parse_tf_config
from tests.helpers import run_cli, run_until

pytestmark = pytest.mark.xdist_group("multiworker")

EPOCHS = 3
# No augmentation: its random layers run in a parallel tf.data map and draw from one seed
# state, so which batch gets which draw depends on thread timing; without it two runs of
# the same seed see the same batches, and the comparisons below can be exact.
RECIPE = dict(epochs=EPOCHS, image_size=8, batch_size=64, warmup_epochs=0, augment=False)
FLAGS = [
    "--model", "resnet20", "--width", "0.25", "--dataset", "digits", "--image-size", "8",
    "--batch-size", "64", "--warmup-epochs", "0", "--epochs", str(EPOCHS), "--no-augment",
]  # fmt: skip
SPEC = dataclasses.replace(get_spec("resnet20"), width=0.25)
STEPS_PER_EPOCH = 20  # 1,258 training images in batches of 64
PHASE_TIMEOUT = 420  # seconds for each phase of the job on two busy cores
# The custom loop against fit on one seed that takes what the plain recipe does and more:
# mixed_float16 (the LossScaleOptimizer fit compiles) and label smoothing (one-hot
# targets). The plain float32 loop is the job's, compared bit for bit with two replicas
# below. (Each seed here costs two runs, about 25 s of CPU; a plain seed 0 found nothing
# the others did not.)
SEEDS = {2: dict(mixed_precision="mixed_float16", label_smoothing=0.1)}
# Given the same batches, the custom loop and fit agree on every epoch to float16's
# rounding.
LOOP_VS_FIT_RTOL = {2: 1e-2}
LOOP_VS_FIT = 0.01  # test accuracy
# Two workers and one process with two replicas do the same sums in the same order, on the
# same batches (each epoch's order is a function of the seed and the epoch), so the job,
# killed and preempted, and the uninterrupted process agree on every epoch: their weights
# bit for bit, their scores to rounding (at a preemption the BN statistics are averaged
# before the save, and again at the epoch's end).
SAME_ARITHMETIC_RTOL = 1e-6
ONE_POINT = 0.01  # the bound on the test accuracy; the runs agree far closer
PREEMPTED = multiworker.PREEMPTED_EXIT_CODE


# --- the two-worker job, in the background ----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tf_config(ports: list[int], index: int) -> str:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


REFERENCE = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_resnet.spec import ResNetSpec
from keras_resnet.training import multiworker, train
from keras_resnet.training.cluster import LOCAL
multiworker.custom_loop_task = lambda strategy: LOCAL  # the loop, on this process's replicas
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
spec = ResNetSpec.from_dict(json.loads(sys.argv[1]))
train(spec, "digits", output_dir=sys.argv[2], strategy=strategy, verbose=2,
      **json.loads(sys.argv[3]))
"""


class Job:
    """`keras-resnet train --strategy multiworker` on two local workers: killed, preempted, done.

    Runs in a thread; `result()` waits for it (and raises what went wrong in it).
    """

    def __init__(self, root: Path):
        self.root, self.run = root, root / "run"
        self.ports = [_free_port(), _free_port()]
        self.processes: list[subprocess.Popen] = []
        self.logs: dict[str, str] = {}
        self.facts: dict = {}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()

    def _start(self, index: int, phase: str) -> subprocess.Popen:
        env = {
            **os.environ,
            "TF_CONFIG": _tf_config(self.ports, index),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "CUDA_VISIBLE_DEVICES": "",
        }
        cmd = [sys.executable, "-m", "keras_resnet.cli", "train", *FLAGS,
               "--output", str(self.run), "--strategy", "multiworker"]  # fmt: skip
        log = open(self.root / f"{phase}-worker{index}.log", "w")  # noqa: SIM115
        process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.processes.append(process)
        return process

    def _wait(self, process: subprocess.Popen, phase: str, index: int) -> int:
        code = process.wait(timeout=PHASE_TIMEOUT)
        self.logs[f"{phase}-worker{index}"] = (self.root / f"{phase}-worker{index}.log").read_text()
        return code

    def _reference(self) -> subprocess.Popen:
        """One process, the same loop on two replicas (logical CPUs: a fresh interpreter)."""
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
        cmd = [sys.executable, "-c", REFERENCE, SPEC.to_json(), str(self.root / "reference"),
               json.dumps(RECIPE)]  # fmt: skip
        log = open(self.root / "reference.log", "w")  # noqa: SIM115
        process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.processes.append(process)
        return process

    def _main(self) -> None:
        try:
            reference = self._reference()
            self._killed()
            if self.facts.get("checkpoint_seen"):
                self._preempted()
            if self.facts.get("preempted_exits") == (PREEMPTED, PREEMPTED):
                self.facts["third_exits"] = self._phase("third")
            self.facts["reference_exit"] = reference.wait(timeout=PHASE_TIMEOUT)
            self.logs["reference"] = (self.root / "reference.log").read_text()
        except BaseException as e:  # reported by result()
            self.error = e
        finally:
            self.stop()

    def _killed(self) -> None:
        """Worker 1 gets SIGKILL once the chief's checkpoint of epoch 1 exists."""
        chief, worker = self._start(0, "first"), self._start(1, "first")
        checkpoint = self.run / "backup" / multiworker.CHECKPOINTS / "checkpoint"
        seen = run_until(chief, checkpoint.exists, timeout=PHASE_TIMEOUT, poll=0.05)
        self.facts["checkpoint_seen"] = seen
        if not seen:
            return
        worker.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        self.facts["killed_exit"] = self._wait(worker, "first", 1)
        self.facts["history_at_kill"] = _history(self.run)
        self.facts["chief_exit"] = self._wait(chief, "first", 0)
        self.facts["chief_stopped_after"] = time.monotonic() - killed

    def _preempted(self) -> None:
        """The rerun: worker 1 gets SIGTERM once the chief has printed epoch 2 (its first)."""
        chief, worker = self._start(0, "second"), self._start(1, "second")
        log = self.root / "second-worker0.log"
        printed = lambda: re.search(r"^Epoch 2/", log.read_text(), re.M) is not None  # noqa: E731
        seen = run_until(chief, printed, timeout=PHASE_TIMEOUT, poll=0.02)
        self.facts["epoch_2_seen"] = seen
        if not seen:
            return
        worker.send_signal(signal.SIGTERM)
        self.facts["preempted_exits"] = (
            self._wait(chief, "second", 0),
            self._wait(worker, "second", 1),
        )
        self.facts["history_at_preemption"] = _history(self.run)
        latest = tf.train.latest_checkpoint(str(self.run / "backup" / multiworker.CHECKPOINTS))
        if latest:
            reader = tf.train.load_checkpoint(latest)
            self.facts["saved_at"] = tuple(
                int(reader.get_tensor(f"{name}/.ATTRIBUTES/VARIABLE_VALUE"))
                for name in ("epoch", "step")
            )

    def _phase(self, phase: str) -> tuple[int, int]:
        chief, worker = self._start(0, phase), self._start(1, phase)
        return self._wait(chief, phase, 0), self._wait(worker, phase, 1)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    def result(self) -> Job:
        self.thread.join(timeout=4 * PHASE_TIMEOUT)
        self.stop()
        if self.error is not None:
            raise self.error
        assert self.facts.get("checkpoint_seen") and self.facts.get("epoch_2_seen"), self.logs
        return self


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    started = Job(tmp_path_factory.mktemp("multiworker"))
    try:
        yield started
    finally:
        started.stop()


def _history(run: Path) -> list[dict[str, str]]:
    with contextlib.suppress(OSError), open(run / "history.csv") as f:
        return list(csv.DictReader(f))
    return []


def _digests(log: str) -> dict[int, str]:
    """Epoch -> the weights digest a worker printed at the end of it."""
    return {
        int(epoch): digest
        for epoch, digest in re.findall(r"^Epoch (\d+)/\d+ \[.*weights sha256 (\w+)$", log, re.M)
    }


def _keras_digest(path: Path) -> str:
    model = keras.saving.load_model(path)
    digest = hashlib.sha256()
    for weight in model.trainable_weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


# --- single-process runs, in this process -----------------------------------------------------


def _one_order(seed: int) -> DatasetSplits:
    """The recipe's digits splits of `seed`, with one train order for every epoch.

    `fit` reads a new pass of its pipeline each epoch and a spare one after it (Keras'
    EpochIterator), the loop each epoch's own (`train_for_epoch`): given one order, both
    train on the same batches, so any difference is the loops'.
    """
    data = DataOptions(image_size=RECIPE["image_size"], augment=False)
    splits = load_splits("digits", data, batch_size=RECIPE["batch_size"], seed=seed)
    once = splits.train_for_epoch(0)
    return dataclasses.replace(splits, train=once, train_for_epoch=lambda epoch: once)


def _train_here(tmp: Path, loop: str, seed: int, **overrides) -> tuple[dict, list[dict], Path]:
    """One run of the recipe in this process: `fit`, or the custom loop on one replica."""
    with pytest.MonkeyPatch.context() as patch:
        if loop == "custom":
            # The loop's dispatch, for the default strategy (one replica, no cluster).
            patch.setattr(multiworker, "custom_loop_task", lambda strategy: LOCAL)
        keras.utils.set_random_seed(seed)  # the initial weights, for fit (the loop sets it too)
        run = tmp / f"{loop}-{seed}"
        hyperparameters = {**RECIPE, "seed": seed, **overrides}
        metrics = train(SPEC, _one_order(seed), output_dir=run, verbose=0, **hyperparameters)
    return metrics, _history(run), run


@pytest.fixture(scope="module")
def local_runs(job, tmp_path_factory):
    """fit and the custom loop on one machine, each seed of SEEDS (while the job runs)."""
    tmp = tmp_path_factory.mktemp("local")
    return {
        (loop, seed): _train_here(tmp, loop, seed, **options)
        for seed, options in SEEDS.items()
        for loop in ("custom", "fit")
    }


@pytest.mark.slow
def test_the_custom_loop_on_one_machine_trains_as_fit_does(local_runs):
    """Same seed, same recipe, same batches: every epoch and the test accuracy equal to rounding."""
    for seed in SEEDS:
        custom, custom_rows, _ = local_runs["custom", seed]
        fit, fit_rows, _ = local_runs["fit", seed]
        assert len(custom_rows) == len(fit_rows) == EPOCHS
        for epoch, (row, expected) in enumerate(zip(custom_rows, fit_rows, strict=True)):
            for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
                assert float(row[key]) == pytest.approx(
                    float(expected[key]), rel=LOOP_VS_FIT_RTOL[seed]
                ), (seed, epoch, key)
        assert abs(custom["test_accuracy"] - fit["test_accuracy"]) <= LOOP_VS_FIT, seed
        assert custom["test_accuracy"] > 0.9 and fit["test_accuracy"] > 0.9, seed
        assert custom["params"] == fit["params"] == SPEC.count_params(channels=1, classes=10)
        assert custom["dtype_policy"] == fit["dtype_policy"]
    model = keras.saving.load_model(local_runs["custom", 2][2] / "best.keras")
    assert model.get_layer("conv1_conv").dtype_policy.name == "mixed_float16"
    assert model.layers[-1].dtype_policy.compute_dtype == "float32"


# --- the two-worker job -----------------------------------------------------------------------


@pytest.mark.slow
def test_a_killed_worker_stops_the_job_and_a_rerun_resumes_from_the_last_finished_epoch(job):
    job = job.result()
    facts, run = job.facts, job.run
    assert facts["killed_exit"] == -signal.SIGKILL
    # The chief notices at its next collective op and stops with one line (TF requires a
    # restart of every worker; a lone restarted worker cannot rejoin).
    assert facts["chief_exit"] == 1, job.logs["first-worker0"][-3000:]
    assert facts["chief_stopped_after"] < 120
    errors = [line for line in job.logs["first-worker0"].splitlines() if "another worker" in line]
    assert len(errors) == 1 and "rerun the same command on every worker" in errors[0]
    assert "Traceback" not in job.logs["first-worker0"]

    finished_before = len(facts["history_at_kill"])
    assert finished_before == 1  # killed once epoch 1's checkpoint existed, before epoch 2's
    # The rerun trained from epoch 2 on (until its preemption in epoch 3).
    assert sorted(_digests(job.logs["second-worker0"])) == [2]
    assert facts["history_at_preemption"][:finished_before] == facts["history_at_kill"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == EPOCHS

    # Nothing lost, nothing twice: one history row per epoch, the rows written before each
    # stop kept as they were, every file of a run and no leftovers (backup, worker dirs,
    # temporary files).
    rows = _history(run)
    assert [int(r["epoch"]) for r in rows] == list(range(EPOCHS))
    assert rows[:2] == facts["history_at_preemption"]
    names = {p.name for p in run.iterdir()}
    assert names == {
        ".keras_resnet.lock", "run.json", "metrics.json", "history.csv", "best.keras",
        "last.keras", "curves.png", "logs",
    }, names  # fmt: skip
    assert json.loads((run / "run.json").read_text())["fingerprint"]["loop"] == "multi-worker"
    steps = []
    for events in (run / "logs" / "train").glob("*tfevents*"):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            steps += [event.step for value in event.summary.value if value.tag == "epoch_loss"]
    assert sorted(steps) == list(range(EPOCHS))


@pytest.mark.slow
def test_sigterm_saves_every_worker_at_one_step_and_a_rerun_resumes_from_it(job):
    job = job.result()
    facts = job.facts
    chief, worker = job.logs["second-worker0"], job.logs["second-worker1"]
    assert facts["preempted_exits"] == (PREEMPTED, PREEMPTED), chief[-3000:] + worker[-3000:]
    lines = [
        [line for line in log.splitlines() if line.startswith("keras-resnet train: preempted")]
        for log in (chief, worker)
    ]
    assert all(len(found) == 1 for found in lines), lines
    assert "Traceback" not in chief + worker
    # Both saved after the same step of epoch 3, within it; the chief's checkpoint says so.
    (said,) = set(re.findall(r"in epoch (\d+) after step (\d+)", lines[0][0] + lines[1][0]))
    epoch, step = int(said[0]), int(said[1])
    assert epoch == 3 and 0 < step < STEPS_PER_EPOCH, said
    assert facts["saved_at"] == (epoch - 1, step)
    assert len(facts["history_at_preemption"]) == epoch - 1
    # The third run resumed there: it trained the rest of epoch 3 only, from that step.
    assert facts["third_exits"] == (0, 0), job.logs["third-worker0"][-3000:]
    for index in (0, 1):
        log = job.logs[f"third-worker{index}"]
        assert sorted(_digests(log)) == [3]
        assert f"resuming epoch 3 at step {step} of {STEPS_PER_EPOCH}" in log, log[-3000:]
    metrics = json.loads((job.run / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == epoch - 2


@pytest.mark.slow
def test_two_workers_hold_the_same_weights_and_compute_what_two_replicas_do(job):
    """Killed, preempted and rerun, the job equals the uninterrupted process on every epoch."""
    job = job.result()
    assert job.facts["reference_exit"] == 0, job.logs["reference"][-3000:]
    phases = ("first", "second", "third")
    chief = {k: v for p in phases for k, v in _digests(job.logs[f"{p}-worker0"]).items()}
    worker = {k: v for p in phases for k, v in _digests(job.logs[f"{p}-worker1"]).items()}
    assert sorted(chief) == list(range(1, EPOCHS + 1))
    assert chief == worker  # after every epoch, before and after each stop
    # Bit for bit the uninterrupted process's weights, every epoch: the same batches (each
    # epoch's order a function of the seed and the epoch), the same sums of two replicas.
    assert chief == _digests(job.logs["reference"])
    # The chief's last checkpoint holds exactly those weights.
    assert _keras_digest(job.run / "last.keras") == chief[EPOCHS]
    done = re.findall(r"done; weights sha256 (\w+)", job.logs["third-worker1"])
    assert done == [chief[EPOCHS]]
    reference = _history(job.root / "reference")
    rows = _history(job.run)
    assert len(reference) == len(rows) == EPOCHS
    for epoch, (row, expected) in enumerate(zip(rows, reference, strict=True)):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert float(row[key]) == pytest.approx(
                float(expected[key]), rel=SAME_ARITHMETIC_RTOL
            ), (epoch, key)
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < 0.6 * losses[0], losses


@pytest.mark.slow
def test_two_workers_reach_the_accuracy_of_one_process(job):
    job = job.result()
    two = json.loads((job.run / "metrics.json").read_text())
    one = json.loads((job.root / "reference" / "metrics.json").read_text())
    assert two["split_sizes"] == one["split_sizes"]
    assert abs(two["test_accuracy"] - one["test_accuracy"]) <= ONE_POINT, (
        two["test_accuracy"],
        one["test_accuracy"],
    )
    assert two["test_accuracy"] > 0.9


def test_an_epoch_s_batches_depend_on_the_seed_and_the_epoch_alone():
    """What lets a rerun read what the uninterrupted run would: epoch 3 of a fresh pipeline is
    epoch 3 of one that has read epochs 1 and 2 (the loop sets TF's global seed first)."""
    tf.random.set_seed(0)
    data = DataOptions(image_size=8, augment=False)

    def labels(splits: DatasetSplits, epoch: int) -> np.ndarray:
        return np.concatenate([y for _, y in splits.train_for_epoch(epoch).as_numpy_iterator()])

    read = load_splits("digits", data, seed=0)
    epochs = [labels(read, epoch) for epoch in range(3)]
    assert np.array_equal(labels(load_splits("digits", data, seed=0), 2), epochs[2])
    assert np.array_equal(labels(read, 2), epochs[2])  # read again: the same order
    assert not np.array_equal(epochs[0], epochs[1])
    assert sorted(epochs[0]) == sorted(epochs[1])  # the same examples, another order
    assert not np.array_equal(labels(load_splits("digits", data, seed=1), 2), epochs[2])


# --- TF_CONFIG ---------------------------------------------------------------------------------


def _held_port():
    s = socket.socket()
    s.bind(("", 0))
    s.listen()
    return s


@pytest.mark.parametrize(
    "tf_config, reason",
    [
        (None, "`TF_CONFIG` is not set"),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}', "is not valid JSON"),
        ('["worker"]', "must be a JSON object"),
        ('{"task": {"type": "worker", "index": 0}}', "has no `cluster`"),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "has no `task`"),
        (
            '{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, '
            '"task": {"type": "worker", "index": 2}}',
            "task index must be in [0, 2)",
        ),
        (
            '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "chief", "index": 0}}',
            "task type 'chief' is not in the cluster",
        ),
        (
            '{"cluster": {"worker": ["127.0.0.1:1"], "ps": ["127.0.0.1:2"]}, '
            '"task": {"type": "worker", "index": 0}}',
            "multi-worker training has only ['chief', 'worker'] tasks",
        ),
        (
            '{"cluster": {"worker": ["127.0.0.1"]}, "task": {"type": "worker", "index": 0}}',
            "is not 'host:port'",
        ),  # fmt: skip
        (
            '{"cluster": {"worker": ["127.0.0.1:7", "127.0.0.1:7"]}, '
            '"task": {"type": "worker", "index": 0}}',
            "lists '127.0.0.1:7' twice",
        ),
        (
            '{"cluster": {"worker": ["no-such-host.invalid:2222"]}, '
            '"task": {"type": "worker", "index": 0}}',
            "whose host does not resolve here",
        ),
        ("PORT_IN_USE", "is in use on this machine"),
    ],
)
def test_a_bad_tf_config_exits_2_with_one_line(tmp_path, capsys, monkeypatch, tf_config, reason):
    with contextlib.ExitStack() as stack:
        if tf_config == "PORT_IN_USE":
            port = stack.enter_context(_held_port()).getsockname()[1]
            tf_config = json.dumps(
                {
                    "cluster": {"worker": [f"127.0.0.1:{port}"]},
                    "task": {"type": "worker", "index": 0},
                }  # fmt: skip
            )
        if tf_config is None:
            monkeypatch.delenv("TF_CONFIG", raising=False)
        else:
            monkeypatch.setenv("TF_CONFIG", tf_config)
        argv = ["train", *FLAGS, "--output", str(tmp_path / "run"), "--strategy", "multiworker"]
        code, out, err = run_cli(capsys, *argv)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert reason in err and "Received: TF_CONFIG=" in err, err
    assert not (tmp_path / "run").exists()  # checked before anything was built or written


def test_a_good_tf_config_says_which_worker_this_is():
    config = {"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}}
    chief = parse_tf_config(json.dumps({**config, "task": {"type": "chief", "index": 0}}))
    second = parse_tf_config(json.dumps({**config, "task": {"type": "worker", "index": 1}}))
    assert chief.is_chief and chief.describe() == "chief: task chief 0 at a:1, worker 1 of 3"
    assert not second.is_chief
    assert second.describe() == "worker: task worker 1 at c:1, worker 3 of 3"
