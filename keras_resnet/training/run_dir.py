"""A training run directory: its files, its history, its curves, its checkpoints' health."""

from __future__ import annotations

import contextlib
import csv
import math
import zipfile
from pathlib import Path
from typing import Any

from keras_resnet._io import atomic_path, read_json_object, remove_temp_files

# Files of a run directory.
RUN_CONFIG, METRICS, HISTORY = "run.json", "metrics.json", "history.csv"
BEST, LAST, CURVES = "best.keras", "last.keras", "curves.png"


def read_history(path: Path) -> list[dict[str, float]]:
    """history.csv rows, one per epoch (a repeated epoch after a resume keeps the last)."""
    if not path.exists():
        return []
    rows: dict[int, dict[str, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            with contextlib.suppress(ValueError, KeyError):
                rows[int(row["epoch"])] = {k: float(v) for k, v in row.items() if v != ""}
    return [rows[e] for e in sorted(rows)]


def plot_curves(history: list[dict[str, float]], path: Path) -> None:
    # A bare Figure, not pyplot: no GUI backend is needed, and the caller's backend (a
    # notebook's inline one) is left alone; matplotlib.use("Agg") would switch it for good.
    from matplotlib.figure import Figure

    epochs = [int(r["epoch"]) + 1 for r in history]
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, label in (("", "train"), ("val_", "validation")):
            values = [r.get(prefix + metric, math.nan) for r in history]
            ax.plot(epochs, values, marker="o", markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)


def remove_stale_temp_files(run_dir: Path) -> None:
    """The temporary files of writes a kill cut short (called under the run's lock, when
    no other process writes here): nothing reads them, and they would pile up."""
    backup = run_dir / "backup"
    names = [run_dir / n for n in (RUN_CONFIG, METRICS, HISTORY, BEST, LAST, CURVES)]
    names += [backup / n for n in ("latest.weights.h5", "training_metadata.json")]
    names += [backup / f"{n}.bkp" for n in ("latest.weights.h5", "training_metadata.json")]
    for path in names:
        remove_temp_files(path)


def is_complete_keras_file(path: Path) -> bool:
    """A `.keras` zip whose every member reads back with its CRC (a truncated one does not)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


def discard_corrupt_checkpoints(run_dir: Path, trained: bool) -> list[str]:
    """Removes checkpoints of ours that are damaged, so none survives into a resume.

    Before the last epoch the next epochs write them again. After it, a damaged
    best.keras cannot be rebuilt without retraining: that is an error.
    """
    discarded = []
    for name in (BEST, LAST):
        path = run_dir / name
        if not path.exists() or is_complete_keras_file(path):
            continue
        if trained and name == BEST:
            raise ValueError(
                f"{path} is damaged (not a complete .keras archive) and the run's training "
                "has finished, so it cannot be rebuilt without training again: train into "
                f"a new directory. Received: output_dir={str(run_dir)!r}"
            )
        path.unlink()
        discarded.append(name)
    if discarded:
        print(f"{run_dir}: discarded damaged {', '.join(discarded)}; the next epoch rewrites it.")
    return discarded


def finished_metrics(run_dir: Path) -> dict | None:
    """The metrics of a finished run (metrics.json written and no backup left), else None."""
    metrics_path = run_dir / METRICS
    if metrics_path.is_file() and not (run_dir / "backup").exists():
        return read_json_object(metrics_path, "a keras_resnet metrics.json", "output_dir")
    return None


def print_summary(metrics: dict[str, Any], run_dir: Path | str) -> None:
    """The short table printed at the end of a run."""
    rows = [
        ("model", metrics["model_name"]),
        ("parameters", f"{metrics['params']:,}"),
        ("dataset", f"{metrics['dataset']['name']} {metrics['split_sizes']}"),
        (
            "epochs",
            f"{metrics['epochs_run']}"
            + (
                f" (resumed from {metrics['resumed_from_epoch']})"
                if metrics["resumed_from_epoch"]
                else ""
            ),
        ),
        ("test accuracy", f"{metrics['test_accuracy']:.4f}"),
        ("test loss", f"{metrics['test_loss']:.4f}"),
        ("wall time", f"{metrics['wall_seconds']:.1f} s"),
        ("train images/s", f"{metrics['train_images_per_second'] or float('nan'):.0f}"),
        ("run directory", str(run_dir)),
        ("best model", str(Path(run_dir) / BEST)),
        ("curves", str(Path(run_dir) / CURVES)),
    ]
    width = max(len(k) for k, _ in rows)
    print("-" * (width + 40))
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print("-" * (width + 40))
