"""Export: every format written, reloaded in its own runtime and compared; atomic; every error."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_resnet import constants, export, precision
from keras_resnet.applications import ResNet20
from keras_resnet.data import load_dataset
from keras_resnet.export import core
from keras_resnet.export import fastest as fastest_module
from keras_resnet.export.target import PARTIAL_MARKER
from keras_resnet.spec import StageSpec
from keras_resnet.training import train
from tests.helpers import run_cli, run_until, tiny_spec

# One xdist worker runs this whole file: its module fixtures are built once.
pytestmark = pytest.mark.xdist_group("export")

ROOT = Path(__file__).resolve().parents[1]
# A family net (SE, ResNet-D shortcut, stochastic depth), so every export test also shows
# that the family's parts convert to builtin TFLite ops the GPU delegate takes and to ONNX.
# Grouped convs: tests/test_family.py (TFLite), test_onnx_refuses_grouped_convs (ONNX).
DIGITS_SPEC = tiny_spec(
    stages=(StageSpec(16, 1, 1), StageSpec(32, 1, 2)),
    stem_filters=16,
    bn_momentum=0.9,
    se_ratio=0.25,
    shortcut="avg",
    drop_path_rate=0.1,
)
TFLITE = [f"tflite_{v}" for v in export.TFLITE_VARIANTS]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny ResNet trained on 8x8 digits (about 15 s): real weights give agreement meaning."""
    path = tmp_path_factory.mktemp("export") / "run"
    metrics = train(
        DIGITS_SPEC,
        "digits",
        output_dir=path,
        epochs=8,
        image_size=8,
        batch_size=64,
        verbose=0,
        warmup_epochs=0,
    )
    assert metrics["test_accuracy"] >= 0.9
    return path


@pytest.fixture(scope="module")
def exported(run_dir):
    out = run_dir.parent / "saved" / "digits-tiny"
    formats = "all" if export.onnx_available() else list(export.DEFAULT_FORMATS)
    manifest = export.export_run(run_dir, out, formats=formats, latency_runs=20)
    return out, manifest


@pytest.fixture(scope="module")
def test_images(run_dir):
    splits = load_dataset("digits", image_size=8, augment=False)
    images = np.concatenate([x for x, _ in splits.test])
    labels = np.concatenate([y for _, y in splits.test])
    return images, labels


def _not_json(name):
    raise AssertionError(f"manifest.json holds {name}, which strict JSON does not have")


def test_every_format_is_written_and_listed(exported):
    out, manifest = exported
    on_disk = json.loads((out / "manifest.json").read_text(), parse_constant=_not_json)
    assert on_disk == manifest and on_disk["producer"] == "keras_resnet.export"
    expected = set(export.DEFAULT_FORMATS) | ({"onnx"} if export.onnx_available() else set())
    assert set(manifest["artifacts"]) == expected
    for fmt, artifact in manifest["artifacts"].items():
        path = out / artifact["path"]
        assert path.exists(), fmt
        size = (
            sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            if path.is_dir()
            else path.stat().st_size
        )
        assert artifact["size_bytes"] == size > 0
        assert artifact["verification"]["passed"] and artifact["verification"]["samples"] == 359
    assert (out / "labels.txt").read_text().split() == [str(i) for i in range(10)]
    assert manifest["spec"] == DIGITS_SPEC.to_dict()
    assert manifest["params"] == DIGITS_SPEC.count_params(channels=1, classes=10)
    assert manifest["versions"]["tensorflow"] and manifest["versions"]["ai_edge_litert"]
    assert manifest["verification_data"]["calibration_samples"] == 200
    assert not list(out.parent.glob(".digits-tiny.*")), "temporary directory left behind"


def test_float_artifacts_match_keras_and_quantised_ones_agree(exported):
    _, manifest = exported
    artifacts = manifest["artifacts"]
    for fmt in ("saved_model", "tflite_fp32", "onnx"):
        if fmt in artifacts:
            assert artifacts[fmt]["verification"]["max_abs_diff"] <= 1e-5, fmt
    # model.keras holds the BN-folded model: float32 rounding away from the model exported.
    assert manifest["fold"]["applied"]
    assert artifacts["keras"]["verification"]["max_abs_diff"] <= 1e-5
    assert 0 < artifacts["tflite_fp16"]["verification"]["max_abs_diff"] <= 1e-2
    # The bar: full int8 keeps >= 99% top-1 agreement on the digits test split.
    assert artifacts["tflite_int8"]["verification"]["top1_agreement"] >= 0.99
    assert artifacts["tflite_dynamic"]["verification"]["top1_agreement"] >= 0.99
    keras_accuracy = artifacts["keras"]["verification"]["accuracy"]
    assert keras_accuracy >= 0.9
    assert abs(artifacts["tflite_int8"]["verification"]["accuracy"] - keras_accuracy) <= 0.01


def test_tflite_variants_sizes_io_latency_and_gpu_report(exported):
    _, manifest = exported
    a = manifest["artifacts"]
    fp32 = a["tflite_fp32"]["size_bytes"]
    assert a["tflite_fp16"]["size_bytes"] < 0.7 * fp32
    assert a["tflite_dynamic"]["size_bytes"] < 0.5 * fp32
    assert a["tflite_int8"]["size_bytes"] < 0.5 * fp32
    int8 = a["tflite_int8"]
    assert int8["inputs"][0]["dtype"] == "int8" and int8["outputs"][0]["dtype"] == "int8"
    assert int8["inputs"][0]["quantization"]["scale"] > 0
    assert int8["inputs"][0]["shape"] == [-1, 8, 8, 1]
    for fmt in TFLITE:
        assert a[fmt]["signature_inputs"] == ["images"], fmt
        assert a[fmt]["signature_outputs"] == ["probabilities"], fmt
        latency = a[fmt]["latency_batch1"]
        assert latency["samples"] == 20 and 0 < latency["p10_ms"] <= latency["median_ms"]
        assert a[fmt]["gpu_delegate"]["analyzer"].startswith("tf.lite.experimental.Analyzer")
    for fmt in ("tflite_fp32", "tflite_fp16"):
        assert a[fmt]["gpu_delegate"]["compatible"], a[fmt]["gpu_delegate"]
    assert a["tflite_fp32"]["inputs"][0]["quantization"] is None
    assert manifest["keras_latency_batch1"]["median_ms"] > 0


def test_saved_model_signatures_have_stable_names(exported):
    _, manifest = exported
    signatures = manifest["artifacts"]["saved_model"]["signatures"]
    assert set(signatures) == {"serving_default", "serving_uint8"}
    default = signatures["serving_default"]
    assert default["inputs"] == [{"name": "images", "shape": [-1, 8, 8, 1], "dtype": "float32"}]
    assert [o["name"] for o in default["outputs"]] == ["probabilities"]
    uint8 = signatures["serving_uint8"]
    assert uint8["inputs"] == [{"name": "images", "shape": [-1, -1, -1, 1], "dtype": "uint8"}]
    assert {o["name"] for o in uint8["outputs"]} == {
        "probabilities",
        "top_k_ids",
        "top_k_scores",
        "top_k_labels",
    }
    # Each weight stored once (keras' own ExportArchive stores them twice, keras#23553).
    out, _ = exported
    stored = sum(f.stat().st_size for f in (out / "saved_model" / "variables").glob("*.data-*"))
    weights = 4 * manifest["fold"]["params"]  # the folded model's (no BN statistics)
    assert weights <= stored < 1.2 * weights
    check = manifest["artifacts"]["saved_model"]["serving_uint8"]
    assert check["passed"] and check["labels_match"] and check["top_k_ids_match"] == 1.0


_NO_KERAS_RESNET = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    sys.modules["keras_resnet"] = None  # any import of it now raises ImportError
    try:
        import keras_resnet  # noqa: F401
        raise SystemExit("keras_resnet is importable")
    except ImportError:
        pass
    import keras, tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    out, data = sys.argv[1], np.load(sys.argv[2])
    x, small = data["x"], data["small"]
    result = {}
    model = keras.saving.load_model(f"{out}/model.keras", safe_mode=True)
    result["keras"] = model.predict(x, verbose=0).tolist()
    loaded = tf.saved_model.load(f"{out}/saved_model")
    result["saved_model"] = loaded.signatures["serving_default"](
        images=tf.constant(x))["probabilities"].numpy().tolist()
    u8 = loaded.signatures["serving_uint8"](images=tf.constant(small))
    result["uint8_ids"] = u8["top_k_ids"].numpy().tolist()
    result["uint8_labels"] = [[s.decode() for s in r] for r in u8["top_k_labels"].numpy()]
    result["uint8_sum"] = u8["probabilities"].numpy().sum(-1).tolist()
    for v in ("fp32", "fp16", "dynamic", "int8"):
        it = Interpreter(model_path=f"{out}/tflite/model_{v}.tflite")
        runner = it.get_signature_runner("serving_default")
        inp = it.get_input_details()[0]
        scale, zero = inp["quantization"]
        images = x if not scale else np.round(x / scale + zero).clip(-128, 127).astype(np.int8)
        preds = []
        for i in range(len(x)):
            y = runner(images=images[i : i + 1])["probabilities"]
            if y.dtype != np.float32:
                s, z = it.get_output_details()[0]["quantization"]
                y = (y.astype(np.float32) - z) * s
            preds.append(y[0])
        result[v] = np.array(preds).tolist()
    try:
        import onnxruntime
        session = onnxruntime.InferenceSession(f"{out}/model.onnx")
        result["onnx"] = session.run(None, {session.get_inputs()[0].name: x})[0].tolist()
    except (ImportError, FileNotFoundError, ValueError):
        pass
    print(json.dumps(result))
    """
)


@pytest.mark.slow
def test_artifacts_load_where_keras_resnet_cannot_be_imported(exported, test_images, tmp_path):
    out, _ = exported
    x = test_images[0][:24]
    small = (np.random.default_rng(0).uniform(0, 255, (3, 20, 13, 1))).astype(np.uint8)
    np.savez(tmp_path / "data.npz", x=x, small=small)
    script = tmp_path / "load.py"
    script.write_text(_NO_KERAS_RESNET)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""}
    proc = subprocess.run(
        [sys.executable, str(script), str(out), str(tmp_path / "data.npz")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    reference = keras.saving.load_model(out / "model.keras").predict(x, verbose=0)
    np.testing.assert_allclose(result["keras"], reference, atol=1e-6)
    np.testing.assert_allclose(result["saved_model"], reference, atol=1e-5)
    np.testing.assert_allclose(result["fp32"], reference, atol=1e-5)
    np.testing.assert_allclose(result["fp16"], reference, atol=1e-2)
    for v in ("dynamic", "int8"):
        agree = np.mean(np.argmax(result[v], -1) == reference.argmax(-1))
        assert agree >= 0.95, (v, agree)
    if "onnx" in result:
        np.testing.assert_allclose(result["onnx"], reference, atol=1e-5)
    # The uint8 signature resizes any image size inside: 20x13 in, 5 classes out.
    assert np.array(result["uint8_ids"]).shape == (3, 5)
    assert all(label in [str(i) for i in range(10)] for r in result["uint8_labels"] for label in r)
    np.testing.assert_allclose(result["uint8_sum"], 1.0, atol=1e-5)


def test_existing_target_is_refused_then_replaced_with_overwrite(exported, run_dir):
    out, manifest = exported
    with pytest.raises(ValueError, match="already exists.*overwrite"):
        export.export_run(run_dir, out, formats="keras")
    assert json.loads((out / "manifest.json").read_text()) == manifest
    copy = out.parent / "replaced"
    export.export_run(run_dir, copy, formats="keras", latency_runs=0)
    export.export_run(run_dir, copy, formats="tflite_fp32", overwrite=True, latency_runs=0)
    assert set(json.loads((copy / "manifest.json").read_text())["artifacts"]) == {"tflite_fp32"}
    assert not (copy / "model.keras").exists()
    assert sorted(p.name for p in copy.parent.iterdir() if p.name.startswith(".")) == []


def test_a_failed_verification_writes_nothing(run_dir, tmp_path):
    target = tmp_path / "strict"
    with pytest.raises(export.ExportVerificationError, match="tflite_fp16 failed verification"):
        export.export_run(
            run_dir,
            target,
            formats="keras,tflite_fp16",
            tolerances={"tflite_fp16": {"max_abs_diff": 1e-9}},
            latency_runs=0,
        )
    assert list(tmp_path.iterdir()) == []


_KILLABLE = textwrap.dedent(
    """
    import sys
    from keras_resnet.export import export_run
    export_run(sys.argv[1], sys.argv[2], formats="all", latency_runs=2000, overwrite=True)
    """
)


@pytest.mark.slow
def test_sigkill_mid_export_leaves_nothing_then_a_rerun_completes(run_dir, tmp_path):
    target = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE, str(run_dir), str(target)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Kill once the first TFLite file exists: mid-way, with files already written.
    reached = run_until(
        proc, lambda: any(tmp_path.glob(".killed.partial-*/tflite/*.tflite")), timeout=240
    )
    assert reached, "the export never reached the TFLite stage"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not target.exists()
    manifest = export.export_run(run_dir, target, formats="keras,tflite_fp32", latency_runs=0)
    assert set(manifest["artifacts"]) == {"keras", "tflite_fp32"}
    assert [p.name for p in tmp_path.iterdir()] == ["killed"], "the stale partial was not removed"


def test_public_tflite_helpers_on_a_fresh_resnet20():
    model = ResNet20(input_shape=(16, 16, 3), classes=10)
    x = np.random.default_rng(1).uniform(0, 1, (4, 16, 16, 3)).astype(np.float32)
    flatbuffer = export.convert_tflite(model, "fp32")
    np.testing.assert_allclose(
        export.run_tflite(flatbuffer, x), model.predict(x, verbose=0), atol=1e-5
    )
    latency = export.tflite_latency(flatbuffer, runs=5, warmup=1, num_threads=1)
    assert latency["num_threads"] == 1 and latency["median_ms"] > 0
    assert latency["runtime"].startswith("ai_edge_litert")
    assert latency["kernels"] == "XNNPACK delegate"
    builtin = export.tflite_latency(flatbuffer, runs=5, warmup=1, num_threads=1, xnnpack=False)
    assert builtin["kernels"].startswith("builtin") and builtin["median_ms"] > 0
    int8 = export.convert_tflite(model, "int8", representative_data=x)
    assert export.run_tflite(int8, x).shape == (4, 10)
    assert export.gpu_delegate_report(flatbuffer)["compatible"]


def test_a_keras_file_without_a_run_exports_float_formats_on_random_images(run_dir, tmp_path):
    lone = tmp_path / "lone.keras"
    lone.write_bytes((run_dir / "best.keras").read_bytes())
    manifest = export.export_run(
        lone, tmp_path / "out", formats="keras,tflite_fp32", latency_runs=0, verbose=False
    )
    assert manifest["verification_data"]["source"].startswith("random")
    assert manifest["spec"] is None
    with pytest.raises(ValueError, match="--dataset"):
        export.export_run(lone, tmp_path / "int8", formats="tflite_int8")
    manifest = export.export_run(
        lone, tmp_path / "int8", formats="tflite_int8", dataset="digits", latency_runs=0
    )
    assert manifest["artifacts"]["tflite_int8"]["verification"]["top1_agreement"] >= 0.99


def test_parse_formats():
    assert export.parse_formats("tflite") == TFLITE
    assert export.parse_formats(["TFLITE_INT8", "keras", "keras"]) == ["keras", "tflite_int8"]
    assert "onnx" not in export.parse_formats("all") or export.onnx_available()
    with pytest.raises(ValueError, match=r"Received: formats='tflite_int4'"):
        export.parse_formats("tflite_int4")
    with pytest.raises(ValueError, match="names no format"):
        export.parse_formats([])


def test_export_options_check_every_option_when_made():
    options = export.ExportOptions(formats="keras,tflite", latency_runs=0)
    assert options.formats == ("keras", *TFLITE)
    assert dataclasses.replace(options, top_k=3).formats == options.formats
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.top_k = 3
    tols = export.ExportOptions(min_int8_agreement=0.9).resolved_tolerances()
    assert tols["tflite_int8"] == {"top1_agreement": 0.9}
    assert tols["tflite_fp16"] == export.DEFAULT_TOLERANCES["tflite_fp16"]
    for bad, message in [
        ({"formats": "tflite_int4"}, "Received: formats='tflite_int4'"),
        ({"preprocessing": "imagenet"}, "Received: preprocessing='imagenet'"),
        ({"top_k": 0}, "Received: top_k=0"),
        ({"calibration_samples": 0}, "Received: calibration_samples=0"),
        ({"verify_samples": -1}, "Received: verify_samples=-1"),
        ({"latency_runs": -1}, "Received: latency_runs=-1"),
        ({"tolerances": {"tflite_int4": {}}}, "Received: tolerances="),
        ({"tolerances": {"keras": {"max_abs_diff": -1}}}, "Unknown or negative tolerance"),
        ({"min_int8_agreement": 1.5}, "Received: min_int8_agreement=1.5"),
    ]:
        with pytest.raises(ValueError, match=message):
            export.ExportOptions(**bad)
    with pytest.raises(ValueError, match="must be an ExportOptions"):
        export.export_model(None, "unused", options={"formats": "keras"})


def test_every_format_has_one_writer_run_in_format_order():
    assert list(core.WRITERS) == list(export.FORMATS)


def test_export_model_takes_options_and_keyword_overrides(run_dir, tmp_path):
    model = keras.saving.load_model(run_dir / "best.keras")
    options = export.ExportOptions(formats="keras", latency_runs=0, verbose=False)
    manifest = export.export_model(model, tmp_path / "a", options=options)
    assert set(manifest["artifacts"]) == {"keras"}
    with pytest.raises(ValueError, match="already exists"):
        export.export_model(model, tmp_path / "a", options=options)
    manifest = export.export_model(
        model, tmp_path / "a", options=options, overwrite=True, formats="tflite_fp32"
    )
    assert set(manifest["artifacts"]) == {"tflite_fp32"}
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "labels.txt",
        "manifest.json",
        "tflite",
    ], "the SavedModel the TFLite file was converted from was left behind"
    with pytest.raises(TypeError, match="formts"):
        export.export_model(model, tmp_path / "b", options=options, formts="keras")
    assert not (tmp_path / "b").exists()


def test_cli_export_prints_the_table(run_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    code, stdout, _ = run_cli(
        capsys,
        "export",
        str(run_dir),
        "--output",
        str(out),
        "--formats",
        "tflite_fp32,tflite_int8",
        "--latency-runs",
        "3",
    )
    assert code == 0
    assert "tflite/model_int8.tflite" in stdout and " ms " in stdout
    assert " * " in stdout and "* fastest here: tflite_" in stdout
    assert (out / "tflite" / "model_int8.tflite").exists()


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file and folder under `root` (hidden ones too), with the files' bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
        for p in sorted(root.rglob("*"))
    }


def _copy_run(run_dir: Path, to: Path, *, run_json: str | None = None, keras_bytes=None) -> Path:
    """A run directory: best.keras (or `keras_bytes`) and run.json (or `run_json` text)."""
    to.mkdir(parents=True)
    best = (run_dir / "best.keras").read_bytes()
    (to / "best.keras").write_bytes(best if keras_bytes is None else keras_bytes(best))
    text = (run_dir / "run.json").read_text() if run_json is None else run_json
    (to / "run.json").write_text(text)
    return to


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def _garbage_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", "{not json")
    return path


def _first_100_bytes(data: bytes) -> bytes:
    return data[:100]


# Bad sources and outputs, each made (in tmp_path d, from the trained run) by the cases naming it.
_BAD_INPUTS = {
    "corrupt": lambda d, run: _write(d / "corrupt.keras", b"not a zip file"),
    "garbage_zip": lambda d, run: _garbage_zip(d / "garbage.keras"),
    "truncated": lambda d, run: _write(d / "t.keras", (run / "best.keras").read_bytes()[:100]),
    "truncated_run": lambda d, run: _copy_run(run, d / "trun", keras_bytes=_first_100_bytes),
    "empty_dir": lambda d, run: (d / "empty").mkdir() or d / "empty",
    "not_a_run": lambda d, run: _write(d / "not_a_run" / "notes.txt", "no model").parent,
    "run_json_empty": lambda d, run: _copy_run(run, d / "r1", run_json="{}"),
    "run_json_list": lambda d, run: _copy_run(run, d / "r2", run_json="[1, 2]"),
    "run_json_invalid": lambda d, run: _copy_run(run, d / "r3", run_json="{oops"),
    "file": lambda d, run: _write(d / "file", "a file, not a folder"),
}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["missing-run"], "`source` does not exist. Received: source='missing-run'"),
        (["{run}", "--formats", "tflite_int4"], "Received: formats='tflite_int4'"),
        (["{corrupt}"], "`source` must be a Keras 3 `.keras` file"),
        (["{garbage_zip}"], "`source` cannot be loaded"),
        (["{truncated}"], "`source` must be a Keras 3 `.keras` file"),
        (["{truncated_run}"], "`source` must be a Keras 3 `.keras` file"),
        (["{empty_dir}"], "without best.keras or last.keras"),
        (["{not_a_run}"], "without best.keras or last.keras"),
        (["{run_json_empty}"], "`source` has a run.json that is not a keras_resnet run's (no"),
        (["{run_json_list}"], "run.json that is not a keras_resnet run's (a JSON list, not an"),
        (["{run_json_invalid}"], "run.json that is not a keras_resnet run's (JSONDecodeError"),
        (["{run}", "--output", "{run}"], "`output_dir` already exists"),
        (["{run}", "--output", "{file}"], "`output_dir` is a file, not a directory. Received"),
        (["{run}", "--output", "{file}", "--overwrite"], "`output_dir` is a file, not a"),
        (["{run}", "--output", "{file}/sub"], "`output_dir` cannot be created: "),
        (
            ["{run}", "--output", "/proc/x/y", "--formats", "keras"],
            "cannot write `output_dir` (No such file or directory). "
            "Received: output_dir='/proc/x/y'",
        ),
        (["{run}", "--min-int8-agreement", "1.5"], "Received: min_int8_agreement=1.5"),
        (["{run}", "--preprocessing", "imagenet"], "Received: preprocessing='imagenet'"),
        (["{run}", "--top-k", "0"], "Received: top_k=0"),
        (["{run}", "--calibration-samples", "0"], "Received: calibration_samples=0"),
    ],
)
def test_cli_export_errors_exit_2_in_one_line(run_dir, tmp_path, capsys, argv, message):
    paths = {"run": run_dir}
    for name, make in _BAD_INPUTS.items():
        if any(f"{{{name}}}" in a for a in argv):
            paths[name] = make(tmp_path, run_dir)
    argv = [a.format(**paths) for a in argv]
    before = _snapshot(tmp_path)
    extra = [] if "--output" in argv else ["--output", str(tmp_path / "x")]
    code, _, err = run_cli(capsys, "export", *argv, *extra)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-resnet export: error: "), err
    assert message in lines[0] and "Traceback" not in err
    assert _snapshot(tmp_path) == before, "files were written"
    assert not Path("/proc/x").exists()


def test_api_errors_name_the_argument(run_dir):
    model = keras.saving.load_model(run_dir / "best.keras")
    with pytest.raises(ValueError, match="tflite_int8 needs calibration images"):
        export.export_model(
            model, "unused", formats="tflite_int8", validation_data=np.zeros((2, 8, 8, 1))
        )
    with pytest.raises(
        ValueError, match=r"Received: representative_data of shape \(2, 16, 16, 1\)"
    ):
        export.export_model(model, "unused", representative_data=np.zeros((2, 16, 16, 1)))
    with pytest.raises(ValueError, match="judged by top-1 agreement"):
        export.export_model(model, "unused", formats="tflite_dynamic")
    with pytest.raises(ValueError, match=r"Received: 3 class_names"):
        export.export_model(model, "unused", formats="keras", class_names=["a", "b", "c"])
    backbone = keras.Model(model.input, model.layers[-3].output)
    with pytest.raises(ValueError, match="must be a classifier"):
        export.export_model(backbone, "unused", formats="keras")
    with pytest.raises(ValueError, match="Received: variant='int4'"):
        export.convert_tflite(model, "int4")
    assert not Path("unused").exists()


# --------------------------------------------------------------------------- overwrite safety


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _make_runs_folder(d: Path, run_dir: Path, exported: Path) -> Path:
    _copy_run(run_dir, d / "runs" / "demo")
    return d / "runs"


def _make_folder_holding_an_export(d: Path, run_dir: Path, exported: Path) -> Path:
    shutil.copytree(exported, d / "saved_models" / "digits")
    return d / "saved_models"


def _make_plain_folder(d: Path, run_dir: Path, exported: Path) -> Path:
    _write(d / "notes" / "sub" / "b.txt", "b")
    return _write(d / "notes" / "a.txt", "a").parent


@pytest.mark.parametrize(
    "make",
    [
        _make_runs_folder,
        _make_folder_holding_an_export,
        _make_plain_folder,
        lambda d, run_dir, exported: _write(d / "file.txt", "not a folder"),
    ],
    ids=["runs-folder", "folder-holding-an-export", "plain-folder", "file"],
)
def test_overwrite_refuses_what_is_not_an_earlier_export(run_dir, exported, tmp_path, capsys, make):
    target = make(tmp_path, run_dir, exported[0])
    before = _snapshot(tmp_path)
    code, _, err = run_cli(capsys, "export", str(run_dir), "--output", str(target), "--overwrite")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"Received: output_dir='{target}'" in lines[0] and "`output_dir`" in lines[0]
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "manifest, replaceable",
    [
        ({"producer": "keras_resnet.export", "format_version": 1}, True),
        # Written before the producer field.
        ({"format_version": 1, "versions": {"keras_resnet": "0.1.0"}, "artifacts": {}}, True),
        ({"format_version": 1, "artifacts": {}}, False),
        ({"producer": "someone else", "versions": {"keras": "3"}}, False),
        ([{"producer": "keras_resnet.export"}], False),
        ("{not json", False),
    ],
)
def test_overwrite_replaces_only_a_manifest_of_ours(tmp_path, manifest, replaceable):
    target = tmp_path / "out"
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    _write(target / "manifest.json", text)
    if replaceable:
        assert export.check_output_dir(target, overwrite=True) == target
    else:
        with pytest.raises(ValueError, match=r"must be an earlier keras_resnet export"):
            export.check_output_dir(target, overwrite=True)
    with pytest.raises(ValueError, match="already exists"):
        export.check_output_dir(target)


def test_an_empty_directory_is_used_without_overwrite(tmp_path):
    (tmp_path / "empty").mkdir()
    assert export.check_output_dir(tmp_path / "empty") == tmp_path / "empty"


def _export_copy(exported: Path, to: Path, marker: str, *, complete: bool = True) -> Path:
    """A copy of a finished export whose manifest's `created` is `marker` (to tell copies apart)."""
    shutil.copytree(exported, to)
    manifest = json.loads((to / "manifest.json").read_text())
    (to / "manifest.json").write_text(json.dumps({**manifest, "created": marker}))
    if not complete:  # as a killed export leaves it: our marker, no manifest yet
        (to / "manifest.json").unlink()
        (to / PARTIAL_MARKER).touch()
    return to


@pytest.mark.parametrize(
    "state, kept",
    [
        # Killed between the renames: no target; the old and the new partial are complete.
        ({"old": True, "partial": True}, "partial"),
        ({"old": True, "partial": False}, "old"),
        # Killed after both renames, before the old one was removed.
        ({"target": True, "old": True}, "target"),
        # Killed mid-export: the partial is incomplete.
        ({"target": True, "partial": False}, "target"),
    ],
    ids=["between-renames", "between-renames-partial-incomplete", "after-renames", "mid-export"],
)
def test_a_killed_replacement_is_recovered_and_nothing_complete_lost(
    exported, tmp_path, state, kept
):
    pid = _dead_pid()
    names = {"target": "digits", "old": f".digits.old-{pid}", "partial": f".digits.partial-{pid}"}
    for i, (kind, complete) in enumerate(state.items()):
        copy = _export_copy(exported[0], tmp_path / names[kind], kind, complete=complete)
        # The newest manifest is the one written last.
        if complete:
            os.utime(copy / "manifest.json", ns=(10**18 + i, 10**18 + i))
    # A live process's export in progress (pytest's parent) is never touched.
    live = _write(tmp_path / f".digits.partial-{os.getppid()}" / "model.keras", b"writing")
    with pytest.raises(ValueError, match="already exists"):
        export.check_output_dir(tmp_path / "digits")
    manifest = json.loads((tmp_path / "digits" / "manifest.json").read_text())
    assert manifest["created"] == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["digits", live.parent.name])


def test_the_export_after_a_kill_between_renames_completes(exported, run_dir, tmp_path):
    pid = _dead_pid()
    _export_copy(exported[0], tmp_path / f".digits.old-{pid}", "old")
    _export_copy(exported[0], tmp_path / f".digits.partial-{pid}", "partial")
    manifest = export.export_run(
        run_dir, tmp_path / "digits", formats="keras", overwrite=True, latency_runs=0
    )
    assert set(manifest["artifacts"]) == {"keras"}
    assert json.loads((tmp_path / "digits" / "manifest.json").read_text()) == manifest
    assert [p.name for p in tmp_path.iterdir()] == ["digits"]


def test_a_foreign_folder_at_the_target_keeps_a_complete_old_copy(exported, tmp_path):
    pid = _dead_pid()
    old = _export_copy(exported[0], tmp_path / f".digits.old-{pid}", "old")
    _write(tmp_path / "digits" / "notes.txt", "someone else's")
    with pytest.raises(ValueError, match="must be an earlier keras_resnet export"):
        export.check_output_dir(tmp_path / "digits", overwrite=True)
    assert json.loads((old / "manifest.json").read_text())["created"] == "old"


@pytest.mark.parametrize(
    "name, others",
    [
        ("a[1]", [".a1.partial-{pid}", ".a[1].b.partial-{pid}", ".a[1]x.old-{pid}"]),
        ("x*", [".xyz.partial-{pid}", ".x.partial-{pid}", ".x*y.old-{pid}", ".x*.done-{pid}"]),
    ],
)
def test_stale_cleanup_matches_only_its_own_target(tmp_path, name, others):
    pid = _dead_pid()
    own = _write(tmp_path / f".{name}.partial-{pid}" / "model.keras", b"half").parent
    (own / PARTIAL_MARKER).touch()
    others = [_write(tmp_path / o.format(pid=pid) / "f", b"keep").parent for o in others]
    export.check_output_dir(tmp_path / name)
    assert not own.exists()
    assert all(o.exists() for o in others)


def test_a_look_alike_without_our_marker_or_manifest_is_left_alone(tmp_path):
    """Only a marker or a manifest proves a directory ours; a matching name does not."""
    pid = _dead_pid()
    theirs = _write(tmp_path / f".digits.partial-{pid}" / "notes.txt", "someone else's").parent
    empty = tmp_path / f".digits.old-{pid}"
    empty.mkdir()  # an empty target that was replaced: nothing to lose
    export.check_output_dir(tmp_path / "digits")
    assert (theirs / "notes.txt").read_text() == "someone else's"
    assert not empty.exists()


def test_an_export_leaves_no_marker(exported):
    assert not (exported[0] / PARTIAL_MARKER).exists()


def test_a_demo_under_the_bar_keeps_the_earlier_export(exported, tmp_path, capsys, monkeypatch):
    """A real demo run cut to one epoch at 8 px, which misses the bar by far."""
    earlier = _export_copy(exported[0], tmp_path / "digits-resnet20", "earlier")
    before = _snapshot(tmp_path)
    monkeypatch.setattr(constants, "DEMO_EPOCHS", 1)
    monkeypatch.setattr(constants, "DEMO_IMAGE_SIZE", 8)
    run = tmp_path / "demo"
    code, out, _ = run_cli(capsys, "demo", "--output", str(run), "--export", str(earlier))
    assert code == 1 and (run / "metrics.json").is_file()
    assert "MISSES the 0.98 bar" in out and f"export skipped, {earlier} left as it was" in out
    assert {k: v for k, v in _snapshot(tmp_path).items() if k in before} == before


def test_a_demo_refuses_an_export_target_before_training(tmp_path, capsys):
    folder = _write(tmp_path / "runs" / "mine" / "run.json", "{}").parent.parent
    before = _snapshot(tmp_path)
    run = tmp_path / "demo"
    code, _, err = run_cli(capsys, "demo", "--output", str(run), "--export", str(folder))
    assert code == 2 and not run.exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "must be an earlier keras_resnet export" in lines[0], err
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "size, formats",
    [("64k", "keras"), ("256k", "keras,saved_model")],
    ids=["keras-file", "saved-model"],  # an OSError, then TensorFlow's own error type
)
def test_a_full_disk_is_one_line_and_leaves_nothing(run_dir, tmp_path, capsys, size, formats):
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mount.stderr.strip()}")
    try:
        out = disk / "a" / "b"
        code, _, err = run_cli(
            capsys, "export", str(run_dir), "--output", str(out), "--formats", formats
        )
        assert code == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].endswith(
            f"cannot write `output_dir` (No space left on device). Received: output_dir='{out}'"
        )
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# --- the fastest artifact per host (#17) -------------------------------------------------------


def test_the_manifest_names_the_fastest_verified_tflite_file(exported):
    out, manifest = exported
    fastest = manifest["fastest"]
    artifacts = manifest["artifacts"]
    timed = {f: artifacts[f]["latency_batch1"]["median_ms"] for f in TFLITE}
    assert fastest["measured"] and fastest["artifact"] in TFLITE
    assert artifacts[fastest["artifact"]]["verification"]["passed"]
    assert timed[fastest["artifact"]] == min(timed.values())
    assert fastest["latency_batch1_median_ms"] == dict(sorted(timed.items(), key=lambda i: i[1]))
    assert fastest["path"] == artifacts[fastest["artifact"]]["path"]
    assert (out / fastest["path"]).is_file()
    flags = precision.cpu_flags()
    assert fastest["cpu_flags"]["int8_dot_product"] == precision.int8_dot_product_flags(flags)
    assert fastest["cpu_flags"]["bf16"] == sorted(flags & set(precision.BF16_CPU_FLAGS))
    expected = precision.expected_fastest_tflite()[0].replace("-", "_")
    assert fastest["expected"] == expected
    assert fastest["agrees_with_expected"] == (fastest["artifact"] == expected)
    assert fastest["why"].startswith(f"{fastest['artifact']}: ")
    assert "fastest_keras" not in manifest  # only with keras_bf16


def _artifact(median_ms=None, passed=True, p10_ms=None):
    entry = {"path": "x", "verification": {"passed": passed}}
    if median_ms is not None:
        entry["latency_batch1"] = {"median_ms": median_ms, "p10_ms": p10_ms or median_ms}
    return entry


VNNI = frozenset({"avx2", "avx512_vnni"})
NO_DOT = frozenset({"avx2", "fma"})


def test_choose_fastest_on_synthetic_manifests():
    choose = fastest_module.choose_fastest
    artifacts = {
        "keras": _artifact(9.0),
        "tflite_fp32": _artifact(3.0, p10_ms=2.9),
        "tflite_fp16": _artifact(3.1),
        "tflite_dynamic": _artifact(1.0, passed=False),  # fastest, but failed verification
        "tflite_int8": _artifact(1.5),
    }
    entry = choose(artifacts, fastest_module.TFLITE_FORMATS)
    assert entry["artifact"] == "tflite_int8" and entry["measured"]
    assert list(entry["latency_batch1_median_ms"]) == ["tflite_int8", "tflite_fp32", "tflite_fp16"]
    assert entry["excluded"] == {"tflite_dynamic": "verification failed"}
    assert entry["runner_up"] == "tflite_fp32" and not entry["within_noise"]
    # A runner-up other than fp32 within noise is named as such.
    close = {
        "tflite_fp32": _artifact(3.0),
        "tflite_int8": _artifact(1.0),
        "tflite_dynamic": _artifact(1.1, p10_ms=0.9),
    }
    assert fastest_module.fastest_tflite(close, VNNI)["why"].startswith(
        "tflite_int8: 3.00x the speed of tflite_fp32 here (tflite_dynamic within this host's noise)"
    )
    # Ties: the expected form first, then format order.
    tied = {"tflite_fp32": _artifact(2.0), "tflite_int8": _artifact(2.0)}
    assert choose(tied, fastest_module.TFLITE_FORMATS)["artifact"] == "tflite_fp32"
    entry = choose(tied, fastest_module.TFLITE_FORMATS, expected="tflite_int8")
    assert entry["artifact"] == "tflite_int8" and entry["tied_with"] == ["tflite_fp32"]
    assert entry["within_noise"]
    # Nothing timed: the expected form, if written and verified; nothing of the group: None.
    untimed = {"tflite_fp32": _artifact(), "tflite_int8": _artifact()}
    entry = choose(untimed, fastest_module.TFLITE_FORMATS, expected="tflite_int8")
    assert entry["artifact"] == "tflite_int8" and not entry["measured"]
    assert entry["excluded"] == {"tflite_fp32": "not timed", "tflite_int8": "not timed"}
    untimed["tflite_int8"] = _artifact(passed=False)
    assert (
        choose(untimed, fastest_module.TFLITE_FORMATS, expected="tflite_int8")["artifact"] is None
    )
    assert choose({"keras": _artifact(1.0)}, fastest_module.TFLITE_FORMATS) is None


def test_the_fastest_entry_explains_itself_by_the_cpu_flags():
    artifacts = {"tflite_fp32": _artifact(3.1), "tflite_int8": _artifact(1.0)}
    entry = fastest_module.fastest_tflite(artifacts, VNNI)
    assert entry["why"] == (
        "tflite_int8: 3.10x the speed of tflite_fp32 here; "
        "the CPU has avx512_vnni (int8 dot products)"
    )
    assert entry["agrees_with_expected"] and entry["expected"] == "tflite_int8"
    assert entry["cpu_flags"]["int8_dot_product"] == ["avx512_vnni"]
    slow_int8 = {"tflite_fp32": _artifact(1.0), "tflite_int8": _artifact(1.05)}
    entry = fastest_module.fastest_tflite(slow_int8, NO_DOT)
    assert entry["artifact"] == "tflite_fp32" and entry["agrees_with_expected"]
    assert entry["why"].endswith("int8 not expected to be faster: no int8 dot-product flags")
    assert "tflite_fp32: 1.05x the speed of tflite_int8" in entry["why"]
    # A CPU with VNNI where int8 still lost: measured beats expected, and says so.
    assert not fastest_module.fastest_tflite(slow_int8, VNNI)["agrees_with_expected"]
    untimed = {"tflite_fp32": _artifact(), "tflite_int8": _artifact()}
    entry = fastest_module.fastest_entries(untimed, NO_DOT)["fastest"]
    assert entry["artifact"] == "tflite_fp32" and entry["path"] == "x"
    assert entry["why"].startswith("latency not measured (latency_runs=0): expected tflite_fp32")
    # Keras: float32 or bfloat16, expected by the CPU flags and the model's size.
    pair = {"keras": _artifact(2.0), "keras_bf16": _artifact(1.0)}
    bf16_cpu = frozenset({"avx512f", "avx512_bf16"})
    entries = fastest_module.fastest_entries(pair, bf16_cpu, macs=4 * 10**9)
    assert "fastest" not in entries
    entry = entries["fastest_keras"]
    assert entry["artifact"] == "keras_bf16" and entry["agrees_with_expected"]
    assert entry["why"] == (
        "keras_bf16: 2.00x the speed of keras here, batch 1; the CPU has avx512_bf16"
    )
    small = fastest_module.fastest_entries(pair, bf16_cpu, macs=10**7)["fastest_keras"]
    assert small["expected"] == "keras" and not small["agrees_with_expected"]
    assert fastest_module.fastest_keras(pair, NO_DOT, macs=10**10)["expected"] == "keras"


def test_keras_bf16_is_opt_in_verified_timed_and_loads_in_safe_mode(run_dir, tmp_path, capsys):
    assert "keras_bf16" not in export.parse_formats("all")
    out = tmp_path / "bf16"
    manifest = export.export_run(run_dir, out, formats="keras,keras_bf16", latency_runs=5)
    bf16 = manifest["artifacts"]["keras_bf16"]
    check = bf16["verification"]
    assert check["passed"] and check["criterion"] == export.DEFAULT_TOLERANCES["keras_bf16"]
    assert check["top1_agreement"] >= 0.99 and 0 < check["max_abs_diff"] <= 0.1
    assert bf16["path"] == "model_bf16.keras" and bf16["dtype_policies"] == ["bfloat16", "float32"]
    model = keras.saving.load_model(out / "model_bf16.keras", safe_mode=True)
    assert model.get_layer("conv1_conv").dtype_policy.name == "bfloat16"
    assert model.layers[-1].dtype_policy.name == "float32" and model.outputs[0].dtype == "float32"
    # Timed in turns with the float32 model.keras; the faster of the two is named.
    keras_entry = manifest["artifacts"]["keras"]
    assert keras_entry["latency_batch1"] == bf16["float32_latency_batch1"]
    assert bf16["latency_batch1"]["interleaved_with"] == ["keras"]
    fastest = manifest["fastest_keras"]
    times = {
        f: manifest["artifacts"][f]["latency_batch1"]["median_ms"] for f in ("keras", "keras_bf16")
    }
    assert fastest["measured"] and times[fastest["artifact"]] == min(times.values())
    assert "fastest" not in manifest  # no TFLite file written
    assert "fastest here: " + fastest["why"] in capsys.readouterr().out
