"""Issue #17's accuracy check: the demo recipe trained in float32 and in mixed_bfloat16.

    python -m benchmarks.bf16_digits [--seeds 0 1 2] [--output PATH]

ResNet-20 on the digits with the demo's recipe (what `keras-resnet demo` passes to
`keras_resnet.training.train`: 16x16, 40 epochs, batch 64, the `TrainConfig` defaults
otherwise), once per seed in float32 and once under `mixed_precision="mixed_bfloat16"`
(softmax and loss in float32), all in this one process, the two precisions alternating
seed by seed so that a change in the machine's load falls on both. Each run trains in a
temporary run directory, deleted afterwards. The results file
(`benchmarks/results/bf16_digits-<date>.json` by default) holds every run, each
precision's mean and standard deviation, the difference of the means (the issue's goal:
within 0.5 pt), the CPU flags and the versions; the table is printed as markdown.
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.family_digits import demo_recipe, environment, markdown, summarise  # noqa: E402

RESULTS = Path("benchmarks/results")
GOAL_POINTS = 0.5
"""The issue's bar: bf16's mean test accuracy within 0.5 percentage points of float32's."""
POLICIES = {"float32": None, "mixed_bfloat16": "mixed_bfloat16"}


def train_once(name: str, policy: str | None, seed: int) -> dict[str, Any]:
    """One demo-recipe run of ResNet-20 under `policy` in a temporary run directory."""
    import keras

    from keras_resnet import get_spec
    from keras_resnet.training import train

    recipe = demo_recipe()
    keras.backend.clear_session()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"bf16-digits-{name}-") as run_dir:
        metrics = train(
            get_spec("resnet20"),
            recipe.pop("dataset"),
            output_dir=run_dir,
            seed=seed,
            verbose=0,
            mixed_precision=policy,
            **recipe,
        )
    run = {
        "seed": seed,
        "test_accuracy": metrics["test_accuracy"],
        "params": metrics["params"],
        "dtype_policy": metrics["dtype_policy"],
        "wall_seconds": round(time.perf_counter() - start, 1),
        "train_images_per_second": metrics.get("train_images_per_second"),
        "epochs": metrics["epochs_run"],
    }
    print(
        f"{name} seed {seed}: test accuracy {run['test_accuracy']:.4f}, "
        f"{run['wall_seconds']:.0f} s",
        flush=True,
    )
    return run


def compare(table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """bf16 minus float32 mean test accuracy, in points, and whether it is within the goal."""
    points = 100 * (
        table["mixed_bfloat16"]["test_accuracy_mean"] - table["float32"]["test_accuracy_mean"]
    )
    return {
        "bf16_minus_float32_points": round(points, 3),
        "goal_points": GOAL_POINTS,
        "within_goal": abs(points) <= GOAL_POINTS,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    output = args.output or RESULTS / f"bf16_digits-{datetime.date.today():%Y-%m-%d}.json"

    from keras_resnet._io import write_json

    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in POLICIES}
    for seed in args.seeds:
        for name, policy in POLICIES.items():
            runs[name].append(train_once(name, policy, seed))
    table = {name: summarise(name_runs) for name, name_runs in runs.items()}
    result = compare(table)
    write_json(
        output,
        {
            "what": "ResNet-20 on the digits, demo recipe: float32 vs mixed_bfloat16 training",
            "command": "python -m benchmarks.bf16_digits "
            + " ".join(["--seeds", *map(str, args.seeds)]),
            "recipe": demo_recipe(),
            **environment(),
            "runs": runs,
            "table": table,
            "comparison": result,
        },
    )
    print(markdown(table))
    print(
        f"mixed_bfloat16 - float32: {result['bf16_minus_float32_points']:+.2f} pt "
        f"({'within' if result['within_goal'] else 'OUTSIDE'} the {GOAL_POINTS} pt goal)"
    )
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
