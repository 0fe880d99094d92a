"""What every data source shares: the constants, the unbatched `_Source` they return."""

from __future__ import annotations

import dataclasses

import tensorflow as tf

OFFLINE_DATASETS = ("digits",)
"""Dataset names that need no download and no prepared data."""

DEFAULT_IMAGE_SIZE = (224, 224)
"""Resize target when `image_size=None` and the source has no single size."""

NO_FLIP_KEYWORDS = ("digits", "mnist", "svhn", "omniglot")
"""A dataset whose name contains one of these is never flipped."""

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
"""File types read from folders (the ones Keras' folder loader indexes)."""

_TRANSLATION_FACTOR = 0.125
# The train shuffle buffer holds source examples; cap its memory so large-image
# datasets do not exhaust RAM while small ones (digits, cifar10) get a full shuffle.
_SHUFFLE_BUFFER_BYTES = 256 * 2**20
_MIN_SHUFFLE_BUFFER = 1024
_MAX_LISTED_FILES = 10


class DatasetNotPreparedError(ValueError):
    """A TFDS dataset is not on disk and `download=False`."""


@dataclasses.dataclass
class _Source:
    """Unbatched ``(image, label)`` splits before the common processing."""

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    sizes: dict[str, int]
    class_names: list[str]
    image_hw: tuple[int, int] | None  # None: images differ in size
    channels: int
    scale: float  # pixel value that maps to 1.0
    flips: bool
    train_is_shuffled: bool = False
    layout: str = ""  # how the splits were made (metrics.json's dataset.layout)


def _flips_allowed(name: str) -> bool:
    return not any(keyword in name.lower() for keyword in NO_FLIP_KEYWORDS)
