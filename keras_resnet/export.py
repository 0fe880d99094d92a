"""Export: a trained classifier to `.keras`, SavedModel, TFLite (four variants) and ONNX.

Every artifact is loaded back in its own runtime and compared with the Keras
model on held-out images before the export is accepted, and everything lands
atomically in one directory:

```
saved_models/<name>/
  model.keras                 Keras 3 file (loads with safe_mode=True)
  saved_model/                signatures serving_default (float32) and serving_uint8
  tflite/model_fp32.tflite    float32
  tflite/model_fp16.tflite    float16 weights (GPU delegate)
  tflite/model_dynamic.tflite int8 weights, float activations (dynamic range)
  tflite/model_int8.tflite    full integer: int8 input and output, calibrated
  model.onnx                  optional (`pip install keras3-resnet[onnx]`)
  labels.txt                  one class name a line, in output order
  manifest.json               per artifact: size, I/O, quantisation, verification, latency
```

Conversions are TensorFlow's and Keras' own: the SavedModel is written by
`tf.saved_model.save` (not `keras.export.ExportArchive`, which stores every
weight twice: keras-team/keras#23553), the TFLite files come from
`tf.lite.TFLiteConverter.from_saved_model` on its `serving_default`
signature (so they keep its names: input `images`, output `probabilities`),
ONNX from `model.export(format="onnx")`. TFLite files are run with the
`ai_edge_litert` interpreter, ONNX with onnxruntime.

Example:

>>> from keras_resnet.export import export_run
>>> manifest = export_run("runs/demo", "saved_models/digits-resnet20")
>>> manifest["artifacts"]["tflite_int8"]["verification"]["top1_agreement"] >= 0.99
True
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import glob
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_resnet._checks import check_positive_int
from keras_resnet._io import _fsync_dir, write_json, write_text_atomic
from keras_resnet.version import __version__

TFLITE_VARIANTS = ("fp32", "fp16", "dynamic", "int8")
FORMATS = ("keras", "saved_model", *(f"tflite_{v}" for v in TFLITE_VARIANTS), "onnx")
# "all" is every format whose runtime is installed: ONNX is an optional extra.
DEFAULT_FORMATS = FORMATS[:-1]
PREPROCESSING = ("unit", "caffe", "tf", "torch", "none")
ONNX_PACKAGES = ("tf2onnx", "onnx", "onnxruntime")

# Acceptance of each artifact against the Keras model on the verification images.
# Float artifacts: the largest absolute difference of any output value.
# Quantised ones: the share of images whose top-1 class is the Keras model's.
DEFAULT_TOLERANCES: dict[str, dict[str, float]] = {
    "keras": {"max_abs_diff": 1e-6},
    "saved_model": {"max_abs_diff": 1e-5},
    "saved_model_uint8": {"max_abs_diff": 1e-5},
    "tflite_fp32": {"max_abs_diff": 1e-5},
    "tflite_fp16": {"max_abs_diff": 1e-2},
    "tflite_dynamic": {"top1_agreement": 0.99},
    "tflite_int8": {"top1_agreement": 0.99},
    "onnx": {"max_abs_diff": 1e-5},
}

MANIFEST, LABELS = "manifest.json", "labels.txt"
# In every manifest: what `overwrite` checks before it replaces a directory.
PRODUCER = "keras_resnet.export"
_FILES = {
    "keras": "model.keras",
    "saved_model": "saved_model",
    **{f"tflite_{v}": f"tflite/model_{v}.tflite" for v in TFLITE_VARIANTS},
    "onnx": "model.onnx",
}
_CALIBRATION_SAMPLES = 200
_VERIFY_SAMPLES = 1000
_RANDOM_VERIFY_SAMPLES = 32


class ExportVerificationError(ValueError):
    """An artifact's outputs fell outside its tolerance; nothing was written."""


# --------------------------------------------------------------------------- checks


def parse_formats(formats: str | Sequence[str]) -> list[str]:
    """Turns `"all"`, `"tflite"`, `"keras,tflite_int8"` or a list into known format names.

    Example:
        >>> parse_formats("keras,tflite")
        ['keras', 'tflite_fp32', 'tflite_fp16', 'tflite_dynamic', 'tflite_int8']
    """
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out: list[str] = []
    for raw in items:
        item = str(raw).strip().lower()
        if item == "all":
            expanded = list(DEFAULT_FORMATS) + (["onnx"] if onnx_available() else [])
        elif item == "tflite":
            expanded = [f"tflite_{v}" for v in TFLITE_VARIANTS]
        elif item in FORMATS:
            expanded = [item]
        else:
            raise ValueError(
                f"`formats` must be 'all', 'tflite' or among {', '.join(FORMATS)}. "
                f"Received: formats={formats!r}"
            )
        out += [f for f in expanded if f not in out]
    if not out:
        raise ValueError(f"`formats` names no format. Received: formats={formats!r}")
    return [f for f in FORMATS if f in out]


def onnx_available() -> bool:
    return all(importlib.util.find_spec(p) is not None for p in ONNX_PACKAGES)


def _check_classifier(model: keras.Model) -> tuple[int, int, int, int]:
    """(height, width, channels, classes) of a one-image-in, one-vector-out model."""
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model. Received: model={type(model).__name__}")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            "`model` must have one input and one output. Received: "
            f"{len(model.inputs)} inputs, {len(model.outputs)} outputs"
        )
    in_shape, out_shape = tuple(model.input_shape), tuple(model.output_shape)
    if len(in_shape) != 4 or None in in_shape[1:]:
        raise ValueError(
            "`model` must take images of a fixed size, (batch, height, width, channels); "
            f"build it with input_shape=(H, W, C). Received: input_shape={in_shape}"
        )
    if len(out_shape) != 2 or out_shape[1] is None:
        raise ValueError(
            "`model` must be a classifier with output (batch, classes) "
            f"(include_top=True, or pooling and a Dense head). Received: output_shape={out_shape}"
        )
    return int(in_shape[1]), int(in_shape[2]), int(in_shape[3]), int(out_shape[1])


def _as_images(data: Any, name: str, shape: tuple[int, int, int], limit: int) -> np.ndarray | None:
    """At most `limit` float32 images from an array or a (batched) dataset of x or (x, y)."""
    if data is None:
        return None
    if isinstance(data, tf.data.Dataset):
        batches, count = [], 0
        for element in data:
            x = element[0] if isinstance(element, (tuple, list)) else element
            batches.append(np.asarray(x, dtype=np.float32))
            count += len(batches[-1])
            if count >= limit:
                break
        if not batches:
            raise ValueError(f"`{name}` is an empty dataset. Received: {name}={data}")
        images = np.concatenate(batches)
    else:
        images = np.asarray(data, dtype=np.float32)
    if images.ndim != 4 or tuple(images.shape[1:]) != shape:
        raise ValueError(
            f"`{name}` must be images of shape (N, {', '.join(map(str, shape))}) like the "
            f"model's input. Received: {name} of shape {images.shape}"
        )
    if len(images) == 0:
        raise ValueError(f"`{name}` holds no images. Received: {name} of shape {images.shape}")
    return images[:limit]


def _labels_of(data: Any, limit: int) -> np.ndarray | None:
    """Integer labels of a dataset of (x, y), if it has them (for accuracy in the manifest)."""
    if not isinstance(data, tf.data.Dataset):
        return None
    labels, count = [], 0
    for element in data:
        if not isinstance(element, (tuple, list)) or len(element) < 2:
            return None
        y = np.asarray(element[1])
        labels.append(y.argmax(-1) if y.ndim == 2 else y.astype(np.int64))
        count += len(y)
        if count >= limit:
            break
    return np.concatenate(labels)[:limit] if labels else None


# --------------------------------------------------------------------------- SavedModel


def _preprocess(x: tf.Tensor, mode: str) -> tf.Tensor:
    """uint8-range float images -> what the model was trained on."""
    if mode == "unit":
        return x / 255.0
    if mode == "none":
        return x
    return keras.applications.imagenet_utils.preprocess_input(x, mode=mode)


def _write_saved_model(
    model: keras.Model,
    path: Path,
    *,
    class_names: Sequence[str],
    preprocessing: str,
    top_k: int,
    uint8_signature: bool,
) -> None:
    """A SavedModel whose signatures have stable names, not Keras' internal tensor names.

    `serving_default`: float32 `images` (N, H, W, C), already preprocessed
    -> `probabilities` (N, classes).
    `serving_uint8`: uint8 `images` (N, any height, any width, C), resized and
    preprocessed inside -> `probabilities`, `top_k_ids`, `top_k_scores`, `top_k_labels`.
    """
    height, width, channels, _ = _check_classifier(model)
    # tf.saved_model.save on a module that tracks the raw tf.Variables, rather
    # than keras.export.ExportArchive: the archive stores every weight twice
    # (keras-team/keras#23553), doubling the files and TF Serving's memory.
    module = tf.Module()
    module.weights = [v.value for v in model.weights]

    @tf.function(
        input_signature=[tf.TensorSpec([None, height, width, channels], tf.float32, name="images")]
    )
    def serve(images):
        return {"probabilities": model(images, training=False)}

    signatures = {"serving_default": serve}
    if uint8_signature:
        label_table = tf.constant(list(class_names))

        @tf.function(
            input_signature=[tf.TensorSpec([None, None, None, channels], tf.uint8, name="images")]
        )
        def serve_uint8(images):
            x = tf.image.resize(tf.cast(images, tf.float32), (height, width))
            probabilities = model(_preprocess(x, preprocessing), training=False)
            top = tf.math.top_k(probabilities, k=top_k)
            return {
                "probabilities": probabilities,
                "top_k_ids": top.indices,
                "top_k_scores": top.values,
                "top_k_labels": tf.gather(label_table, top.indices),
            }

        signatures["serving_uint8"] = serve_uint8
    # SavedModel writing logs "Assets written to <temporary path>" at INFO level.
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")
    try:
        tf.saved_model.save(module, str(path), signatures=signatures)
    finally:
        logger.setLevel(level)


def _tensor_info(spec: tf.TensorSpec, name: str | None = None) -> dict[str, Any]:
    return {
        "name": name or spec.name,
        "shape": [d if d is not None else -1 for d in spec.shape.as_list()],
        "dtype": spec.dtype.name,
    }


def _saved_model_io(loaded: Any) -> dict[str, Any]:
    out = {}
    for key, fn in loaded.signatures.items():
        _, kwargs = fn.structured_input_signature
        out[key] = {
            "inputs": [_tensor_info(s, n) for n, s in kwargs.items()],
            "outputs": [_tensor_info(s, n) for n, s in fn.structured_outputs.items()],
        }
    return out


# --------------------------------------------------------------------------- TFLite


def _converter_for(saved_model_dir: Path, variant: str, representative: np.ndarray | None):
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=["serving_default"]
    )
    # Builtin ops only: a model that would need the Flex (Select TF ops)
    # delegate fails here rather than on the device.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        if representative is None:
            raise ValueError(
                "Full-integer int8 needs calibration images: pass `representative_data` "
                "(CLI: a run directory or --dataset). Received: representative_data=None"
            )

        def samples():
            for image in representative:
                yield [image[None]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif variant != "fp32":
        raise ValueError(
            f"`variant` must be one of {TFLITE_VARIANTS}. Received: variant={variant!r}"
        )
    return converter


def _convert(saved_model_dir: Path, variant: str, representative: np.ndarray | None) -> bytes:
    converter = _converter_for(saved_model_dir, variant, representative)
    # The converter prints its MLIR pass log on stdout/stderr through C++;
    # only Python-level chatter can be silenced here.
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def convert_tflite(model: keras.Model, variant: str, representative_data: Any = None) -> bytes:
    """Converts a classifier to one TFLite variant (no files left behind).

    Args:
        model: a classifier with a fixed input size.
        variant: `"fp32"`, `"fp16"` (float16 weights, for the GPU delegate),
            `"dynamic"` (int8 weights, float activations) or `"int8"` (full
            integer, int8 input and output).
        representative_data: model-ready float32 images (N, H, W, C) or a
            dataset of them; required for `"int8"` (calibration).

    Returns:
        The `.tflite` flatbuffer.

    Example:
        >>> flatbuffer = convert_tflite(keras_resnet.ResNet20(), "fp16")
    """
    if variant not in TFLITE_VARIANTS:
        raise ValueError(
            f"`variant` must be one of {TFLITE_VARIANTS}. Received: variant={variant!r}"
        )
    h, w, c, classes = _check_classifier(model)
    representative = _as_images(representative_data, "representative_data", (h, w, c), 10**9)
    with tempfile.TemporaryDirectory(prefix="keras_resnet_export_") as tmp:
        saved = Path(tmp) / "saved_model"
        _write_saved_model(
            model,
            saved,
            class_names=[str(i) for i in range(classes)],
            preprocessing="none",
            top_k=1,
            uint8_signature=False,
        )
        return _convert(saved, variant, representative)


def _interpreter(model: bytes | str | os.PathLike, num_threads: int | None, xnnpack: bool = True):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs: dict[str, Any] = {"num_threads": num_threads}
    if not xnnpack:
        # LiteRT's own builtin kernels, without the XNNPACK delegate it applies by default.
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if isinstance(model, (bytes, bytearray)):
        return Interpreter(model_content=bytes(model), **kwargs)
    return Interpreter(model_path=str(model), **kwargs)


def run_tflite(
    model: bytes | str | os.PathLike,
    images: np.ndarray,
    *,
    num_threads: int | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """Runs a `.tflite` classifier on float images with the LiteRT interpreter.

    Quantised inputs and outputs (the int8 variant) are quantised and
    dequantised with the tensors' own scale and zero point, so every variant
    takes and returns float32.

    Example:
        >>> probabilities = run_tflite("tflite/model_int8.tflite", images)
    """
    interpreter = _interpreter(model, num_threads)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    images = np.asarray(images, dtype=np.float32)
    results = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size]
        interpreter.resize_tensor_input(inp["index"], list(x.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], _quantize(x, inp))
        interpreter.invoke()
        results.append(_dequantize(interpreter.get_tensor(out["index"]), out))
    return np.concatenate(results)


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return x
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y
    scale, zero_point = detail["quantization"]
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)


def _median_latency(step, runs: int, warmup: int) -> dict[str, Any]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000.0)
    q = statistics.quantiles(times, n=10) if len(times) >= 2 else [times[0]] * 9
    return {
        "median_ms": round(statistics.median(times), 4),
        "p10_ms": round(q[0], 4),
        "p90_ms": round(q[-1], 4),
        "runs": runs,
    }


def tflite_latency(
    model: bytes | str | os.PathLike,
    *,
    runs: int = 50,
    warmup: int = 5,
    num_threads: int | None = None,
    xnnpack: bool = True,
) -> dict[str, Any]:
    """Batch-1 latency of a `.tflite` model in the LiteRT interpreter (median of `runs`).

    `num_threads=None` uses every core (`os.cpu_count()`), as a phone app
    would configure; the number used is returned. `xnnpack=False` runs
    LiteRT's builtin kernels without its default XNNPACK delegate.

    Example:
        >>> tflite_latency("tflite/model_int8.tflite")["median_ms"]
    """
    threads = num_threads or os.cpu_count() or 1
    interpreter = _interpreter(model, threads, xnnpack)
    inp = interpreter.get_input_details()[0]
    shape = [1, *[int(d) for d in inp["shape"][1:]]]
    interpreter.resize_tensor_input(inp["index"], shape)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    x = _quantize(rng.uniform(0.0, 1.0, shape).astype(np.float32), inp)
    interpreter.set_tensor(inp["index"], x)
    result = _median_latency(interpreter.invoke, runs, warmup)
    return {
        **result,
        "num_threads": threads,
        "runtime": f"ai_edge_litert {_version('ai-edge-litert')}",
        "kernels": "XNNPACK delegate" if xnnpack else "builtin kernels, no default delegate",
    }


def keras_latency(model: keras.Model, *, runs: int = 50, warmup: int = 5) -> dict[str, Any]:
    """Batch-1 latency of the Keras model called through a compiled `tf.function`."""
    h, w, c, _ = _check_classifier(model)
    x = tf.random.uniform((1, h, w, c))

    @tf.function(reduce_retracing=True)
    def forward(images):
        return model(images, training=False)

    result = _median_latency(lambda: forward(x).numpy(), runs, warmup)
    return {**result, "runtime": f"tensorflow {tf.__version__} tf.function"}


def gpu_delegate_report(model: bytes | str | os.PathLike) -> dict[str, Any]:
    """Whether every op is supported by the LiteRT GPU delegate, by TF's own analyzer.

    Runs `tf.lite.experimental.Analyzer.analyze(..., gpu_compatibility=True)`
    and keeps its verdict and any per-op warnings.
    """
    kwargs = (
        {"model_content": bytes(model)}
        if isinstance(model, (bytes, bytearray))
        else {"model_path": str(model)}
    )
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        tf.lite.experimental.Analyzer.analyze(gpu_compatibility=True, **kwargs)
    text = buf.getvalue()
    issues = [line.strip() for line in text.splitlines() if "GPU COMPATIBILITY WARNING" in line]
    compatible = "looks compatible with GPU delegate" in text and not issues
    return {
        "compatible": compatible,
        "analyzer": f"tf.lite.experimental.Analyzer (TensorFlow {tf.__version__})",
        "issues": issues[:50],
    }


def _tflite_io(model: bytes | str | os.PathLike) -> dict[str, Any]:
    interpreter = _interpreter(model, 1)

    def describe(detail: dict) -> dict[str, Any]:
        scale, zero_point = detail["quantization"]
        return {
            "tensor": detail["name"],
            "shape": [int(d) for d in detail["shape_signature"]],
            "dtype": np.dtype(detail["dtype"]).name,
            "quantization": (
                {"scale": float(scale), "zero_point": int(zero_point)} if scale else None
            ),
        }

    signature = interpreter.get_signature_list().get("serving_default", {})
    return {
        "signature": "serving_default",
        "signature_inputs": signature.get("inputs", []),
        "signature_outputs": signature.get("outputs", []),
        "inputs": [describe(d) for d in interpreter.get_input_details()],
        "outputs": [describe(d) for d in interpreter.get_output_details()],
    }


# --------------------------------------------------------------------------- verification


def _compare(
    fmt: str, outputs: np.ndarray, reference: np.ndarray, labels: np.ndarray | None, tol: dict
) -> dict[str, Any]:
    diff = np.abs(outputs.astype(np.float64) - reference.astype(np.float64))
    agreement = float(np.mean(outputs.argmax(-1) == reference.argmax(-1)))
    result: dict[str, Any] = {
        "samples": len(reference),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "top1_agreement": agreement,
        "criterion": dict(tol),
    }
    if labels is not None:
        result["accuracy"] = float(np.mean(outputs.argmax(-1) == labels))
    passed = True
    if "max_abs_diff" in tol:
        passed &= result["max_abs_diff"] <= tol["max_abs_diff"]
    if "top1_agreement" in tol:
        passed &= agreement >= tol["top1_agreement"]
    result["passed"] = bool(passed)
    if not passed:
        measured = ", ".join(f"{k}={result[k]:.6g}" for k in tol)
        wanted = ", ".join(
            f"{k} {'<=' if k == 'max_abs_diff' else '>='} {v:g}" for k, v in tol.items()
        )
        raise ExportVerificationError(
            f"{fmt} failed verification against the Keras model on {len(reference)} images: "
            f"{measured} (needs {wanted}); nothing was written. Loosen it with "
            f"tolerances={{'{fmt}': ...}} only if that error is acceptable."
        )
    return result


# --------------------------------------------------------------------------- export


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def software_versions(formats: Iterable[str] = ()) -> dict[str, Any]:
    """The versions an artifact (or a benchmark) was made with; ONNX's when `formats` has it."""
    versions = {
        "keras_resnet": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "ai_edge_litert": _version("ai-edge-litert"),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
    }
    if "onnx" in formats:
        versions.update({p: _version(p) for p in ONNX_PACKAGES})
    return versions


def _check_tolerances(tolerances: dict | None) -> dict[str, dict[str, float]]:
    merged = {k: dict(v) for k, v in DEFAULT_TOLERANCES.items()}
    for fmt, tol in (tolerances or {}).items():
        if fmt not in merged or not isinstance(tol, dict):
            raise ValueError(
                "`tolerances` maps a format to {'max_abs_diff': x} and/or "
                f"{{'top1_agreement': y}}. Received: tolerances={tolerances!r}"
            )
        for key, value in tol.items():
            if key not in ("max_abs_diff", "top1_agreement") or not float(value) >= 0:
                raise ValueError(
                    f"Unknown or negative tolerance. Received: tolerances={tolerances!r}"
                )
        merged[fmt] = {k: float(v) for k, v in tol.items()}
    return merged


def export_model(
    model: keras.Model,
    output_dir: str | os.PathLike,
    *,
    formats: str | Sequence[str] = "all",
    representative_data: Any = None,
    validation_data: Any = None,
    class_names: Sequence[str] | None = None,
    preprocessing: str = "unit",
    top_k: int = 5,
    uint8_signature: bool = True,
    overwrite: bool = False,
    tolerances: dict[str, dict[str, float]] | None = None,
    min_int8_agreement: float | None = None,
    calibration_samples: int = _CALIBRATION_SAMPLES,
    verify_samples: int = _VERIFY_SAMPLES,
    latency_runs: int = 50,
    num_threads: int | None = None,
    spec: Any = None,
    source: str | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Exports a classifier to every requested format, verifies each, writes atomically.

    Args:
        model: a classifier with a fixed input size (one image input, one
            (batch, classes) output).
        output_dir: the directory to create (e.g. `saved_models/digits-resnet20`).
            It is written next to itself under a temporary name and renamed at
            the end, so an interrupted export leaves nothing at `output_dir`.
        formats: `"all"` (every format; ONNX when its extra is installed),
            `"tflite"` (the four variants), or names from `FORMATS`.
        representative_data: model-ready float32 images (N, H, W, C) or a
            dataset of them (or of (images, labels)), drawn from the training
            data; calibrates the int8 variant (first `calibration_samples`).
        validation_data: held-out images (same forms) the artifacts are
            compared on, against the Keras model; labels, when the dataset has
            them, add an accuracy per artifact. Default: `representative_data`,
            or random images for the float formats when neither is given.
        class_names: one name per output (default "0", "1", ...), written to
            `labels.txt` and into the uint8 signature's `top_k_labels`.
        preprocessing: what the uint8 signature does to 0..255 pixels before the
            model: `"unit"` (/255, what `keras_resnet.training` trains on),
            `"caffe"`/`"tf"`/`"torch"` (keras.applications' modes) or `"none"`.
        top_k: how many classes the uint8 signature returns.
        uint8_signature: add the `serving_uint8` signature to the SavedModel.
        overwrite: replace an existing `output_dir` that is an earlier export
            (its manifest.json is one this function wrote). Anything else (a
            run, a folder holding exports, a file) is refused; an empty
            directory is used without it.
        tolerances: per-format overrides of `DEFAULT_TOLERANCES`.
        min_int8_agreement: shortcut for the int8 top-1 agreement (default 0.99).
        latency_runs: batch-1 runs timed per TFLite variant (0: skip latency).
        num_threads: LiteRT threads for the latency (default: all cores).
        spec: the `ResNetSpec` (or its dict) recorded in the manifest.
        source: where the model came from, recorded in the manifest.
        verbose: print a table of the artifacts at the end.

    Returns:
        The manifest (also written to `output_dir/manifest.json`).

    Raises:
        ValueError: bad arguments or an `output_dir` it may not replace, before
            anything is written; or a failed write (a full disk, no
            permission), after which nothing is left.
        ExportVerificationError: an artifact outside its tolerance; nothing is written.

    Example:
        >>> manifest = export_model(model, "saved_models/mine", representative_data=x_train[:200],
        ...                         validation_data=(x_test), class_names=names)
    """
    height, width, channels, classes = _check_classifier(model)
    wanted = parse_formats(formats)
    if preprocessing not in PREPROCESSING:
        raise ValueError(
            f"`preprocessing` must be one of {PREPROCESSING}. "
            f"Received: preprocessing={preprocessing!r}"
        )
    check_positive_int("top_k", top_k)
    top_k = min(top_k, classes)
    check_positive_int("calibration_samples", calibration_samples)
    check_positive_int("verify_samples", verify_samples)
    if not isinstance(latency_runs, int) or latency_runs < 0:
        raise ValueError(
            "`latency_runs` must be a non-negative integer. "
            f"Received: latency_runs={latency_runs!r}"
        )
    tols = _check_tolerances(tolerances)
    if min_int8_agreement is not None:
        if not 0.0 <= min_int8_agreement <= 1.0:
            raise ValueError(
                "`min_int8_agreement` must be in [0, 1]. "
                f"Received: min_int8_agreement={min_int8_agreement}"
            )
        tols["tflite_int8"] = {"top1_agreement": float(min_int8_agreement)}
    class_names = [str(c) for c in (class_names or range(classes))]
    if len(class_names) != classes:
        raise ValueError(
            f"`class_names` must name the model's {classes} outputs. "
            f"Received: {len(class_names)} class_names"
        )
    if "onnx" in wanted and not onnx_available():
        raise ValueError(
            "The ONNX format needs the optional extra: pip install 'keras3-resnet[onnx]' "
            f"({', '.join(ONNX_PACKAGES)}). Received: formats={formats!r}"
        )

    shape = (height, width, channels)
    representative = _as_images(
        representative_data, "representative_data", shape, calibration_samples
    )
    verify = _as_images(validation_data, "validation_data", shape, verify_samples)
    labels = _labels_of(validation_data, verify_samples) if verify is not None else None
    verified_on = "validation_data"
    if verify is None and representative is not None:
        verify, verified_on = representative, "representative_data (no validation_data given)"
    if verify is None:
        needs_data = [f for f in wanted if "top1_agreement" in tols[f]]
        if needs_data:
            raise ValueError(
                f"{', '.join(needs_data)} are judged by top-1 agreement on real images: pass "
                "`validation_data` or `representative_data` (CLI: a run directory or --dataset). "
                "Received: validation_data=None, representative_data=None"
            )
        rng = np.random.default_rng(0)
        verify = rng.uniform(0, 1, (_RANDOM_VERIFY_SAMPLES, *shape)).astype(np.float32)
        verified_on = "random uniform [0, 1) images (no data given)"
    if "tflite_int8" in wanted and representative is None:
        raise ValueError(
            "tflite_int8 needs calibration images drawn from the training data: pass "
            "`representative_data` (CLI: a run directory or --dataset). "
            "Received: representative_data=None"
        )

    target = check_output_dir(output_dir, overwrite=overwrite)
    tmp, created = _temp_dir(target, "partial"), []
    try:
        _make_dirs(tmp, created)
        manifest = _export_into(
            model,
            tmp,
            wanted=wanted,
            representative=representative,
            verify=verify,
            labels=labels,
            class_names=class_names,
            preprocessing=preprocessing,
            top_k=top_k,
            uint8_signature=uint8_signature,
            tols=tols,
            latency_runs=latency_runs,
            num_threads=num_threads,
        )
        manifest.update(
            {
                "name": target.name,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"
                ),
                "source": source,
                "spec": spec.to_dict() if dataclasses.is_dataclass(spec) else spec,
                "model_name": model.name,
                "params": int(model.count_params()),
                "input": {
                    "shape": [-1, height, width, channels],
                    "dtype": "float32",
                    "preprocessing": preprocessing,
                },
                "classes": classes,
                "labels_file": LABELS,
                "verification_data": {
                    "source": verified_on,
                    "samples": int(len(verify)),
                    "calibration_samples": 0
                    if representative is None
                    else int(len(representative)),
                },
                "versions": software_versions(wanted),
            }
        )
        _seal(tmp, manifest, class_names)
        _replace_dir(tmp, target, overwrite, output_dir)
    except BaseException as e:
        _undo(created, tmp)
        reason = _failed_write(e, tmp)
        if reason is None:
            raise
        raise _write_error(reason, output_dir) from None
    if verbose:
        print_manifest(manifest, output_dir)
    return manifest


def _make_dirs(tmp: Path, created: list[Path]) -> None:
    """Creates the missing parents of `tmp`, then `tmp`, each recorded in `created` (for _undo)."""
    missing = [d for d in (tmp, *tmp.parents) if not os.path.lexists(d)]
    for directory in reversed(missing):
        directory.mkdir()
        created.append(directory)
    if tmp not in created:
        tmp.mkdir()  # exists only if it is a complete export _clean_stale kept: not ours to clear
        created.append(tmp)


def _undo(created: list[Path], tmp: Path) -> None:
    """Removes what a failed export created: its partial directory, then parents left empty."""
    for directory in reversed(created):
        if directory == tmp:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                directory.rmdir()


def _fsync_tree(root: Path) -> None:
    for directory, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(directory))


def _seal(tmp: Path, manifest: dict[str, Any], class_names: list[str]) -> None:
    """Writes labels.txt, syncs every file, then writes manifest.json, last.

    So a partial directory that has our manifest is complete, even after a power
    cut: what _clean_stale relies on.
    """
    write_text_atomic(tmp / LABELS, "".join(f"{c}\n" for c in class_names))
    _fsync_tree(tmp)
    write_json(tmp / MANIFEST, manifest)


def _replace_dir(tmp: Path, target: Path, overwrite: bool, output_dir: Any) -> None:
    """Moves the finished export into place; the one it replaces is removed only after that."""
    # Checked again: the export took a while and the target may have changed meanwhile.
    _check_target(target, overwrite, output_dir)
    old = None
    if os.path.lexists(target):
        old = _temp_dir(target, "old")
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _export_into(
    model: keras.Model,
    out: Path,
    *,
    wanted: list[str],
    representative: np.ndarray | None,
    verify: np.ndarray,
    labels: np.ndarray | None,
    class_names: list[str],
    preprocessing: str,
    top_k: int,
    uint8_signature: bool,
    tols: dict[str, dict[str, float]],
    latency_runs: int,
    num_threads: int | None,
) -> dict[str, Any]:
    reference = model.predict(verify, batch_size=64, verbose=0)
    artifacts: dict[str, dict[str, Any]] = {}

    def record(fmt: str, path: Path, io_info: dict, outputs: np.ndarray, **extra) -> None:
        size = (
            sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            if path.is_dir()
            else path.stat().st_size
        )
        artifacts[fmt] = {
            "format": fmt,
            "path": str(path.relative_to(out)),
            "size_bytes": int(size),
            **io_info,
            "verification": _compare(fmt, outputs, reference, labels, tols[fmt]),
            **extra,
        }

    if "keras" in wanted:
        path = out / _FILES["keras"]
        model.save(path)
        reloaded = keras.saving.load_model(path, safe_mode=True)
        outputs = reloaded.predict(verify, batch_size=64, verbose=0)
        record(
            "keras",
            path,
            {
                "inputs": [_tensor_info(tf.TensorSpec(model.input_shape), model.inputs[0].name)],
                "outputs": [_tensor_info(tf.TensorSpec(model.output_shape), "probabilities")],
            },
            outputs,
        )

    need_saved = "saved_model" in wanted or any(f.startswith("tflite_") for f in wanted)
    saved_dir = out / _FILES["saved_model"] if "saved_model" in wanted else out / ".saved_model"
    if need_saved:
        _write_saved_model(
            model,
            saved_dir,
            class_names=class_names,
            preprocessing=preprocessing,
            top_k=top_k,
            uint8_signature=uint8_signature and "saved_model" in wanted,
        )
    if "saved_model" in wanted:
        loaded = tf.saved_model.load(str(saved_dir))
        serve = loaded.signatures["serving_default"]
        outputs = np.concatenate(
            [
                serve(images=tf.constant(verify[i : i + 64]))["probabilities"].numpy()
                for i in range(0, len(verify), 64)
            ]
        )
        extra: dict[str, Any] = {}
        if uint8_signature:
            extra["serving_uint8"] = _verify_uint8(
                model, loaded, verify, preprocessing, top_k, class_names, tols
            )
        record("saved_model", saved_dir, {"signatures": _saved_model_io(loaded)}, outputs, **extra)

    for fmt in [f for f in wanted if f.startswith("tflite_")]:
        variant = fmt.removeprefix("tflite_")
        path = out / _FILES[fmt]
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(_convert(saved_dir, variant, representative))
        outputs = run_tflite(path, verify, num_threads=num_threads)
        extra = {"gpu_delegate": gpu_delegate_report(path)}
        if latency_runs:
            extra["latency_batch1"] = tflite_latency(
                path, runs=latency_runs, num_threads=num_threads
            )
        record(fmt, path, _tflite_io(path), outputs, **extra)
    if need_saved and "saved_model" not in wanted:
        shutil.rmtree(saved_dir)

    if "onnx" in wanted:
        path = out / _FILES["onnx"]
        _export_onnx(model, path)
        outputs, io_info = _run_onnx(path, verify)
        record("onnx", path, io_info, outputs)

    manifest: dict[str, Any] = {"producer": PRODUCER, "format_version": 1, "artifacts": artifacts}
    if latency_runs and any(f.startswith("tflite_") for f in wanted):
        manifest["keras_latency_batch1"] = keras_latency(model, runs=latency_runs)
    return manifest


def _verify_uint8(
    model: keras.Model,
    loaded: Any,
    verify: np.ndarray,
    preprocessing: str,
    top_k: int,
    class_names: list[str],
    tols: dict[str, dict[str, float]],
) -> dict[str, Any]:
    """The uint8 signature against Keras on the same pixels, preprocessed by hand."""
    if preprocessing == "unit":
        pixels = np.clip(np.round(verify * 255.0), 0, 255).astype(np.uint8)
    else:
        # Model-ready images of another preprocessing cannot be turned back into
        # pixels; random pixels still check the resize + preprocessing plumbing.
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 256, (min(len(verify), 32), *verify.shape[1:]), dtype=np.uint8)
    x = _preprocess(tf.constant(pixels, tf.float32), preprocessing)
    reference = model.predict(np.asarray(x), batch_size=64, verbose=0)
    result = loaded.signatures["serving_uint8"](images=tf.constant(pixels))
    outputs = result["probabilities"].numpy()
    check = _compare(
        "saved_model (serving_uint8)", outputs, reference, None, tols["saved_model_uint8"]
    )
    ids = result["top_k_ids"].numpy()
    expected = np.argsort(-reference, axis=-1, kind="stable")[:, :top_k]
    check["top_k_ids_match"] = float(np.mean(ids[:, 0] == expected[:, 0]))
    label = result["top_k_labels"].numpy()[0, 0].decode()
    check["labels_match"] = label == class_names[int(ids[0, 0])]
    if not check["labels_match"]:
        raise ExportVerificationError(
            f"serving_uint8 returned label {label!r} for class {ids[0, 0]}; nothing was written."
        )
    return check


def _export_onnx(model: keras.Model, path: Path) -> None:
    h, w, c, _ = _check_classifier(model)
    # Keras' ONNX exporter refuses a model that has never been called.
    model(np.zeros((1, h, w, c), np.float32), training=False)
    # keras' tf2onnx shim probes np.object, which warns on NumPy 2.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model.export(
            str(path),
            format="onnx",
            verbose=False,
            input_signature=[tf.TensorSpec([None, h, w, c], tf.float32, name="images")],
        )


def _run_onnx(path: Path, images: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    outputs = session.run(None, {inp.name: images})[0]
    io_info = {
        "inputs": [
            {"name": i.name, "shape": i.shape, "dtype": i.type} for i in session.get_inputs()
        ],
        "outputs": [
            {"name": o.name, "shape": o.shape, "dtype": o.type} for o in session.get_outputs()
        ],
    }
    return np.asarray(outputs, np.float32), io_info


# --------------------------------------------------------------------------- output directory

# Temporary directories next to the target: `.NAME.partial-PID` is the export being written,
# `.NAME.old-PID` the export it replaces, for the moment between the two renames.
_TEMP_KINDS = ("partial", "old")


def _is_export(directory: Path) -> bool:
    """Whether `directory` is an export of ours: its manifest.json is one export_model wrote."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    if not isinstance(manifest, dict):
        return False
    if manifest.get("producer") == PRODUCER:
        return True
    # Manifests written before the `producer` field.
    versions = manifest.get("versions")
    return (
        "format_version" in manifest and isinstance(versions, dict) and "keras_resnet" in versions
    )


def _temp_dir(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.{kind}-{os.getpid()}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        # A leftover of this process, or of an earlier one with the same pid (a container's
        # pids repeat from run to run): either way no export is writing it now.
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process, or no pid we could have written
    return True


def _dead_temp_dirs(target: Path) -> list[Path]:
    """Temporary directories of exports to `target` (exactly our names) whose process is gone."""
    # Escaped: a target named `a[1]` or `x*` must not match other exports' directories.
    found = target.parent.glob(f".{glob.escape(target.name)}.*-*")
    names = {f".{target.name}.{kind}-" for kind in _TEMP_KINDS}
    dead = []
    for path in found:
        prefix, _, pid = path.name.rpartition("-")
        ours = f"{prefix}-" in names and pid.isdigit() and not path.is_symlink() and path.is_dir()
        if ours and not _alive(int(pid)):
            dead.append(path)
    return dead


def _clean_stale(target: Path) -> None:
    """Settles what killed exports to `target` left next to it; never loses a complete copy.

    A replacement renames target -> `.NAME.old-PID`, then `.NAME.partial-PID` -> target,
    then removes the old one. A partial gets its manifest.json last, after every file is
    synced, so a temporary directory with our manifest is a complete export. A kill between
    the two renames leaves no target and two complete copies: the newest one (its manifest
    written last; the partial the killed process was installing) becomes the target again.
    A dead process's directory is removed only when it is incomplete or a complete export
    is at the target.
    """
    stale = _dead_temp_dirs(target)
    complete = [d for d in stale if _is_export(d)]
    if complete and not os.path.lexists(target):
        newest = max(complete, key=lambda d: (d / MANIFEST).stat().st_mtime_ns)
        os.replace(newest, target)
        _fsync_dir(target.parent)
        stale.remove(newest)
    target_complete = _is_export(target)
    for directory in stale:
        if target_complete or directory not in complete:
            shutil.rmtree(directory, ignore_errors=True)


def _check_target(target: Path, overwrite: bool, output_dir: Any) -> None:
    """Refuses a target that is not absent, an empty directory, or (with overwrite) our export."""
    received = f"Received: output_dir={str(output_dir)!r}"
    if target.is_symlink():
        raise ValueError(f"`output_dir` must not be a symbolic link. {received}")
    if not os.path.lexists(target):
        return
    if not target.is_dir():
        raise ValueError(f"`output_dir` is a file, not a directory. {received}")
    if not any(target.iterdir()):
        return
    if not overwrite:
        raise ValueError(
            "`output_dir` already exists; pass overwrite=True (CLI: --overwrite) to replace it. "
            f"{received}"
        )
    if not _is_export(target):
        raise ValueError(
            "`output_dir` must be an earlier keras_resnet export to be overwritten (it has no "
            f"manifest.json of ours): overwrite never replaces other folders. {received}"
        )


def _write_error(reason: Any, output_dir: Any) -> ValueError:
    return ValueError(
        f"cannot write `output_dir` ({reason}). Received: output_dir={str(output_dir)!r}"
    )


def _failed_write(error: BaseException, tmp: Path) -> str | None:
    """Why writing failed (a full disk, no permission), or None if `error` is no failed write."""
    if isinstance(error, OSError):
        return error.strerror or str(error)
    if isinstance(error, tf.errors.OpError) and str(tmp) in error.message:
        # TensorFlow's file errors read "... <path>; No space left on device [Op:SaveV2]".
        return error.message.rsplit("; ", 1)[-1].split(" [Op:")[0].strip()
    return None


def check_output_dir(output_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Refuses an `output_dir` that an export may not create or replace; its absolute path.

    An export goes to a new or empty directory; `overwrite` replaces only an
    earlier export (a directory whose manifest.json keras_resnet's export
    wrote), never a run directory, a folder that holds exports, or a file.
    Leftovers of killed exports to it are settled first (`_clean_stale`).
    Nothing is created.

    Example:
        >>> check_output_dir("runs", overwrite=True)
        Traceback (most recent call last):
        ValueError: `output_dir` must be an earlier keras_resnet export to be overwritten ...
    """
    target = Path(os.path.abspath(output_dir))
    received = f"Received: output_dir={str(output_dir)!r}"
    if not target.name:
        raise ValueError(f"`output_dir` must name a directory. {received}")
    ancestor = next(p for p in target.parents if os.path.lexists(p))
    if not ancestor.is_dir():
        raise ValueError(f"`output_dir` cannot be created: {ancestor} is a file. {received}")
    try:
        if target.parent.is_dir():
            _clean_stale(target)
        _check_target(target, overwrite, output_dir)
    except OSError as e:
        raise _write_error(e.strerror or e, output_dir) from None
    return target


# --------------------------------------------------------------------------- from a run


def load_model_file(path: str | os.PathLike, arg: str = "source") -> keras.Model:
    """Loads a `.keras` file with `safe_mode=True`; a missing or corrupt file is a ValueError."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"`{arg}` is not a file. Received: {arg}='{path}'")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ValueError(
            f"`{arg}` must be a Keras 3 `.keras` file (a zip archive). Received: {arg}='{path}'"
        )
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as e:  # noqa: BLE001 - any failure of a corrupt file gets one message
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"`{arg}` cannot be loaded ({first}). Received: {arg}='{path}'") from None


def _resolve_source(source: str | os.PathLike) -> tuple[Path, dict | None]:
    """The model file of a run directory or `.keras` path, and the run's run.json if any."""
    path = Path(source)
    run_dir = path if path.is_dir() else path.parent
    if path.is_dir():
        candidates = [path / "best.keras", path / "last.keras"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise ValueError(
                "`source` is a directory without best.keras or last.keras (not a finished run). "
                f"Received: source='{path}'"
            )
        path = found
    elif not path.exists():
        raise ValueError(f"`source` does not exist. Received: source='{path}'")
    run_json = run_dir / "run.json"
    return path, _read_run_json(run_json, source) if os.path.lexists(run_json) else None


def _read_run_json(run_json: Path, source: Any) -> dict[str, Any]:
    """The run's run.json; one that keras_resnet's training did not write is an error."""
    try:
        run = json.loads(run_json.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else e}"
    else:
        if isinstance(run, dict) and isinstance(run.get("fingerprint"), dict):
            return run
        reason = (
            "no `fingerprint` object"
            if isinstance(run, dict)
            else f"a JSON {type(run).__name__}, not an object"
        )
    raise ValueError(
        f"`source` has a run.json that is not a keras_resnet run's ({reason}): {run_json}. "
        f"Received: source={str(source)!r}"
    )


def export_run(
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    formats: str | Sequence[str] = "all",
    calibration_samples: int = _CALIBRATION_SAMPLES,
    verify_samples: int = _VERIFY_SAMPLES,
    **kwargs: Any,
) -> dict[str, Any]:
    """Exports a training run (its `best.keras`) or a `.keras` file, with data from its dataset.

    The dataset and image size come from the run's `run.json` (or `dataset`):
    int8 is calibrated on `calibration_samples` training images and every
    artifact is verified on the test split, which training never used.

    Example:
        >>> export_run("runs/demo", "saved_models/digits-resnet20", formats="all")
    """
    from keras_resnet.data import load_dataset

    model_path, run = _resolve_source(source)
    wanted = parse_formats(formats)
    # Before the model and the data are loaded, so a refused output_dir fails at once.
    check_output_dir(output_dir, overwrite=kwargs.get("overwrite", False))
    fingerprint = (run or {}).get("fingerprint", {})
    dataset = dataset or fingerprint.get("dataset")
    model = load_model_file(model_path)
    h, w, c, _ = _check_classifier(model)
    spec = fingerprint.get("spec") if "stages" in fingerprint.get("spec", {}) else None
    splits = None
    if dataset is not None:
        splits = load_dataset(
            dataset,
            image_size=(h, w),
            channels=c,
            batch_size=64,
            seed=int(fingerprint.get("seed", 0)),
            data_dir=data_dir,
            augment=False,
        )
    elif "tflite_int8" in wanted:
        raise ValueError(
            "tflite_int8 needs calibration data and this source has no run.json naming its "
            f"dataset: pass --dataset (dataset=...). Received: source='{source}', dataset=None"
        )
    return export_model(
        model,
        output_dir,
        formats=wanted,
        representative_data=splits.train if splits else None,
        validation_data=splits.test if splits else None,
        class_names=splits.class_names if splits else None,
        calibration_samples=calibration_samples,
        verify_samples=verify_samples,
        spec=spec,
        source=str(model_path),
        **kwargs,
    )


def print_manifest(manifest: dict[str, Any], where: str | os.PathLike | None = None) -> None:
    """A table of the artifacts: size, batch-1 latency, agreement with Keras."""
    rows = [("artifact", "size", "latency b1", "max |diff|", "top-1 agree", "accuracy", "GPU ops")]
    for a in manifest["artifacts"].values():
        v = a["verification"]
        latency = a.get("latency_batch1", {}).get("median_ms")
        gpu = a.get("gpu_delegate")
        rows.append(
            (
                a["path"],
                _human_size(a["size_bytes"]),
                f"{latency:.3f} ms" if latency is not None else "",
                f"{v['max_abs_diff']:.2e}",
                f"{v['top1_agreement']:.2%}",
                f"{v['accuracy']:.2%}" if "accuracy" in v else "",
                ("all supported" if gpu["compatible"] else "unsupported ops") if gpu else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    if where is not None:
        print(
            f"exported to {where} ({manifest['verification_data']['samples']} verification images)"
        )
    for r in rows:
        print("  " + "  ".join(cell.ljust(wd) for cell, wd in zip(r, widths, strict=True)))
    keras_ms = manifest.get("keras_latency_batch1", {}).get("median_ms")
    if keras_ms is not None:
        print(f"  Keras (tf.function) batch-1 latency: {keras_ms:.3f} ms")


def _human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


__all__ = [
    "DEFAULT_FORMATS",
    "DEFAULT_TOLERANCES",
    "FORMATS",
    "PREPROCESSING",
    "TFLITE_VARIANTS",
    "ExportVerificationError",
    "check_output_dir",
    "convert_tflite",
    "export_model",
    "export_run",
    "gpu_delegate_report",
    "keras_latency",
    "load_model_file",
    "onnx_available",
    "parse_formats",
    "print_manifest",
    "run_tflite",
    "software_versions",
    "tflite_latency",
]
