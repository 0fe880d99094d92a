"""What every format needs: the classifier check, images from arrays or datasets, tensor info."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import keras
import numpy as np
import tensorflow as tf


def check_classifier(model: keras.Model) -> tuple[int, int, int, int]:
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


def as_images(data: Any, name: str, shape: tuple[int, int, int], limit: int) -> np.ndarray | None:
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


def labels_of(data: Any, limit: int) -> np.ndarray | None:
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


def tensor_info(spec: tf.TensorSpec, name: str | None = None) -> dict[str, Any]:
    """A tensor as the manifest lists it: name, shape (-1 for any size) and dtype."""
    return {
        "name": name or spec.name,
        "shape": [d if d is not None else -1 for d in spec.shape.as_list()],
        "dtype": spec.dtype.name,
    }


def package_version(dist: str) -> str | None:
    """The installed version of the distribution `dist`, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _float32_policies(config: Any) -> Any:
    """A model config with every 16-bit dtype policy replaced by float32."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and str(
            config.get("config", {}).get("name", "")
        ).startswith("mixed_"):
            return "float32"
        return {k: _float32_policies(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_float32_policies(v) for v in config]
    return config


def float32_model(model: keras.Model) -> tuple[keras.Model, str | None]:
    """The model in float32, and the mixed policy it was built with (None: it was float32).

    A model trained under `mixed_bfloat16` / `mixed_float16` keeps float32
    variables, so the float32 copy holds exactly its weights and computes what
    it computes, without 16-bit rounding; TFLite's converter has no bfloat16
    convolution, and its fp16 variant quantises on its own.
    """
    mixed = next(
        (la.dtype_policy.name for la in model.layers if la.dtype_policy.name.startswith("mixed_")),
        None,
    )
    if mixed is None or not isinstance(model, keras.Model) or not hasattr(model, "get_config"):
        return model, None
    copy = model.__class__.from_config(_float32_policies(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy, mixed
