"""The fastest verified artifact on the exporting host: the manifest's `fastest` entries.

An export times every TFLite file in LiteRT at batch 1 (and, with `keras_bf16`,
both Keras files in turns). `choose_fastest` picks, among the artifacts of one
group that passed verification and were timed, the one with the lowest median;
`fastest_entries` adds what decides it on this CPU (the int8 dot-product and
bfloat16 flags of `keras_resnet.precision`), the guess made without measuring
(`expected_fastest_tflite`), whether the measurement agrees, and one line of why:

    "fastest": {"artifact": "tflite_int8", "path": "tflite/model_int8.tflite",
                "measured": true, "latency_batch1_median_ms": {"tflite_int8": 0.05, ...},
                "why": "tflite_int8: 3.10x the speed of tflite_fp32 here; the CPU has
                        avx512_vnni (int8 dot products)", "agrees_with_expected": true, ...}

TFLite (`fastest`) and Keras (`fastest_keras`, only when `keras_bf16` was written)
are separate entries: they serve different runtimes. Without latencies
(`latency_runs=0`) the entry says so and names the expected form instead.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from typing import Any

from keras_resnet.constants import TFLITE_VARIANTS
from keras_resnet.precision import (
    BF16_CPU_FLAGS,
    cpu_flags,
    expected_fastest_tflite,
    int8_dot_product_flags,
)

TFLITE_FORMATS = tuple(f"tflite_{v}" for v in TFLITE_VARIANTS)
KERAS_FORMATS = ("keras", "keras_bf16")
NOT_MEASURED = "latency not measured (latency_runs=0)"
BF16_MIN_MACS = 3e9
"""Batch-1 bfloat16 is expected to beat float32 in Keras from this many multiply-accumulates
an image, on a CPU with avx512_bf16: the folded ResNet50 gained at 224x224 (3.9 GMACs) and
lost at 112x112 (0.97 GMACs); the ratios are in docs/export.md."""


def _median(artifact: Mapping[str, Any]) -> float | None:
    return (artifact.get("latency_batch1") or {}).get("median_ms")


def choose_fastest(
    artifacts: Mapping[str, Mapping[str, Any]],
    formats: Sequence[str],
    *,
    expected: str | None = None,
) -> dict[str, Any] | None:
    """The verified, timed artifact of `formats` with the lowest median batch-1 latency.

    Args:
        artifacts: the manifest's `artifacts` (format -> entry with `verification.passed`
            and, when timed, `latency_batch1.median_ms`).
        formats: the group competing, in order of preference on a tie after `expected`.
        expected: the form expected to be fastest without measuring: it wins a tie, and is
            the answer (if written and verified) when nothing was timed.

    Returns:
        None when no artifact of the group was written; else `artifact` (None if none
        qualifies), `measured`, `latency_batch1_median_ms` (every verified, timed
        candidate, fastest first), `excluded` (format -> why), `tied_with` and
        `within_noise` (the runner-up's 10th-90th percentile range reaches the winner's
        median).

    Example:
        >>> choose_fastest({"tflite_fp32": fp32, "tflite_int8": int8}, TFLITE_FORMATS)
    """
    present = [f for f in formats if f in artifacts]
    if not present:
        return None
    excluded: dict[str, str] = {}
    timed: dict[str, float] = {}
    for fmt in present:
        if not artifacts[fmt].get("verification", {}).get("passed", False):
            excluded[fmt] = "verification failed"
        elif _median(artifacts[fmt]) is None:
            excluded[fmt] = "not timed"
        else:
            timed[fmt] = float(_median(artifacts[fmt]))
    entry: dict[str, Any] = {"candidates": present, "excluded": excluded}
    if not timed:
        verified = [f for f in present if excluded[f] != "verification failed"]
        pick = expected if expected in verified else None
        entry.update(artifact=pick, measured=False, latency_batch1_median_ms={})
        return entry
    order = sorted(timed, key=lambda f: (timed[f], f != expected, list(formats).index(f)))
    best = order[0]
    runner_up = order[1] if len(order) > 1 else None
    within_noise = False
    if runner_up is not None:
        low = (artifacts[runner_up].get("latency_batch1") or {}).get("p10_ms", timed[runner_up])
        within_noise = low <= timed[best]
    entry.update(
        artifact=best,
        measured=True,
        latency_batch1_median_ms={f: timed[f] for f in order},
        tied_with=[f for f in order[1:] if timed[f] == timed[best]],
        runner_up=runner_up,
        within_noise=within_noise,
    )
    return entry


def _relative(entry: dict[str, Any], reference: str) -> str:
    """`"<best>: 3.10x the speed of <reference> here"` (or the plain fact when alone)."""
    best = entry["artifact"]
    times = entry["latency_batch1_median_ms"]
    if reference not in times or reference == best:
        reference = entry.get("runner_up")
    if reference is None:
        return f"{best}: the only one timed"
    text = f"{best}: {times[reference] / times[best]:.2f}x the speed of {reference} here"
    runner_up = entry.get("runner_up")
    if entry.get("within_noise"):
        close = "" if runner_up == reference else f"{runner_up} "
        text += f" ({close}within this host's noise)"
    return text


def _host(flags: frozenset[str]) -> dict[str, Any]:
    return {
        "machine": platform.machine(),
        "int8_dot_product": int8_dot_product_flags(flags),
        "bf16": sorted(flags & set(BF16_CPU_FLAGS)),
    }


def fastest_tflite(
    artifacts: Mapping[str, Mapping[str, Any]], flags: frozenset[str] | None = None
) -> dict[str, Any] | None:
    """The manifest's `fastest`: the TFLite choice, the CPU flags, the expectation, why."""
    flags = cpu_flags() if flags is None else flags
    target, reason = expected_fastest_tflite(flags)
    expected = target.replace("-", "_")  # the tuner's target name -> the format name
    entry = choose_fastest(artifacts, TFLITE_FORMATS, expected=expected)
    if entry is None:
        return None
    host = _host(flags)
    isa = (
        f"the CPU has {', '.join(host['int8_dot_product'])} (int8 dot products)"
        if host["int8_dot_product"]
        else "int8 not expected to be faster: no int8 dot-product flags"
    )
    return _explained(entry, host, expected, reason, f"{_relative(entry, 'tflite_fp32')}; {isa}")


def _explained(
    entry: dict[str, Any], host: dict[str, Any], expected: str, reason: str, measured_why: str
) -> dict[str, Any]:
    """`entry` with the CPU flags, the expectation and one line of why (`measured_why` when
    the artifacts were timed, else what was expected without measuring)."""
    why = (
        measured_why
        if entry["measured"]
        else f"{NOT_MEASURED}: expected {expected} here ({reason})"
    )
    entry.update(
        cpu_flags=host,
        expected=expected,
        expected_reason=reason,
        agrees_with_expected=entry["artifact"] == expected,
        why=why,
    )
    return entry


def expected_fastest_keras(flags: frozenset[str], macs: int | None) -> tuple[str, str]:
    """At batch 1: `keras_bf16` on a bfloat16 CPU for a model of `BF16_MIN_MACS` or more,
    else `keras` (float32), and why. `macs`: one image's multiply-accumulates."""
    found = sorted(flags & set(BF16_CPU_FLAGS))
    if not found:
        return "keras", f"no bfloat16 CPU flags ({', '.join(BF16_CPU_FLAGS)})"
    size = "unknown" if macs is None else f"{macs / 1e9:.2g}"
    if macs is not None and macs >= BF16_MIN_MACS:
        return "keras_bf16", f"CPU with {', '.join(found)} and {size} GMACs an image"
    return "keras", (
        f"{size} GMACs an image: below {BF16_MIN_MACS / 1e9:g}, batch-1 bfloat16 was "
        f"measured slower than float32 on {', '.join(found)}"
    )


def fastest_keras(
    artifacts: Mapping[str, Mapping[str, Any]],
    flags: frozenset[str] | None = None,
    macs: int | None = None,
) -> dict[str, Any] | None:
    """The manifest's `fastest_keras`: `keras` (float32) or `keras_bf16`, when both compete."""
    if "keras_bf16" not in artifacts:
        return None
    flags = cpu_flags() if flags is None else flags
    expected, reason = expected_fastest_keras(flags, macs)
    entry = choose_fastest(artifacts, KERAS_FORMATS, expected=expected)
    host = _host(flags)
    bf16 = (
        f"the CPU has {', '.join(host['bf16'])}"
        if host["bf16"]
        else "bfloat16 is emulated without avx512_bf16/amx_bf16"
    )
    return _explained(
        entry, host, expected, reason, f"{_relative(entry, 'keras')}, batch 1; {bf16}"
    )


def fastest_entries(
    artifacts: Mapping[str, Mapping[str, Any]],
    flags: frozenset[str] | None = None,
    macs: int | None = None,
) -> dict[str, Any]:
    """`{"fastest": ..., "fastest_keras": ...}` for the manifest, each only when it applies.

    `macs` (one image's multiply-accumulates) decides the Keras expectation.
    """
    flags = cpu_flags() if flags is None else flags
    entries = {"fastest": fastest_tflite(artifacts, flags)}
    entries["fastest_keras"] = fastest_keras(artifacts, flags, macs)
    out = {}
    for key, entry in entries.items():
        if entry is not None:
            if entry["artifact"] is not None:
                entry["path"] = artifacts[entry["artifact"]]["path"]
            out[key] = entry
    return out
