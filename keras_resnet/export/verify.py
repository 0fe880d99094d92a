"""Acceptance of an artifact: its outputs against the Keras model's, within a tolerance."""

from __future__ import annotations

from typing import Any

import numpy as np


class ExportVerificationError(ValueError):
    """An artifact's outputs fell outside its tolerance; nothing was written."""


def compare(
    fmt: str, outputs: np.ndarray, reference: np.ndarray, labels: np.ndarray | None, tol: dict
) -> dict[str, Any]:
    """The comparison the manifest records; ExportVerificationError when `tol` is not met.

    `tol` holds `max_abs_diff` (the largest absolute difference of any output
    value may not exceed it) and/or `top1_agreement` (the share of images whose
    top-1 class is the reference's must reach it). `labels` add an accuracy.
    """
    diff = np.abs(outputs.astype(np.float64) - reference.astype(np.float64))
    agreement = float(np.mean(outputs.argmax(-1) == reference.argmax(-1)))
    result: dict[str, Any] = {
        "samples": len(reference),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "top1_agreement": agreement,
        "criterion": dict(tol),
    }
    if labels is not None:
        result["accuracy"] = float(np.mean(outputs.argmax(-1) == labels))
    passed = True
    if "max_abs_diff" in tol:
        passed &= result["max_abs_diff"] <= tol["max_abs_diff"]
    if "top1_agreement" in tol:
        passed &= agreement >= tol["top1_agreement"]
    result["passed"] = bool(passed)
    if not passed:
        measured = ", ".join(f"{k}={result[k]:.6g}" for k in tol)
        wanted = ", ".join(
            f"{k} {'<=' if k == 'max_abs_diff' else '>='} {v:g}" for k, v in tol.items()
        )
        raise ExportVerificationError(
            f"{fmt} failed verification against the Keras model on {len(reference)} images: "
            f"{measured} (needs {wanted}); nothing was written. Loosen it with "
            f"tolerances={{'{fmt}': ...}} only if that error is acceptable."
        )
    return result
