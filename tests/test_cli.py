"""The `keras-resnet` command: listing, building, and every bad argument exits 2 in one line."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from keras_resnet import cli
from keras_resnet.spec import get_spec, list_specs
from tests.helpers import run_cli


def test_list_prints_every_named_spec_with_its_count(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    assert "resnet50  " in out and "25,636,712" in out
    assert "resnet20  " in out and "271,098" in out
    assert len(out.strip().splitlines()) == 1 + len(list_specs())


def test_build_prints_the_parameter_count(capsys):
    code, out, _ = run_cli(capsys, "build", "resnet20", "--width", "0.5", "--quiet")
    assert code == 0
    half = dataclasses.replace(get_spec("resnet20"), width=0.5)
    assert out.strip() == f"resnet: {half.count_params(classes=10):,} parameters"


def _image_folder(root, counts: dict[str, int]):
    from PIL import Image

    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (i * 30 % 255, 0, 0)).save(root / name / f"{i}.png")
    return str(root)


def _hostile_files(tmp_path) -> dict[str, str]:
    """What a hostile user points the CLI at; each placeholder below names one."""
    (tmp_path / "a_file").write_text("not a directory")
    for name, text in (("obj", "{}"), ("list", "[1, 2]"), ("trunc", '{"fingerprint": {')):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(text)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.txt").write_text("mine")
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    (tmp_path / "empty" / "cats" / "notes.txt").write_text("no images here")
    (tmp_path / "bad.json").write_text("{not json")
    spec = get_spec("resnet20").to_dict()
    spec["stages"][0]["blocks"] = 0
    (tmp_path / "bad_spec.json").write_text(json.dumps(spec))
    spec["stages"] = [{"filters": 16, "blocks": 1_000_000, "stride": 1}]
    (tmp_path / "deep.json").write_text(json.dumps(spec))
    spec["stages"] = [{"filters": 16, "blocks": 500, "stride": 1}] * 3
    (tmp_path / "deeper.json").write_text(json.dumps(spec))
    return {
        "{empty}": str(tmp_path / "empty"),
        "{one_class}": _image_folder(tmp_path / "one_class", {"cats": 12}),
        "{few}": _image_folder(tmp_path / "few", {"cats": 2, "dogs": 2}),
    }


def _tree(root) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


R = "--output={tmp}/r"  # a new run directory, which no refused command may create
S8 = "--image-size=8"
# One row a case: (argv, exit code, what the one stderr line must contain).
CLI_ERRORS = [
    (["build", "resnet7"], 2, "name='resnet7'"),
    (["build", "resnet20", "--classes", "0"], 2, "classes=0"),
    (["build", "resnet20", "--image-size", "0"], 2, "input_shape=(0, 0, 3)"),
    (["build", "resnet50", "--image-size", "100000"], 2, "is too large"),
    (["build", "resnet20", "--width", "1000"], 2, "width=1000.0"),
    (["train", "--model", "resnet7", R], 2, "name='resnet7'"),
    (["train", "--dataset", "no_such_dataset", R], 2, "no_such_dataset"),
    (["train", "--dataset", "{tmp}/missing/", R], 2, "missing"),
    (["train", "--dataset", "{empty}", R], 2, "at least two class subfolders"),
    (["train", "--dataset", "{one_class}", R], 2, "it has only 'cats'"),
    (["train", "--dataset", "{few}", R], 2, "has 4 images"),
    (["train", "--batch-size", "0", R], 2, "batch_size=0"),
    (["train", "--epochs", "0", R], 2, "epochs=0"),
    (["train", "--epochs", "-3", R], 2, "epochs=-3"),
    (["train", "--epochs", "x", R], 2, "'x'"),
    (["train", "--spec", "{tmp}/nope.json", R], 2, "nope.json"),
    (["train", "--spec", "{tmp}/bad.json", R], 2, "bad.json"),
    (["train", "--spec", "{tmp}/bad_spec.json", R], 2, "blocks=0"),
    (["train", "--spec", "{tmp}/deep.json", R], 2, "at most 512"),
    (["train", "--spec", "{tmp}/deeper.json", R], 2, "at most 1,024 blocks"),
    (["train", "--width", "0", R], 2, "width=0"),
    (["train", "--optimizer", "rmsprop", R], 2, "optimizer='rmsprop'"),
    (["train", "--image-size", "100000", R], 2, "image_size=100000, batch_size=64"),
    (["train", "--batch-size", "100000000", R], 2, "batch_size=100000000"),
    (["train", S8, "--output", "{tmp}/a_file"], 2, "is a file"),
    (["train", S8, "--output", "/proc/keras_resnet/r"], 2, "cannot be created"),
    (["train", S8, "--output", "{tmp}/obj"], 2, "has no fingerprint"),
    (["train", S8, "--output", "{tmp}/list"], 2, "holds a JSON list"),
    (["train", S8, "--output", "{tmp}/trunc"], 2, "is not a keras_resnet run.json"),
    (["train", S8, "--output", "{tmp}/photos"], 2, "not a keras_resnet run directory"),
]


@pytest.mark.parametrize("argv, code, names", CLI_ERRORS)
def test_bad_input_exits_non_zero_with_one_line_and_writes_nothing(
    capsys, tmp_path, argv, code, names
):
    subs = _hostile_files(tmp_path)
    before = _tree(tmp_path)
    argv = [subs.get(a, a).replace("{tmp}", str(tmp_path)) for a in argv]
    exit_code, _, err = run_cli(capsys, *argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_code == code, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"keras-resnet {argv[0]}: error:") and names in lines[0], err
    assert _tree(tmp_path) == before
    assert not (tmp_path / "r").exists()


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


def test_an_unexpected_error_says_what_the_command_was_doing_then_shows_the_traceback(
    capsys, monkeypatch
):
    def broken(args):
        return 1 / 0  # a bug, as the CLI sees one

    monkeypatch.setattr(cli, "_cmd_list", broken)
    with pytest.raises(ZeroDivisionError):
        cli.main(["list"])
    err = capsys.readouterr().err
    assert err.startswith("keras-resnet list: internal error while listing the named specs")
