"""The search's latency target (candidates converted to TFLite and timed in LiteRT, cached
per (spec, target, threads, host), bad targets and threads refused in one line), and the
Pareto front over (objective, params, latency) with the explicit choice of the best."""

import csv
import json
import math
import random

import keras_tuner as kt
import pytest

from keras_resnet import cli
from keras_resnet.tuning import (
    HyperResNet,
    LatencyCache,
    LatencyTarget,
    SearchSpace,
    non_dominated,
    pareto_trials,
    search,
)
from keras_resnet.tuning import latency as latency_module
from keras_resnet.tuning.budgets import Budget
from keras_resnet.tuning.results import rank_trials
from tests.helpers import run_cli

# Two candidates on 8x8 digits (width 0.5 or 1.0), everything else fixed.
TWO = SearchSpace(
    widths=(0.5, 1.0), num_stages=2, blocks=1, block_types="basic", versions="v2",
    optimizers="sgd", learning_rate=0.1, weight_decay=1e-4, batch_sizes=64,
)  # fmt: skip
# One candidate with the family's parts: grouped, squeeze-and-excitation bottlenecks,
# ResNet-D shortcuts and stochastic depth.
PARTS = SearchSpace(
    widths=0.5, num_stages=2, blocks=1, block_types="bottleneck", versions="v1", groups=2,
    se_ratios=0.25, shortcuts="avg", drop_path_rates=0.1, optimizers="sgd",
    learning_rate=0.1, weight_decay=1e-4, batch_sizes=64,
)  # fmt: skip
INT8 = dict(latency_target="tflite-int8", latency_threads=1)


@pytest.fixture
def conversions(monkeypatch):
    """Counts the real conversions the latency path makes."""
    calls = []
    real = latency_module.convert_tflite

    def counted(model, variant, representative_data=None):
        calls.append(variant)
        return real(model, variant, representative_data)

    monkeypatch.setattr(latency_module, "convert_tflite", counted)
    return calls


def _spec(hm):
    hp = kt.HyperParameters()
    hm.declare_hyperparameters(hp)
    return hm.declare_spec(hp)


def test_an_int8_target_converts_times_and_caches_a_candidate_with_every_part(
    tmp_path, conversions
):
    cache = tmp_path / "latency_cache.json"
    hm = HyperResNet((8, 8, 1), 10, space=PARTS, latency_cache=cache, **INT8)
    spec = _spec(hm)
    assert (spec.groups, spec.se_ratio, spec.shortcut) == (2, 0.25, "avg")
    assert hm.cached_latency(spec) is None
    measured = hm.latency_ms(spec)
    assert 0 < measured < 50 and conversions == ["int8"]  # real conversion and LiteRT timing
    assert hm.latency_ms(spec) == measured and conversions == ["int8"]  # cached

    # Another process (a resume, a worker on this host) reads it from the file.
    again = HyperResNet((8, 8, 1), 10, space=PARTS, latency_cache=cache, **INT8)
    assert again.cached_latency(spec) == measured and again.latency_ms(spec) == measured
    assert conversions == ["int8"]
    (entry,) = json.loads(cache.read_text()).values()
    assert entry["target"] == "tflite-int8" and entry["threads"] == 1
    assert "int8" in entry["runtime"] and "1 thread," in entry["runtime"]

    # Keyed by target and threads: another count, another variant, keras are other entries.
    key = LatencyCache.key(spec, (8, 8, 1), 10, LatencyTarget("tflite-int8", 1))
    others = [LatencyTarget("tflite-int8", 2), LatencyTarget("tflite-fp16", 1), LatencyTarget()]
    assert len({key, *(LatencyCache.key(spec, (8, 8, 1), 10, t) for t in others)}) == 4
    # The keras target's key is the one from before targets existed (old caches still hit).
    assert LatencyCache.key(spec, (8, 8, 1), 10) == LatencyCache.key(
        spec, (8, 8, 1), 10, LatencyTarget()
    )

    # The budget is the target's latency: under it trains, over it is rejected unbuilt.
    over = HyperResNet(
        (8, 8, 1), 10, space=PARTS, latency_cache=cache, max_latency_ms=measured / 2, **INT8
    )
    hp = kt.HyperParameters()
    over.declare_hyperparameters(hp)
    result = over.fit(hp, None)
    assert result["rejected"] == 1.0 and result["latency_ms"] == measured
    assert conversions == ["int8"]


@pytest.mark.slow
def test_a_search_on_an_int8_target_records_it_and_resumes_without_converting(
    tmp_path, conversions
):
    run = tmp_path / "run"
    kwargs = dict(space=TWO, tuner="random", max_trials=2, max_epochs=1, max_latency_ms=50.0)
    summary = search("digits", output_dir=run, image_size=8, verbose=0, **INT8, **kwargs)
    # Both candidates are timed once, by the budget check before training; trials reuse it.
    assert conversions == ["int8", "int8"]
    cache = json.loads((run / "latency_cache.json").read_text())
    by_width = {entry["spec"]["width"]: entry["latency_ms"] for entry in cache.values()}
    assert set(by_width) == {0.5, 1.0}
    with open(run / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["status"] for r in rows} == {"completed"} and len(rows) == 2
    for r in rows:
        assert float(r["latency_ms"]) == by_width[float(r["width"])]
    assert summary["best"]["latency_ms"] in by_width.values()
    assert summary["latency_target"] == "tflite-int8" and summary["latency_threads"] == 1
    assert summary["latency_runtime"].startswith("LiteRT") and "int8" in summary["latency_runtime"]
    assert summary["fingerprint"]["latency_target"] == "tflite-int8"
    # The front lists trial ids with their three values; the best is on it.
    front = summary["pareto_front"]
    assert front and all(set(p) == {"trial_id", "val_accuracy", "params", "latency_ms"}
                         for p in front)  # fmt: skip
    assert summary["best"]["trial_id"] in {p["trial_id"] for p in front}
    assert "ties go to the lower latency_ms" in summary["best_rule"]
    assert (run / "pareto.png").read_bytes().startswith(b"\x89PNG")

    # A rerun (a resume of a finished search) converts nothing again.
    again = search("digits", output_dir=run, image_size=8, verbose=0, **INT8, **kwargs)
    assert again["best"] == summary["best"] and conversions == ["int8", "int8"]
    # Another target is another search.
    with pytest.raises(ValueError, match="differs in: latency_target"):
        search("digits", output_dir=run, image_size=8, verbose=0, **{**kwargs, **INT8,
               "latency_target": "tflite-fp16"})  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(latency_target="tflite-int4"), "Received: latency_target='tflite-int4'"),
        (dict(latency_target="onnx"), "Received: latency_target='onnx'"),
        (dict(latency_target=None), "Received: latency_target=None"),
        (dict(latency_target="tflite-int8", latency_threads=0), "Received: latency_threads=0"),
        (dict(latency_target="tflite-fp32", latency_threads=-2), "Received: latency_threads=-2"),
        (dict(latency_target="tflite-fp32", latency_threads=1.5), "Received: latency_threads=1.5"),
        (dict(latency_target="tflite-fp32", latency_threads=True), "latency_threads=True"),
        (dict(latency_threads=2), "Received: latency_threads=2 with latency_target='keras'"),
    ],
)  # fmt: skip
def test_bad_targets_and_thread_counts_are_refused_in_one_line(tmp_path, kwargs, message):
    for make in (
        lambda: search("digits", output_dir=tmp_path / "r", image_size=8, **kwargs),
        lambda: HyperResNet((8, 8, 1), 10, space=TWO, **kwargs),
    ):
        with pytest.raises(ValueError) as error:
            make()
        assert message in str(error.value) and len(str(error.value).splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "argv, names",
    [
        (["--latency-target", "tflite-int4"], "Received: latency_target='tflite-int4'"),
        (["--latency-target", "tflite-int8", "--latency-threads", "0"], "latency_threads=0"),
        (["--latency-threads", "2"], "latency_threads=2 with latency_target='keras'"),
        (["--latency-target", "tflite-int8", "--latency-threads", "two"], "--latency-threads"),
    ],
)  # fmt: skip
def test_cli_refuses_bad_targets_and_threads_with_exit_2(capsys, tmp_path, argv, names):
    code, _, err = run_cli(capsys, "tune", "--output", str(tmp_path / "r"), *argv)
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("keras-resnet tune: error:") and names in line, err
    assert not (tmp_path / "r").exists()


def test_cli_target_and_threads_reach_the_search(monkeypatch, tmp_path):
    from keras_resnet import tuning

    seen = {}
    monkeypatch.setattr(tuning, "search", lambda dataset, **kwargs: seen.update(kwargs))
    argv = ["tune", "--output", str(tmp_path / "r"), "--latency-target", "tflite-fp16",
            "--latency-threads", "1"]  # fmt: skip
    assert cli.main(argv) == 0
    assert seen["latency_target"] == "tflite-fp16" and seen["latency_threads"] == 1
    seen.clear()
    assert cli.main(["tune", "--output", str(tmp_path / "r")]) == 0
    assert "latency_target" not in seen and "latency_threads" not in seen  # the library's default


# --- the Pareto front and the best ------------------------------------------------


def _dominates(a, b, objective):
    """Brute force: `a` at least as good as `b` on all three and better on one."""
    better = (lambda x, y: x >= y) if objective == "val_accuracy" else (lambda x, y: x <= y)
    axes = [better(a[objective], b[objective]), a["params"] <= b["params"],
            a["latency_ms"] <= b["latency_ms"]]  # fmt: skip
    values = lambda r: (r[objective], r["params"], r["latency_ms"])  # noqa: E731
    return all(axes) and values(a) != values(b)


def _synthetic_trials(rng, objective):
    """Trials drawn from few values (so ties abound), some unfinished, some without a
    latency (None or NaN), and duplicates of earlier ones."""
    rows = []
    for i in range(rng.randint(0, 30)):
        status = rng.choice(["completed"] * 5 + ["rejected", "failed", "diverged"])
        rows.append({
            "trial_id": f"{i:02d}",
            "status": status,
            objective: rng.choice([0.5, 0.8, 0.9, 1.0]) if status == "completed" else None,
            "params": rng.choice([1_000, 2_000, 5_000]),
            "latency_ms": rng.choice([0.1, 0.2, 0.3, 0.3, None, math.nan]),
            "val_loss": rng.choice([0.1, 0.2]),
        })  # fmt: skip
    rows += [dict(r, trial_id=f"{r['trial_id']}-copy") for r in rows[: rng.randint(0, 3)]]
    return rows


@pytest.mark.parametrize("objective", ["val_accuracy", "val_loss"])
def test_the_front_is_the_non_dominated_set_by_brute_force(objective):
    rng = random.Random(19)
    for _ in range(300):
        rows = _synthetic_trials(rng, objective)
        front = pareto_trials(rows, objective)
        comparable = [
            r for r in rows
            if r["status"] == "completed" and r["latency_ms"] is not None
            and not math.isnan(r["latency_ms"])
        ]  # fmt: skip
        expected = [
            r for r in comparable if not any(_dominates(o, r, objective) for o in comparable)
        ]
        assert sorted(r["trial_id"] for r in front) == sorted(r["trial_id"] for r in expected)
        # Best objective first; the best trial (when its latency is known) is on the front.
        sign = 1 if objective == "val_accuracy" else -1
        assert [sign * r[objective] for r in front] == sorted(
            (sign * r[objective] for r in front), reverse=True
        )
        ranked = rank_trials(rows, objective)
        if ranked and ranked[0] in comparable:
            assert ranked[0] in front


def test_duplicates_stay_on_the_front_and_unknown_latencies_are_left_out():
    senses = ("max", "min", "min")
    points = [(0.9, 10, 2.0), (0.9, 10, 2.0), (0.9, 12, 1.0), (0.8, 12, 2.0), (1.0, 50, None),
              (1.0, 50, math.nan), (0.9, 10, 2.5)]  # fmt: skip
    assert non_dominated(points, senses) == [0, 1, 2]
    assert non_dominated([], senses) == []


def test_the_best_is_the_highest_accuracy_within_the_budgets_ties_to_lower_latency():
    budget = Budget("val_accuracy", 10, max_params=1_000, max_latency_ms=0.25)
    rows = [
        dict(trial_id="A", val_accuracy=1.0, params=100, latency_ms=0.30),  # over latency
        dict(trial_id="B", val_accuracy=1.0, params=500, latency_ms=0.20, val_loss=0.01),
        dict(trial_id="C", val_accuracy=1.0, params=200, latency_ms=0.22, val_loss=0.001),
        dict(trial_id="D", val_accuracy=0.9, params=100, latency_ms=0.05),
        dict(trial_id="E", val_accuracy=1.0, params=2_000, latency_ms=0.10),  # over params
        dict(trial_id="F", val_accuracy=1.0, params=400, latency_ms=0.20, val_loss=0.5),
    ]
    rows = [dict(r, status="completed") for r in rows]
    # B and F tie on accuracy and latency: fewer params decides; C is slower.
    assert [r["trial_id"] for r in rank_trials(rows, "val_accuracy", budget)] == [
        "F",
        "B",
        "C",
        "D",
    ]
    front = {r["trial_id"] for r in pareto_trials(rows, "val_accuracy")}
    assert front == {"A", "C", "D", "E", "F"}  # B: F has as much accuracy, as fast, fewer params
