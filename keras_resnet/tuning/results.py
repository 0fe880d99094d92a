"""What a finished search writes: trials.csv, the Pareto front over (objective, params,
latency) and its plot, the best model (its trial's weights, or retrained), summary.json's
parts and the top table. Each function takes what it reads: the rows, the `Screen`, the
data options; `keras_resnet.tuning.search` puts them together."""

from __future__ import annotations

import csv
import io
import math
import os
import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt

from keras_resnet._io import atomic_path, write_text_atomic
from keras_resnet.constants import OBJECTIVES
from keras_resnet.data import DataOptions, DatasetSplits
from keras_resnet.spec import ResNetSpec
from keras_resnet.training import train
from keras_resnet.tuning.budgets import EPOCH_METRICS, Budget
from keras_resnet.tuning.hypermodel import HyperResNet
from keras_resnet.tuning.run_dir import (
    BEST_MODEL,
    BEST_SPEC,
    PARETO_PNG,
    RETRAIN,
    SUMMARY,
    TRIALS_CSV,
)
from keras_resnet.tuning.screen import Screen
from keras_resnet.tuning.tuners import weights_only_restore

_STATUS = {"COMPLETED": "completed", "FAILED": "failed", "INVALID": "failed", "RUNNING": "running"}
_CSV_FIELDS = (
    "trial_id", "status", *EPOCH_METRICS, "params", "latency_ms", "latency_source",
    "predicted_latency_ms", "epochs", "parent_trial", "width",
    "num_stages", "blocks", "block", "version", "stem", "shortcut", "groups", "se_ratio",
    "drop_path_rate", "optimizer", "learning_rate", "weight_decay", "batch_size", "message",
)  # fmt: skip


# --- trials ---------------------------------------------------------------------------------


_TRIAL_METRICS = (
    *EPOCH_METRICS, "params", "latency_ms", "epochs", "rejected", "diverged", "latency_predicted",
    "predicted_latency_ms",
)  # fmt: skip


def _latency_source(metrics: dict[str, float]) -> str:
    """`predicted` (the latency model's, the candidate never converted), `measured`, or ""."""
    if metrics.get("latency_ms") is None:
        return ""
    return "predicted" if metrics.get("latency_predicted") else "measured"


def trial_rows(oracle: kt.Oracle, hypermodel: HyperResNet, screen: Screen) -> list[dict]:
    """One row per trial: status, metrics, the spec's choices and the training settings."""
    trials = sorted(oracle.trials.values(), key=lambda t: t.trial_id)
    return [_trial_row(trial, hypermodel, screen) for trial in trials]


def _trial_row(trial: kt.engine.trial.Trial, hypermodel: HyperResNet, screen: Screen) -> dict:
    hp = trial.hyperparameters.copy()
    metrics = {
        name: trial.metrics.get_last_value(name)
        for name in _TRIAL_METRICS
        if trial.metrics.exists(name)
    }
    status = _STATUS.get(trial.status, str(trial.status).lower())
    message = ""
    if status == "completed" and metrics.get("rejected"):
        status, message = "rejected", screen.rejection_message(metrics)
        metrics.pop(screen.budget.objective, None)
    elif status == "completed" and metrics.get("diverged"):
        status, message = "diverged", "loss became NaN"
    elif status == "failed" and trial.message:
        message = [line for line in trial.message.strip().splitlines() if line][-1]
    spec = hypermodel.declare_spec(hp)
    train_hp = hypermodel.training_hyperparameters(hp)
    params = metrics.get("params")
    return {
        "trial_id": trial.trial_id,
        "status": status,
        **{name: metrics.get(name) for name in EPOCH_METRICS},
        "params": int(params) if params is not None else None,
        "latency_ms": metrics.get("latency_ms"),
        "latency_source": _latency_source(metrics),
        "predicted_latency_ms": metrics.get("predicted_latency_ms"),
        "epochs": int(metrics["epochs"]) if "epochs" in metrics else None,
        "parent_trial": hp.values.get("tuner/trial_id"),
        "width": spec.width,
        "num_stages": len(spec.stages),
        "blocks": "-".join(str(s.blocks) for s in spec.stages),
        "block": spec.block,
        "version": spec.version,
        "stem": spec.stem,
        **{k: getattr(spec, k) for k in ("shortcut", "groups", "se_ratio", "drop_path_rate")},
        **train_hp,
        "message": message,
        "spec": spec,
    }


def write_trials_csv(rows: list[dict[str, Any]], path: Path) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=_CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in _CSV_FIELDS})
    write_text_atomic(path, text.getvalue())


BEST_RULE = (
    "the best objective among trained trials within the budgets; ties go to the lower "
    "latency_ms (on the latency target), then to fewer params, then to the lower val_loss"
)
"""How `rank_trials` (and so summary.json's `best`) chooses, as recorded in summary.json."""


def rank_trials(
    rows: list[dict[str, Any]], objective: str, budget: Budget | None = None
) -> list[dict[str, Any]]:
    """Trained trials within `budget`, best first, by `BEST_RULE`.

    A small validation split saturates (many trials at 100%); among those the
    faster one on the latency target is the better answer, as issue #19 asks.
    """
    sign = -1.0 if OBJECTIVES[objective] == "max" else 1.0
    done = [
        r
        for r in rows
        if r["status"] == "completed"
        and r.get(objective) is not None
        and (budget is None or budget.violation(r["params"], r.get("latency_ms")) is None)
    ]
    return sorted(
        done,
        key=lambda r: (
            sign * r[objective],
            _or_inf(r.get("latency_ms")),
            r["params"],
            _or_inf(r.get("val_loss")),
        ),
    )


def _or_inf(value: float | None) -> float:
    """A missing or NaN value sorts last."""
    return math.inf if value is None or math.isnan(value) else value


# --- the Pareto front -----------------------------------------------------------------------


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower cost and higher score.

    Example:

    >>> pareto_front([(10, 0.9), (20, 0.95), (30, 0.93), (5, 0.5)])
    [3, 0, 1]
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def non_dominated(points: Sequence[Sequence[float | None]], senses: Sequence[str]) -> list[int]:
    """Indices of the points no other point dominates, in lexicographic order (best first).

    `senses` says per axis whether `"max"` or `"min"` is better. A point dominates
    another when it is at least as good on every axis and better on one; equal
    points (duplicates) do not dominate each other, so all of them are kept. A
    point with a missing or NaN value cannot be compared on every axis and is
    left out.

    Sorted lexicographically (best first), a point can only be dominated by one
    before it, and then also by one already on the front, so each point is
    checked against the front alone.

    Example:

    >>> non_dominated([(0.9, 10, 2.0), (0.9, 12, 1.0), (0.8, 12, 2.0)], ("max", "min", "min"))
    [0, 1]
    """
    signs = [-1.0 if sense == "max" else 1.0 for sense in senses]
    known = [i for i, p in enumerate(points) if all(v is not None and not math.isnan(v) for v in p)]
    costs = {i: tuple(s * float(v) for s, v in zip(signs, points[i], strict=True)) for i in known}
    front: list[int] = []
    for i in sorted(known, key=lambda i: costs[i]):
        if not any(_dominates(costs[j], costs[i]) for j in front):
            front.append(i)
    return front


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Costs `a` are nowhere worse than `b` and somewhere better (lower is better)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def pareto_trials(rows: list[dict[str, Any]], objective: str) -> list[dict[str, Any]]:
    """The trained trials no other trained trial beats on (objective, params, latency_ms).

    The true front over the three, not a weighted sum: the objective at its
    best (`OBJECTIVES`), fewest parameters, lowest latency on the search's
    latency target. Trials without a latency (or a NaN one) are left out.
    Best objective first.

    Example:

    >>> [r["trial_id"] for r in pareto_trials(rows, "val_accuracy")]  # doctest: +SKIP
    ['07', '03', '12']
    """
    trained = [r for r in rows if r["status"] == "completed" and r.get(objective) is not None]
    points = [(r[objective], r.get("params"), r.get("latency_ms")) for r in trained]
    front = non_dominated(points, (OBJECTIVES[objective], "min", "min"))
    return [trained[i] for i in front]


def front_summary(front: list[dict[str, Any]], objective: str) -> list[dict[str, Any]]:
    """summary.json's `pareto_front`: each trial id with its three values."""
    return [
        {
            "trial_id": r["trial_id"],
            objective: r[objective],
            "params": r["params"],
            "latency_ms": r["latency_ms"],
        }
        for r in front
    ]


def plot_pareto(
    rows: list[dict[str, Any]],
    screen: Screen,
    best_id: str | None,
    path: Path,
    front_ids: Sequence[str] = (),
) -> None:
    """The objective against parameters and against latency: trained candidates, each
    panel's two-axis Pareto front, the trials on the three-axis front (`front_ids`,
    ringed), the best, rejected ones and the budgets."""
    # A bare Figure, not pyplot: the caller's backend (a notebook's inline one) is left alone.
    from matplotlib.figure import Figure

    objective = screen.budget.objective
    # One point per architecture: Hyperband retrains promoted candidates as new trials.
    by_spec: dict[str, dict[str, Any]] = {}
    for row in rank_trials(rows, objective):
        by_spec.setdefault(row["spec"].to_json(), row)
    trained = list(by_spec.values())
    rejected = [r for r in rows if r["status"] == "rejected"]
    ringed = [r for r in rows if r["trial_id"] in front_ids]
    fig = Figure(figsize=(12, 4.5))
    axes = fig.subplots(1, 2)
    latency_label = f"batch-1 latency (ms)\n{screen.target.runtime()}"
    for ax, cost, label, budget in (
        (axes[0], "params", "parameters", screen.budget.max_params),
        (axes[1], "latency_ms", latency_label, screen.budget.max_latency_ms),
    ):
        _plot_panel(ax, (trained, rejected, ringed), objective, cost, best_id)
        if budget is not None:
            ax.axvline(budget, color="gray", linestyle="--", linewidth=1, label="budget")
        ax.set_xlabel(label)
        ax.legend(fontsize=8)
    fig.suptitle(f"{len(trained)} trained candidates, {len(rejected)} rejected")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)


def _plot_panel(ax: Any, groups: tuple, objective: str, cost: str, best_id: str | None) -> None:
    """One panel of `plot_pareto`: the objective against `cost` (log scale)."""
    from matplotlib import ticker

    trained, rejected, ringed = groups
    maximize = OBJECTIVES[objective] == "max"
    points = [r for r in trained if r.get(cost) is not None]
    xs = [r[cost] for r in points]
    ys = [r[objective] for r in points]
    ax.scatter(xs, ys, s=18, color="tab:blue", alpha=0.6, label="trained trials")
    front = pareto_front([(x, y if maximize else -y) for x, y in zip(xs, ys, strict=True)])
    ax.plot([xs[i] for i in front], [ys[i] for i in front], "-o", color="tab:red",
            markersize=6, label="Pareto front")  # fmt: skip
    ringed = [r for r in ringed if r.get(cost) is not None]
    if ringed:
        ax.scatter([r[cost] for r in ringed], [r[objective] for r in ringed], s=110,
                   facecolors="none", edgecolors="tab:red", linewidths=1.5,
                   label="front of (objective, params, latency)")  # fmt: skip
    for r in points:
        if r["trial_id"] == best_id:
            ax.scatter([r[cost]], [r[objective]], marker="*", s=250, color="gold",
                       edgecolor="black", zorder=5, label="best")  # fmt: skip
    over = [r[cost] for r in rejected if r.get(cost) is not None]
    if over and ys:
        ax.scatter(over, [min(ys)] * len(over), marker="x", color="gray",
                   label="rejected (over budget, not trained)")  # fmt: skip
    ax.set_xscale("log")
    # Plain numbers at 1-2-5 steps: a cost axis often spans a decade or less.
    ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.6g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_ylabel(objective)
    ax.grid(alpha=0.3)


# --- the best model -------------------------------------------------------------------------


def retrain_best(
    best: dict[str, Any],
    run_dir: Path,
    splits: DatasetSplits,
    data: DataOptions,
    *,
    dataset: Any,
    seed: int,
    epochs: int,
    verbose: int,
) -> None:
    """Retrains the best candidate from scratch for `epochs` epochs with
    `keras_resnet.training.train` (in `run_dir/retrain`) on `dataset` (a reference, read
    again as `splits` were, with the search's `data` options; or the splits themselves);
    its best.keras becomes the search's."""
    train(
        best["spec"],
        dataset,
        output_dir=run_dir / RETRAIN,
        epochs=epochs,
        batch_size=best["batch_size"],
        optimizer=best["optimizer"],
        learning_rate=best["learning_rate"],
        weight_decay=best["weight_decay"],
        image_size=splits.image_shape[0],
        channels=splits.image_shape[-1],
        label_mode=splits.label_mode,
        data_dir=data.data_dir,
        download=data.download,
        seed=seed,
        augment=data.augment,
        verbose=2 if verbose else 0,
    )
    with atomic_path(run_dir / BEST_MODEL) as tmp:
        shutil.copyfile(run_dir / RETRAIN / "best.keras", tmp)


def restore_best_trial(kt_tuner: kt.Tuner, trial_id: str, run_dir: Path) -> None:
    """Saves the best trial's own weights (its checkpoint) as best.keras."""
    trial = kt_tuner.oracle.get_trial(trial_id)
    try:
        with weights_only_restore():
            model = kt_tuner.load_model(trial)
    except (OSError, ValueError) as e:
        raise RuntimeError(
            f"Cannot restore trial {trial_id}'s weights ({e}). In a distributed "
            "search the chief needs the workers' output directory (a shared file "
            "system), or set retrain_epochs."
        ) from e
    # Saved with built optimizer slots, so loading it back matches them.
    model.optimizer.build(model.trainable_variables)
    with atomic_path(run_dir / BEST_MODEL) as tmp:
        model.save(tmp)


def train_command(
    run_dir: Path,
    best: dict[str, Any],
    epochs: int,
    splits: DatasetSplits,
    data: DataOptions,
    *,
    dataset: Any,
    seed: int,
) -> str:
    """The `keras-resnet train` command that retrains the best candidate from scratch, on
    `dataset` (a reference, or splits: named by their name) read as `splits` were."""
    name = os.fspath(dataset) if isinstance(dataset, (str, os.PathLike)) else splits.name
    parts = [
        f"keras-resnet train --spec {shlex.quote(str(run_dir / BEST_SPEC))}",
        f"--dataset {shlex.quote(name)}",
        f"--image-size {splits.image_shape[0]} --channels {splits.image_shape[-1]}",
        f"--optimizer {best['optimizer']} --lr {best['learning_rate']:.3g}",
        f"--weight-decay {best['weight_decay']:.3g} --batch-size {best['batch_size']}",
        f"--epochs {epochs} --seed {seed}",
    ]
    if data.data_dir:
        parts.append(f"--data-dir {shlex.quote(os.fspath(data.data_dir))}")
    if not data.augment:
        parts.append("--no-augment")
    return " ".join([*parts, "--output runs/best"])


# --- summary.json ---------------------------------------------------------------------------


def best_summary(best: dict[str, Any], model: keras.Model) -> dict[str, Any]:
    """summary.json's `best`: the trial, its scores, its spec and training settings."""
    spec: ResNetSpec = best["spec"]
    return {
        "trial_id": best["trial_id"],
        **{name: best[name] for name in EPOCH_METRICS if best.get(name) is not None},
        "params": int(model.count_params()),
        "latency_ms": best["latency_ms"],
        "epochs": best["epochs"],
        "spec": spec.to_dict(),
        "training": {
            k: best[k] for k in ("optimizer", "learning_rate", "weight_decay", "batch_size")
        },
    }


def status_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """summary.json's `trials`: how many trials ended in each status."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def print_report(
    ranked: list[dict[str, Any]], summary: dict[str, Any], objective: str, run_dir: Path
) -> None:
    """The top trials as a table, the best one, the counts and where the files are."""
    top = 5
    print(f"Top {min(top, len(ranked))} of {len(ranked)} trained trials:")
    print(
        f"{'trial':>5} {objective:>12} {'params':>10} {'latency':>9} {'width':>5} "
        f"{'blocks':>9} {'block':>10} {'ver':>3} {'stem':>8} {'optimizer':>9} "
        f"{'lr':>8} {'batch':>5} {'epochs':>6}"
    )
    for r in ranked[:top]:
        print(
            f"{r['trial_id']:>5} {r[objective]:>12.4f} {r['params']:>10,} "
            f"{r['latency_ms']:>7.3g}ms {r['width']:>5g} {r['blocks']:>9} {r['block']:>10} "
            f"{r['version']:>3} {r['stem']:>8} {r['optimizer']:>9} {r['learning_rate']:>8.2g} "
            f"{r['batch_size']:>5} {r['epochs']:>6}"
        )
    best = ranked[0]
    print(
        f"best: trial {best['trial_id']}, {summary['best']['params']:,} parameters, "
        f"{best['latency_ms']:.3g} ms batch-1 ({summary['latency_runtime']}), "
        f"{objective} {best[objective]:.4f}, test accuracy {summary['test_accuracy']:.4f} "
        f"({summary['best_model']})"
    )
    front = ", ".join(p["trial_id"] for p in summary["pareto_front"])
    print(f"Pareto front ({objective}, params, latency_ms): trials {front}")
    print(
        f"trials: {summary['trials']}; results in {run_dir} ({TRIALS_CSV}, {PARETO_PNG}, "
        f"{BEST_SPEC}, {BEST_MODEL}, {SUMMARY})"
    )
