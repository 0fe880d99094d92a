"""The benchmark's figures as speed ratios, and the targets they are held to.

`ratios(results)` turns each section of a results file into rows (name, ratio,
95% interval, target, the two sides' figures); `targets(results)` says which
targets are met, within noise, and by how much the others are missed. Each
section has one reader in `RATIOS`; rows of benchmarks/rows.py carry their own
target. `benchmarks.report` writes them as tables and a chart.
"""

from __future__ import annotations

from typing import Any

from benchmarks import timing

PARITY = 1.00  # forward, train and build: at least keras.applications' speed
MATMUL_FRACTION = 0.85  # ResNet50 forward at batch 32 against the matmul rate
INT8_SPEEDUP = 3.0  # int8 TFLite against fp32 TFLite
IMPORT_EXTRA_SECONDS = 0.3  # import keras_resnet against import keras


# --- figures derived from the sections ----------------------------------------------------


def _row(name: str, ratio: dict[str, Any], target: float | None, **extra: Any) -> dict:
    return {"name": name, "ratio": ratio["ratio"], "ci95": ratio["ci95"], "target": target, **extra}


def _build_ratios(build: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        _row(
            f"build {model}",
            rec["speed_ratio"],
            PARITY,
            unit="s",
            ours=rec["ours_seconds"]["median"],
            reference=rec["reference_seconds"]["median"],
        )
        for model, rec in build.get("models", {}).items()
    ]


def _forward_ratios(forward: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        _row(
            f"forward {model} batch {key[6:]} ({mode})",
            cmp["speed_ratio"],
            PARITY,
            unit="images/s",
            ours=cmp["ours_images_per_second"],
            reference=cmp["reference_images_per_second"],
        )
        for model, rec in forward.get("models", {}).items()
        for key, modes in rec.items()
        if key.startswith("batch_")
        for mode, cmp in modes.items()
    ]


def _train_ratios(train: dict[str, Any]) -> list[dict[str, Any]]:
    if "comparison" not in train:
        return []
    cmp = train["comparison"]
    return [
        _row(
            f"train step {train['model']} batch {train['batch']}",
            cmp["speed_ratio"],
            PARITY,
            unit="images/s",
            ours=cmp["ours_images_per_second"],
            reference=cmp["reference_images_per_second"],
        )
    ]


def _table_ratios(rows: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of benchmarks/rows.py, each with the target it was run with."""
    return [
        _row(
            name,
            rec["speed_ratio"],
            rec.get("target"),
            unit="images/s",
            ours=rec["ours_images_per_second"],
            reference=rec["reference_images_per_second"],
        )
        for name, rec in rows.get("rows", {}).items()
    ]


# What the import section measured, for results files written before it said so itself
# (they timed the import statements alone).
IMPORT_LABELS = {
    "ratio": "import keras_resnet vs import keras",
    "extra": "import keras_resnet - import keras",
}


def import_labels(imp: dict[str, Any]) -> dict[str, str]:
    """The import section's names: `ratio` (its speed-ratio row), `extra` (its seconds row)."""
    return imp.get("labels", IMPORT_LABELS)


def extra_seconds_name(imp: dict[str, Any]) -> str:
    return f"{import_labels(imp)['extra']} (s)"


def _import_ratios(imp: dict[str, Any]) -> list[dict[str, Any]]:
    if "speed_ratio" not in imp:
        return []
    return [
        _row(
            import_labels(imp)["ratio"],
            imp["speed_ratio"],
            None,
            unit="s",
            ours=imp["ours_seconds"]["median"],
            reference=imp["reference_seconds"]["median"],
        )
    ]


def _flops_ratios(flops: dict[str, Any]) -> list[dict[str, Any]]:
    if "fraction_of_matmul" not in flops:
        return []
    return [
        _row(
            f"ResNet50 forward GFLOP/s / matmul GFLOP/s (batch {flops['batch']})",
            flops["fraction_of_matmul"],
            MATMUL_FRACTION,
            unit="GFLOP/s",
            ours=flops["resnet50_gflops"],
            reference=flops["matmul_best_gflops"],
        )
    ]


def _tflite_ratios(tflite: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for model, rec in tflite.get("models", {}).items():
        variants = rec["variants"]
        fp32_ms = variants["fp32"]["latency_ms"]["median"]
        rows += [
            _row(
                f"TFLite {model} {variant} vs fp32 TFLite",
                v["speedup_vs_fp32"],
                INT8_SPEEDUP if variant == "int8" else None,
                unit="ms",
                ours=v["latency_ms"]["median"],
                reference=fp32_ms,
            )
            for variant, v in variants.items()
            if variant != "fp32"
        ]
        rows += [
            _row(
                f"TFLite {model} {variant} vs Keras predict_on_batch",
                v["speedup_vs_keras"],
                None,
                unit="ms",
                ours=v["latency_ms"]["median"],
                reference=rec["keras_latency_ms"]["median"],
            )
            for variant, v in variants.items()
        ]
    return rows


def _gpu_ratios(gpu: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        _row(
            f"GPU {gpu['model']} {key} vs float32",
            rec["speedup_vs_float32"],
            None,
            unit="images/s",
            ours=rec["images_per_second"],
            reference=None,
        )
        for key, rec in gpu.get("configs", {}).items()
        if "+" in key or "mixed" in key
    ]


# Each section's speed ratios, in report order.
RATIOS = {
    "build": _build_ratios,
    "forward": _forward_ratios,
    "train": _train_ratios,
    "rows": _table_ratios,
    "import": _import_ratios,
    "flops": _flops_ratios,
    "tflite": _tflite_ratios,
    "gpu": _gpu_ratios,
}


def ratios(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every speed ratio in the results, in report order, with its target where one is set.

    Example:
        >>> ratios({"sections": {}})
        []
    """
    sections = results.get("sections", {})
    return [row for name, rows_of in RATIOS.items() for row in rows_of(sections.get(name, {}))]


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value, whether it is met, and by how much not.

    A target counts as met when the figure reaches it or its 95% interval does
    (the benchmark cannot tell them apart). `shortfall` is how far the figure is
    from the target (a fraction of the target for ratios, seconds for import).
    """
    rows = []
    for r in ratios(results):
        if r["target"] is None:
            continue
        met = timing.within_noise_at_least(r, r["target"])
        rows.append(
            {
                "name": r["name"],
                "target": f">= {r['target']:.2f}x",
                "value": r["ratio"],
                "ci95": r["ci95"],
                "met": met,
                "shortfall": None if met else (r["target"] - r["ratio"]) / r["target"],
            }
        )
    imp = results.get("sections", {}).get("import", {})
    if "extra_seconds" in imp:
        extra = imp["extra_seconds"]
        # The median itself must be within the allowance (an interval that merely
        # touches it is not enough: the target is an upper bound on a cost).
        met = extra["delta"] <= IMPORT_EXTRA_SECONDS
        rows.append(
            {
                "name": extra_seconds_name(imp),
                "target": f"<= +{IMPORT_EXTRA_SECONDS:.2f} s",
                "value": extra["delta"],
                "ci95": extra["ci95"],
                "met": met,
                "shortfall": None if met else extra["delta"] - IMPORT_EXTRA_SECONDS,
                "unit": "s",
            }
        )
    return rows
