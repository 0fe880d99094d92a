"""`keras-resnet predict`: top-k classes of images with any model keras_resnet writes.

MODEL is a `.keras` file, a training run directory (its `best.keras`), an export
directory (its `manifest.json` names the preprocessing, `labels.txt` the
classes; the Keras file is used, else the fp32 TFLite one, else the
SavedModel), a SavedModel directory, a `.tflite` file, or a pretrained registry name
(`resnet50d.ra2_in1k`: its weights, and its tag's crop and normalisation). Each image is read with
Keras' `load_img` in the model's channels (grayscale, RGB or RGBA), resized to
the model's input, scaled to [0, 1] and preprocessed as the export recorded it
(`unit`, `caffe`, `tf`, `torch`, `none`; default `unit`, the training
pipeline's). Labels: the export's class names, else ImageNet's
(`decode_predictions`) for 1000 classes, else the class index.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from keras_resnet.constants import DEFAULT_TOP_K, PREPROCESSING

_COLOR_MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}


class _Model:
    """One loaded model: `run(images in [0, 1]) -> scores`, its input and its labels."""

    def __init__(self, run, shape, labels=None, preprocessing=None, load=None):
        self.run, self.shape, self.labels, self.preprocessing = run, shape, labels, preprocessing
        self.load = load  # images -> pixels in [0, 1]; default `load_images` at `shape`


def _keras_model(path: Path, labels=None, preprocessing=None) -> _Model:
    import keras

    from keras_resnet._limits import check_keras_archive
    from keras_resnet.registry import model_cfg

    check_keras_archive(path, "model")
    model = keras.saving.load_model(path, safe_mode=True)
    shape = tuple(model.input_shape[1:])
    run = lambda x: np.asarray(model.predict(x, verbose=0))  # noqa: E731
    cfg = model_cfg(model)  # made by create_model with a tag's weights: that tag's input
    if cfg is None:
        return _Model(run, shape, labels, preprocessing)
    return _tagged_model(run, shape, cfg, labels, preprocessing)


def _tagged_model(run, shape, cfg, labels=None, preprocessing=None) -> _Model:
    """A model of a pretrained tag: its crop and filter (at the model's size), its preprocessing."""
    import dataclasses

    from keras_resnet.eval_images import load_eval_images

    at_size = dataclasses.replace(cfg, input_size=shape[0])
    load = (lambda paths: load_eval_images(paths, at_size)) if shape[0] == shape[1] else None
    return _Model(run, shape, labels, preprocessing or cfg.preprocessing, load=load)


def _tflite_model(path: Path, labels=None, preprocessing=None) -> _Model:
    from keras_resnet.export.tflite import run_tflite, tflite_io

    io = tflite_io(path)
    shape = tuple(io["inputs"][0]["shape"][1:])
    return _Model(lambda x: run_tflite(str(path), x), shape, labels, preprocessing)


def _saved_model(path: Path, labels=None, preprocessing=None) -> _Model:
    import tensorflow as tf

    from keras_resnet.export.saved_model import run_saved_model

    loaded = tf.saved_model.load(str(path))
    spec = loaded.signatures["serving_default"].structured_input_signature[1]["images"]
    return _Model(
        lambda x: run_saved_model(loaded, x), tuple(spec.shape[1:]), labels, preprocessing
    )


def _read_json(path: Path) -> dict[str, Any]:
    from keras_resnet._io import read_json_object

    return read_json_object(path, f"a keras_resnet {path.name}", "model")


def _export_dir(path: Path) -> _Model:
    manifest = _read_json(path / "manifest.json")
    labels_file = path / manifest.get("labels_file", "labels.txt")
    labels = labels_file.read_text().splitlines() if labels_file.exists() else None
    preprocessing = manifest.get("input", {}).get("preprocessing")
    for name, opener in (
        ("model.keras", _keras_model),
        ("tflite/model_fp32.tflite", _tflite_model),
    ):
        if (path / name).exists():
            return opener(path / name, labels, preprocessing)
    if (path / "saved_model" / "saved_model.pb").exists():
        return _saved_model(path / "saved_model", labels, preprocessing)
    raise ValueError(f"The export has no Keras, SavedModel or fp32 TFLite file. Received: {path=}")


def _run_dir(path: Path) -> _Model:
    _read_json(path / "run.json")  # one clear line if it is not ours
    return _keras_model(path / "best.keras", None, "unit")


def _registry_model(name: str) -> _Model:
    """A registry name (`resnet50d.ra2_in1k`): its pretrained weights, crop and preprocessing."""
    from keras_resnet.registry import create_model, pretrained_cfg

    cfg = pretrained_cfg(name)
    size = (cfg.input_size, cfg.input_size, 3)
    model = create_model(cfg.full_name, pretrained=True, input_shape=size)
    return _tagged_model(lambda x: np.asarray(model.predict(x, verbose=0)), size, cfg)


def open_model(model: str | os.PathLike) -> _Model:
    """Loads MODEL (see the module doc); a path that is none of those is one clear line."""
    from keras_resnet.registry import is_model_name

    path = Path(model)
    if not path.exists() and is_model_name(str(model)):
        return _registry_model(str(model))
    if path.is_dir():
        for marker, opener in (
            ("manifest.json", _export_dir),
            ("run.json", _run_dir),
            ("saved_model.pb", _saved_model),
        ):
            if (path / marker).exists():
                return opener(path)
    elif path.suffix == ".keras" and path.is_file():
        return _keras_model(path)
    elif path.suffix == ".tflite" and path.is_file():
        return _tflite_model(path)
    raise ValueError(
        "`model` must be a .keras file, a run or export directory, a SavedModel directory, a "
        f".tflite file or a pretrained model name (list_models(pretrained=True)). "
        f"Received: model={str(model)!r}"
    )


def check_images(paths: Sequence[str | os.PathLike], max_pixels: int | None) -> None:
    """Every image's size from its header against `max_pixels`, before any is decoded."""
    from keras_resnet._limits import check_image

    for path in paths:
        check_image(path, max_pixels, "images")


def load_images(
    paths: Sequence[str | os.PathLike], shape: Sequence[int], max_pixels: int | None = None
) -> np.ndarray:
    """Images at the model's (height, width, channels), float32 in [0, 1]; none over
    `max_pixels` (None: PIL's default limit) is decoded."""
    import keras

    from keras_resnet._limits import default_max_image_pixels, pil_pixel_limit

    if max_pixels is None:
        max_pixels = default_max_image_pixels()
    check_images(paths, max_pixels)

    height, width, channels = (int(d) for d in shape)
    if channels not in _COLOR_MODES:
        raise ValueError(
            f"The model takes {channels}-channel images; images can be read as 1 (grayscale), "
            f"3 (RGB) or 4 (RGBA) channels. Received: model input shape {tuple(shape)}"
        )
    images = []
    for path in paths:
        try:
            with pil_pixel_limit(max_pixels):
                image = keras.utils.load_img(
                    path, color_mode=_COLOR_MODES[channels], target_size=(height, width)
                )
        except (OSError, ValueError) as e:
            raise ValueError(f"Cannot read image {str(path)!r}: {str(e).splitlines()[0]}") from None
        images.append(keras.utils.img_to_array(image) / 255.0)
    return np.stack(images).astype(np.float32)


def _preprocess(images: np.ndarray, mode: str) -> np.ndarray:
    if mode in (None, "unit"):
        return images
    from keras_resnet.export.saved_model import preprocess

    return np.asarray(preprocess(images * 255.0, mode))


def _probabilities(scores: np.ndarray) -> np.ndarray:
    """Softmax where the model gives logits (rows not already probabilities)."""
    scores = scores.astype(np.float64)
    if (scores >= 0).all() and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3):
        return scores
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _label_names(model: _Model, classes: int) -> list[str]:
    if model.labels and len(model.labels) == classes:
        return list(model.labels)
    if classes == 1000:
        try:
            from keras.applications import imagenet_utils

            one_hot = np.eye(1000, dtype=np.float32)
            return [imagenet_utils.decode_predictions(row[None], top=1)[0][0][1] for row in one_hot]
        except Exception:  # the class index is a download; offline, indices it is
            pass
    return [str(i) for i in range(classes)]


def predict(
    model: str | os.PathLike,
    images: Sequence[str | os.PathLike],
    *,
    top_k: int = DEFAULT_TOP_K,
    preprocessing: str | None = None,
    max_image_pixels: int | None = None,
) -> list[dict[str, Any]]:
    """Top-k `{"image", "predictions": [{"class", "label", "probability"}]}` per image.

    `max_image_pixels`: images with more pixels are refused from their header before
    anything is decoded (default PIL's `Image.MAX_IMAGE_PIXELS`, 89,478,485).
    """
    from keras_resnet._checks import check_choice, check_positive_int
    from keras_resnet._limits import default_max_image_pixels, pil_pixel_limit

    check_positive_int("top_k", top_k)
    check_positive_int("max_image_pixels", max_image_pixels, allow_none=True)
    if preprocessing is not None:
        check_choice("preprocessing", preprocessing, PREPROCESSING)
    if not images:
        raise ValueError("`images` must name at least one image file. Received: images=[]")
    max_image_pixels = max_image_pixels or default_max_image_pixels()
    check_images(images, max_image_pixels)  # before the model is loaded
    loaded = open_model(model)
    if loaded.load:
        with pil_pixel_limit(max_image_pixels):
            pixels = loaded.load(images)
    else:
        pixels = load_images(images, loaded.shape, max_image_pixels)
    mode = preprocessing or loaded.preprocessing or "unit"
    probabilities = _probabilities(loaded.run(_preprocess(pixels, mode)))
    names = _label_names(loaded, probabilities.shape[1])
    results = []
    for path, row in zip(images, probabilities, strict=True):
        best = np.argsort(-row)[: min(top_k, len(row))]
        results.append(
            {
                "image": str(path),
                "predictions": [
                    {"class": int(i), "label": names[i], "probability": float(row[i])} for i in best
                ],
            }
        )
    return results


def format_predictions(results: list[dict[str, Any]], as_json: bool = False) -> str:
    if as_json:
        return json.dumps(results, indent=1)
    lines = []
    for result in results:
        lines.append(result["image"])
        lines += [
            f"  {p['probability']:7.2%}  {p['label']} ({p['class']})" for p in result["predictions"]
        ]
    return "\n".join(lines)
