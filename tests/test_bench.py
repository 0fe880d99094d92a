"""The benchmark scripts: statistics, report generation, and a `--quick` smoke run.

No speed is asserted anywhere: speed is a benchmark result, not a test.
"""

import dataclasses
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import bench, report, rows, timing

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


# The quick run here takes the sections whose code nothing else runs. Left to `make bench`:
# `rows` (ResNet50 pairs cost minutes even at 32 px; its machinery is timed on ResNet20
# tables below), `forward` and `train` (keras.applications' ResNet50 beside ours: the same
# graph and weights are test_applications', the timing and the calls are the rows' and the
# gpu section's below) and `import` (two fresh TensorFlow interpreters; its code runs below
# on cheap imports). Together they were 60 s of the suite's CPU.
QUICK_SECTIONS = ["build", "flops", "digits", "tflite", "gpu"]


@pytest.mark.slow
def test_quick_benchmark_writes_its_sections_and_the_report_reads_them(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench",
            "--quick",
            "--out",
            str(tmp_path),
            "--only",
            *QUICK_SECTIONS,
        ],  # fmt: skip
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (path,) = tmp_path.glob("*-quick*.json")
    results = json.loads(path.read_text())
    assert results["kind"] == "quick" and results["complete"]
    assert set(results["sections"]) == set(QUICK_SECTIONS)
    for name, section in results["sections"].items():
        assert "error" not in section, (name, section["error"])
    for where, value in _numbers(results):
        assert math.isfinite(value), where

    s = results["sections"]
    for model in s["build"]["models"].values():
        assert _positive(model["ours_seconds"]["median"])
        assert _positive(model["speed_ratio"]["ratio"])
    assert _positive(s["flops"]["fraction_of_matmul"]["ratio"])
    assert _positive(s["flops"]["flops_per_image"])
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
    for kernels in ("xnnpack", "builtin"):
        k = tflite["kernels_1_thread"][kernels]
        assert _positive(k["fp32_ms"]["median"]) and _positive(k["int8_ms"]["median"])
        assert _positive(k["int8_speedup_vs_fp32"]["ratio"])
    assert all(runs >= bench.QUICK.tflite_runs for runs in tflite["runs_per_round"].values())
    assert "GPU" in s["gpu"]["skipped"] or s["gpu"]["configs"]
    assert results["ratios"] and all(_positive(r["ratio"]) for r in results["ratios"])
    assert results["targets"]

    readme = tmp_path / "README.md"
    shutil.copy(REPO / "benchmarks" / "README.md", readme)
    chart = tmp_path / "chart.png"
    command = [sys.executable, "-m", "benchmarks.report", "--results", str(path), "--readme"]
    out = subprocess.run(
        [*command, str(readme), "--chart", str(chart)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert chart.stat().st_size > 1000
    text = readme.read_text()
    summary = text[
        text.index("<!-- bench:summary:start -->") : text.index("<!-- bench:summary:end")
    ]
    detail = text[text.index("<!-- bench:detail:start -->") : text.index("<!-- bench:detail:end")]
    assert "quick run" in summary and "| build ResNet50 |" in summary
    assert "| ResNet20 | int8 |" in detail and "GFLOP/s" in detail
    assert "| ResNet20 | builtin |" in detail
    check = subprocess.run(
        [*command, str(readme), "--check"], cwd=REPO, capture_output=True, timeout=120
    )
    assert check.returncode == 0  # regenerating from the same file changes nothing


def test_import_section_times_each_side_in_fresh_interpreters(tmp_path, monkeypatch):
    """The section's code on two cheap imports (the real ones are two TensorFlow start-ups)."""
    from benchmarks import imports

    monkeypatch.setattr(imports, "_IMPORTS", {"keras_resnet": "import json", "keras": "import csv"})
    settings = dataclasses.replace(bench.QUICK, import_reps=3)
    out = imports.section_import(bench.Context(settings=settings, scratch=tmp_path))
    assert out["ours_seconds"]["n"] == out["reference_seconds"]["n"] == 3
    assert _positive(out["ours_seconds"]["median"]) and _positive(out["speed_ratio"]["ratio"])
    assert set(out["process_wall_seconds"]) == {"keras_resnet", "keras"}
    assert "import json" in out["what"] and out["labels"] == imports.LABELS
    assert report.ratios({"sections": {"import": out}})[0]["name"] == imports.LABELS["ratio"]


@pytest.mark.slow
def test_gpu_section_code_runs_on_cpu(tmp_path):
    """Without a GPU `make bench` skips the section; its code still runs here, on CPU."""
    import tensorflow as tf

    # Without XLA here: its four compiles were most of the test's time, and the XLA side of
    # the same calls runs in test_the_row_factories_for_xla_and_keras_bf16_sides_run.
    settings = dataclasses.replace(bench.QUICK, gpu_xla=(False,))
    ctx = bench.Context(settings=settings, scratch=tmp_path)
    if not tf.config.list_physical_devices("GPU"):
        assert "no GPU" in bench.section_gpu(ctx)["skipped"]
    out = bench.section_gpu(ctx, require_gpu=False)
    assert set(out["configs"]) == {
        f"{phase} {policy}"
        for phase in ("forward", "train")
        for policy in ("float32", "mixed_float16")
    }
    for config in out["configs"].values():
        assert _positive(config["images_per_second"])
    assert report.ratios({"sections": {"gpu": out}})


def _fake_results(*, forward_ci, int8_ratio, import_delta, import_ci):
    """A hand-made results file: one forward comparison, one int8 ratio, the import delta."""
    return {
        "sections": {
            "forward": {
                "models": {
                    "ResNet50": {
                        "batch_1": {
                            "predict_on_batch": {
                                "speed_ratio": {"ratio": 0.98, "ci95": forward_ci},
                                "ours_images_per_second": 15.0,
                                "reference_images_per_second": 15.3,
                            }
                        }
                    }
                }
            },
            "tflite": {
                "models": {
                    "ResNet50": {
                        "keras_latency_ms": {"median": 60.0},
                        "variants": {
                            "fp32": {
                                "latency_ms": {"median": 40.0},
                                "speedup_vs_keras": {"ratio": 1.5, "ci95": None},
                            },
                            "int8": {
                                "latency_ms": {"median": 40.0 / int8_ratio},
                                "speedup_vs_fp32": {"ratio": int8_ratio, "ci95": None},
                                "speedup_vs_keras": {"ratio": 1.5 * int8_ratio, "ci95": None},
                            },
                        },
                    }
                }
            },
            "import": {"extra_seconds": {"delta": import_delta, "ci95": import_ci}},
        }
    }


def test_targets_met_within_noise_missed_with_shortfall_and_the_import_bound():
    results = _fake_results(
        forward_ci=[0.95, 1.01], int8_ratio=1.5, import_delta=0.1, import_ci=[0.05, 0.15]
    )
    by_name = {t["name"]: t for t in report.targets(results)}
    forward = by_name["forward ResNet50 batch 1 (predict_on_batch)"]
    assert forward["met"] and forward["shortfall"] is None  # 0.98, interval reaches 1.00
    int8 = by_name["TFLite ResNet50 int8 vs fp32 TFLite"]
    assert not int8["met"] and int8["shortfall"] == pytest.approx(0.5)  # 1.5x of 3x
    assert report._status(int8) == "missed by 50%"
    assert by_name["import keras_resnet - import keras (s)"]["met"]

    results = _fake_results(
        forward_ci=[0.96, 0.99], int8_ratio=3.2, import_delta=0.5, import_ci=[0.2, 0.8]
    )
    by_name = {t["name"]: t for t in report.targets(results)}
    assert not by_name["forward ResNet50 batch 1 (predict_on_batch)"]["met"]
    assert by_name["TFLite ResNet50 int8 vs fp32 TFLite"]["met"]
    imp = by_name["import keras_resnet - import keras (s)"]
    # An interval that reaches below 0.3 s does not excuse a 0.5 s median.
    assert not imp["met"] and imp["shortfall"] == pytest.approx(0.2)
    assert report._status(imp) == "missed by 0.20 s"


def test_latest_results_takes_the_newest_complete_full_run(tmp_path):
    def write(name, **data):
        (tmp_path / name).write_text(json.dumps(data))

    with pytest.raises(FileNotFoundError, match="make bench"):
        report.latest_results(tmp_path)
    write("a.json", kind="full", complete=True, date="2026-01-01T00:00:00")
    write("b.json", kind="full", complete=True, date="2026-03-01T00:00:00")
    write("c-quick.json", kind="quick", complete=True, date="2026-05-01T00:00:00")
    write("d-partial.json", kind="partial", complete=True, date="2026-05-01T00:00:00")
    write("e.json", kind="full", complete=False, date="2026-06-01T00:00:00")
    (tmp_path / "f.json").write_text("{not json")
    assert report.latest_results(tmp_path).name == "b.json"


def test_the_rows_block_comes_from_the_newest_run_that_measured_the_rows(tmp_path):
    def write(name, rows=None, **data):
        sections = {"rows": rows} if rows is not None else {}
        (tmp_path / name).write_text(json.dumps({**data, "sections": sections}))

    assert report.latest_rows_results(tmp_path) is None
    write("a.json", rows={"rows": []}, kind="full", complete=True, date="2026-01-01T00:00:00")
    write("b-partial.json", rows={"rows": []}, kind="partial", complete=True, date="2026-02-01")
    write("c-partial.json", kind="partial", complete=True, date="2026-03-01")  # no rows
    write("d-partial.json", rows={"error": "x"}, kind="partial", complete=True, date="2026-04-01")
    write("e-quick.json", rows={"rows": []}, kind="quick", complete=True, date="2026-05-01")
    write("f-partial.json", rows={"rows": []}, kind="partial", complete=False, date="2026-06-01")
    assert report.latest_rows_results(tmp_path).name == "b-partial.json"

    text = "x\n<!-- bench:rows:start -->\nstale line\n<!-- bench:rows:end -->\ny\n"
    full = json.loads((REPO / "benchmarks/results/vm-2026-11-23-133938.json").read_text())
    rows = json.loads((REPO / "benchmarks/results/vm-2026-12-02-014606-partial.json").read_text())
    out = report.render_readme(text, full, "full.json", (rows, "rows.json"))
    block = out.split("<!-- bench:rows:start -->\n")[1].split("\n<!-- bench:rows:end -->")[0]
    assert "Source: `rows.json`" in block and "stale line" not in block
    assert "TFLite ResNet50 int8 vs fp32" in block and "fold_batchnorm(ResNet50)" in block
    assert "forward ResNet50 " not in block  # the full run's own sections stay out of it


def test_results_file_is_named_after_host_date_and_kind(tmp_path):
    import datetime

    now = datetime.datetime(2026, 11, 23, 12, 45, 49)
    assert bench._results_path(tmp_path, "vm", now, "full").name == "vm-2026-11-23-124549.json"
    path = bench._results_path(tmp_path, "my host/1", now, "quick")
    assert path.name == "my-host-1-2026-11-23-124549-quick.json"


def test_load_note_blames_other_processes_only_above_the_cores():
    assert "other processes" in report._load_note({"start": [3.5], "end": [1.0]}, 2)
    assert "other processes" not in report._load_note({"start": [1.05], "end": [1.85]}, 2)


def test_count_flops_is_two_flops_per_multiply_accumulate():
    import keras

    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(3, 3, padding="same")(inputs)  # 4*4 outputs x 3 x (3*3*2) MACs
    x = keras.layers.Conv2D(6, 1, strides=2, groups=3)(x)  # 2*2 outputs x 6 x (1*1*1) MACs
    x = keras.layers.GlobalAveragePooling2D()(x)  # no MACs counted
    outputs = keras.layers.Dense(5)(x)  # 6*5 MACs
    model = keras.Model(inputs, outputs)
    assert bench.count_flops(model) == 2 * (4 * 4 * 3 * 18 + 2 * 2 * 6 * 1 + 6 * 5)


def test_rotated_starts_each_round_at_the_next_key():
    keys = ["a", "b", "c"]
    assert [timing.rotated(keys, r) for r in range(4)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]
    ]  # fmt: skip


def _run_table(tmp_path, table):
    settings = dataclasses.replace(bench.QUICK, forward_reps=3, min_sample_seconds=0.01)
    return rows.section_rows(bench.Context(settings=settings, scratch=tmp_path), table=table)


def test_a_row_of_the_table_is_timed_and_reported_with_its_target(tmp_path):
    """A comparison added as data: the row is timed, and the report holds it to its target."""
    net = rows.keras_resnet_net("ResNet20")
    table = (
        rows.Row(
            "forward ResNet20 predict_on_batch vs tf.function, batch 2",
            candidate=rows.forward(net, 2),
            reference=rows.forward(net, 2, call="tf.function"),
            target=0.5,
        ),
        rows.Row(
            "train step ResNet20 vs the resnet20 spec, batch 2",
            candidate=rows.train_step(net, 2),
            reference=rows.train_step(rows.spec_net("resnet20"), 2),
        ),
    )
    section = _run_table(tmp_path, table)
    for row in table:
        record = section["rows"][row.name]
        assert record["candidate"] == row.candidate.what and record["target"] == row.target
        assert _positive(record["ours_images_per_second"]) and _positive(record["calls_per_sample"])
    results = {"sections": {"train": {}, "rows": section}}
    by_name = {r["name"]: r for r in report.ratios(results)}
    assert by_name[table[0].name]["target"] == 0.5 and by_name[table[1].name]["target"] is None
    assert [t["name"] for t in report.targets(results)] == [table[0].name]


def test_a_row_compares_sides_of_the_same_work():
    net = rows.keras_resnet_net("ResNet20")
    with pytest.raises(ValueError, match="same images per call"):
        rows.Row("x", candidate=rows.forward(net, 2), reference=rows.forward(net, 4))


@pytest.mark.slow
def test_a_tflite_row_times_an_interpreter(tmp_path):
    net = rows.keras_resnet_net("ResNet20")
    row = rows.Row(
        "TFLite ResNet20 int8 vs fp32",
        candidate=rows.tflite(net, "int8"),
        reference=rows.tflite(net, "fp32"),
        target=3.0,
    )
    record = _run_table(tmp_path, (row,))["rows"][row.name]
    assert "TFLite int8" in record["candidate"] and _positive(record["speed_ratio"]["ratio"])


def test_the_import_rows_say_what_the_section_measured():
    """Old results timed the import statements; newer ones name first use, and say so."""
    imp = {
        "speed_ratio": {"ratio": 0.95, "ci95": None},
        "ours_seconds": {"median": 3.9},
        "reference_seconds": {"median": 3.7},
        "extra_seconds": {"delta": 0.2, "ci95": None},
    }
    old = {"sections": {"import": imp}}
    assert report.ratios(old)[0]["name"] == "import keras_resnet vs import keras"
    labels = {"ratio": "first use: a vs b", "extra": "a - b"}
    new = {"sections": {"import": {**imp, "labels": labels}}}
    assert report.ratios(new)[0]["name"] == "first use: a vs b"
    (target,) = report.targets(new)
    assert target["name"] == "a - b (s)" and target["met"]
    assert "| a - b | | | +0.200 s |" in report.summary_markdown(
        {**new, "machine": _MACHINE, "versions": _VERSIONS, "date": "d"}, "x.json"
    )
    assert "  a - b: +0.200 s  met" in report.summary_text(new)


_MACHINE = {"cpu": {"model": "cpu"}, "logical_cores": 2, "ram_gib": 1.0}
_VERSIONS = {"tensorflow": "t", "keras": "k", "keras_resnet": "r"}


def test_the_row_factories_for_folded_and_tflite_sides_run(tmp_path):
    """The factories ROWS uses (fold_batchnorm, TFLite int8/fp32), on ResNet20."""
    table = (
        rows.Row(
            "forward folded ResNet20 vs ResNet20, batch 2",
            candidate=rows.forward(rows.folded_net("ResNet20"), 2),
            reference=rows.forward(rows.keras_resnet_net("ResNet20"), 2),
        ),
        rows.Row(
            "TFLite ResNet20 int8 vs fp32",
            candidate=rows.tflite(rows.keras_resnet_net("ResNet20"), "int8"),
            reference=rows.tflite(rows.keras_resnet_net("ResNet20"), "fp32"),
        ),
    )
    section = _run_table(tmp_path, table)
    for row in table:
        assert _positive(section["rows"][row.name]["ours_images_per_second"])
    assert "fold_batchnorm(keras_resnet.ResNet20)" in section["rows"][table[0].name]["candidate"]


def test_the_row_factories_for_xla_and_keras_bf16_sides_run(tmp_path):
    """#17's rows: XLA on and off and the export's keras_bf16 form, on a tiny net."""
    from keras_resnet import build_resnet, fold_batchnorm
    from keras_resnet.export.keras_bf16 import bfloat16_model
    from tests.helpers import tiny_spec

    def build(shape):
        return build_resnet(tiny_spec(), input_shape=shape, classes=10)

    net = rows.Net("tiny", build)
    folded = rows.Net("folded tiny", lambda shape: fold_batchnorm(build(shape)))
    bf16 = rows.Net("keras_bf16 tiny", lambda shape: bfloat16_model(folded.build(shape)))
    table = (
        rows.Row(
            "forward tiny jit_compile=True vs False, batch 2",
            candidate=rows.forward(rows.compiled_net(net, jit_compile=True), 2),
            reference=rows.forward(rows.compiled_net(net, jit_compile=False), 2),
        ),
        rows.Row(
            "forward keras_bf16 vs folded tiny, batch 2",
            candidate=rows.forward(bf16, 2, "tf.function"),
            reference=rows.forward(folded, 2, "tf.function"),
        ),
    )
    section = _run_table(tmp_path, table)
    for row in table:
        assert _positive(section["rows"][row.name]["ours_images_per_second"])
    # The train step's XLA side is compile(jit_compile=True), not run here: XLA compiling a
    # train step took 23 s on this loaded host, ResNet50's in make bench.
    assert rows.train_step(net, 2, jit_compile=True).what == (
        "tiny train_on_batch jit_compile=True, batch 2"
    )
    assert rows.bf16_export_net("ResNet20").what.startswith("keras_bf16 of fold_batchnorm")
