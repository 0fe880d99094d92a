"""A search's run directory: its files, its locks and the check that a rerun matches.

```
run_dir/
  .keras_resnet.lock  held while a search runs here (a worker: .keras_resnet-worker-<id>.lock)
  tune.json           what was asked (a rerun must match; resume needs it)
  keras_tuner/        keras-tuner's own project: oracle.json, trial_*/trial.json, checkpoints
  latency_cache.json  batch-1 latencies already measured (spec + input shape + runtime + host)
  latency_model-<target>[-<n>t]-<HxWxC>-<host>.json
                      the latency model's table of micro-model latencies (with a latency
                      budget; `keras_resnet.tuning.latency_model`); kept by overwrite
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

import shutil
from pathlib import Path
from typing import Any

from keras_resnet._io import LOCK_FILE, check_fingerprint

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


def fingerprint_check(run_dir: Path, record: dict[str, Any], overwrite: bool) -> None:
    """Refuses a run directory that holds another search (unless `overwrite`), or
    something else (see `keras_resnet._io.check_fingerprint`)."""
    check_fingerprint(
        run_dir,
        TUNE_CONFIG,
        record["fingerprint"],
        kind="search",
        hint="use overwrite=True (--overwrite) or a new directory",
        compare=not overwrite,
    )


def remove_outputs(run_dir: Path) -> None:
    """Starting over: the previous search's outputs go (keras-tuner clears its own project;
    the latency cache stays)."""
    for name in (TRIALS_CSV, PARETO_PNG, SUMMARY, BEST_SPEC, BEST_MODEL):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / RETRAIN, ignore_errors=True)
