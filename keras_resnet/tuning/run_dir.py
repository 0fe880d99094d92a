"""A search's run directory: its files, its locks and the check that a rerun matches.

```
run_dir/
  .keras_resnet.lock  held while a search runs here (a worker: .keras_resnet-worker-<id>.lock)
  tune.json           what was asked (a rerun must match; resume needs it)
  keras_tuner/        keras-tuner's own project: oracle.json, trial_*/trial.json, checkpoints
  latency_cache.json  batch-1 latencies already measured (spec + input shape + runtime + host)
  trials.csv          every trial: status, hyperparameters, params, latency, metrics
  pareto.png          objective against parameters and latency, Pareto front marked
  best_spec.json      the best spec (`ResNetSpec.from_dict`, `keras-resnet train --spec`)
  best.keras          the best model: its trial checkpoint, or retrained (`retrain_epochs`)
  summary.json        best trial, its test-split accuracy, budgets, counts, timing
  retrain/            the retraining run of the best candidate (`retrain_epochs`)
```

Every output is written atomically (`keras_resnet._io`), JSON strictly (no NaN).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from keras_resnet._io import LOCK_FILE, DirectoryLock, check_writable_dir

TUNE_CONFIG, TRIALS_CSV, PARETO_PNG, SUMMARY = (
    "tune.json",
    "trials.csv",
    "pareto.png",
    "summary.json",
)
BEST_SPEC, BEST_MODEL, LATENCY_CACHE = "best_spec.json", "best.keras", "latency_cache.json"
PROJECT, RETRAIN = "keras_tuner", "retrain"


def lock_name(role: str | None, tuner_id: str | None) -> str:
    """One process, or the chief, takes the run directory's lock; each worker its own, so
    workers share the directory but two with the same id do not."""
    return f".keras_resnet-worker-{tuner_id}.lock" if role == "worker" else LOCK_FILE


def _is_lock_file(path: Path) -> bool:
    return path.name.startswith(".keras_resnet") and path.name.endswith(".lock")


def _contents(run_dir: Path) -> Iterator[Path]:
    """What a run directory holds besides lock files."""
    return (path for path in run_dir.iterdir() if not _is_lock_file(path))


@contextlib.contextmanager
def locked_run_dir(run_dir: Path, name: str) -> Iterator[DirectoryLock]:
    """Holds `run_dir`'s lock `name` (see `keras_resnet._io.DirectoryLock`).

    A directory this call creates and that holds nothing but the lock when the
    block fails (a check refused the search before anything was written) is
    removed again.
    """
    created = not run_dir.exists()
    check_writable_dir(run_dir, "output_dir")
    lock = DirectoryLock(run_dir, arg="output_dir", name=name).acquire()
    try:
        yield lock
    except BaseException:
        if created and not any(_contents(run_dir)):
            # Unlinked while still held, so no other process can take this lock meanwhile.
            with contextlib.suppress(OSError):
                lock.path.unlink()
                run_dir.rmdir()
        raise
    finally:
        lock.release()


def fingerprint_check(run_dir: Path, record: dict[str, Any], overwrite: bool) -> None:
    """Refuses a run directory that holds another search, or something else, unless
    `overwrite` (training has its own check; both are to move to keras_resnet._io)."""
    config_path = run_dir / TUNE_CONFIG
    if config_path.exists() and not overwrite:
        previous = json.loads(config_path.read_text()).get("fingerprint", {})
        new = record["fingerprint"]
        changed = sorted(k for k in set(previous) | set(new) if previous.get(k) != new.get(k))
        if changed:
            raise ValueError(
                f"`output_dir` {str(run_dir)!r} holds a search with another configuration "
                f"(differs in: {', '.join(changed)}); use overwrite=True (--overwrite) or a "
                f"new directory. Received: output_dir={str(run_dir)!r}"
            )
    elif not config_path.exists() and run_dir.is_dir() and any(_contents(run_dir)):
        raise ValueError(
            "`output_dir` exists and is not a keras_resnet search directory. "
            f"Received: output_dir={str(run_dir)!r}"
        )


def remove_outputs(run_dir: Path) -> None:
    """Starting over: the previous search's outputs go (keras-tuner clears its own project;
    the latency cache stays)."""
    for name in (TRIALS_CSV, PARETO_PNG, SUMMARY, BEST_SPEC, BEST_MODEL):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / RETRAIN, ignore_errors=True)
