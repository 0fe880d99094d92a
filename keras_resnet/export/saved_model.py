"""SavedModel: written by `tf.saved_model.save` with stable signatures, read back, checked.

`serving_default`: float32 `images` (N, H, W, C), already preprocessed -> `probabilities`.
`serving_uint8`: uint8 `images` of any size, resized and preprocessed inside ->
`probabilities`, `top_k_ids`, `top_k_scores`, `top_k_labels`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_resnet.export.export_utils import check_classifier, tensor_info
from keras_resnet.export.verify import ExportVerificationError, compare

_BATCH = 64


def preprocess(x: tf.Tensor, mode: str) -> tf.Tensor:
    """uint8-range float images -> what the model was trained on."""
    if mode == "unit":
        return x / 255.0
    if mode == "none":
        return x
    return keras.applications.imagenet_utils.preprocess_input(x, mode=mode)


def write_saved_model(
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
    height, width, channels, _ = check_classifier(model)
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
            probabilities = model(preprocess(x, preprocessing), training=False)
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


def signature_io(loaded: Any) -> dict[str, Any]:
    """Each signature of a loaded SavedModel: its inputs' and outputs' names, shapes, dtypes."""
    out = {}
    for key, fn in loaded.signatures.items():
        _, kwargs = fn.structured_input_signature
        out[key] = {
            "inputs": [tensor_info(s, n) for n, s in kwargs.items()],
            "outputs": [tensor_info(s, n) for n, s in fn.structured_outputs.items()],
        }
    return out


def run_saved_model(loaded: Any, images: np.ndarray) -> np.ndarray:
    """The `serving_default` probabilities of a loaded SavedModel on float images."""
    serve = loaded.signatures["serving_default"]
    return np.concatenate(
        [
            serve(images=tf.constant(images[i : i + _BATCH]))["probabilities"].numpy()
            for i in range(0, len(images), _BATCH)
        ]
    )


def verify_uint8(
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
    x = preprocess(tf.constant(pixels, tf.float32), preprocessing)
    reference = model.predict(np.asarray(x), batch_size=_BATCH, verbose=0)
    result = loaded.signatures["serving_uint8"](images=tf.constant(pixels))
    outputs = result["probabilities"].numpy()
    check = compare(
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
