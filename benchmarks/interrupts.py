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
}
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


@dataclasses.dataclass(frozen=True)
class Instant:
    signals: tuple[str, ...]  # ("SIGKILL",), ("SIGINT",) or ("SIGINT", "SIGINT")
    write: str | None  # a WRITES key: signal when such a temporary file appears
    seconds: float  # else: this long after the process started


def draw_instants(
    count: int, seed: int, span: tuple[float, float], writes: list[str]
) -> list[Instant]:
    """`count` instants, shuffled: SIGKILL, SIGINT, SIGKILL, SIGINT twice, in turn, every
    fourth SIGINT a SIGTERM; the first four of every eight inside a write (of the kinds
    `writes`, in turn), the others at a time uniform over `span` seconds after the start."""
    import numpy as np

    rng = np.random.default_rng(seed)
    kinds = [("SIGKILL",), ("SIGINT",), ("SIGKILL",), ("SIGINT", "SIGINT")] * 3
    kinds += [("SIGKILL",), ("SIGTERM",), ("SIGKILL",), ("SIGTERM", "SIGTERM")]
    instants = [
        Instant(
            signals=kinds[i % 16],
            write=writes[(i // 2) % len(writes)] if i % 8 < 4 else None,
            seconds=round(float(rng.uniform(*span)), 2),
        )
        for i in range(count)
    ]
    return [instants[i] for i in rng.permutation(count)]


def _temp_files(run_dir: Path, pattern: re.Pattern) -> list[str]:
    """Names matching `pattern` anywhere under `run_dir` (a few dozen directories)."""
    return [name for _, _, names in os.walk(run_dir) for name in names if pattern.match(name)]


def interrupt(
    cmd: list[str],
    run_dir: Path,
    instant: Instant,
    timeout: float,
    writes: dict[str, re.Pattern] = WRITES["train"],
) -> dict[str, Any]:
    """Starts `cmd`, signals it at `instant` (its write one of `writes`), waits for it;
    what happened."""
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
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
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    lines = [line for line in err.splitlines() if line.strip()]
    return {
        "signals": list(instant.signals),
        "sent": sent,
        "write": instant.write,
        "seconds": round(time.monotonic() - start, 2),
        "temp_files_open": in_write,
        "returncode": proc.returncode,
        "stderr_last_line": lines[-1] if lines else "",
        "stderr_lines": len(lines),
    }


def check_interrupted(result: dict[str, Any]) -> str | None:
    """What is wrong with how one signalled process ended, or None."""
    if not result["sent"]:
        return None if result["returncode"] == 0 else f"exited {result['returncode']} unsignalled"
    if result["sent"][-1] == "SIGKILL":
        return None if result["returncode"] == -signal.SIGKILL else "SIGKILL not -9"
    if result["returncode"] == 0:
        return None  # the signal came as it finished: nothing left to interrupt
    name = result["sent"][-1]
    if result["returncode"] != EXIT_CODES[name]:
        return f"{name} gave exit {result['returncode']}: {result['stderr_last_line']}"
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


def stress(
    cmd: list[str], run_dir: Path, instants: list[Instant], writes: dict, timeout: float = 300
) -> dict[str, Any]:
    """Every instant in turn on `cmd`, then a run to the end; the results and problems."""
    results, problems = [], []
    for instant in instants:
        result = interrupt(cmd, run_dir, instant, timeout, writes)
        results.append(result)
        problem = check_interrupted(result)
        if problem:
            problems.append(problem)
    final = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout * 2)
    if final.returncode:
        tail = final.stderr.strip().splitlines()[-1:] or [""]
        problems.append(f"the final run exited {final.returncode}: {tail[0]}")
    return {"instants": results, "final_returncode": final.returncode, "problems": problems}


def _summarise(results: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "instants": len(results),
        "signalled": sum(bool(r["sent"]) for r in results),
        "inside_a_write": sum(bool(r["sent"] and r["temp_files_open"]) for r in results),
        "sigkill": sum(r["sent"][-1:] == ["SIGKILL"] for r in results),
        "sigint": sum(r["sent"][-1:] == ["SIGINT"] for r in results),
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
    else:
        trials = 20
        cmd, span = tune_command(run_dir, trials), (3.0, 25.0)
    writes = WRITES[command]
    outcome = stress(cmd, run_dir, draw_instants(count, seed, span, list(writes)), writes)
    check = check_train_run(run_dir, epochs) if command == "train" else None
    if command == "tune":
        check = check_tune_run(run_dir, trials)
    if check and outcome["final_returncode"] == 0:
        outcome["problems"].append(check)
    return {"command": command, **_summarise(outcome["instants"]), **outcome}


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--command", nargs="+", default=["train", "tune"], choices=["train", "tune"]
    )
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
