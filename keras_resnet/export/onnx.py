"""ONNX, an optional extra: written by Keras' own exporter (tf2onnx), run with onnxruntime."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_resnet.export.export_utils import check_classifier

ONNX_PACKAGES = ("tf2onnx", "onnx", "onnxruntime")


def onnx_available() -> bool:
    """Whether the `onnx` extra (tf2onnx, onnx, onnxruntime) is installed."""
    return all(importlib.util.find_spec(p) is not None for p in ONNX_PACKAGES)


def check_onnx_supported(model: keras.Model) -> None:
    """Refuses grouped convolutions (ResNeXt): Keras' TensorFlow backend runs them as an
    XLA-compiled function on CPU, which tf2onnx leaves as a call onnxruntime cannot load."""
    grouped = [la.name for la in model.layers if getattr(la, "groups", 1) > 1]
    if grouped:
        raise ValueError(
            "ONNX export does not support grouped convolutions (Keras compiles them with XLA "
            "on TensorFlow, which tf2onnx cannot convert); export TFLite or SavedModel instead. "
            f"Received: a model with {len(grouped)} grouped convs (first: {grouped[0]})"
        )


def write_onnx(model: keras.Model, path: Path) -> None:
    """`model.export(format="onnx")` with a float32 `images` input of any batch size."""
    h, w, c, _ = check_classifier(model)
    check_onnx_supported(model)
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


def run_onnx(path: Path, images: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The outputs of the `.onnx` file on `images` in onnxruntime (CPU), and its I/O."""
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
