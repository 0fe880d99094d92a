"""The export: check, prepare the data, write and verify each format, seal, move into place.

Each format has a writer in `WRITERS`: it writes its artifact into the export
directory, loads it back in its own runtime and returns its outputs on the
verification images, which `verify.compare` judges against the Keras model's.

The `.keras` file and the SavedModel (and the TFLite files converted from it)
hold the model's BN-folded inference form (`keras_resnet.fold`) unless
`fold=False`; the reference they are judged against is always the model as
given, so a wrong fold fails the export. TFLite's converter folds BN itself
(see `keras_resnet.fold`), so its files are the same either way; ONNX is
written from the model as given. `keras_bf16` (opt-in) is the served model
computing in bfloat16 (`keras_resnet.export.keras_bf16`).

After the writers, `keras_resnet.export.fastest` names the fastest verified
TFLite file (and Keras file, with `keras_bf16`) from the latencies measured here.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from keras_resnet._checks import require_tensorflow_backend
from keras_resnet._logs import quiet_native_logs
from keras_resnet.constants import TFLITE_VARIANTS
from keras_resnet.export.export_utils import (
    as_images,
    check_classifier,
    float32_model,
    labels_of,
    tensor_info,
)
from keras_resnet.export.fastest import fastest_entries
from keras_resnet.export.keras_bf16 import FILE as BF16_FILE
from keras_resnet.export.keras_bf16 import bfloat16_model
from keras_resnet.export.latency import interleaved_keras_latency, keras_latency
from keras_resnet.export.onnx import run_onnx, write_onnx
from keras_resnet.export.options import ExportOptions, resolve_options, with_tag_preprocessing
from keras_resnet.export.report import print_manifest, software_versions
from keras_resnet.export.saved_model import (
    run_saved_model,
    signature_io,
    verify_uint8,
    write_saved_model,
)
from keras_resnet.export.source import load_model_file, load_run_data, resolve_source
from keras_resnet.export.target import LABELS, PRODUCER, check_output_dir, write_atomically
from keras_resnet.export.tflite import (
    convert,
    gpu_delegate_report,
    interleaved_tflite_latency,
    run_tflite,
    tflite_io,
)
from keras_resnet.export.verify import compare
from keras_resnet.fold import fold_batchnorm, is_functional
from keras_resnet.sizing import count_macs

# Where each format's artifact goes inside the export directory.
_FILES = {
    "keras": "model.keras",
    "keras_bf16": BF16_FILE,
    "saved_model": "saved_model",
    **{f"tflite_{v}": f"tflite/model_{v}.tflite" for v in TFLITE_VARIANTS},
    "onnx": "model.onnx",
}
_RANDOM_VERIFY_SAMPLES = 32
_BATCH = 64
# The formats written from the folded model (TFLite: converted from the SavedModel).
_FOLDED_FORMATS = (
    "keras",
    "keras_bf16",
    "saved_model",
    *(f"tflite_{v}" for v in TFLITE_VARIANTS),
)


@dataclasses.dataclass(frozen=True)
class _Data:
    """The images int8 is calibrated on and every artifact is verified on."""

    representative: np.ndarray | None
    verify: np.ndarray
    labels: np.ndarray | None
    verified_on: str


@dataclasses.dataclass
class _Job:
    """One export being written into `out`: what every format's writer reads.

    `model` is the model as given, the reference; `served` is what the `.keras` file and the
    SavedModel hold: its BN-folded form (`fold` describes it) or `model` itself.
    """

    model: keras.Model
    served: keras.Model
    fold: dict[str, Any]
    out: Path
    options: ExportOptions
    data: _Data
    class_names: list[str]
    top_k: int
    tols: dict[str, dict[str, float]]
    reference: np.ndarray  # the Keras model's outputs on data.verify
    saved_model_dir: Path | None = None

    def saved_model(self) -> Path:
        """The SavedModel, written on first use: the artifact, or a hidden one for TFLite."""
        if self.saved_model_dir is None:
            kept = "saved_model" in self.options.formats
            path = self.out / (_FILES["saved_model"] if kept else ".saved_model")
            write_saved_model(
                self.served,
                path,
                class_names=self.class_names,
                preprocessing=self.options.preprocessing,
                top_k=self.top_k,
                uint8_signature=self.options.uint8_signature and kept,
            )
            self.saved_model_dir = path
        return self.saved_model_dir

    def done(self, fmt: str) -> None:
        """Removes a hidden SavedModel once no format after `fmt` converts from it."""
        formats = self.options.formats
        later = formats[formats.index(fmt) + 1 :]
        hidden = self.saved_model_dir is not None and "saved_model" not in formats
        if hidden and not any(f.startswith("tflite_") for f in later):
            shutil.rmtree(self.saved_model_dir)
            self.saved_model_dir = None


class _Written(NamedTuple):
    """An artifact a writer made: its path, I/O, outputs on the verification images, extras."""

    path: Path
    io: dict[str, Any]
    outputs: np.ndarray
    extra: dict[str, Any] | None = None


def _keras_io(model: keras.Model) -> dict[str, Any]:
    return {
        "inputs": [tensor_info(tf.TensorSpec(model.input_shape), model.inputs[0].name)],
        "outputs": [tensor_info(tf.TensorSpec(model.output_shape), "probabilities")],
    }


def _keras_artifact(job: _Job, fmt: str) -> _Written:
    path = job.out / _FILES[fmt]
    job.served.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    outputs = reloaded.predict(job.data.verify, batch_size=_BATCH, verbose=0)
    return _Written(path, _keras_io(job.served), outputs)


def _keras_bf16_artifact(job: _Job, fmt: str) -> _Written:
    """The served model in bfloat16, timed in turns with the float32 one it replaces."""
    path = job.out / _FILES[fmt]
    bfloat16_model(job.served).save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    outputs = reloaded.predict(job.data.verify, batch_size=_BATCH, verbose=0)
    extra: dict[str, Any] = {
        "dtype_policies": sorted({la.dtype_policy.name for la in reloaded.layers[1:]}),
    }
    if job.options.latency_runs:
        timed = interleaved_keras_latency(
            {"keras": job.served, "keras_bf16": reloaded}, runs=job.options.latency_runs
        )
        extra["latency_batch1"] = timed["keras_bf16"]
        extra["float32_latency_batch1"] = timed["keras"]
    return _Written(path, _keras_io(reloaded), outputs, extra)


def _saved_model_artifact(job: _Job, fmt: str) -> _Written:
    path = job.saved_model()
    loaded = tf.saved_model.load(str(path))
    outputs = run_saved_model(loaded, job.data.verify)
    extra: dict[str, Any] = {}
    if job.options.uint8_signature:
        extra["serving_uint8"] = verify_uint8(
            job.model,
            loaded,
            job.data.verify,
            job.options.preprocessing,
            job.top_k,
            job.class_names,
            job.tols,
        )
    return _Written(path, {"signatures": signature_io(loaded)}, outputs, extra)


def _tflite_artifact(job: _Job, fmt: str) -> _Written:
    path = job.out / _FILES[fmt]
    path.parent.mkdir(exist_ok=True)
    variant = fmt.removeprefix("tflite_")
    path.write_bytes(convert(job.saved_model(), variant, job.data.representative))
    outputs = run_tflite(path, job.data.verify, num_threads=job.options.num_threads)
    extra = {"gpu_delegate": gpu_delegate_report(path)}
    return _Written(path, tflite_io(path), outputs, extra)  # timed with the others at the end


def _onnx_artifact(job: _Job, fmt: str) -> _Written:
    path = job.out / _FILES[fmt]
    write_onnx(job.model, path)
    outputs, io_info = run_onnx(path, job.data.verify)
    return _Written(path, io_info, outputs)


# One writer a format, run in `FORMATS` order (the TFLite files convert from the SavedModel).
WRITERS: dict[str, Callable[[_Job, str], _Written]] = {
    "keras": _keras_artifact,
    "keras_bf16": _keras_bf16_artifact,
    "saved_model": _saved_model_artifact,
    **{f"tflite_{v}": _tflite_artifact for v in TFLITE_VARIANTS},
    "onnx": _onnx_artifact,
}


def _size_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _write_artifacts(job: _Job) -> dict[str, Any]:
    """Every requested format written and verified; the manifest's first part."""
    artifacts: dict[str, dict[str, Any]] = {}
    for fmt in job.options.formats:
        written = WRITERS[fmt](job, fmt)
        artifacts[fmt] = {
            "format": fmt,
            "path": str(written.path.relative_to(job.out)),
            "size_bytes": int(_size_bytes(written.path)),
            **written.io,
            "verification": compare(
                fmt, written.outputs, job.reference, job.data.labels, job.tols[fmt]
            ),
            **(written.extra or {}),
        }
        job.done(fmt)
    tflite = {f: job.out / a["path"] for f, a in artifacts.items() if f.startswith("tflite_")}
    if job.options.latency_runs and tflite:
        timed = interleaved_tflite_latency(
            tflite, runs=job.options.latency_runs, num_threads=job.options.num_threads
        )
        for fmt, record in timed.items():
            artifacts[fmt]["latency_batch1"] = record
    float32_timed = artifacts.get("keras_bf16", {}).get("float32_latency_batch1")
    if "keras" in artifacts and float32_timed:
        artifacts["keras"]["latency_batch1"] = float32_timed  # model.keras holds job.served
    manifest: dict[str, Any] = {
        "producer": PRODUCER,
        "format_version": 1,
        "artifacts": artifacts,
        **fastest_entries(
            artifacts, macs=count_macs(job.served) if "keras_bf16" in artifacts else None
        ),
    }
    formats, runs = job.options.formats, job.options.latency_runs
    if runs and any(f.startswith("tflite_") for f in formats):
        manifest["keras_latency_batch1"] = keras_latency(job.served, runs=runs)
    return manifest


def _describe(job: _Job, name: str, spec: Any, source: str | None) -> dict[str, Any]:
    """The manifest's second part: the model, its input and where the export came from."""
    height, width, channels, classes = check_classifier(job.model)
    representative = job.data.representative
    return {
        "name": name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "spec": spec.to_dict() if dataclasses.is_dataclass(spec) else spec,
        "model_name": job.model.name,
        "params": int(job.model.count_params()),
        "fold": job.fold,
        "input": {
            "shape": [-1, height, width, channels],
            "dtype": "float32",
            "preprocessing": job.options.preprocessing,
        },
        "classes": classes,
        "labels_file": LABELS,
        "verification_data": {
            "source": job.data.verified_on,
            "samples": int(len(job.data.verify)),
            "calibration_samples": 0 if representative is None else int(len(representative)),
        },
        "versions": software_versions(job.options.formats),
    }


def _served(model: keras.Model, options: ExportOptions) -> tuple[keras.Model, dict[str, Any]]:
    """The model the `.keras` file and the SavedModel hold, and the manifest's `fold` entry."""
    formats = [f for f in options.formats if f in _FOLDED_FORMATS]
    reason = None
    if not options.fold:
        reason = "fold=False"
    elif not formats:
        reason = "no format written from the Keras graph"
    elif not is_functional(model):
        reason = f"not a functional keras.Model ({type(model).__name__})"
    if reason is not None:
        return model, {"applied": False, "reason": reason}
    served = fold_batchnorm(model)
    return served, {
        "applied": True,
        "artifacts": formats,
        "layers": [len(model.layers), len(served.layers)],
        "params": int(served.count_params()),
        "verified_against": "the unfolded model",
    }


def _check_class_names(class_names: Sequence[str] | None, classes: int) -> list[str]:
    names = [str(c) for c in (class_names or range(classes))]
    if len(names) != classes:
        raise ValueError(
            f"`class_names` must name the model's {classes} outputs. "
            f"Received: {len(names)} class_names"
        )
    return names


def _prepare_data(
    shape: tuple[int, int, int],
    options: ExportOptions,
    tols: dict[str, dict[str, float]],
    representative_data: Any,
    validation_data: Any,
) -> _Data:
    """The calibration and verification images; random ones only where float formats allow."""
    representative = as_images(
        representative_data, "representative_data", shape, options.calibration_samples
    )
    verify = as_images(validation_data, "validation_data", shape, options.verify_samples)
    labels = labels_of(validation_data, options.verify_samples) if verify is not None else None
    verified_on = "validation_data"
    if verify is None and representative is not None:
        verify, verified_on = representative, "representative_data (no validation_data given)"
    if verify is None:
        needs_data = [f for f in options.formats if "top1_agreement" in tols[f]]
        if needs_data:
            raise ValueError(
                f"{', '.join(needs_data)} are judged by top-1 agreement on real images: pass "
                "`validation_data` or `representative_data` (CLI: a run directory or --dataset). "
                "Received: validation_data=None, representative_data=None"
            )
        rng = np.random.default_rng(0)
        verify = rng.uniform(0, 1, (_RANDOM_VERIFY_SAMPLES, *shape)).astype(np.float32)
        verified_on = "random uniform [0, 1) images (no data given)"
    if "tflite_int8" in options.formats and representative is None:
        raise ValueError(
            "tflite_int8 needs calibration images drawn from the training data: pass "
            "`representative_data` (CLI: a run directory or --dataset). "
            "Received: representative_data=None"
        )
    return _Data(representative, verify, labels, verified_on)


def export_model(
    model: keras.Model,
    output_dir: str | os.PathLike,
    *,
    options: ExportOptions | None = None,
    representative_data: Any = None,
    validation_data: Any = None,
    class_names: Sequence[str] | None = None,
    spec: Any = None,
    source: str | None = None,
    **option_overrides: Any,
) -> dict[str, Any]:
    """Exports a classifier to every requested format, verifies each, writes atomically.

    Args:
        model: a classifier with a fixed input size (one image input, one
            (batch, classes) output).
        output_dir: the directory to create (e.g. `saved_models/digits-resnet20`).
            It is written next to itself under a temporary name and renamed at
            the end, so an interrupted export leaves nothing at `output_dir`.
        options: an `ExportOptions` (formats, overwrite, tolerances, latency...);
            default `ExportOptions()`.
        representative_data: model-ready float32 images (N, H, W, C) or a
            dataset of them (or of (images, labels)), drawn from the training
            data; calibrates the int8 variant (first `calibration_samples`).
        validation_data: held-out images (same forms) the artifacts are
            compared on, against the Keras model; labels, when the dataset has
            them, add an accuracy per artifact. Default: `representative_data`,
            or random images for the float formats when neither is given.
        class_names: one name per output (default "0", "1", ...), written to
            `labels.txt` and into the uint8 signature's `top_k_labels`.
        spec: the `ResNetSpec` (or its dict) recorded in the manifest.
        source: where the model came from, recorded in the manifest.
        **option_overrides: any `ExportOptions` field (`formats="tflite"`,
            `overwrite=True`, ...), applied over `options`.

    Returns:
        The manifest (also written to `output_dir/manifest.json`).

    Raises:
        ValueError: bad arguments or an `output_dir` it may not replace, before
            anything is written; or a failed write (a full disk, no
            permission), after which nothing is left.
        ExportVerificationError: an artifact outside its tolerance; nothing is written.

    Example:
        >>> manifest = export_model(model, "saved_models/mine", representative_data=x_train[:200],
        ...                         validation_data=x_test, class_names=names, formats="tflite")
    """
    require_tensorflow_backend("export_model()", "SavedModel and TFLite conversion")
    from keras_resnet.registry import model_cfg

    options = with_tag_preprocessing(resolve_options(options, option_overrides), model_cfg(model))
    model, trained_policy = float32_model(model)  # exported and verified in float32
    height, width, channels, classes = check_classifier(model)
    names = _check_class_names(class_names, classes)
    tols = options.resolved_tolerances()
    data = _prepare_data(
        (height, width, channels), options, tols, representative_data, validation_data
    )
    target = check_output_dir(output_dir, overwrite=options.overwrite)

    def fill(tmp: Path) -> dict[str, Any]:
        served, fold = _served(model, options)
        reference = model.predict(data.verify, batch_size=_BATCH, verbose=0)
        top_k = min(options.top_k, classes)
        job = _Job(model, served, fold, tmp, options, data, names, top_k, tols, reference)
        # TensorFlow's converter and LiteRT print C++ notices here; errors still show.
        with quiet_native_logs():
            artifacts = _write_artifacts(job)
        described = _describe(job, target.name, spec, source)
        if trained_policy:
            described["input"]["trained_dtype_policy"] = trained_policy
        return {**artifacts, **described}

    manifest = write_atomically(target, output_dir, options.overwrite, fill, names)
    if options.verbose:
        print_manifest(manifest, output_dir)
    return manifest


def export_run(
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    options: ExportOptions | None = None,
    **option_overrides: Any,
) -> dict[str, Any]:
    """Exports a training run (its `best.keras`) or a `.keras` file, with data from its dataset.

    The dataset and image size come from the run's `run.json` (or `dataset`):
    int8 is calibrated on `calibration_samples` training images and every
    artifact is verified on the test split, which training never used.
    `options` and `option_overrides` are `export_model`'s.

    Example:
        >>> export_run("runs/demo", "saved_models/digits-resnet20", formats="all")
    """
    from keras_resnet.registry import model_cfg

    options = resolve_options(options, option_overrides)
    model_path, run = resolve_source(source)
    # Before the model and the data are loaded, so a refused output_dir fails at once.
    check_output_dir(output_dir, overwrite=options.overwrite)
    model = load_model_file(model_path)
    # A run's model learnt [0, 1] pixels (keras_resnet.training), whatever its name says.
    tag = model_cfg(model) if run is None else None
    options = with_tag_preprocessing(options, tag)
    spec, splits = load_run_data(
        model,
        run,
        source,
        dataset=dataset,
        data_dir=data_dir,
        calibrate="tflite_int8" in options.formats,
        tag=tag,
    )
    return export_model(
        model,
        output_dir,
        options=options,
        representative_data=splits.train if splits else None,
        validation_data=splits.test if splits else None,
        class_names=splits.class_names if splits else None,
        spec=spec,
        source=str(model_path),
    )
