"""The one way keras_resnet times things: every latency it reports comes from here.

The tuner's latency budget, the export manifest's batch-1 latencies and the
benchmarks all use one policy:

* warm-up calls first (tracing, allocation), untimed;
* a *sample* is the mean time of `calls` consecutive calls, with `calls` sized
  by time as `timeit.Timer.autorange` does (enough calls that a sample lasts
  at least `min_sample_seconds`), so a 0.05 ms TFLite model and a 50 ms
  ResNet-50 are both timed above the clock's noise;
* `samples` samples, fewer if `max_seconds` runs out (never fewer than
  `min_samples`);
* reported: the median and the 10th/90th percentiles, in milliseconds.

>>> result = latency(lambda: sum(range(100)), samples=5)
>>> sorted(result)
['calls_per_sample', 'median_ms', 'p10_ms', 'p90_ms', 'runs', 'samples']
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

MIN_SAMPLE_SECONDS = 0.001
"""A sample lasts at least this long (perf_counter resolves ~100 ns; 1 ms is far above)."""


def time_calls(fn: Callable[[], Any], calls: int) -> float:
    """Mean seconds per call over `calls` consecutive calls of `fn`."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def calls_for(fn: Callable[[], Any], min_seconds: float) -> int:
    """How many calls make a sample of at least `min_seconds`, as `timeit.Timer.autorange`.

    The count grows until a timed sample of that many calls lasted `min_seconds`, so one
    slow or fast first call does not decide it.
    """
    calls = 1
    while True:
        seconds = time_calls(fn, calls) * calls
        if seconds >= min_seconds:
            return calls
        calls = max(2 * calls, math.ceil(calls * min_seconds / max(seconds, 1e-9)))


def rotated(keys: Sequence[Any], round_index: int) -> list[Any]:
    """`keys` started at a different one each round, so no side always runs first.

    >>> rotated(["a", "b", "c"], 1)
    ['b', 'c', 'a']
    """
    start = round_index % len(keys)
    return [*keys[start:], *keys[:start]]


def summary(samples: Sequence[float], *, digits: int = 6) -> dict[str, Any]:
    """Median, quartiles, extremes, count and the raw samples (rounded)."""
    a = np.asarray(samples, dtype=float)
    q25, median, q75 = np.percentile(a, [25, 50, 75])
    return {
        "median": float(median),
        "q25": float(q25),
        "q75": float(q75),
        "min": float(a.min()),
        "max": float(a.max()),
        "n": int(a.size),
        "iqr_over_median": float((q75 - q25) / median) if median else None,
        "samples": [float(f"{x:.{digits}g}") for x in a],
    }


def latency(
    fn: Callable[[], Any],
    *,
    samples: int = 30,
    warmup: int = 3,
    min_samples: int = 5,
    max_seconds: float | None = None,
    min_sample_seconds: float = MIN_SAMPLE_SECONDS,
) -> dict[str, Any]:
    """Times `fn` by the policy in the module doc.

    Args:
        fn: one call of the thing timed (e.g. one batch-1 inference).
        samples: samples wanted.
        warmup: untimed calls first.
        min_samples: samples taken even past `max_seconds`.
        max_seconds: stop sampling after this long (None: take all `samples`).
        min_sample_seconds: each sample's length at least (calls sized to reach it).

    Returns:
        `median_ms`, `p10_ms`, `p90_ms` (per call), `samples` taken,
        `calls_per_sample` and `runs` (the timed calls in all).
    """
    for _ in range(warmup):
        fn()
    calls = calls_for(fn, min_sample_seconds)
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    times: list[float] = []
    while len(times) < samples and (
        len(times) < min_samples or deadline is None or time.perf_counter() < deadline
    ):
        times.append(time_calls(fn, calls) * 1e3)
    return _latency_record(times, calls)


def _latency_record(times: list[float], calls_per_sample: int) -> dict[str, Any]:
    """`latency`'s record of the samples `times` (ms), each of `calls_per_sample` calls."""
    p10, median, p90 = np.percentile(times, [10, 50, 90])
    return {
        "median_ms": round(float(median), 4),
        "p10_ms": round(float(p10), 4),
        "p90_ms": round(float(p90), 4),
        "samples": len(times),
        "calls_per_sample": calls_per_sample,
        "runs": len(times) * calls_per_sample,
    }


def interleaved_latency(
    calls: Mapping[str, Callable[[], Any]],
    *,
    samples: int = 30,
    warmup: int = 3,
    min_sample_seconds: float = MIN_SAMPLE_SECONDS,
) -> dict[str, dict[str, Any]]:
    """`latency` of several calls timed in turns, so a change of the machine's load hits all.

    Each round takes one sample of every call, starting at a different one each round
    (`rotated`); a sample is the same number of calls for all, as many as the fastest needs
    to last `min_sample_seconds`. Returns `latency`'s record per name.

    >>> timed = interleaved_latency({"a": lambda: None, "b": lambda: sum(range(50))}, samples=3)
    >>> sorted(timed["a"])
    ['calls_per_sample', 'median_ms', 'p10_ms', 'p90_ms', 'runs', 'samples']
    """
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    per_sample = max(calls_for(fn, min_sample_seconds) for fn in calls.values())
    times: dict[str, list[float]] = {name: [] for name in calls}
    for round_index in range(samples):
        for name in rotated(list(calls), round_index):
            times[name].append(time_calls(calls[name], per_sample) * 1e3)
    return {name: _latency_record(ms, per_sample) for name, ms in times.items()}
