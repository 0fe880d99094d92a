"""The `keras-resnet` command: listing, building, and every bad argument exits 2 in one line."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from keras_resnet.spec import get_spec
from tests.helpers import run_cli


def test_list_prints_every_named_spec_with_its_count(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    assert "resnet50  " in out and "25,636,712" in out
    assert "resnet20  " in out and "271,098" in out
    assert len(out.strip().splitlines()) == 16


def test_build_prints_the_parameter_count(capsys):
    code, out, _ = run_cli(capsys, "build", "resnet20", "--width", "0.5", "--quiet")
    assert code == 0
    half = dataclasses.replace(get_spec("resnet20"), width=0.5)
    assert out.strip() == f"resnet: {half.count_params(classes=10):,} parameters"


def _folder_without_images(tmp_path):
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    (tmp_path / "empty" / "cats" / "notes.txt").write_text("no images here")
    return str(tmp_path / "empty")


@pytest.mark.parametrize(
    "argv, names",
    [
        (["build", "resnet7"], "name='resnet7'"),
        (["train", "--model", "resnet7", "--output", "{tmp}/r"], "name='resnet7'"),
        (["train", "--dataset", "no_such_dataset", "--output", "{tmp}/r"], "no_such_dataset"),
        (["train", "--dataset", "{tmp}/missing/", "--output", "{tmp}/r"], "missing"),
        (["train", "--dataset", "{empty}", "--output", "{tmp}/r"], "empty"),
        (["train", "--batch-size", "0", "--output", "{tmp}/r"], "batch_size=0"),
        (["train", "--epochs", "0", "--output", "{tmp}/r"], "epochs=0"),
        (["train", "--epochs", "-3", "--output", "{tmp}/r"], "epochs=-3"),
        (["train", "--spec", "{tmp}/nope.json", "--output", "{tmp}/r"], "nope.json"),
        (["train", "--spec", "{bad_json}", "--output", "{tmp}/r"], "bad.json"),
        (["train", "--spec", "{bad_spec}", "--output", "{tmp}/r"], "blocks=0"),
        (["train", "--width", "0", "--output", "{tmp}/r"], "width=0"),
        (["train", "--optimizer", "rmsprop", "--output", "{tmp}/r"], "optimizer='rmsprop'"),
        (["train", "--epochs", "x", "--output", "{tmp}/r"], "'x'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, tmp_path, argv, names):
    (tmp_path / "bad.json").write_text("{not json")
    spec = get_spec("resnet20").to_dict()
    spec["stages"][0]["blocks"] = 0
    (tmp_path / "bad_spec.json").write_text(json.dumps(spec))
    subs = {
        "{empty}": _folder_without_images(tmp_path),
        "{bad_json}": str(tmp_path / "bad.json"),
        "{bad_spec}": str(tmp_path / "bad_spec.json"),
    }
    argv = [subs.get(a, a) for a in argv]
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err
    assert "error:" in lines[-1] and names in lines[-1], err
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_existing_run_with_another_spec_is_refused(capsys, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"fingerprint": {"spec": {"other": 1}}}))
    code, _, err = run_cli(capsys, "train", "--model", "resnet20", "--output", str(run))
    assert code == 2
    assert "holds a run with another configuration" in err and str(run) in err


def test_real_process_exit_status_and_no_traceback(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "-m", "keras_resnet.cli", "train", "--batch-size", "0", "--output",
         str(tmp_path / "r")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("keras-resnet train: error:")
