"""`load_dataset`: checks its arguments, picks the source, builds the batched pipelines."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_resnet._checks import check_positive_int as _check_positive_int
from keras_resnet._checks import config_with_overrides, require_tensorflow_backend
from keras_resnet._checks import is_int as _is_int
from keras_resnet._checks import is_number as _is_number
from keras_resnet.data.base import (
    _MIN_SHUFFLE_BUFFER,
    _SHUFFLE_BUFFER_BYTES,
    _TRANSLATION_FACTOR,
    DEFAULT_IMAGE_SIZE,
    _Source,
)
from keras_resnet.data.crops import random_resized_crop, resize_center_crop
from keras_resnet.data.digits import _digits_source
from keras_resnet.data.folder import _folder_source
from keras_resnet.data.headers import check_folder_images
from keras_resnet.data.options import DataOptions
from keras_resnet.data.split_folder import split_folder_source, split_folders
from keras_resnet.data.tfds import _tfds_source


@dataclasses.dataclass
class DatasetSplits:
    """Batched, prefetched pipelines of one dataset plus their metadata.

    Attributes:
        name: The dataset reference as given (``"digits"``, a TFDS name or the
            folder path).
        train: Shuffled (seeded, reshuffled every epoch) and, if requested,
            augmented batches.
        validation: Batches in a fixed order, not augmented.
        test: Batches in a fixed order, not augmented.
        class_names: Class names; label ``i`` is ``class_names[i]``.
        image_shape: ``(H, W, C)`` of the yielded images.
        sizes: Number of examples per split (keys ``train``, ``validation``,
            ``test``).
        label_mode: ``"int"`` or ``"categorical"``.
        layout: How the splits were made: ``"split-folders (...)"`` (a folder's
            train/ val/ test/), ``"class-folders (...)"`` (one class-folder tree,
            carved), ``"digits"`` or ``"tfds"``.
        train_for_epoch: ``epoch -> `` that epoch's train batches, shuffled
            (and augmented) by a seed derived from ``seed`` and ``epoch`` alone
            (TensorFlow's global seed aside, which ``train`` sets to the
            run's), so a resumed run can read the epochs an uninterrupted one
            would; the multi-worker loop reads its epochs from it. None where
            the source shuffles itself (folders: Keras' file shuffle).

    Example:
        >>> splits = load_dataset("digits")
        >>> splits.num_classes, splits.to_dict()["image_shape"]
        (10, [8, 8, 1])
    """

    name: str
    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    class_names: list[str]
    image_shape: tuple[int, int, int]
    sizes: dict[str, int]
    label_mode: str
    layout: str = ""
    train_for_epoch: Callable[[int], tf.data.Dataset] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )

    @property
    def num_classes(self) -> int:
        """Number of classes (length of `class_names`)."""
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        """Returns the JSON-serialisable metadata (everything but pipelines).

        Example:
            >>> import json
            >>> json.dumps(load_dataset("digits").to_dict())[:18]
            '{"name": "digits",'
        """
        return {
            "name": self.name,
            "class_names": list(self.class_names),
            "image_shape": list(self.image_shape),
            "sizes": dict(self.sizes),
            "label_mode": self.label_mode,
            "layout": self.layout,
        }


def load_dataset(
    dataset: str | os.PathLike,
    data: DataOptions | None = None,
    *,
    batch_size: int = 64,
    seed: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
    **options: Any,
) -> DatasetSplits:
    """Builds train / validation / test pipelines for a dataset reference.

    Args:
        dataset: ``"digits"``, a folder with one image subfolder per class, or
            a TensorFlow Datasets name.
        data: how the dataset is read, as one `DataOptions` (default
            ``DataOptions()``); the keywords below apply on top of it.
        batch_size: Examples per batch (the last batch may be smaller).
        seed: Seed of the digits / folder split, the train shuffle and the
            augmentation.
        validation_fraction: Share of the examples held out for validation,
            in [0, 1); for TFDS only used when the dataset has no
            ``validation`` split.
        test_fraction: Share held out for testing, in [0, 1); only used when
            the source has no ``test`` split (digits, folders, some TFDS).
        **options: any `DataOptions` field, over `data`:
            image_size: Output ``(height, width)`` (an int means square).
                ``None`` keeps the native size, or uses `DEFAULT_IMAGE_SIZE`
                when the images have no single size.
            data_dir: TFDS data directory; ``None`` means TFDS' default
                (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
            download: Let TFDS download and prepare a missing dataset. Needs
                internet; without it a missing dataset raises
                `DatasetNotPreparedError` immediately.
            augment: Randomly translate (and, where sensible, flip) training
                images.
            label_mode: ``"int"`` for sparse labels, ``"categorical"`` for one-hot.
            channels: ``1`` or ``3`` to convert images to grayscale / RGB;
                ``None`` keeps the native channels (folders are read as RGB).
            augmentation: ``"translate"`` (shifts and flips on batches) or
                ``"random-resized-crop"`` (ImageNet's per-image crop, then flips).
            eval_crop: validation and test images resized so that the output is
                this fraction of the shorter side, then center-cropped (ImageNet's
                0.875); None resizes the whole image.
            max_image_pixels: a folder holding an image whose header declares more
                pixels is refused before any is decoded; None: PIL's default limit.

    Returns:
        The pipelines and their metadata.

    Raises:
        DatasetNotPreparedError: A TFDS dataset is missing and
            ``download=False``.
        ValueError: An argument is invalid, the folder does not exist or has
            no readable images, or the name is not a TFDS dataset.
        TypeError: a keyword that is not a `DataOptions` field.

    Example:
        >>> splits = load_dataset("digits", image_size=32, channels=3,
        ...                       label_mode="categorical")
        >>> images, labels = next(iter(splits.test))
        >>> images.shape, labels.shape, splits.sizes["test"]
        (TensorShape([64, 32, 32, 3]), TensorShape([64, 10]), 359)
        >>> load_dataset("digits", DataOptions(image_size=16), augment=False).image_shape
        (16, 16, 1)
    """
    require_tensorflow_backend("load_dataset()", "its pipelines are tf.data")
    dataset = _check_dataset(dataset)
    data = config_with_overrides(DataOptions, data, options, arg="data", caller="load_dataset")
    return load_splits(
        dataset,
        data,
        batch_size=batch_size,
        seed=seed,
        validation_fraction=validation_fraction,
        test_fraction=test_fraction,
    )


def load_splits(
    dataset: str | os.PathLike,
    data: DataOptions,
    *,
    batch_size: int = 64,
    seed: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> DatasetSplits:
    """`load_dataset` with its data keywords as one (already checked) `DataOptions`.

    What `train`, `search` and `export_run` call; the other arguments are `load_dataset`'s.

    Example:
        >>> splits = load_splits("digits", DataOptions(image_size=16, augment=False))
        >>> splits.image_shape
        (16, 16, 1)
    """
    dataset = _check_dataset(dataset)
    _check_positive_int("batch_size", batch_size)
    _check_seed(seed)
    _check_fractions(validation_fraction, test_fraction)
    source = _source(dataset, data, seed, validation_fraction, test_fraction)
    return _build_splits(
        dataset,
        source,
        target_hw=data.hw or source.image_hw or DEFAULT_IMAGE_SIZE,
        channels=data.channels or source.channels,
        batch_size=batch_size,
        seed=seed,
        data=data,
    )


def _source(
    dataset: str, data: DataOptions, seed: int, validation_fraction: float, test_fraction: float
) -> _Source:
    """The unbatched splits of the source `dataset` names: digits, a folder or TFDS."""
    fractions = (seed, validation_fraction, test_fraction)
    if dataset == "digits":
        return dataclasses.replace(_digits_source(*fractions), layout="digits")
    directory = os.path.abspath(os.path.expanduser(dataset))
    if os.path.isdir(directory):
        check_folder_images(directory, data.max_image_pixels, dataset)
        folders = split_folders(directory)
        if folders:
            return split_folder_source(dataset, folders, data.hw, data.channels, *fractions)
        source = _folder_source(dataset, data.hw, data.channels, *fractions)
        return dataclasses.replace(source, layout="class-folders (split by Keras' file shuffle)")
    if _looks_like_path(dataset):
        raise ValueError(
            f"`dataset` folder does not exist or is not a directory. Received: dataset={dataset!r}"
        )
    source = _tfds_source(dataset, data.data_dir, data.download, validation_fraction, test_fraction)
    return dataclasses.replace(source, layout="tfds")


# --- argument checks ---------------------------------------------------------


def _check_dataset(dataset: Any) -> str:
    if isinstance(dataset, os.PathLike):
        dataset = os.fspath(dataset)
    if not isinstance(dataset, str) or not dataset.strip():
        raise ValueError(
            "`dataset` must be 'digits', a folder path or a TensorFlow "
            f"Datasets name. Received: dataset={dataset!r}"
        )
    return dataset


def _check_seed(seed: Any) -> None:
    if not _is_int(seed) or not 0 <= seed < 2**32:
        raise ValueError(f"`seed` must be an integer in [0, 2**32). Received: seed={seed!r}")


def _check_fractions(validation_fraction: Any, test_fraction: Any) -> None:
    for name, value in (
        ("validation_fraction", validation_fraction),
        ("test_fraction", test_fraction),
    ):
        if not _is_number(value) or not 0 <= value < 1:
            raise ValueError(f"`{name}` must be a number in [0, 1). Received: {name}={value!r}")
    if validation_fraction + test_fraction >= 1:
        raise ValueError(
            "`validation_fraction` + `test_fraction` must be below 1, leaving "
            "examples to train on. Received: "
            f"validation_fraction={validation_fraction!r}, "
            f"test_fraction={test_fraction!r}"
        )


def _looks_like_path(dataset: str) -> bool:
    # TFDS names may contain "/" (config) and ":" (version), so only
    # unambiguous path spellings are reported as missing folders.
    return (
        os.path.isabs(dataset)
        or dataset.startswith((".", "~"))
        or dataset.endswith(("/", os.sep))
        or os.path.exists(dataset)
    )


# --- common processing -------------------------------------------------------


def _convert_channels(image: tf.Tensor, source: int, target: int) -> tf.Tensor:
    if source == target:
        return image
    if source == 1:
        return tf.image.grayscale_to_rgb(image)
    rgb = image[..., :3]  # drops alpha
    return rgb if target == 3 else tf.image.rgb_to_grayscale(rgb)


def _augmenter(
    seed: int, flips: bool, translate: bool = True
) -> Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """Returns a batch map function applying seeded Keras augmentation layers.

    On whole batches: Keras' RandomTranslation and RandomFlip draw one shift / flip per
    image of the batch, so batching first changes nothing but the cost.
    """
    layers = []
    if translate:
        # Zero fill + nearest sampling = whole-pixel shifts into black borders,
        # like CIFAR's pad-and-crop.
        layers.append(
            keras.layers.RandomTranslation(
                _TRANSLATION_FACTOR,
                _TRANSLATION_FACTOR,
                fill_mode="constant",
                interpolation="nearest",
                seed=seed,
            )
        )
    if flips:
        # Another seed: equal seeds would tie the flip to the translation draw.
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 1))

    def augment(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        for layer in layers:
            images = layer(images, training=True)
        return images, labels

    return augment


def _prepare_fn(source: _Source, target_hw, channels, label_mode, eval_crop):
    """(image, label) -> float32 image in [0, 1] at `target_hw`, int32 or one-hot label.

    Works on one example or on a batch of same-size images. With `crop_seed`, a
    per-image seed pair picks the RandomResizedCrop box; `eval_crop` center-crops.
    """
    num_classes = len(source.class_names)

    def prepare(image, label, crop_seed=None, training=False):
        if crop_seed is not None:
            image = random_resized_crop(image, target_hw, crop_seed)
        elif eval_crop and not training:
            image = resize_center_crop(image, target_hw, eval_crop)
        image = tf.cast(image, tf.float32)
        if tuple(image.shape[-3:-1]) != target_hw:
            image = tf.image.resize(image, target_hw)
        image = _convert_channels(image, source.channels, channels) / source.scale
        image = tf.ensure_shape(image, (*image.shape[:-3], *target_hw, channels))
        label = tf.cast(label, tf.int32)
        if label_mode == "categorical":
            label = tf.one_hot(label, num_classes, dtype=tf.float32)
        return image, label

    return prepare


def _build_splits(
    name: str,
    source: _Source,
    *,
    target_hw: tuple[int, int],
    channels: int,
    batch_size: int,
    seed: int,
    data: DataOptions,
) -> DatasetSplits:
    image_shape = (*target_hw, channels)
    prepare = _prepare_fn(source, target_hw, channels, data.label_mode, data.eval_crop)
    crops = data.augment and data.augmentation == "random-resized-crop"

    def pipeline(ds: tf.data.Dataset, training: bool, epoch: int | None = None) -> tf.data.Dataset:
        """`epoch` None: reshuffled (and augmented) anew at each pass, as `fit` reads it."""
        shuffle_seed = seed if epoch is None else epoch_seed(seed, epoch)
        if training and not source.train_is_shuffled:
            # Source examples are shuffled before resizing, at their own dtype's size.
            value_bytes = ds.element_spec[0].dtype.size
            example_bytes = value_bytes * channels * int(np.prod(source.image_hw or target_hw))
            buffer = max(_MIN_SHUFFLE_BUFFER, _SHUFFLE_BUFFER_BYTES // example_bytes)
            ds = ds.shuffle(
                min(buffer, max(source.sizes["train"], 1)),
                seed=shuffle_seed,
                reshuffle_each_iteration=epoch is None,
            )
        if training and crops:
            # Per image (each crop has its own size), each with its own seed pair.
            pairs = tf.data.Dataset.random(
                seed=shuffle_seed, rerandomize_each_iteration=epoch is None
            ).batch(2)
            ds = tf.data.Dataset.zip(ds, pairs).map(
                lambda example, pair: prepare(*example, crop_seed=pair, training=True),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
            ds = ds.batch(batch_size)
        elif source.image_hw == target_hw and not (data.eval_crop and not training):
            # Same-size images: one vectorised prepare per batch, not one call per image.
            ds = ds.batch(batch_size).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        else:
            ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
        if training and data.augment:
            augment = _augmenter(shuffle_seed, source.flips, translate=not crops)
            ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    return DatasetSplits(
        name=name,
        train=pipeline(source.train, training=True),
        validation=pipeline(source.validation, training=False),
        test=pipeline(source.test, training=False),
        class_names=source.class_names,
        image_shape=image_shape,
        sizes=source.sizes,
        label_mode=data.label_mode,
        layout=source.layout,
        train_for_epoch=(
            None
            if source.train_is_shuffled
            else lambda epoch: pipeline(source.train, training=True, epoch=epoch)
        ),
    )


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of one epoch: a function of the run's seed and the epoch alone.

    Example:
        >>> epoch_seed(0, 1) == epoch_seed(0, 1) != epoch_seed(0, 2)
        True
    """
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
