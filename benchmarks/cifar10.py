"""CIFAR-10 against He et al. 2015 (Table 6): train, test accuracy per epoch, int8 export.

    python -m benchmarks.cifar10 --data /work/data/cifar10 --model resnet20 \\
        --recipe fast-cifar --output /work/runs/cifar10-resnet20-fast [--minutes N]

`--data` is a folder with `train/` and `test/` class folders (the official 50,000 / 10,000
images; validation is carved from train: 45k/5k, the paper's). Training is
`keras_resnet.training.train` on the run directory `--output`: rerunning the same command
resumes it, and `--minutes N` stops this process at the first epoch boundary after N
minutes, leaving the run to be resumed by the next rerun. After every epoch the model is
scored on the 10,000 test images (selection still uses validation only), and the curve of
test accuracy against training wall time is kept in the run directory (`test_curve.json`,
rewritten atomically; across resumes the time adds up, the epoch in flight at a kill is
lost). When training is finished: the curve as a PNG, the TFLite int8 export (the export
module's, calibrated on training images) scored on the same 10,000 images, and the results
in benchmarks/results/cifar10-<model>-<recipe>.json.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.machine import load_average, machine, versions  # noqa: E402
from keras_resnet._io import read_json_object, write_json  # noqa: E402

CURVE = "test_curve.json"
PAPER = {  # He et al. 2015, Table 6: CIFAR-10 test error (%), option-A nets
    "resnet20": 8.75,
    "resnet32": 7.51,
    "resnet44": 7.17,
    "resnet56": 6.97,
    "resnet110": 6.43,
}
RESULTS = Path(__file__).parent / "results"


class SessionOverError(Exception):
    """`--minutes` spent: this process stops between epochs; a rerun resumes."""


def _callbacks(run_dir: Path, test, labels, minutes: float | None, start: float):
    import keras
    import numpy as np

    curve_path = run_dir / CURVE
    rows = read_json_object(curve_path, "a test curve", "output")["epochs"] if (
        curve_path.exists()
    ) else []  # fmt: skip
    offset = rows[-1]["wall_seconds"] if rows else 0.0
    images = test.map(lambda x, y: x)

    class TestCurve(keras.callbacks.Callback):
        """Test accuracy after every epoch, against the run's wall time so far."""

        def on_epoch_begin(self, epoch, logs=None):
            if minutes is not None and time.perf_counter() - start > 60 * minutes:
                # At a boundary: the backup of the last epoch is written.
                raise SessionOverError(f"--minutes {minutes} spent before epoch {epoch + 1}")

        def on_epoch_end(self, epoch, logs=None):
            tick = time.perf_counter()
            predicted = self.model.predict(images, verbose=0).argmax(-1)
            accuracy = float(np.mean(predicted == labels))
            test_seconds = time.perf_counter() - tick
            del rows[epoch:]  # an epoch redone after a kill replaces its row
            rows.append(
                {
                    "epoch": epoch + 1,
                    "wall_seconds": round(offset + time.perf_counter() - start, 1),
                    "test_seconds": round(test_seconds, 1),
                    "test_accuracy": accuracy,
                    "load_average_1min": os.getloadavg()[0],
                    **{k: float(v) for k, v in (logs or {}).items()},
                }
            )
            write_json(curve_path, {"epochs": rows})
            print(f"epoch {epoch + 1}: test accuracy {accuracy:.4f}", flush=True)

    return [TestCurve()]


def plot_curve(rows: list[dict[str, Any]], target: float | None, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_resnet._io import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    minutes = [r["wall_seconds"] / 60 for r in rows]
    ax.plot(minutes, [100 * r["test_accuracy"] for r in rows], marker=".", label="test")
    ax.plot(minutes, [100 * r.get("val_accuracy", math.nan) for r in rows], ":", label="val")
    if target:
        ax.axhline(target, color="grey", linestyle="--", label=f"paper {target:.2f}%")
    ax.set(xlabel="training wall time (minutes)", ylabel="accuracy (%)", title=title)
    ax.set_ylim(max(0, min(100 * r["test_accuracy"] for r in rows) - 5), 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def int8_accuracy(run_dir: Path, verify_samples: int) -> dict[str, Any]:
    """The export module's int8 TFLite of best.keras, verified on the test split."""
    import tempfile

    from keras_resnet.export import export_run
    from keras_resnet.export.verify import ExportVerificationError

    with tempfile.TemporaryDirectory() as tmp:
        try:
            manifest = export_run(
                run_dir,
                Path(tmp) / "export",
                formats="tflite_int8",
                verify_samples=verify_samples,
                min_int8_agreement=0.0,
                latency_runs=0,
                verbose=False,
            )
        except ExportVerificationError as e:
            return {"error": str(e)}
    entry = manifest["artifacts"]["tflite_int8"]
    return {"size_bytes": entry["size_bytes"], "verification": entry["verification"]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from keras_resnet.data import DataOptions, load_splits
    from keras_resnet.spec import resolve_spec
    from keras_resnet.training import TrainConfig, train

    start = time.perf_counter()
    config = TrainConfig.from_recipe(
        args.recipe, **({"epochs": args.epochs} if args.epochs else {})
    )
    spec = resolve_spec(args.model)
    splits = load_splits(
        args.data,
        DataOptions(
            image_size=config.image_size or spec.default_input_size,
            augment=config.augment,
            augmentation=config.augmentation,
            eval_crop=config.eval_crop,
        ),
        batch_size=config.batch_size,
        seed=config.seed,
    )
    labels = np.concatenate([y for _, y in splits.test.as_numpy_iterator()])
    run_dir = Path(args.output)
    callbacks = _callbacks(run_dir, splits.test, labels, args.minutes, start)
    metrics = train(spec, splits, output_dir=run_dir, config=config, callbacks=callbacks)
    rows = read_json_object(run_dir / CURVE, "a test curve", "output")["epochs"]
    paper_error = PAPER.get(args.model)
    name = f"cifar10-{args.model}-{args.recipe}"
    plot_curve(
        rows,
        None if paper_error is None else 100 - paper_error,
        args.results / f"{name}.png",
        f"{args.model}, {args.recipe}, CIFAR-10 test",
    )
    results = {
        "model": args.model,
        "recipe": args.recipe,
        "config": metrics["config"],
        "data": {"folder": args.data, "layout": splits.layout, "sizes": splits.sizes},
        "test_accuracy_best_keras": metrics["test_accuracy"],
        "test_error_percent": round(100 * (1 - metrics["test_accuracy"]), 2),
        "paper_test_error_percent": paper_error,
        "train_images_per_second": metrics["train_images_per_second"],
        "training_wall_seconds": rows[-1]["wall_seconds"],
        "curve": rows,
        "tflite_int8": int8_accuracy(run_dir, len(labels)),
        "machine": machine(),
        "versions": versions(),
        "load_average_end": load_average(),
        "run_dir": str(run_dir),
    }
    write_json(args.results / f"{name}.json", results)
    return results


def markdown_table(paths: list[Path]) -> str:
    """The README's CIFAR-10 table from results files (measured figures only).

    Example:
        >>> print(markdown_table(sorted(RESULTS.glob("cifar10-*.json"))))  # doctest: +SKIP
    """
    lines = [
        "| model | recipe | test error | paper | int8 TFLite error | epochs | wall time "
        "| train images/s | CPU flags |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path in paths:
        r = read_json_object(path, "a cifar10 results file", "table")
        int8 = r["tflite_int8"].get("verification", {}).get("accuracy")
        int8_error = f"{100 * (1 - int8):.2f}%" if int8 is not None else "-"
        lines.append(
            f"| {r['model']} | `{r['recipe']}` | {r['test_error_percent']:.2f}% "
            f"| {r['paper_test_error_percent']}% | {int8_error} | {len(r['curve'])} "
            f"| {r['training_wall_seconds'] / 3600:.2f} h | {r['train_images_per_second']:.0f} "
            f"| {' '.join(r['machine']['cpu']['flags'])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from keras_resnet.recipes import RECIPE_NAMES

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="folder with train/ and test/ class folders (required)")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--recipe", default="fast-cifar", choices=RECIPE_NAMES)
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--minutes", type=float, help="stop this process after N minutes (resumable)")
    p.add_argument("--output", help="the run directory (required; rerun to resume)")
    p.add_argument("--results", type=Path, default=RESULTS, help="where the json and png go")
    p.add_argument(
        "--table",
        nargs="*",
        type=Path,
        help="only print the README table of these results files (default: all of "
        "benchmarks/results/cifar10-*.json)",
    )
    args = p.parse_args(argv)
    if args.table is not None:
        print(markdown_table(args.table or sorted(RESULTS.glob("cifar10-*.json"))))
        return 0
    if not (args.data and args.output):
        p.error("--data and --output are required to train")
    try:
        results = run(args)
    except SessionOverError as e:
        print(f"benchmarks.cifar10: {e}; rerun the same command to resume {args.output}")
        return 0
    print(
        f"{args.model} {args.recipe}: test error {results['test_error_percent']}% "
        f"(paper {results['paper_test_error_percent']}%), int8 {results['tflite_int8']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
