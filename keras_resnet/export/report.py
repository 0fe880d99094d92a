"""What an export reports besides its artifacts: software versions, and the printed table."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_resnet.export.export_utils import package_version
from keras_resnet.export.onnx import ONNX_PACKAGES
from keras_resnet.version import __version__


def software_versions(formats: Iterable[str] = ()) -> dict[str, Any]:
    """The versions an artifact (or a benchmark) was made with; ONNX's when `formats` has it.

    Example:
        >>> software_versions(["onnx"])["onnxruntime"]
    """
    versions = {
        "keras_resnet": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "ai_edge_litert": package_version("ai-edge-litert"),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
    }
    if "onnx" in formats:
        versions.update({p: package_version(p) for p in ONNX_PACKAGES})
    return versions


def print_manifest(manifest: dict[str, Any], where: str | os.PathLike | None = None) -> None:
    """A table of the artifacts: size, batch-1 latency, agreement with Keras.

    The fastest verified TFLite file (the manifest's `fastest`) and, with `keras_bf16`,
    Keras file (`fastest_keras`) are marked `*`, and why is printed under the table.

    Example:
        >>> print_manifest(export_run("runs/demo", "saved_models/demo", verbose=False))
    """
    rows = [("artifact", "size", "latency b1", "max |diff|", "top-1 agree", "accuracy", "GPU ops")]
    choices = [manifest[k] for k in ("fastest", "fastest_keras") if k in manifest]
    marked = {c["artifact"] for c in choices if c.get("measured")}
    for fmt, a in manifest["artifacts"].items():
        v = a["verification"]
        latency = a.get("latency_batch1", {}).get("median_ms")
        gpu = a.get("gpu_delegate")
        rows.append(
            (
                a["path"] + (" *" if fmt in marked else ""),
                human_size(a["size_bytes"]),
                f"{latency:.3f} ms" if latency is not None else "",
                f"{v['max_abs_diff']:.2e}",
                f"{v['top1_agreement']:.2%}",
                f"{v['accuracy']:.2%}" if "accuracy" in v else "",
                ("all supported" if gpu["compatible"] else "unsupported ops") if gpu else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    if where is not None:
        print(
            f"exported to {where} ({manifest['verification_data']['samples']} verification images)"
        )
    for r in rows:
        print("  " + "  ".join(cell.ljust(wd) for cell, wd in zip(r, widths, strict=True)))
    if manifest.get("fold", {}).get("applied"):
        before, after = manifest["fold"]["layers"]
        print(
            f"  BatchNorm folded ({before} -> {after} layers), verified against the unfolded model"
        )
    keras_ms = manifest.get("keras_latency_batch1", {}).get("median_ms")
    if keras_ms is not None:
        print(f"  Keras (tf.function) batch-1 latency: {keras_ms:.3f} ms")
    for choice in choices:
        mark = "*" if choice.get("measured") else " "
        print(f"  {mark} fastest here: {choice['why']}")


def human_size(n: int) -> str:
    """`n` bytes as `"512 B"`, `"1.5 KiB"`, `"2.0 MiB"` or `"1.2 GiB"`."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
