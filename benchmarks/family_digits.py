"""Issue #15's accuracy check: ResNet-20 and ResNet-20-sized family variants on the digits.

    python -m benchmarks.family_digits [--seeds 0 1 2] [--models NAME ...]
        [--output benchmarks/results/family_digits.json]

Every model of `MODELS` trains with the demo's recipe (what `keras-resnet demo`
passes to `keras_resnet.training.train`: digits at 16x16, 40 epochs, batch 64,
the `TrainConfig` defaults otherwise) once per seed, all in this one process,
each run in its own temporary directory that is deleted afterwards. The results
file holds every run (seed, test accuracy, params, wall time, epochs), a
per-model mean and standard deviation, the CPU flags and the versions; the same
table is printed as markdown.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_OUTPUT = Path("benchmarks/results/family_digits.json")
CPU_FLAGS = ("avx2", "avx512_vnni", "avx512_bf16", "amx_bf16")

# (name, what it is, fields replaced in get_spec("resnet20")).
MODELS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("resnet20", "ResNet-20 (CIFAR stem, zero-pad shortcuts)", {}),
    (
        "resnet20-se-avg",
        "ResNet-20 + SE 0.25 + ResNet-D average-pool shortcut",
        {"shortcut": "avg", "se_ratio": 0.25},
    ),
    (
        "resnet20-se-avg-dp",
        "ResNet-20 + SE 0.25 + average-pool shortcut + drop path 0.1",
        {"shortcut": "avg", "se_ratio": 0.25, "drop_path_rate": 0.1},
    ),
)


def demo_recipe() -> dict[str, Any]:
    """The arguments `keras-resnet demo` gives `train` besides model, output and seed."""
    from keras_resnet import constants

    return {
        "dataset": constants.DEMO_DATASET,
        "epochs": constants.DEMO_EPOCHS,
        "batch_size": constants.DEMO_BATCH_SIZE,
        "image_size": constants.DEMO_IMAGE_SIZE,
    }


def model_spec(fields: dict[str, Any]):
    from keras_resnet import get_spec

    return dataclasses.replace(get_spec("resnet20"), **fields)


def train_once(name: str, fields: dict[str, Any], seed: int) -> dict[str, Any]:
    """One training run in a temporary run directory: what the results file keeps of it."""
    import keras

    from keras_resnet.training import train

    recipe = demo_recipe()
    spec = model_spec(fields)
    keras.backend.clear_session()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"family-digits-{name}-") as run_dir:
        metrics = train(
            spec, recipe.pop("dataset"), output_dir=run_dir, seed=seed, verbose=0, **recipe
        )
    data = metrics["dataset"]
    run = {
        "seed": seed,
        "test_accuracy": metrics["test_accuracy"],
        "params": spec.count_params(data["image_shape"][-1], len(data["class_names"])),
        "built_params": metrics["params"],
        "wall_seconds": round(time.perf_counter() - start, 1),
        "epochs": metrics["epochs_run"],
    }
    print(
        f"{name} seed {seed}: test accuracy {run['test_accuracy']:.4f}, "
        f"{run['params']:,} params, {run['wall_seconds']:.0f} s",
        flush=True,
    )
    return run


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation of the test accuracy and the time per run."""
    accuracy = [r["test_accuracy"] for r in runs]
    seconds = [r["wall_seconds"] for r in runs]
    spread = statistics.stdev if len(runs) > 1 else (lambda _: 0.0)
    return {
        "runs": len(runs),
        "test_accuracy_mean": statistics.mean(accuracy),
        "test_accuracy_std": spread(accuracy),
        "test_accuracy_min": min(accuracy),
        "params": runs[0]["params"],
        "wall_seconds_mean": round(statistics.mean(seconds), 1),
    }


def markdown(table: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| model | test accuracy (mean ± std) | min | params | s / run | runs |",
        "|---|---|---|---:|---:|---:|",
    ]
    for name, row in table.items():
        lines.append(
            f"| {name} | {row['test_accuracy_mean']:.4f} ± {row['test_accuracy_std']:.4f} "
            f"| {row['test_accuracy_min']:.4f} | {row['params']:,} "
            f"| {row['wall_seconds_mean']:.0f} | {row['runs']} |"
        )
    return "\n".join(lines)


def cpu_flags() -> list[str]:
    """Which of `CPU_FLAGS` /proc/cpuinfo lists (what decides the CPU kernels' speed)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    have = set(re.findall(r"\w+", " ".join(re.findall(r"^flags\s*:(.*)$", text, re.M))))
    return [flag for flag in CPU_FLAGS if flag in have]


def environment() -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from keras_resnet import __version__

    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_flags": cpu_flags(),
        "logical_cores": os.cpu_count(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_resnet": __version__,
    }


def main(argv: list[str] | None = None) -> int:
    names = [name for name, _, _ in MODELS]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", choices=names, default=names)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    from keras_resnet._io import write_json

    models = [m for m in MODELS if m[0] in args.models]
    runs = {
        name: [train_once(name, fields, seed) for seed in args.seeds] for name, _, fields in models
    }
    table = {name: summarise(model_runs) for name, model_runs in runs.items()}
    write_json(
        args.output,
        {
            "what": "test accuracy of ResNet-20 family variants trained with the demo's recipe",
            "recipe": demo_recipe(),
            **environment(),
            "models": {
                name: {"description": text, "spec_fields": fields, "runs": runs[name]}
                for name, text, fields in models
            },
            "table": table,
        },
    )
    print(markdown(table))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
