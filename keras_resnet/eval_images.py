"""Images as a pretrained tag was evaluated on: timm's eval transform, in Keras' image loader.

Resize the shorter side to `floor(input_size / crop_pct)` with the tag's interpolation, take
the central `input_size` square, scale to [0, 1] (timm's `transforms_factory.
transforms_imagenet_eval`: `Resize(scale_size)`, `CenterCrop(input_size)`, `ToTensor()`). The
normalisation (`cfg.preprocessing`) comes after, as in `keras_resnet.predict`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

# PIL's filters by timm's names (timm.data.transforms.str_to_pil_interp).
_PIL_FILTERS = {"bilinear": "BILINEAR", "bicubic": "BICUBIC", "nearest": "NEAREST"}


def eval_transform(image, input_size: int, crop_pct: float, interpolation: str) -> np.ndarray:
    """A PIL RGB image -> (input_size, input_size, 3) float32 in [0, 1]."""
    from PIL import Image

    resample = getattr(Image.Resampling, _PIL_FILTERS[interpolation])
    scale = math.floor(input_size / crop_pct)
    width, height = image.size
    if width <= height:
        size = (scale, int(scale * height / width))
    else:
        size = (int(scale * width / height), scale)
    image = image.resize(size, resample=resample)
    left = int(round((size[0] - input_size) / 2.0))
    top = int(round((size[1] - input_size) / 2.0))
    image = image.crop((left, top, left + input_size, top + input_size))
    return np.asarray(image, dtype=np.float32) / 255.0


def load_eval_images(paths: Sequence[str | os.PathLike], cfg) -> np.ndarray:
    """Image files through `eval_transform` with a `PretrainedCfg`'s size, crop and filter."""
    import keras

    images = []
    for path in paths:
        try:
            image = keras.utils.load_img(path, color_mode="rgb")
        except (OSError, ValueError) as e:
            raise ValueError(f"Cannot read image {str(path)!r}: {str(e).splitlines()[0]}") from None
        images.append(eval_transform(image, cfg.input_size, cfg.crop_pct, cfg.interpolation))
    return np.stack(images)
