"""Issue #26: a real `keras-resnet train` interrupted at any instant, inside its writes too,
resumes whole.

A few of `benchmarks.interrupts`' instants; that script runs the full twenty (and tune's),
and its results file is the issue's evidence.
"""

import json
import os
import select
import signal
import subprocess
import time

import keras
import pytest

from benchmarks.interrupts import (
    ENV,
    Instant,
    check_interrupted,
    check_train_run,
    interrupt,
    train_command,
)
from keras_resnet.training.run_dir import read_history
from tests.helpers import DIGITS_SPEC, run_cli, run_until


@pytest.mark.slow
def test_signals_at_any_instant_leave_a_run_the_same_command_finishes(tmp_path, capsys):
    """While it trains, a second process on the directory is refused; Ctrl-C twice ends it
    at once (130); SIGINT inside a backup write lets the write finish, then stops (130);
    SIGKILL inside a checkpoint write leaves a temporary file and a stale lock. With a
    best.keras damaged by something else besides, the rerun takes the lock over, discards
    the damage, resumes, and ends with every epoch in the history exactly once."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(DIGITS_SPEC.to_dict()))
    run, epochs = tmp_path / "run", 10
    cmd = train_command(run, spec, epochs)
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    at_two = run_until(proc, lambda: len(read_history(run / "history.csv")) >= 2, timeout=240)
    assert at_two, proc.stderr.read().decode()[-2000:]
    code, _, err = run_cli(capsys, *cmd[3:])  # a second process on the same directory
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "is in use by another process" in err and f"pid {proc.pid}" in err, err
    os.kill(proc.pid, signal.SIGINT)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and len(err.decode().strip().splitlines()) == 1, err

    instants = [Instant(("SIGINT",), "backup", 0), Instant(("SIGKILL",), "checkpoint", 0)]
    results = [interrupt(cmd, run, instant, timeout=240) for instant in instants]
    assert [r["sent"] for r in results] == [["SIGINT"], ["SIGKILL"]], results
    assert all(r["temp_files_open"] for r in results), f"an instant missed its write: {results}"
    assert [check_interrupted(r) for r in results] == [None, None], results
    assert results[0]["returncode"] == 130 and results[0]["stderr_lines"] == 1, results
    assert list(run.glob(".*.keras")), "SIGKILL mid-write leaves its temporary file"
    assert json.loads((run / ".keras_resnet.lock").read_text())["pid"]  # stale
    best = run / "best.keras"
    best.write_bytes(best.read_bytes()[:100])  # damaged by something else than us

    code, out, err = run_cli(capsys, *cmd[3:])  # the rerun (in this process)
    assert code == 0, err[-2000:]
    assert check_train_run(run, epochs) is None
    assert "resumed from" in out and "discarded damaged best.keras" in out
    assert not list(run.glob(".*.keras")) and not (run / "backup").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.85
    assert keras.saving.load_model(best).count_params() == metrics["params"]


def test_check_interrupted_reads_the_exit_codes():
    base = {"sent": ["SIGINT"], "returncode": 130, "stderr_last_line": "x: interrupted; rerun"}
    base["stderr_lines"] = 1
    assert check_interrupted(base) is None
    assert "exit -2" in check_interrupted({**base, "returncode": -2})
    assert check_interrupted({**base, "sent": ["SIGTERM"], "returncode": 143}) is None
    assert "SIGTERM gave exit 130" in check_interrupted({**base, "sent": ["SIGTERM"]})
    assert "lines: 3" in check_interrupted({**base, "stderr_lines": 3})
    assert check_interrupted({**base, "sent": ["SIGKILL"], "returncode": -9}) is None
    assert check_interrupted({**base, "sent": [], "returncode": 1}) == "exited 1 unsignalled"
    # A worker of a job: SIGTERM saves at the step (42) once the loop runs, else 143.
    term = {**base, "sent": ["SIGTERM"]}
    assert check_interrupted({**term, "returncode": 42}, sigterm_code=42) is None
    assert check_interrupted({**term, "returncode": 143}, sigterm_code=42) is None
    assert "SIGTERM gave exit 130" in check_interrupted({**term, "returncode": 130}, 42)
    stuck = {**base, "rejoined": {"progressed": False, "returncodes": [-9, -9]}}
    assert "did not go on" in check_interrupted(stuck)


def _output_until(proc: subprocess.Popen, text: bytes, timeout: float) -> bytes:
    """What `proc` wrote to stdout until `text` appeared in it, or `timeout` passed."""
    out, deadline = b"", time.monotonic() + timeout
    while text not in out and time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 0.5)[0]:
            out += os.read(proc.stdout.fileno(), 4096)
    return out


def test_a_worker_waiting_for_its_chief_answers_sigterm(tmp_path):
    """A non-chief worker whose chief never came (or was killed before it joined) waits, says
    for what, and SIGTERM (or Ctrl-C) there ends it with one line; before, TensorFlow waited
    in C++ holding the GIL and no signal was answered. Nothing of the run is written."""
    from benchmarks.interrupts import multiworker_commands

    run = tmp_path / "run"
    cmd, env = multiworker_commands(run, epochs=1)[1]  # worker 1; worker 0 never starts
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out = _output_until(proc, b"waiting for the chief at 127.0.0.1:", timeout=120)
        assert b"waiting for the chief" in out, out
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1].decode()
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert err.splitlines() == [
        "keras-resnet train: error: interrupted; rerun the same command to resume."
    ]
    assert not run.exists()
