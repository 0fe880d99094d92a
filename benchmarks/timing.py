"""Interleaved A/B timing and the statistics the benchmark reports (numpy only).

Every comparison is timed the same way: for each repetition both sides run
back to back, the order alternating (ours first on even repetitions, the
reference first on odd ones), so drifting machine load hits both sides alike.
A sample is the mean time of `calls` consecutive calls, the same `calls` for
both sides. Reported: per side the median, quartiles and the raw samples; the
speed ratio keras_resnet / reference (reference median time over ours, so
above 1 means keras_resnet is faster) and its 95% bootstrap confidence
interval, resampling repetitions as pairs.

>>> ours, ref = interleave(lambda: None, lambda: None, reps=4, calls=10)
>>> speed_ratio(ours, ref)["ratio"] > 0
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# The timing primitives are the library's (one policy for every latency we report);
# this module adds the paired A/B statistics only the benchmark needs.
from keras_resnet.timing import calls_for, rotated, summary, time_calls

__all__ = [
    "calls_for",
    "compare",
    "difference",
    "interleave",
    "measure",
    "rotated",
    "speed_ratio",
    "summary",
    "time_calls",
    "within_noise_at_least",
]

BOOTSTRAP_RESAMPLES = 2000


def interleave(
    ours: Callable[[], Any],
    reference: Callable[[], Any],
    *,
    reps: int,
    calls: int = 1,
    before: Callable[[], Any] | None = None,
) -> tuple[list[float], list[float]]:
    """Times both sides `reps` times, alternating which goes first.

    Args:
        ours, reference: the two sides, already warmed up.
        reps: repetitions (samples per side).
        calls: calls per sample.
        before: run (untimed) before every sample, e.g. `gc.collect`.

    Returns:
        Seconds per call: (ours samples, reference samples), paired by repetition.
    """
    samples: tuple[list[float], list[float]] = ([], [])
    sides = ((0, ours), (1, reference))
    for rep in range(reps):
        for side, fn in sides if rep % 2 == 0 else sides[::-1]:
            if before is not None:
                before()
            samples[side].append(time_calls(fn, calls))
    return samples


def measure(
    ours: Callable[[], Any],
    reference: Callable[[], Any],
    *,
    reps: int,
    min_sample_seconds: float | None = None,
    work: float | None = None,
) -> dict[str, Any]:
    """One A/B comparison of two calls, start to finish: the `compare` record.

    Both sides are called twice each, alternating (the first call traces, the
    second settles), then timed by `interleave`. With `min_sample_seconds` a
    sample is as many calls of `ours` as last that long (`calls_for`, recorded
    as `calls_per_sample`), the same number for the reference; without, one call.
    `work` (images per call) adds the throughputs.
    """
    for fn in (ours, reference, ours, reference):
        fn()
    calls = 1 if min_sample_seconds is None else calls_for(ours, min_sample_seconds)
    a, b = interleave(ours, reference, reps=reps, calls=calls)
    record = compare(a, b, work=work)
    if min_sample_seconds is not None:
        record["calls_per_sample"] = calls
    return record


def _paired(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size != b.size or a.size == 0:
        raise ValueError(
            f"paired samples must be non-empty and of equal length. Received: {a.size}, {b.size}"
        )
    return a, b


def _bootstrap(
    statistic: Callable[[np.ndarray], float], n: int, seed: int
) -> tuple[float, float] | None:
    if n < 3:
        return None  # too few repetitions for an interval worth printing
    rng = np.random.default_rng(seed)
    values = [statistic(rng.integers(0, n, n)) for _ in range(BOOTSTRAP_RESAMPLES)]
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def speed_ratio(
    ours_seconds: Sequence[float], reference_seconds: Sequence[float], *, seed: int = 0
) -> dict[str, Any]:
    """Reference median time / ours: above 1 means ours is faster.

    Returns:
        ``{"ratio": r, "ci95": [low, high] or None}``; the interval resamples
        repetitions as pairs (both sides need the same number of samples).
    """
    ours, ref = _paired(ours_seconds, reference_seconds)
    ratio = float(np.median(ref) / np.median(ours))
    ci = _bootstrap(lambda i: np.median(ref[i]) / np.median(ours[i]), ours.size, seed)
    return {"ratio": ratio, "ci95": list(ci) if ci else None}


def difference(
    ours_seconds: Sequence[float], reference_seconds: Sequence[float], *, seed: int = 0
) -> dict[str, Any]:
    """Median ours minus median reference (seconds) with a paired bootstrap interval."""
    ours, ref = _paired(ours_seconds, reference_seconds)
    ci = _bootstrap(lambda i: np.median(ours[i]) - np.median(ref[i]), ours.size, seed)
    return {
        "delta": float(np.median(ours) - np.median(ref)),
        "ci95": list(ci) if ci else None,
    }


def compare(
    ours_seconds: Sequence[float],
    reference_seconds: Sequence[float],
    *,
    work: float | None = None,
    work_unit: str = "images",
) -> dict[str, Any]:
    """The record of one A/B comparison: both summaries, the speed ratio, throughput."""
    record: dict[str, Any] = {
        "ours_seconds": summary(ours_seconds),
        "reference_seconds": summary(reference_seconds),
        "speed_ratio": speed_ratio(ours_seconds, reference_seconds),
    }
    if work is not None:
        record[f"ours_{work_unit}_per_second"] = work / record["ours_seconds"]["median"]
        record[f"reference_{work_unit}_per_second"] = work / record["reference_seconds"]["median"]
    return record


def within_noise_at_least(ratio: dict[str, Any], target: float) -> bool:
    """True when the ratio reaches `target`, or its 95% interval does (not shown to miss it)."""
    ci = ratio.get("ci95")
    return ratio["ratio"] >= target or (ci is not None and ci[1] >= target)
