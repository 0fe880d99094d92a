"""Issue #19's latency-model check: predicted against measured batch-1 latency.

    python -m benchmarks.latency_model [--targets tflite-int8 tflite-fp32] [--specs 30]
        [--seed 0] [--image-size 16] [--threads 1] [--table-dir DIR] [--output PATH]

`--specs` random candidates are drawn (seeded, duplicates redrawn) from the
default search space of `keras-resnet tune --dataset digits --image-size 16`
(`HyperResNet((16, 16, 1), 10)`: base resnet20, every width, 2-4 stages, 1-3
blocks a stage, basic and bottleneck, v1 and v2), as keras-tuner's random oracle
draws them. For each target, each candidate is built with random weights,
converted and timed as a search times it (`LatencyTarget.measure`), and
predicted by `keras_resnet.tuning.latency_model.LatencyModel` from its spec, the
model profiling its parts on first need (the table starts empty unless
`--table-dir` holds one). Reported per target: the median and worst relative
error |predicted - measured| / measured, the same for the sum of the raw
micro-models (no identity subtracted: why the model subtracts it), the time spent
profiling against measuring, the CPU flags and the load average. Written to
benchmarks/results/latency_model-<host>-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = Path("benchmarks/results")


def draw_specs(count: int, seed: int, input_shape: tuple[int, int, int], classes: int) -> list:
    """`count` distinct candidates of the default space, drawn as keras-tuner's random
    oracle draws them (each active hyperparameter's `random_sample`, in declaration order)."""
    import keras_tuner as kt

    from keras_resnet.tuning import HyperResNet

    hm = HyperResNet(input_shape, classes)
    declared = kt.HyperParameters()
    hm.declare_hyperparameters(declared)
    rng = random.Random(seed)
    specs: list = []
    for _ in range(100 * count):
        hp = declared.copy()
        for p in hp.space:
            if hp.is_active(p):
                hp.values[p.name] = p.random_sample(rng.randrange(2**31))
        spec = hm.declare_spec(hp)
        if spec not in specs:
            specs.append(spec)
        if len(specs) == count:
            break
    return specs


def describe(spec) -> str:
    blocks = "-".join(str(s.blocks) for s in spec.stages)
    return f"width {spec.width:g}, {spec.block} {spec.version}, blocks {blocks}, {spec.stem}"


def _errors(rows: list[dict[str, Any]], key: str, against: str = "measured_ms") -> dict[str, float]:
    errors = [abs(r[key] - r[against]) / r[against] for r in rows]
    signed = [(r[key] - r[against]) / r[against] for r in rows]
    return {
        "median_abs_relative_error": round(statistics.median(errors), 4),
        "worst_abs_relative_error": round(max(errors), 4),
        "mean_signed_relative_error": round(statistics.mean(signed), 4),
    }


def run_target(
    name: str, threads: int, specs: list, input_shape, classes: int, table_dir: Path, runs: int
) -> dict[str, Any]:
    from keras_resnet.builder import build_resnet
    from keras_resnet.tuning.latency import LatencyTarget
    from keras_resnet.tuning.latency_model import LatencyModel, parts

    target = LatencyTarget(name, threads if name != "keras" else None)
    model = LatencyModel(target, input_shape, classes, directory=table_dir)
    load_before = os.getloadavg()
    rows, profile_seconds, measure_seconds = [], 0.0, 0.0
    for i, spec in enumerate(specs):
        start = time.perf_counter()
        predicted = model.predict(spec)
        profile_seconds += time.perf_counter() - start
        # Without the identity subtracted: every micro-model's own time summed.
        raw = sum(model.part_latency(p, spec) for p in parts(spec, input_shape, classes))
        start = time.perf_counter()
        candidate = build_resnet(spec, input_shape=input_shape, classes=classes)
        # The median is what a search measures; the 10th percentile is the statistic the
        # model profiles its parts with (less moved by other jobs on the cores).
        timed = target.latency(candidate, runs=runs)
        measured, measured_p10 = timed["median_ms"], timed["p10_ms"]
        measure_seconds += time.perf_counter() - start
        rows.append(
            {
                "spec": describe(spec),
                "params": spec.count_params(input_shape[-1], classes),
                "measured_ms": measured,
                "measured_p10_ms": measured_p10,
                "predicted_ms": round(predicted, 5),
                "raw_sum_ms": round(raw, 5),
                "relative_error": round((predicted - measured) / measured, 4),
            }
        )
        print(
            f"{name} {i + 1:2d}/{len(specs)} {rows[-1]['spec']:<42} measured {measured:.4f} ms, "
            f"(p10 {measured_p10:.4f}), predicted {predicted:.4f} ms "
            f"({rows[-1]['relative_error']:+.1%}), "
            f"{model.measured} micro-models so far",
            flush=True,
        )
    identity = [
        entry["latency_ms"]
        for entry in model.table.entries.values()
        if entry["part"]["kind"] == "head" and entry["part"]["version"] == "v1"
    ]
    return {
        "target": target.to_dict(),
        "candidate_runs": runs,
        "table": str(model.path),
        "micro_models_profiled": model.measured,
        "profile_seconds": round(profile_seconds, 1),
        "measure_seconds": round(measure_seconds, 1),
        "identity_model_ms": {
            "median": statistics.median(identity),
            "min": min(identity),
            "max": max(identity),
        },
        "prediction": _errors(rows, "predicted_ms"),
        "prediction_vs_p10": _errors(rows, "predicted_ms", "measured_p10_ms"),
        "raw_micro_model_sum": _errors(rows, "raw_sum_ms"),
        "raw_micro_model_sum_vs_p10": _errors(rows, "raw_sum_ms", "measured_p10_ms"),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=["tflite-int8", "tflite-fp32"])
    parser.add_argument("--specs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--runs", type=int, default=30, help="samples per candidate timing (a search's: 30)"
    )
    parser.add_argument("--table-dir", type=Path, help="keep the tables here (default: a temp dir)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)

    import keras

    from benchmarks.machine import machine, versions
    from keras_resnet import __version__
    from keras_resnet._io import write_json
    from keras_resnet.precision import cpu_flags, int8_dot_product_flags

    input_shape, classes = (args.image_size, args.image_size, 1), 10
    keras.utils.set_random_seed(args.seed)
    specs = draw_specs(args.specs, args.seed, input_shape, classes)
    now = datetime.datetime.now().astimezone()
    output = args.output or RESULTS / (f"latency_model-{socket.gethostname()}-{now:%Y-%m-%d}.json")
    results: dict[str, Any] = {
        "what": (
            "latency model (keras_resnet.tuning.latency_model) predicted vs measured batch-1 "
            f"latency of {len(specs)} random candidates of the default search space"
        ),
        "command": " ".join(["python -m benchmarks.latency_model", *argv]),
        "date": now.isoformat(timespec="seconds"),
        "input_shape": list(input_shape),
        "classes": classes,
        "seed": args.seed,
        "cpu_flags": sorted(cpu_flags()),
        "int8_dot_product_flags": int8_dot_product_flags(),
        "machine": machine(),
        "versions": {**versions(), "keras_resnet": __version__},
        "targets": {},
    }
    with tempfile.TemporaryDirectory(prefix="latency-model-") as tmp:
        table_dir = args.table_dir or Path(tmp)
        table_dir.mkdir(parents=True, exist_ok=True)
        for name in args.targets:
            result = run_target(
                name, args.threads, specs, input_shape, classes, table_dir, args.runs
            )
            results["targets"][name] = result
            write_json(output, results)
            p, q = result["prediction"], result["prediction_vs_p10"]
            print(
                f"{name}: against the median: median error {p['median_abs_relative_error']:.1%}, "
                f"worst {p['worst_abs_relative_error']:.1%}; against the 10th percentile: "
                f"{q['median_abs_relative_error']:.1%}, worst {q['worst_abs_relative_error']:.1%} "
                f"({result['micro_models_profiled']} "
                f"micro-models, {result['profile_seconds']:.0f} s profiling, "
                f"{result['measure_seconds']:.0f} s measuring)",
                flush=True,
            )
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
