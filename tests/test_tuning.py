"""Keras Tuner search: space -> specs, budgets, real searches on digits, resume, distributed."""

import argparse
import csv
import json
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf

from keras_resnet import cli
from keras_resnet.data import load_dataset
from keras_resnet.spec import ResNetSpec, get_spec
from keras_resnet.tuning import (
    HyperResNet,
    LatencyCache,
    OracleUnreachableError,
    SearchSpace,
    make_tuner,
    measure_latency,
    pareto_front,
    search,
)
from tests.helpers import run_cli, run_until

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Four candidates on 8x8 digits: width 0.5 (5,074 parameters) or 1.0 (19,354), v1 or v2.
FOUR = SearchSpace(
    widths=(0.5, 1.0), num_stages=2, blocks=1, block_types="basic", versions=("v1", "v2"),
    optimizers="sgd", learning_rate=0.1, weight_decay=1e-4, batch_sizes=64,
)  # fmt: skip
SMALL, LARGE = 5_074, 19_354
TINY = dict(image_size=8, verbose=0)
CLI_TINY = [
    "--dataset", "digits", "--image-size", "8", "--width-choices", "0.5,1", "--stages", "2",
    "--max-blocks", "1", "--block-types", "basic", "--optimizers", "sgd", "--batch-sizes", "64",
    "--max-epochs", "2", "--quiet",
]  # fmt: skip
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _rows(run):
    with open(run / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


# --- the space ---------------------------------------------------------------


def test_space_defaults_follow_the_base_spec_and_the_input_size():
    small = SearchSpace().resolve(get_spec("resnet20"), (16, 16, 1))
    assert small.stems == ("cifar",)  # the ImageNet stem needs 32 px
    assert small.num_stages == (2, 4)  # 16 px / stride 8 leaves 2x2
    assert small.blocks == (1, 3)
    assert small.learning_rate == {"sgd": (0.01, 0.2), "adam": (3e-4, 3e-3)}
    medium = SearchSpace().resolve(get_spec("resnet18"), (64, 64, 3))
    assert medium.stems == ("cifar", "imagenet") and medium.blocks == (1, 2)
    large = SearchSpace().resolve(get_spec("resnet18"), (224, 224, 3))
    assert large.stems == ("imagenet",) and large.num_stages == (3, 5)
    off = SearchSpace(widths=None, num_stages=None, blocks=None, versions=None, optimizers=None,
                      learning_rate=None, weight_decay=None)  # fmt: skip
    fixed = off.resolve(get_spec("resnet20"), (32, 32, 3))
    assert fixed.widths == (1.0,) and fixed.num_stages == (3, 3) and fixed.blocks is None
    assert fixed.learning_rate == {"sgd": (0.1, 0.1)} and fixed.weight_decay == {
        "sgd": (1e-4, 1e-4)
    }
    # Switched-off parts declare no hyperparameter: the candidate is the base spec.
    hm = HyperResNet((32, 32, 3), 10, "resnet20", space=off)
    hp = kt.HyperParameters()
    hm.declare_hyperparameters(hp)
    assert set(hp.values) == {"block", "stem", "batch_size"}
    assert hm.spec(hp) == get_spec("resnet20")


def test_sampled_candidates_build_and_respect_the_budget(tmp_path):
    hm = HyperResNet((32, 32, 1), 10, max_params=150_000)  # resnet20 base, both stems
    tuner = make_tuner(hm, "random", directory=tmp_path, max_trials=100)
    oracle = tuner.oracle
    seen = set()
    for _ in range(10):
        values = oracle._random_values()
        hp = oracle.hyperparameters.copy()
        hp.values = values
        spec = hm.spec(hp)
        model = hm.build(hp)
        assert model.count_params() == hm.count_params(hp) <= 150_000, values
        assert model.output_shape == (None, 10)
        # Only the stages a candidate has carry a blocks hyperparameter.
        present = {name for name in values if name.endswith("_blocks")}
        assert present == {f"conv{i + 2}_blocks" for i in range(len(spec.stages))}
        assert [s.blocks for s in spec.stages] == [values[n] for n in sorted(present)]
        seen.update({spec.block, spec.version, spec.stem})
    assert seen == {"basic", "bottleneck", "v1", "v2", "cifar", "imagenet"}
    assert oracle.infeasible_draws > 0  # over-budget draws were redrawn


@pytest.mark.slow
def test_label_formats_pick_the_loss(tmp_path):
    hm = HyperResNet((8, 8, 1), 10, space=FOUR)
    hp = kt.HyperParameters()
    hm.declare_hyperparameters(hp)
    sparse = load_dataset("digits", image_size=8, label_mode="int")
    model = hm.build(hp)
    result = hm.fit(hp, model, sparse.train, validation_data=sparse.validation, epochs=1)
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    assert result["params"] == model.count_params() == hm.count_params(hp)
    assert 0.0 <= result["val_accuracy"] <= 1.0 and result["rejected"] == 0.0
    assert result["epochs"] == 1.0 and result["latency_ms"] > 0

    onehot = load_dataset("digits", image_size=8, label_mode="categorical")
    x = np.concatenate([b[0] for b in onehot.train.as_numpy_iterator()])
    y = np.concatenate([b[1] for b in onehot.train.as_numpy_iterator()])
    assert y.shape == (1258, 10)
    model = hm.build(hp)
    result = hm.fit(hp, model, x, y, validation_data=onehot.validation, epochs=1)
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)
    assert 0.0 <= result["val_accuracy"] <= 1.0

    with pytest.raises(ValueError, match=r"Received: label shape \(3,\)"):
        hm.fit(hp, model, x, y[:, :3], validation_data=onehot.validation)


def test_over_budget_candidates_are_not_trained(tmp_path, monkeypatch):
    splits = load_dataset("digits", image_size=8)
    fit_args = dict(validation_data=splits.validation, epochs=1)
    # Latency: measured on the built model, which is then left untrained.
    hm = HyperResNet((8, 8, 1), 10, space=FOUR, max_latency_ms=1e-4)
    hp = kt.HyperParameters()
    hm.declare_hyperparameters(hp)
    model = hm.build(hp)
    before = [w.copy() for w in model.get_weights()]
    result = hm.fit(hp, model, splits.train, **fit_args)
    assert result["rejected"] == 1.0 and result["epochs"] == 0.0
    assert result["latency_ms"] > 1e-4 and result["params"] == LARGE
    assert result["val_accuracy"] == 0.0  # scored below any trained model
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    assert hm.cached_latency(hm.spec(hp)) == result["latency_ms"]

    # Parameters: known without building; a val_loss search scores it ln(classes).
    hm = HyperResNet((8, 8, 1), 10, space=FOUR, max_params=10_000, objective="val_loss")
    tuner = make_tuner(hm, "random", directory=tmp_path, max_trials=4)
    monkeypatch.setattr(hm, "_build", lambda hp: pytest.fail("an over-budget model was built"))
    hp = tuner.oracle.get_space()
    hp.values = {"width": 1.0, "version": "v1"}
    trial = kt.engine.trial.Trial(hp, trial_id="x")
    result = tuner.run_trial(trial, splits.train, **fit_args)
    assert result == {"val_loss": math.log(10), "params": LARGE, "rejected": 1.0, "epochs": 0.0}


def test_latency_is_measured_once_per_spec_and_shared_through_the_cache(tmp_path):
    spec = get_spec("resnet20")
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalAveragePooling2D()])  # fmt: skip
    assert measure_latency(model, runs=10) > 0
    first = LatencyCache(tmp_path / "cache.json")
    key = LatencyCache.key(spec, (8, 8, 1), 10)
    assert first.get(key) is None
    first.put(key, 1.25, spec)
    second = LatencyCache(tmp_path / "cache.json")  # another process, same file
    assert second.get(key) == 1.25
    assert LatencyCache.key(spec, (16, 16, 1), 10) != key  # input shape is part of the key
    entry = json.loads((tmp_path / "cache.json").read_text())[key]
    assert "tf.function" in entry["runtime"] and entry["spec"] == spec.to_dict()


def test_pareto_front():
    # (cost, score): (30, 0.93) is beaten by (20, 0.95); (12, 0.9) ties on score, costs more.
    points = [(10, 0.9), (20, 0.95), (30, 0.93), (5, 0.5), (12, 0.9)]
    assert pareto_front(points) == [3, 0, 1]


# --- real searches -----------------------------------------------------------


@pytest.mark.slow
def test_search_on_digits_writes_every_output(tmp_path, capsys):
    run = tmp_path / "run"
    kwargs = dict(space=FOUR, max_params=10_000, max_trials=4, max_epochs=3, **TINY)
    summary = search("digits", output_dir=run, **kwargs)

    # Hyperband, max_epochs 3: a bracket of three 1-epoch trials, then the best of them
    # promoted to 3 epochs. Two of four candidates fit: the bracket's third draw finds
    # only oversized ones left and its trial is rejected.
    rows = _rows(run)
    completed = [r for r in rows if r["status"] == "completed"]
    rejected = [r for r in rows if r["status"] == "rejected"]
    assert len(rows) == 4 and len(completed) == 3 and len(rejected) == 1
    assert summary["trials"] == {"completed": 3, "rejected": 1}
    assert summary["infeasible_draws"] > 0  # the oracle redrew before letting it through
    for r in completed:
        assert int(r["params"]) == SMALL and r["width"] == "0.5"
        assert float(r["latency_ms"]) > 0 and 0 <= float(r["val_accuracy"]) <= 1
    first_round = [r for r in completed if not r["parent_trial"]]
    (promoted,) = [r for r in completed if r["parent_trial"]]
    assert {r["epochs"] for r in first_round} == {"1"} and promoted["epochs"] == "3"
    assert {r["version"] for r in first_round} == {"v1", "v2"}
    parent = next(r for r in first_round if r["trial_id"] == promoted["parent_trial"])
    assert parent["version"] == promoted["version"]
    assert float(parent["val_accuracy"]) == max(float(r["val_accuracy"]) for r in first_round)
    (r,) = rejected  # recorded with its size, never trained
    assert int(r["params"]) == LARGE and r["width"] == "1.0"
    assert r["val_accuracy"] == "" and r["epochs"] == "0"
    assert r["message"] == "params 19,354 > max_params 10,000"

    spec = ResNetSpec.from_dict(json.loads((run / "best_spec.json").read_text()))
    # As `keras-resnet train --spec best_spec.json` parses it (flags not given are absent).
    as_train_reads_it = cli._spec_from_args(argparse.Namespace(spec=str(run / "best_spec.json")))
    assert as_train_reads_it == spec and spec.width == 0.5
    assert spec.count_params(channels=1, classes=10) == summary["best"]["params"] == SMALL
    assert summary["best"]["val_accuracy"] == max(float(r["val_accuracy"]) for r in completed)

    # The summary's train command retrains that spec with the search's data settings.
    command = shlex.split(summary["train_command"])
    assert command[:2] == ["keras-resnet", "train"] and command[-2:] == ["--output", "runs/best"]
    assert command[command.index("--epochs") + 1] == "3"  # what the best trial trained
    command[command.index("--epochs") + 1] = "1"
    assert cli.main([*command[1:-2], "--output", str(tmp_path / "retrain")]) == 0
    retrained = keras.saving.load_model(tmp_path / "retrain" / "best.keras")
    assert retrained.input_shape == (None, 8, 8, 1) and retrained.count_params() == SMALL

    # best.keras is the best trial's model; the test split (never searched on) scores it.
    model = keras.saving.load_model(run / "best.keras")
    _, accuracy = model.evaluate(load_dataset("digits", image_size=8).test, verbose=0)
    assert accuracy == pytest.approx(summary["test_accuracy"], abs=1e-6)
    assert summary["test_accuracy"] > 0.4  # 3 epochs of a 5k-parameter net; chance is 0.1

    png = (run / "pareto.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert json.loads((run / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert len(json.loads((run / "latency_cache.json").read_text())) == 2
    out = capsys.readouterr().out
    assert "Top 3 of 3 trained trials" in out and f"trial {summary['best']['trial_id']}" in out

    # A finished search reruns without training; another configuration is refused.
    again = search("digits", output_dir=run, **kwargs)
    assert again["best"] == summary["best"] and _rows(run) == rows
    with pytest.raises(ValueError, match="differs in: max_params"):
        search("digits", output_dir=run, **{**kwargs, "max_params": 12_000})


@pytest.mark.slow
def test_failed_trials_are_recorded_and_the_search_goes_on(tmp_path, monkeypatch):
    fit = HyperResNet.fit
    calls = []

    def out_of_memory_once(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(HyperResNet, "fit", out_of_memory_once)
    run = tmp_path / "bayes"
    summary = search("digits", output_dir=run, tuner="bayesian", space=FOUR, max_trials=2,
                     max_epochs=1, **TINY)  # fmt: skip
    rows = _rows(run)
    assert [r["status"] for r in rows] == ["failed", "completed"]
    assert "ResourceExhaustedError" in rows[0]["message"] and "OOM" in rows[0]["message"]
    assert summary["trials"] == {"failed": 1, "completed": 1}
    assert summary["best"]["trial_id"] == rows[1]["trial_id"]

    # keras-tuner's max_consecutive_failed_trials still ends a search that cannot work.
    def always_out_of_memory(self, *args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    monkeypatch.setattr(HyperResNet, "fit", always_out_of_memory)
    with pytest.raises(RuntimeError, match="2 failed trials in a row"):
        search("digits", output_dir=tmp_path / "doomed", tuner="random", space=FOUR,
               max_trials=4, max_consecutive_failed_trials=2, **TINY)  # fmt: skip
    assert [r["status"] for r in _rows(tmp_path / "doomed")] == ["failed", "failed"]
    assert not (tmp_path / "doomed" / "best.keras").exists()


# tune.json as 7c0b29f wrote it (before SearchConfig was cut into its parts) for these
# search keywords: a search directory of that version must resume under the same flags.
EARLIER_TUNE_JSON = {
    "keras_hyperband.json": dict(space=FOUR, max_params=1_000, image_size=8),
    "tflite_int8_bayesian.json": dict(
        space=FOUR, max_params=1_000, image_size=8, tuner="bayesian", objective="val_loss",
        max_epochs=4, hyperband_factor=4, max_latency_ms=2.5, latency_target="tflite-int8",
        latency_threads=1, seed=7, augment=False, max_trials=3, retrain_epochs=2,
    ),
    "categorical_tflite_fp32.json": dict(
        max_params=1_000, image_size=12, label_mode="categorical", latency_target="tflite-fp32",
        tuner="random", base="resnet20",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(EARLIER_TUNE_JSON))
def test_a_search_directory_of_an_earlier_version_still_resumes(tmp_path, name):
    from keras_resnet._io import dumps_json
    from keras_resnet.tuning.config import SearchConfig

    search_module = sys.modules["keras_resnet.tuning.search"]
    kwargs = EARLIER_TUNE_JSON[name]
    earlier = (FIXTURES / "tune_json" / name).read_text()
    run = tmp_path / "run"
    run.mkdir()
    (run / "tune.json").write_text(earlier)
    # Past the fingerprint check to the budget check (max_params is below every candidate),
    # which refuses the search before anything is written; other flags are refused there.
    with pytest.raises(ValueError, match="below the smallest model in the search space"):
        search("digits", output_dir=run, verbose=0, **kwargs)
    with pytest.raises(ValueError, match="differs in: seed"):
        search("digits", output_dir=run, verbose=0, **{**kwargs, "seed": 99})
    assert (run / "tune.json").read_text() == earlier
    # What this version writes there is the same, byte for byte (versions aside).
    prepared = search_module._Search.prepare("digits", run, SearchConfig(**kwargs), 0.0)
    assert dumps_json(prepared.record["fingerprint"]) == dumps_json(
        json.loads(earlier)["fingerprint"]
    )


def test_search_config_is_made_of_its_parts_and_takes_their_keywords():
    import dataclasses

    from keras_resnet.data import DataOptions
    from keras_resnet.tuning import BudgetOptions, SearchConfig

    config = SearchConfig(data=DataOptions(image_size=12), channels=1,
                          budget=BudgetOptions(max_params=5_000), max_params=6_000)  # fmt: skip
    assert config.data == DataOptions(image_size=12, channels=1)
    assert config.budget.max_params == config.max_params == 6_000  # keywords on top of a part
    again = dataclasses.replace(config, seed=3, tuner="random")
    assert again.tuning.tuner == "random" and again.budget == config.budget
    # What the fingerprint and the retraining would not carry is refused, not ignored.
    with pytest.raises(ValueError, match=r"Received: data with augmentation='random-resized-crop'"):
        SearchConfig(data=DataOptions(augmentation="random-resized-crop"))


def test_no_tuning_module_imports_one_that_imports_it_back():
    """Every import in keras_resnet/tuning/ (function-level and TYPE_CHECKING ones too)."""
    import ast
    import graphlib

    package = Path(__file__).resolve().parents[1] / "keras_resnet" / "tuning"
    modules = {f"keras_resnet.tuning.{p.stem}".removesuffix(".__init__"): p
               for p in package.glob("*.py")}  # fmt: skip
    graph = {}
    for name, path in modules.items():
        nodes = ast.walk(ast.parse(path.read_text()))
        graph[name] = {n.module for n in nodes if isinstance(n, ast.ImportFrom)} & set(modules)
    assert len(graph) > 10 and "keras_resnet.tuning.screen" in graph["keras_resnet.tuning"]
    graphlib.TopologicalSorter(graph).prepare()  # a CycleError names the cycle


# --- bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(tuner="grid"), "Received: tuner='grid'"),
        (dict(objective="accuracy"), "Received: objective='accuracy'"),
        (dict(max_trials=0), "`max_trials` must be a positive integer. Received: max_trials=0"),
        (dict(max_epochs=-1), "Received: max_epochs=-1"),
        (dict(max_params=0), "`max_params` must be a positive integer. Received: max_params=0"),
        (dict(max_latency_ms=-2.0), "Received: max_latency_ms=-2.0"),
        (dict(hyperband_factor=1), "Received: hyperband_factor=1"),
        (dict(retrain_epochs=-1), "Received: retrain_epochs=-1"),
        (dict(max_search_seconds=0), "Received: max_search_seconds=0"),
        (dict(role="boss", oracle_address="127.0.0.1:1"), "Received: role='boss'"),
        (dict(role="worker", oracle_address="127.0.0.1:8000"), "Received: tuner_id=None"),
        (dict(role="worker", oracle_address="localhost", tuner_id="w"),
         "Received: oracle_address='localhost'"),
        (dict(oracle_address="127.0.0.1:8000"), "`oracle_address` needs `role`"),
        (dict(role="worker", oracle_address="h:1", tuner_id="w", overwrite=True),
         "Only the chief may overwrite"),
        (dict(dataset="no_such_dataset"), "no_such_dataset"),
        (dict(base="resnet7"), "Received: name='resnet7'"),
        (dict(space=SearchSpace(stems="imagenet")), "Received: stems=('imagenet',)"),
        (dict(space=FOUR, max_params=1_000), "below the smallest model in the search space"),
        (dict(space=FOUR, max_latency_ms=1e-4), "below the batch-1 latency"),
    ],
)  # fmt: skip
def test_bad_arguments_fail_before_anything_is_written(tmp_path, kwargs, message):
    dataset = kwargs.pop("dataset", "digits")
    with pytest.raises(ValueError) as e:
        search(dataset, output_dir=tmp_path / "run", **{**TINY, **kwargs})
    assert message in str(e.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(widths=()), "Received: widths=()"),
        (dict(widths=(0.5, 0)), "Received: widths=(0.5, 0)"),
        (dict(num_stages=(3, 2)), "Received: num_stages=(3, 2)"),
        (dict(blocks=(0, 3)), "Received: blocks=(0, 3)"),
        (dict(blocks=(4, 2)), "Received: blocks=(4, 2)"),
        (dict(block_types=("resnext",)), "Received: block_types=('resnext',)"),
        (dict(versions=[]), "Received: versions=[]"),
        (dict(optimizers=("rmsprop",)), "Received: optimizers=('rmsprop',)"),
        (dict(learning_rate=(0.1, 0.01)), "Received: learning_rate=(0.1, 0.01)"),
        (dict(learning_rate=0.0), "Received: learning_rate=0.0"),
        (dict(learning_rate={"rmsprop": 0.1}), "Received: learning_rate={'rmsprop': 0.1}"),
        (dict(weight_decay=(0.0, 0.1)), "Received: weight_decay=(0.0, 0.1)"),
        (dict(batch_sizes=(0, 32)), "Received: batch_sizes=(0, 32)"),
        (dict(blocks=(1, 513)), "at most 512 (keras_resnet.spec.MAX_STAGE_BLOCKS)"),
        (dict(num_stages=17), "at most 16 (keras_resnet.spec.MAX_STAGES)"),
    ],
)
def test_bad_search_spaces(kwargs, message):
    with pytest.raises(ValueError) as e:
        SearchSpace(**kwargs)
    assert message in str(e.value)


def test_a_range_inverted_by_its_derived_bound_is_an_error():
    # blocks=(4, None): the upper bound derives from resnet20 (3) -> max(4, 3) = 4, fine;
    # num_stages=(None, 1): the lower bound derives as 2 > 1.
    assert SearchSpace(blocks=(4, None)).resolve(get_spec("resnet20"), (16, 16, 1)).blocks == (4, 4)
    with pytest.raises(ValueError, match=r"Received: num_stages=\(None, 1\)"):
        SearchSpace(num_stages=(None, 1)).resolve(get_spec("resnet20"), (16, 16, 1))


WORKER = ["--role", "worker", "--oracle", "127.0.0.1:9"]


# One row per bad command line; all fail before anything is read, written or connected.
@pytest.mark.parametrize(
    "argv, names",
    [
        (["--tuner", "grid"], "tuner='grid'"),
        (["--max-params", "0"], "max_params=0"),
        (["--stages", "two"], "--stages='two'"),
        (["--width-choices", "half,1"], "--width-choices='half,1'"),
        (["--versions", "v3"], "versions=['v3']"),
        (WORKER, "tuner_id=None"),
        (["--min-blocks", "3", "--max-blocks", "1"], "blocks=(3, 1)"),
        (["--stages", "2-"], "--stages='2-'"),
        (["--versions", ","], "--versions=','"),
        (["--batch-sizes", ""], "--batch-sizes=''"),
        (["--lr-range", "0.1,0.01"], "learning_rate=(0.1, 0.01)"),
        (["--lr-range", "0.01,0.1,1"], "--lr-range='0.01,0.1,1'"),
        (["--weight-decay-range", "0,1e-3"], "weight_decay=(0.0, 0.001)"),
        ([*WORKER, "--tuner-id", "../w0"], "tuner_id='../w0'"),
        ([*WORKER, "--tuner-id", "w" * 65], "1-64 characters"),
        ([*WORKER, "--tuner-id", "oracle"], "tuner_id='oracle'"),
        ([*WORKER, "--tuner-id", "Tuner0"], "tuner_id='Tuner0'"),
        ([*WORKER, "--tuner-id", "trial_01"], "tuner_id='trial_01'"),
        ([*WORKER, "--tuner-id", "w-chief"], "tuner_id='w-chief'"),
        ([*WORKER, "--tuner-id", "w0", "--oracle-timeout", "0"], "oracle_timeout=0.0"),
        (["--role", "chief", "--oracle", "0.0.0.0:8000"], "(--allow-remote-oracle)"),
        (["--role", "chief", "--oracle", "10.0.0.5:8000"], "oracle_address='10.0.0.5:8000'"),
        (["--role", "chief", "--oracle", "[2001:db8::1]:8000"], "not a loopback address"),
        (["--max-blocks", "100000"], "at most 512 (keras_resnet.spec.MAX_STAGE_BLOCKS)"),
        (["--max-blocks", "512"], "2,048 blocks ([512, 512, 512, 512]), more than 1,024"),
        (["--stages", "2-16"], "largest candidate of the search space (width 2, 16 stages)"),
        (["--image-size", "100000"], "`image_size` is too large"),
        (["--model", "resnet50", "--image-size", "8192"], "Received: image_size=8192"),
    ],
)  # fmt: skip
def test_cli_errors_exit_2_with_one_line(capsys, tmp_path, argv, names):
    code, out, err = run_cli(capsys, "tune", "--output", str(tmp_path / "r"), *argv)
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("keras-resnet tune: error:") and names in line, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "address, allow",
    [("127.0.0.1:8000", False), ("127.8.0.1:8000", False), ("localhost:8000", False),
     ("LOCALHOST:8000", False), ("[::1]:8000", False), ("::1:8000", False),
     ("0.0.0.0:8000", True), ("chief.cluster.local:8000", True)],
)  # fmt: skip
def test_a_chief_on_loopback_or_with_allow_remote_oracle_is_accepted(address, allow):
    from keras_resnet.tuning.distributed import check_distributed

    check_distributed("chief", address, None, False, allow_remote_oracle=allow)
    if allow:
        with pytest.raises(ValueError, match="not a loopback address"):
            check_distributed("chief", address, None, False)


def test_cli_ranges_reach_the_search_space(monkeypatch, tmp_path):
    from keras_resnet import tuning

    seen = {}
    monkeypatch.setattr(tuning, "search", lambda dataset, **kwargs: seen.update(kwargs))
    argv = ["tune", "--output", str(tmp_path / "r"), "--lr-range", "0.02,0.2",
            "--weight-decay-range", "1e-4", "--stages", "2-3",
            "--max-failed-trials", "5"]  # fmt: skip
    assert cli.main(argv) == 0
    space = seen["space"]
    assert space.learning_rate == (0.02, 0.2) and space.weight_decay == (1e-4, 1e-4)
    assert space.num_stages == (2, 3) and seen["max_consecutive_failed_trials"] == 5


# --- resume and distributed (real processes) -------------------------------------


def _trials(run):
    """trial_id -> trial.json state, for the trials keras-tuner has written."""
    states = {}
    for path in (run / "keras_tuner").glob("trial_*/trial.json"):
        try:
            state = json.loads(path.read_text())
        except ValueError:  # being written (keras-tuner writes trial files in place)
            continue
        states[state["trial_id"]] = state
    return states


def _wait(predicate, procs, timeout=240):
    """Until `predicate()` holds; every process must still be running meanwhile."""

    def alive_and_done():
        for p in procs:
            assert p.poll() is None, p.stderr.read().decode()[-3000:]
        return predicate()

    assert run_until(procs[0], alive_and_done, timeout, poll=0.2), "timed out"


@pytest.mark.slow
def test_resume_after_sigkill_keeps_finished_trials(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "keras_resnet.cli", "tune", *CLI_TINY, "--max-trials", "4",
           "--output", str(run)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def two_done_and_one_training():
        states = _trials(run).values()
        done = sum(s["status"] == "COMPLETED" for s in states)
        return done >= 2 and any(s["status"] == "RUNNING" for s in states)

    _wait(two_done_and_one_training, [proc])
    time.sleep(1.0)  # into the running trial's training
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _trials(run)
    finished = {k: v for k, v in before.items() if v["status"] == "COMPLETED"}
    interrupted = [k for k, v in before.items() if v["status"] == "RUNNING"]
    assert len(finished) >= 2 and len(interrupted) == 1
    assert not (run / "trials.csv").exists()

    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Reloading Tuner" in done.stdout
    after = _trials(run)
    for trial_id, state in finished.items():
        assert after[trial_id] == state  # kept as they were, not trained again
    assert after[interrupted[0]]["status"] == "COMPLETED"  # the killed trial ran again
    rows = _rows(run)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    assert (run / "best.keras").exists()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_chief_and_two_workers_on_loopback_survive_a_worker_restart(tmp_path):
    run = tmp_path / "run"
    base = [sys.executable, "-m", "keras_resnet.cli", "tune", *CLI_TINY, "--max-trials", "4",
            "--output", str(run), "--oracle", f"127.0.0.1:{_free_port()}"]  # fmt: skip

    def start(*role):
        return subprocess.Popen([*base, "--role", *role], env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)  # fmt: skip

    chief = start("chief")
    w0, w1 = start("worker", "--tuner-id", "w0"), start("worker", "--tuner-id", "w1")

    def w0_training():
        try:
            oracle = json.loads((run / "keras_tuner" / "oracle.json").read_text())
        except (OSError, ValueError):
            return False
        return "w0" in oracle["ongoing_trials"]

    _wait(w0_training, [chief, w0, w1])
    time.sleep(1.0)
    os.kill(w0.pid, signal.SIGKILL)
    w0.wait()
    lost = json.loads((run / "keras_tuner" / "oracle.json").read_text())["ongoing_trials"]["w0"]
    w0 = start("worker", "--tuner-id", "w0")  # same id: it is handed the lost trial again

    for name, proc in (("w0", w0), ("w1", w1), ("chief", chief)):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {err.decode()[-3000:]}"
        if name != "chief":
            assert "no trials left" in out.decode()
    rows = _rows(run)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    assert _trials(run)[lost]["status"] == "COMPLETED"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["trials"] == {"completed": 4}
    assert keras.saving.load_model(run / "best.keras").count_params() == summary["best"]["params"]


# TensorFlow's C++ start-up log, printed before any Python code runs (whatever
# TF_CPP_MIN_LOG_LEVEL says); not ours to silence.
TF_STARTUP_LOG = re.compile(r"WARNING: All log messages before absl|[IWEF]\d{4} \d\d:")


def _own_lines(stderr):
    return [line for line in stderr.splitlines() if line and not TF_STARTUP_LOG.match(line)]


def _wait_for_lock(path, pid, proc, timeout=120):
    def held():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        try:
            return json.loads(path.read_text() or "{}").get("pid") == pid
        except (OSError, ValueError):
            return False

    assert run_until(proc, held, timeout), "timed out"


def test_a_worker_whose_chief_is_unreachable_exits_in_one_line(tmp_path, capsys):
    run, port = tmp_path / "run", _free_port()
    argv = ["tune", *CLI_TINY, "--output", str(run), "--role", "worker",
            "--oracle", f"127.0.0.1:{port}", "--tuner-id", "w0"]  # fmt: skip
    started = time.perf_counter()
    worker = subprocess.Popen(
        [sys.executable, "-m", "keras_resnet.cli", *argv, "--oracle-timeout", "3"],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # While it waits for the chief it holds its lock: a second worker with its id is refused.
    _wait_for_lock(run / ".keras_resnet-worker-w0.lock", worker.pid, worker)
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert "`output_dir` is in use by another process" in line and f"pid {worker.pid}" in line

    _, err = worker.communicate(timeout=120)
    elapsed = time.perf_counter() - started
    assert worker.returncode == 1 and "Traceback" not in err
    assert _own_lines(err) == [
        f"keras-resnet tune: cannot reach the chief at 127.0.0.1:{port} within 3 s: start "
        "the chief first (same --output, --role chief) or wait longer with --oracle-timeout "
        "(oracle_timeout)."
    ], err
    # About 10 s on a quiet 2-core host (start-up, data, then the 3 s wait); 33 s seen at
    # load 10. A worker that hung would wait for communicate's 120 s.
    assert elapsed < 75, elapsed
    assert not run.exists()  # it created the directory and wrote nothing: removed


def test_every_call_to_a_lost_chief_has_a_deadline(tmp_path):
    """keras-tuner's client waits up to an hour per call; a worker's calls get
    `oracle_timeout` (a chief that died after the worker connected looks the same)."""
    from keras_resnet.tuning.distributed import tuner_environment

    hm = HyperResNet((8, 8, 1), 10, space=FOUR)
    with tuner_environment("worker", f"127.0.0.1:{_free_port()}", "w0"):
        tuner = make_tuner(hm, "random", directory=tmp_path, oracle_timeout=1.5)
        started = time.perf_counter()
        with pytest.raises(OracleUnreachableError, match=r"127\.0\.0\.1:\d+ within 1.5 s"):
            tuner.oracle.create_trial("w0")
    assert time.perf_counter() - started < 10
    assert isinstance(OracleUnreachableError("x"), kt.errors.FatalError)  # keras-tuner stops


@pytest.mark.slow
def test_a_run_directory_in_use_is_refused_and_a_dead_holders_lock_taken_over(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["tune", *CLI_TINY, "--output", str(run)]
    first = subprocess.Popen(
        [sys.executable, "-m", "keras_resnet.cli", *argv, "--max-trials", "30"],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def one_done_and_one_training():  # keras-tuner saves its state for a resume at a trial's end
        states = [s["status"] for s in _trials(run).values()]
        return "COMPLETED" in states and "RUNNING" in states

    _wait(one_done_and_one_training, [first])

    started = time.perf_counter()
    code, _, err = run_cli(capsys, *argv)
    assert time.perf_counter() - started < 10  # at once: after reading the data, nothing else
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert "`output_dir` is in use by another process" in line and f"pid {first.pid}" in line

    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert json.loads((run / ".keras_resnet.lock").read_text())["pid"] == first.pid
    # Resumed: the killed trial runs again, then no new one (time is up), and it finishes.
    code, _, err = run_cli(capsys, *argv, "--max-search-seconds", "0.001")
    assert code == 0, err
    assert json.loads((run / "summary.json").read_text())["trials"]["completed"] >= 1
    assert (run / ".keras_resnet.lock").read_text() == ""  # released


def _strict_json(path):
    def refuse(constant):
        raise ValueError(f"{path.name} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.slow
def test_outputs_are_written_atomically_and_as_strict_json(tmp_path, monkeypatch):
    import matplotlib.figure

    run = tmp_path / "run"
    kwargs = dict(tuner="random", space=FOUR, max_trials=1, max_epochs=1, **TINY)
    search("digits", output_dir=run, **kwargs)
    outputs = ("best.keras", "pareto.png", "trials.csv", "summary.json", "best_spec.json",
               "latency_cache.json", "tune.json")  # fmt: skip
    before = {name: (run / name).read_bytes() for name in outputs}
    for name in outputs:
        if name.endswith(".json"):
            _strict_json(run / name)

    def half_written(self, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError(28, "No space left on device")

    # A rerun (nothing left to train) that dies while writing each output in turn.
    for owner, method in ((matplotlib.figure.Figure, "savefig"), (keras.Model, "save")):
        with monkeypatch.context() as patch:
            patch.setattr(owner, method, half_written)
            with pytest.raises(OSError, match="No space left"):
                search("digits", output_dir=run, **kwargs)
        for name in ("best.keras", "pareto.png"):
            assert (run / name).read_bytes() == before[name], name
        assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == [
            ".keras_resnet.lock"
        ]  # no temporary file left behind
    summary = search("digits", output_dir=run, **kwargs)  # the lock was released
    assert keras.saving.load_model(run / "best.keras").count_params() == summary["best"]["params"]


def test_an_epoch_with_a_nan_loss_counts_as_diverged_whatever_its_val_accuracy():
    hm = HyperResNet((8, 8, 1), 10, space=FOUR)
    nan = float("nan")
    # Keras validates NaN weights after TerminateOnNaN stops: accuracy near chance, a number.
    gone = hm._best_epoch({"val_accuracy": [0.1], "loss": [nan]}, SMALL, 0.2, 0)
    assert gone["diverged"] == 1.0 and gone["val_accuracy"] == hm.penalty
    late = hm._best_epoch(
        {"val_accuracy": [0.6, 0.8, 0.1], "loss": [1.0, 0.5, nan], "val_loss": [1.1, 0.6, nan]},
        SMALL,
        0.2,
        0,
    )
    assert "diverged" not in late and late["val_accuracy"] == 0.8 and late["val_loss"] == 0.6
    assert late["epochs"] == 3.0


def test_budgets_each_reachable_alone_but_not_together_fail_before_training(monkeypatch):
    from keras_resnet.tuning.hypermodel import check_budgets_reachable

    # Made-up latencies where the small candidates are the slow ones: width 0.5
    # fits max_params, width 1.0 fits max_latency_ms, none fits both.
    def latency(self, spec, model=None):
        return 5.0 if spec.width == 0.5 else 1.0

    monkeypatch.setattr(HyperResNet, "latency_ms", latency)
    check_budgets_reachable(HyperResNet((8, 8, 1), 10, space=FOUR, max_params=10_000))
    check_budgets_reachable(HyperResNet((8, 8, 1), 10, space=FOUR, max_latency_ms=2.0))
    both = HyperResNet((8, 8, 1), 10, space=FOUR, max_params=10_000, max_latency_ms=2.0)
    with pytest.raises(ValueError, match=r"within max_params=10000 \(5 ms.*max_latency_ms=2.0"):
        check_budgets_reachable(both)


def test_a_promoted_child_of_a_rejected_trial_is_rejected_on_a_host_without_its_latency(
    tmp_path, monkeypatch
):
    splits = load_dataset("digits", image_size=8)
    # A fresh hypermodel: its latency cache is empty, as on another worker host.
    hm = HyperResNet((8, 8, 1), 10, space=FOUR, max_latency_ms=0.5)
    tuner = make_tuner(hm, "hyperband", directory=tmp_path, max_epochs=3)
    monkeypatch.setattr(hm, "_build", lambda hp: pytest.fail("a rejected parent's child was built"))
    hp = tuner.oracle.get_space()
    hp.values = {"width": 1.0, "version": "v1"}
    parent = kt.engine.trial.Trial(hp.copy(), trial_id="parent")
    for name, value in {"rejected": 1.0, "latency_ms": 2.5, "val_accuracy": 0.0}.items():
        parent.metrics.update(name, value)
    tuner.oracle.trials["parent"] = parent
    hp.values["tuner/trial_id"] = "parent"
    child = kt.engine.trial.Trial(hp, trial_id="child")
    result = tuner.run_trial(child, splits.train, validation_data=splits.validation, epochs=2)
    assert result["rejected"] == 1.0 and result["latency_ms"] == 2.5 and result["epochs"] == 0.0


@pytest.mark.parametrize(
    "address, ip",
    [("127.0.0.1:8000", "127.0.0.1"), ("[::1]:8000", "[::1]"), ("::1:8000", "[::1]")],
)
def test_oracle_address_becomes_keras_tuner_variables_ipv6_in_brackets(address, ip):
    from keras_resnet.tuning.distributed import tuner_environment

    before = {k: os.environ.get(k) for k in ("KERASTUNER_ORACLE_IP", "KERASTUNER_TUNER_ID")}
    with tuner_environment("worker", address, "worker-1"):
        assert os.environ["KERASTUNER_ORACLE_IP"] == ip
        assert os.environ["KERASTUNER_ORACLE_PORT"] == "8000"
        assert os.environ["KERASTUNER_TUNER_ID"] == "worker-1"
    assert {k: os.environ.get(k) for k in before} == before


def test_a_chief_whose_workers_keep_failing_stops_them_instead_of_hanging(tmp_path, monkeypatch):
    """keras-tuner raises the consecutive-failures error inside the chief's EndTrial
    handler; ours lets the trial go and hands every worker a STOPPED trial."""
    from keras_tuner.src.distribute import oracle_chief

    from keras_resnet.tuning.tuners import TUNER_CLASSES

    for name, value in {"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "127.0.0.1",
                        "KERASTUNER_ORACLE_PORT": "1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    oracle = TUNER_CLASSES["random"].oracle(
        objective=kt.Objective("val_accuracy", "max"), max_trials=10,
        max_consecutive_failed_trials=2, seed=0,
    )  # fmt: skip
    oracle.hyperparameters.Choice("width", [0.5, 1.0, 2.0])
    oracle._set_project_dir(str(tmp_path), "p")
    for worker in ("w1", "w2"):
        trial = oracle.create_trial(worker)
        trial.status, trial.message = kt.engine.trial.TrialStatus.FAILED, "OOM"
        oracle.end_trial(trial)  # the second failure in a row: no exception on a chief
    assert oracle.failure and "consecutive failures" in oracle.failure
    assert not oracle.ongoing_trials
    for worker in ("w1", "w2"):
        assert oracle.create_trial(worker).status == kt.engine.trial.TrialStatus.STOPPED
    assert oracle_chief.exit_chief(oracle)

    monkeypatch.setenv("KERASTUNER_TUNER_ID", "worker-1")  # not a chief: keras-tuner's error
    local = TUNER_CLASSES["random"].oracle(
        objective=kt.Objective("val_accuracy", "max"), max_trials=10,
        max_consecutive_failed_trials=1, seed=0,
    )  # fmt: skip
    local.hyperparameters.Choice("width", [0.5, 1.0])
    local._set_project_dir(str(tmp_path), "q")
    trial = local.create_trial("w1")
    trial.status = kt.engine.trial.TrialStatus.FAILED
    with pytest.raises(RuntimeError, match="consecutive failures"):
        local.end_trial(trial)


def test_the_keras_tuner_internals_we_use_are_still_there(monkeypatch):
    """Each private keras-tuner name keras_resnet.tuning relies on (listed with the reason
    in keras_resnet/tuning/_kt_internals.py), checked by name: a keras-tuner release that
    moves or renames one fails here, not in the middle of a distributed search."""
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief, oracle_client
    from keras_tuner.src.distribute.utils import is_chief_oracle
    from keras_tuner.src.utils import save_json

    from keras_resnet.tuning import _kt_internals

    assert callable(save_json) and callable(is_chief_oracle) and callable(oracle_chief.exit_chief)
    assert hasattr(protos.get_service_grpc(), "add_OracleServicer_to_server")
    for cls, members in _kt_internals.PRIVATE_MEMBERS.items():
        for name in members:
            assert callable(getattr(cls, name, None)), f"{cls.__name__}.{name} is gone"
    # A new private attribute in _kt_internals needs its own check below.
    assert set(_kt_internals.PRIVATE_ATTRIBUTES) == {
        "OracleClient.stub",
        "OracleServicer.stop_triggered",
    }
    assert oracle_chief.OracleServicer(oracle=None).stop_triggered is False
    for name, value in {"KERASTUNER_TUNER_ID": "w0", "KERASTUNER_ORACLE_IP": "127.0.0.1",
                        "KERASTUNER_ORACLE_PORT": "1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    stub = oracle_client.OracleClient(oracle=None).stub  # no call made: nothing connects
    assert all(callable(getattr(stub, call, None)) for call in ("CreateTrial", "EndTrial"))
