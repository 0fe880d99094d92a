"""Issue #26's stress test: kill a real `keras-resnet` process at seeded instants, rerun each time.

    python -m benchmarks.interrupts [--command train tune] [--instants 20] [--seed 0]
                                    [--output PATH]

Each instant is drawn from one seeded generator: half with SIGKILL, half with SIGINT
(every fourth of those a SIGTERM; every other one sent twice, 50 ms apart, as Ctrl-C
pressed again); half land at a time drawn over the run's length, half inside a write,
found by polling the run directory for the temporary file of a checkpoint, the backup
or another output (`keras_resnet._io` writes every file through `.NAME.<random>` beside
it) and signalling the moment it appears. After each kill the same command is started
again (and may be killed at the next instant); the last run must finish with exit 0 and
leave a whole result: for `train`, `epochs_run` equal to the epochs asked and a history
holding every epoch once; for `tune`, a summary.json over the trials asked. SIGINT must
answer with exit 130 and one line, SIGTERM with 143, SIGKILL with -9. The results file
lists every instant: what was signalled, whether a temporary file was open at that
moment, the exit code and the last line.

`tests/test_interrupts.py` runs a few instants of the same code in CI; this script runs
the full set and writes `benchmarks/results/interrupts-<date>.json`.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path("benchmarks/results")
# Temporary files of the writes worth landing in (see keras_resnet._io.temp_path_for), by
# command; "any" is every temporary file of ours.
ANY = re.compile(r"^\.[^.].*\.[A-Za-z0-9_]{6,}")
WRITES = {
    "train": {
        "backup": re.compile(r"^\.(latest\.weights\.h5|training_metadata\.json)\."),
        "checkpoint": re.compile(r"^\.(best|last)\.keras\."),
        "any": ANY,
    },
    "tune": {
        "oracle": re.compile(r"^\.oracle\.json\."),
        "trial": re.compile(r"^\.trial\.json\."),
        "any": ANY,
    },
    "multiworker": {
        "tf-checkpoint": re.compile(r".*_temp"),  # TensorFlow's shards before their rename
        "checkpoint": re.compile(r"^\.(best|last)\.keras\."),
        "any": ANY,
    },
}
PREEMPTED = 42  # keras_resnet.training.multiworker.PREEMPTED_EXIT_CODE: SIGTERM on a worker
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}
# Seconds a multi-worker job's peers get to stop after one worker ended (heartbeats notice
# a lost peer within about 10 s) before the ended worker is run again to rejoin.
REJOIN_AFTER = 45.0
REJOIN_TIMEOUT = 300.0  # seconds for a rejoined job to finish one more epoch
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


@dataclasses.dataclass(frozen=True)
class Instant:
    signals: tuple[str, ...]  # ("SIGKILL",), ("SIGINT",) or ("SIGINT", "SIGINT")
    write: str | None  # a WRITES key: signal when such a temporary file appears
    seconds: float  # else: this long after the process started
    target: int = 0  # the process signalled (of a multi-worker job's)


def draw_instants(
    count: int, seed: int, span: tuple[float, float], writes: list[str], processes: int = 1
) -> list[Instant]:
    """`count` instants, shuffled: SIGKILL, SIGINT, SIGKILL, SIGINT twice, in turn, every
    fourth SIGINT a SIGTERM; the first four of every eight inside a write (of the kinds
    `writes`, in turn), the others at a time uniform over `span` seconds after the start;
    each signals one of `processes`, drawn."""
    import numpy as np

    rng = np.random.default_rng(seed)
    kinds = [("SIGKILL",), ("SIGINT",), ("SIGKILL",), ("SIGINT", "SIGINT")] * 3
    kinds += [("SIGKILL",), ("SIGTERM",), ("SIGKILL",), ("SIGTERM", "SIGTERM")]
    instants = [
        Instant(
            signals=kinds[i % 16],
            write=writes[(i // 2) % len(writes)] if i % 8 < 4 else None,
            seconds=round(float(rng.uniform(*span)), 2),
            target=int(rng.integers(processes)),
        )
        for i in range(count)
    ]
    return [instants[i] for i in rng.permutation(count)]


def _temp_files(run_dir: Path, pattern: re.Pattern) -> list[str]:
    """Names matching `pattern` anywhere under `run_dir` (a few dozen directories)."""
    return [
        name for _, dirs, files in os.walk(run_dir) for name in dirs + files if pattern.match(name)
    ]


def _epochs_done(run_dir: Path) -> int:
    try:
        return len(history_epochs(run_dir / "history.csv"))
    except OSError:
        return 0


def _rejoin(group: list, procs: list, target: int, run_dir: Path) -> dict[str, Any] | None:
    """A worker killed before it joined its cluster leaves the others waiting for it, as
    for one not yet started. If a peer still runs REJOIN_AFTER seconds after the target
    ended, the target's same command is run again (what its user does) and must let the
    job go on: it has once the job has finished one more epoch (or the whole run). The
    harness then SIGKILLs the job's processes (a kill at any instant is safe), so the
    next instant still finds work to interrupt."""
    try:
        procs[target].wait(timeout=REJOIN_AFTER)
    except subprocess.TimeoutExpired:
        return None  # the target itself did not stop: reported as it is
    deadline = time.monotonic() + REJOIN_AFTER
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.2)
    if all(p.poll() is not None for p in procs):
        return None
    before = _epochs_done(run_dir)
    cmd, env = group[target]
    again = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    job = [again, *(p for i, p in enumerate(procs) if i != target)]
    deadline = time.monotonic() + REJOIN_TIMEOUT
    while time.monotonic() < deadline and _epochs_done(run_dir) <= before:
        if all(p.poll() is not None for p in job):
            break
        time.sleep(0.2)
    progressed = _epochs_done(run_dir) > before
    for p in job:
        if p.poll() is None:
            p.kill()
    codes = [p.wait() for p in job]
    return {"progressed": progressed, "returncodes": codes}


def interrupt(
    cmd: list[str] | list[tuple[list[str], dict]],
    run_dir: Path,
    instant: Instant,
    timeout: float,
    writes: dict[str, re.Pattern] = WRITES["train"],
) -> dict[str, Any]:
    """Starts `cmd` (or several (cmd, env) processes: a multi-worker job), signals process
    `target` at `instant` (its write one of `writes`), waits for all; what happened."""
    group = [(cmd, ENV)] if isinstance(cmd[0], str) else cmd
    start = time.monotonic()
    procs = [
        subprocess.Popen(c, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for c, e in group
    ]
    target = instant.target
    proc = procs[target]
    pattern = writes[instant.write] if instant.write else None
    stale = set(_temp_files(run_dir, ANY))  # left by a kill before: not a write
    in_write: list[str] = []
    while proc.poll() is None and time.monotonic() - start < timeout:
        if pattern is not None:
            in_write = sorted(set(_temp_files(run_dir, pattern)) - stale)
            if in_write:
                break
        elif time.monotonic() - start >= instant.seconds:
            in_write = sorted(set(_temp_files(run_dir, ANY)) - stale)
            break
        time.sleep(0.001 if pattern is not None else 0.01)
    sent = []
    if proc.poll() is None:
        for i, name in enumerate(instant.signals):
            if i:
                time.sleep(0.05)
            if proc.poll() is None:
                proc.send_signal(getattr(signal, name))
                sent.append(name)
    rejoined = _rejoin(group, procs, target, run_dir) if sent and len(procs) > 1 else None
    errs = []
    for p in procs:
        try:
            errs.append(p.communicate(timeout=timeout)[1])
        except subprocess.TimeoutExpired:
            p.kill()
            errs.append(p.communicate()[1] + "\n(hung: killed by the harness)")
    lines = [[line for line in err.splitlines() if line.strip()] for err in errs]
    return {
        "signals": list(instant.signals),
        "sent": sent,
        "write": instant.write,
        "target": target,
        "seconds": round(time.monotonic() - start, 2),
        "temp_files_open": in_write,
        "returncode": proc.returncode,
        "stderr_last_line": lines[target][-1] if lines[target] else "",
        "traceback": any(line.startswith("Traceback") for line in lines[target]),
        "stderr_lines": len(lines[target]),
        "rejoined": rejoined,
        "peers": [
            {
                "returncode": p.returncode,
                "stderr_last_line": (ls or [""])[-1],
                "stderr_lines": len(ls),
                "traceback": any(line.startswith("Traceback") for line in ls),
            }
            for i, (p, ls) in enumerate(zip(procs, lines, strict=True))
            if i != target
        ],
    }


def check_interrupted(result: dict[str, Any], sigterm_code: int = 143) -> str | None:
    """What is wrong with how one signalled process (and its peers) ended, or None."""
    rejoined = result.get("rejoined")
    if rejoined is not None and not rejoined["progressed"]:
        return f"the job did not go on once its stopped worker was run again: {rejoined}"
    for peer in result.get("peers", []):
        if "hung" in peer["stderr_last_line"]:
            return f"a peer of the signalled process hung: {peer}"
        if peer["traceback"]:
            return f"a peer of the signalled process printed a traceback: {peer}"
    if not result["sent"]:
        return None if result["returncode"] == 0 else f"exited {result['returncode']} unsignalled"
    if result["sent"][-1] == "SIGKILL":
        return None if result["returncode"] == -signal.SIGKILL else "SIGKILL not -9"
    if result["returncode"] == 0:
        return None  # the signal came as it finished: nothing left to interrupt
    name = result["sent"][-1]
    # A worker of a job answers SIGTERM by saving at the step (PREEMPTED) once its loop
    # runs; before that (joining the cluster, loading the data) like any command, 143.
    expected = {EXIT_CODES[name], sigterm_code} if name == "SIGTERM" else {EXIT_CODES[name]}
    if result["returncode"] not in expected:
        return f"{name} gave exit {result['returncode']}: {result['stderr_last_line']}"
    if name == "SIGTERM" and result["returncode"] == PREEMPTED:
        return None  # saved at the step and said so (multiworker's own message)
    if "interrupted" not in result["stderr_last_line"] or result["stderr_lines"] != 1:
        return f"{name}'s lines: {result['stderr_lines']}, last {result['stderr_last_line']!r}"
    return None


def history_epochs(path: Path) -> list[int]:
    """The epoch column of history.csv as written, repeats included."""
    with open(path, newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def check_train_run(run_dir: Path, epochs: int) -> str | None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if metrics["epochs_run"] != epochs:
        return f"epochs_run {metrics['epochs_run']} != {epochs}"
    seen = history_epochs(run_dir / "history.csv")
    if seen != list(range(epochs)):
        return f"history epochs {seen}"
    return None


def check_tune_run(run_dir: Path, trials: int) -> str | None:
    counts = json.loads((run_dir / "summary.json").read_text())["trials"]  # status -> count
    done = sum(counts.values())
    return None if done == trials else f"summary.json counts {counts}, {trials} trials asked"


def train_command(run_dir: Path, spec_path: Path, epochs: int) -> list[str]:
    return [
        sys.executable, "-m", "keras_resnet.cli", "train", "--spec", str(spec_path),
        "--dataset", "digits", "--image-size", "8", "--output", str(run_dir),
        "--epochs", str(epochs), "--warmup-epochs", "0",
    ]  # fmt: skip


def tune_command(run_dir: Path, trials: int) -> list[str]:
    return [
        sys.executable, "-m", "keras_resnet.cli", "tune", "--dataset", "digits",
        "--image-size", "8", "--width-choices", "0.5,1", "--stages", "2", "--max-blocks", "1",
        "--block-types", "basic", "--optimizers", "sgd", "--batch-sizes", "64",
        "--max-epochs", "2", "--quiet", "--max-trials", str(trials), "--output", str(run_dir),
    ]  # fmt: skip


def multiworker_commands(run_dir: Path, epochs: int) -> list[tuple[list[str], dict]]:
    """The two workers of a job on 127.0.0.1 (fixed ports: a rerun is the same command)."""
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    cmd = [
        sys.executable, "-m", "keras_resnet.cli", "train", "--model", "resnet20", "--width",
        "0.25", "--dataset", "digits", "--image-size", "8", "--batch-size", "64",
        "--warmup-epochs", "0", "--epochs", str(epochs), "--no-augment", "--output",
        str(run_dir), "--strategy", "multiworker",
    ]  # fmt: skip
    return [
        (
            cmd,
            {
                **ENV,
                "TF_CONFIG": json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": index}}
                ),
                "CUDA_VISIBLE_DEVICES": "",
            },
        )  # fmt: skip
        for index in range(2)
    ]


def stress(
    cmd: list, run_dir: Path, instants: list[Instant], writes: dict, timeout: float = 300
) -> dict[str, Any]:
    """Every instant in turn on `cmd` (one command, or a job's (cmd, env) list), then a
    run to the end; the results and problems."""
    sigterm_code = 143 if isinstance(cmd[0], str) else PREEMPTED
    results, problems = [], []
    for instant in instants:
        result = interrupt(cmd, run_dir, instant, timeout, writes)
        results.append(result)
        problem = check_interrupted(result, sigterm_code)
        if problem:
            problems.append(problem)
    final = interrupt(cmd, run_dir, Instant((), None, 0.0), timeout * 2, writes)
    codes = [final["returncode"], *(p["returncode"] for p in final["peers"])]
    if any(codes):
        problems.append(f"the final run exited {codes}: {final['stderr_last_line']}")
    return {"instants": results, "final_returncode": max(codes, key=abs), "problems": problems}


def _summarise(results: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "instants": len(results),
        "signalled": sum(bool(r["sent"]) for r in results),
        "inside_a_write": sum(bool(r["sent"] and r["temp_files_open"]) for r in results),
        "sigkill": sum(r["sent"][-1:] == ["SIGKILL"] for r in results),
        "sigint": sum(r["sent"][-1:] == ["SIGINT"] for r in results),
        "sigterm": sum(r["sent"][-1:] == ["SIGTERM"] for r in results),
        "double_sigint": sum(r["sent"] == ["SIGINT", "SIGINT"] for r in results),
    }


def run_one(command: str, workdir: Path, count: int, seed: int) -> dict[str, Any]:
    from tests.helpers import DIGITS_SPEC

    run_dir = workdir / command
    if command == "train":
        spec_path = workdir / "spec.json"
        spec_path.write_text(json.dumps(DIGITS_SPEC.to_dict()))
        epochs = 40  # enough that the run is still going at the last instant
        cmd, span = train_command(run_dir, spec_path, epochs), (3.0, 15.0)
    elif command == "tune":
        trials = 20
        cmd, span = tune_command(run_dir, trials), (3.0, 25.0)
    else:
        epochs = 30
        cmd, span = multiworker_commands(run_dir, epochs), (8.0, 30.0)
    writes = WRITES[command]
    processes = 1 if command != "multiworker" else 2
    instants = draw_instants(count, seed, span, list(writes), processes)
    outcome = stress(cmd, run_dir, instants, writes)
    if command == "tune":
        check = check_tune_run(run_dir, trials)
    else:
        check = check_train_run(run_dir, epochs)
    if check and outcome["final_returncode"] == 0:
        outcome["problems"].append(check)
    return {"command": command, **_summarise(outcome["instants"]), **outcome}


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--command", nargs="+", default=list(WRITES), choices=list(WRITES))
    parser.add_argument("--instants", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    from keras_resnet._io import write_json

    runs = []
    with tempfile.TemporaryDirectory(prefix="interrupts-") as workdir:
        for command in args.command:
            runs.append(run_one(command, Path(workdir), args.instants, args.seed))
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "instants"}))
    output = args.output or RESULTS / f"interrupts-{datetime.date.today()}.json"
    write_json(output, {"seed": args.seed, "runs": runs})
    print(f"wrote {output}")
    return int(any(run["problems"] for run in runs))


if __name__ == "__main__":
    sys.exit(main())
