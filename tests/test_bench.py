"""The benchmark scripts: statistics, report generation, and a `--quick` smoke run.

No speed is asserted anywhere: speed is a benchmark result, not a test.
"""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import bench, report, timing

REPO = Path(__file__).resolve().parent.parent


def test_interleave_alternates_order_and_pairs_samples():
    calls = []
    ours, ref = timing.interleave(
        lambda: calls.append("ours"), lambda: calls.append("ref"), reps=4, calls=2
    )
    assert len(ours) == len(ref) == 4
    assert calls == ["ours"] * 2 + ["ref"] * 4 + ["ours"] * 4 + ["ref"] * 4 + ["ours"] * 2


def test_speed_ratio_is_reference_time_over_ours_with_an_interval_around_it():
    ours = [1.0, 1.1, 0.9, 1.0, 1.05]
    ref = [2.0, 2.2, 1.8, 2.0, 2.1]  # the reference is twice as slow: ours is 2x faster
    r = timing.speed_ratio(ours, ref)
    assert r["ratio"] == pytest.approx(2.0)
    assert r["ci95"][0] <= r["ratio"] <= r["ci95"][1]
    assert timing.speed_ratio(ours[:2], ref[:2])["ci95"] is None  # too few for an interval
    assert timing.difference(ours, ref)["delta"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="equal length"):
        timing.speed_ratio(ours, ref[:3])


def test_within_noise_uses_the_interval():
    assert timing.within_noise_at_least({"ratio": 0.97, "ci95": [0.9, 1.02]}, 1.0)
    assert not timing.within_noise_at_least({"ratio": 0.97, "ci95": [0.95, 0.99]}, 1.0)
    assert not timing.within_noise_at_least({"ratio": 0.97, "ci95": None}, 1.0)


def test_replace_block_only_touches_its_markers():
    text = "a\n<!-- bench:summary:start -->\nold\n<!-- bench:summary:end -->\nb\n"
    assert report.replace_block(text, "summary", "new") == (
        "a\n<!-- bench:summary:start -->\nnew\n<!-- bench:summary:end -->\nb\n"
    )
    assert report.replace_block(text, "detail", "new") == text
    with pytest.raises(ValueError, match="without"):
        report.replace_block("<!-- bench:detail:start -->\n", "detail", "x")


def test_readmes_are_generated_from_the_latest_results():
    """The committed tables are what `python -m benchmarks.report` makes of the newest run."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.report", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def _numbers(tree, path=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _numbers(value, f"{path}.{key}")
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _numbers(value, f"{path}[{i}]")
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield path, tree


def _positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_quick_benchmark_writes_every_section_and_the_report_reads_it(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (path,) = tmp_path.glob("*-quick.json")
    results = json.loads(path.read_text())
    assert results["kind"] == "quick" and results["complete"]
    assert set(results["sections"]) == set(bench.SECTIONS)
    for name, section in results["sections"].items():
        assert "error" not in section, (name, section["error"])
    for where, value in _numbers(results):
        assert math.isfinite(value), where

    s = results["sections"]
    for model in s["build"]["models"].values():
        assert _positive(model["ours_seconds"]["median"])
        assert _positive(model["speed_ratio"]["ratio"])
    for model in s["forward"]["models"].values():
        assert model["outputs_max_abs_diff"] < 1e-4  # same weights, same graph
        for batch in ("batch_1", "batch_32"):
            for mode in ("predict_on_batch", "tf.function"):
                assert _positive(model[batch][mode]["ours_images_per_second"])
                assert _positive(model[batch][mode]["reference_images_per_second"])
    assert _positive(s["train"]["comparison"]["ours_images_per_second"])
    assert _positive(s["flops"]["fraction_of_matmul"]["ratio"])
    assert _positive(s["flops"]["flops_per_image"])
    assert _positive(s["import"]["ours_seconds"]["median"])
    assert _positive(s["digits"]["train_images_per_second"])
    assert s["digits"]["time_to_98_seconds"] is None and "quick" in s["digits"]["time_to_98_note"]
    tflite = s["tflite"]["models"]["ResNet20"]
    assert set(tflite["variants"]) == {"fp32", "fp16", "dynamic", "int8"}
    for variant in tflite["variants"].values():
        assert _positive(variant["latency_ms"]["median"])
        assert _positive(variant["speedup_vs_fp32"]["ratio"])
        assert _positive(variant["speedup_vs_keras"]["ratio"])
        assert _positive(variant["speedup_vs_keras_tf_function"]["ratio"])
        assert variant["top1_agreement_with_keras"] >= 0.5
    assert "GPU" in s["gpu"]["skipped"] or s["gpu"]["configs"]
    assert results["ratios"] and all(_positive(r["ratio"]) for r in results["ratios"])
    assert results["targets"]

    readmes = []
    for source in (REPO / "README.md", REPO / "benchmarks" / "README.md"):
        copy = tmp_path / source.relative_to(REPO).as_posix().replace("/", "_")
        shutil.copy(source, copy)
        readmes.append(copy)
    chart = tmp_path / "chart.png"
    command = [sys.executable, "-m", "benchmarks.report", "--results", str(path), "--readme"]
    out = subprocess.run(
        [*command, *map(str, readmes), "--chart", str(chart)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert chart.stat().st_size > 1000
    summary, detail = (r.read_text() for r in readmes)
    assert "quick run" in summary and "forward ResNet50 batch 32 (predict_on_batch)" in summary
    assert "| ResNet20 | int8 |" in detail and "GFLOP/s" in detail
    check = subprocess.run(
        [*command, *map(str, readmes), "--check"], cwd=REPO, capture_output=True, timeout=120
    )
    assert check.returncode == 0  # regenerating from the same file changes nothing


@pytest.mark.slow
def test_gpu_section_code_runs_on_cpu(tmp_path):
    """Without a GPU `make bench` skips the section; its code still runs here, on CPU."""
    import tensorflow as tf

    ctx = bench.Context(settings=bench.QUICK, scratch=tmp_path)
    if not tf.config.list_physical_devices("GPU"):
        assert "no GPU" in bench.section_gpu(ctx)["skipped"]
    out = bench.section_gpu(ctx, require_gpu=False)
    assert set(out["configs"]) == {
        f"{phase} {policy}{xla}"
        for phase in ("forward", "train")
        for policy in ("float32", "mixed_float16")
        for xla in ("", "+xla")
    }
    for config in out["configs"].values():
        assert _positive(config["images_per_second"])
    assert report.ratios({"sections": {"gpu": out}})
