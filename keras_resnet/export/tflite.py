"""TFLite: conversion from the SavedModel, running and timing in LiteRT, I/O, GPU-delegate report.

The files come from `tf.lite.TFLiteConverter.from_saved_model` on the SavedModel's
`serving_default` signature, so they keep its names (input `images`, output
`probabilities`); they are run with the `ai_edge_litert` interpreter.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_resnet.constants import TFLITE_VARIANTS
from keras_resnet.export.export_utils import as_images, check_classifier, package_version
from keras_resnet.export.saved_model import write_saved_model
from keras_resnet.timing import MIN_SAMPLE_SECONDS, interleaved_latency, latency


def _check_variant(variant: str) -> None:
    if variant not in TFLITE_VARIANTS:
        raise ValueError(
            f"`variant` must be one of {TFLITE_VARIANTS}. Received: variant={variant!r}"
        )


def _converter_for(saved_model_dir: Path, variant: str, representative: np.ndarray | None):
    _check_variant(variant)
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
    return converter


def convert(saved_model_dir: Path, variant: str, representative: np.ndarray | None) -> bytes:
    """The `.tflite` flatbuffer of one variant of a SavedModel's `serving_default`."""
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
    _check_variant(variant)
    h, w, c, classes = check_classifier(model)
    representative = as_images(representative_data, "representative_data", (h, w, c), 10**9)
    with tempfile.TemporaryDirectory(prefix="keras_resnet_export_") as tmp:
        saved = Path(tmp) / "saved_model"
        write_saved_model(
            model,
            saved,
            class_names=[str(i) for i in range(classes)],
            preprocessing="none",
            top_k=1,
            uint8_signature=False,
        )
        return convert(saved, variant, representative)


def _interpreter(model: bytes | str | os.PathLike, num_threads: int | None, xnnpack: bool = True):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs: dict[str, Any] = {"num_threads": num_threads}
    if not xnnpack:
        # LiteRT's own builtin kernels, without the XNNPACK delegate it applies by default.
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if isinstance(model, (bytes, bytearray)):
        return Interpreter(model_content=bytes(model), **kwargs)
    return Interpreter(model_path=str(model), **kwargs)


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


def tflite_latency(
    model: bytes | str | os.PathLike,
    *,
    runs: int = 50,
    warmup: int = 5,
    num_threads: int | None = None,
    xnnpack: bool = True,
    min_sample_seconds: float = MIN_SAMPLE_SECONDS,
) -> dict[str, Any]:
    """Batch-1 latency of a `.tflite` model in the LiteRT interpreter (median of `runs` samples).

    Timed by `keras_resnet.timing.latency`: each sample is as many invocations as
    last `min_sample_seconds`.

    `num_threads=None` uses every core (`os.cpu_count()`), as a phone app
    would configure; the number used is returned. `xnnpack=False` runs
    LiteRT's builtin kernels without its default XNNPACK delegate.

    Example:
        >>> tflite_latency("tflite/model_int8.tflite")["median_ms"]
    """
    threads = num_threads or os.cpu_count() or 1
    result = latency(
        _batch1_invoke(model, threads, xnnpack),
        samples=runs,
        warmup=warmup,
        min_sample_seconds=min_sample_seconds,
    )
    return {**result, **_runtime(threads, xnnpack)}


def _batch1_invoke(model: bytes | str | os.PathLike, threads: int, xnnpack: bool):
    """The interpreter's `invoke`, set up for one random image (quantised for int8 inputs)."""
    interpreter = _interpreter(model, threads, xnnpack)
    inp = interpreter.get_input_details()[0]
    shape = [1, *[int(d) for d in inp["shape"][1:]]]
    interpreter.resize_tensor_input(inp["index"], shape)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    x = _quantize(rng.uniform(0.0, 1.0, shape).astype(np.float32), inp)
    interpreter.set_tensor(inp["index"], x)
    return interpreter.invoke


def _runtime(threads: int, xnnpack: bool) -> dict[str, Any]:
    return {
        "num_threads": threads,
        "runtime": f"ai_edge_litert {package_version('ai-edge-litert')}",
        "kernels": "XNNPACK delegate" if xnnpack else "builtin kernels, no default delegate",
    }


def interleaved_tflite_latency(
    models: Mapping[str, bytes | str | os.PathLike],
    *,
    runs: int = 50,
    warmup: int = 5,
    num_threads: int | None = None,
    xnnpack: bool = True,
) -> dict[str, dict[str, Any]]:
    """`tflite_latency` of several `.tflite` files timed in turns (`timing.interleaved_latency`).

    A change of the machine's load during the timing falls on every file alike, so their
    ranking (the export's `fastest`) is not decided by when each one happened to run.

    Example:
        >>> interleaved_tflite_latency({"fp32": "model_fp32.tflite", "int8": "model_int8.tflite"})
    """
    threads = num_threads or os.cpu_count() or 1
    calls = {name: _batch1_invoke(model, threads, xnnpack) for name, model in models.items()}
    timed = interleaved_latency(calls, samples=runs, warmup=warmup)
    return {
        name: {
            **record,
            **_runtime(threads, xnnpack),
            "interleaved_with": sorted(set(calls) - {name}),
        }
        for name, record in timed.items()
    }


def gpu_delegate_report(model: bytes | str | os.PathLike) -> dict[str, Any]:
    """Whether every op is supported by the LiteRT GPU delegate, by TF's own analyzer.

    Runs `tf.lite.experimental.Analyzer.analyze(..., gpu_compatibility=True)`
    and keeps its verdict and any per-op warnings.

    Example:
        >>> gpu_delegate_report("tflite/model_fp16.tflite")["compatible"]
        True
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


def tflite_io(model: bytes | str | os.PathLike) -> dict[str, Any]:
    """The `serving_default` signature's names and every input's and output's tensor."""
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
