"""keras_resnet.timing: the one latency policy (time-sized samples, median and spread)."""

import time

from keras_resnet.timing import latency


def test_samples_are_sized_by_time_and_report_the_median():
    result = latency(lambda: time.sleep(0.001), samples=5, min_sample_seconds=0.01)
    assert result["samples"] == 5
    # Enough calls that a sample lasts the 10 ms asked for (sleeps run long, never short).
    assert result["calls_per_sample"] * result["median_ms"] >= 10 * 0.9
    assert result["runs"] == 5 * result["calls_per_sample"]
    assert 1.0 <= result["p10_ms"] <= result["median_ms"] <= result["p90_ms"] < 20


def test_a_time_budget_stops_sampling_but_not_before_the_minimum():
    start = time.perf_counter()
    result = latency(lambda: time.sleep(0.01), samples=1000, max_seconds=0.2, min_samples=3)
    assert 3 <= result["samples"] < 1000
    assert time.perf_counter() - start < 2
    assert (
        latency(lambda: time.sleep(0.01), samples=10, max_seconds=0.0, min_samples=4)["samples"]
        == 4
    )
