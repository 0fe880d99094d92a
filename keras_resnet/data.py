"""Train / validation / test `tf.data` pipelines from one dataset reference.

`load_dataset` accepts three kinds of reference:

* ``"digits"``: scikit-learn's bundled 8x8 handwritten digits (1,797 real
  images, 10 classes). Needs no download, so it works on offline machines.
* a path to a local folder with one subfolder of images per class, read with
  `keras.utils.image_dataset_from_directory`.
* a TensorFlow Datasets name (``"cifar10"``, ``"tf_flowers"``,
  ``"imagenette/160px"``, ...). Nothing is downloaded unless
  ``download=True``; a dataset that is not prepared yet fails fast with
  `DatasetNotPreparedError`.

Every pipeline yields ``(images, labels)`` batches:

* ``images``: ``float32``, shape ``(batch, H, W, C)`` (channels last), values
  scaled to **[0, 1]**: digits are divided by 16 (their maximum), 8-bit images
  by 255. Models trained on these pipelines (and the models exported from
  them) expect inputs in [0, 1], not [0, 255] nor ImageNet-normalised.
* ``labels``: ``int32`` class indices (``label_mode="int"``) or ``float32``
  one-hot vectors (``label_mode="categorical"``).

Splits are deterministic. Digits are split with a stratified permutation drawn
from ``seed``. Folders are split by Keras' seeded file shuffle. TFDS datasets
keep their own ``validation`` / ``test`` splits; a missing one is cut from the
end of ``train`` (TFDS shuffles examples when preparing them, so the tail is a
random sample), which does not depend on ``seed``.

Image size: ``image_size=None`` keeps the native size when the source has one
(digits 8x8, cifar10 32x32, a folder whose readable images all share one size)
and otherwise resizes to `DEFAULT_IMAGE_SIZE` (224x224, the ImageNet ResNet
input), e.g. for ``tf_flowers`` or a folder of mixed sizes.

Augmentation (training split only, ``augment=True``): a random translation of
up to 12.5% of each side with zero fill (CIFAR's "pad 4 pixels and crop" on
32x32 images) and a random horizontal flip. Flips are off for digit and
character sets, where a mirrored symbol is a different or invalid one:
``"digits"`` and TFDS names containing one of `NO_FLIP_KEYWORDS` (mnist,
emnist, kmnist, fashion_mnist, svhn_cropped, omniglot, ...).

>>> splits = load_dataset("digits", batch_size=32)
>>> images, labels = next(iter(splits.train))
>>> images.shape, splits.num_classes
(TensorShape([32, 8, 8, 1]), 10)
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_resnet._checks import check_positive_int as _check_positive_int
from keras_resnet._checks import is_int as _is_int

OFFLINE_DATASETS = ("digits",)
"""Dataset names that need no download and no prepared data."""

DEFAULT_IMAGE_SIZE = (224, 224)
"""Resize target when `image_size=None` and the source has no single size."""

NO_FLIP_KEYWORDS = ("digits", "mnist", "svhn", "omniglot")
"""A dataset whose name contains one of these is never flipped."""

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
"""File types read from folders (the ones Keras' folder loader indexes)."""

_LABEL_MODES = ("int", "categorical")
_TRANSLATION_FACTOR = 0.125
# The train shuffle buffer holds source examples; cap its memory so large-image
# datasets do not exhaust RAM while small ones (digits, cifar10) get a full shuffle.
_SHUFFLE_BUFFER_BYTES = 256 * 2**20
_MIN_SHUFFLE_BUFFER = 1024
_MAX_LISTED_FILES = 10


class DatasetNotPreparedError(ValueError):
    """A TFDS dataset is not on disk and `download=False`."""


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
        }


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


def load_dataset(
    dataset: str | os.PathLike,
    *,
    image_size: int | tuple[int, int] | None = None,
    batch_size: int = 64,
    seed: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    augment: bool = True,
    label_mode: str = "int",
    channels: int | None = None,
) -> DatasetSplits:
    """Builds train / validation / test pipelines for a dataset reference.

    Args:
        dataset: ``"digits"``, a folder with one image subfolder per class, or
            a TensorFlow Datasets name.
        image_size: Output ``(height, width)`` (an int means square). ``None``
            keeps the native size, or uses `DEFAULT_IMAGE_SIZE` when the
            images have no single size.
        batch_size: Examples per batch (the last batch may be smaller).
        seed: Seed of the digits / folder split, the train shuffle and the
            augmentation.
        validation_fraction: Share of the examples held out for validation,
            in [0, 1); for TFDS only used when the dataset has no
            ``validation`` split.
        test_fraction: Share held out for testing, in [0, 1); only used when
            the source has no ``test`` split (digits, folders, some TFDS).
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

    Returns:
        The pipelines and their metadata.

    Raises:
        DatasetNotPreparedError: A TFDS dataset is missing and
            ``download=False``.
        ValueError: An argument is invalid, the folder does not exist or has
            no readable images, or the name is not a TFDS dataset.

    Example:
        >>> splits = load_dataset("digits", image_size=32, channels=3,
        ...                       label_mode="categorical")
        >>> images, labels = next(iter(splits.test))
        >>> images.shape, labels.shape, splits.sizes["test"]
        (TensorShape([64, 32, 32, 3]), TensorShape([64, 10]), 359)
    """
    dataset = _check_dataset(dataset)
    target_hw = _check_image_size(image_size)
    _check_positive_int("batch_size", batch_size)
    _check_seed(seed)
    _check_fractions(validation_fraction, test_fraction)
    if label_mode not in _LABEL_MODES:
        raise ValueError(
            f"`label_mode` must be one of {_LABEL_MODES}. Received: label_mode={label_mode!r}"
        )
    if channels not in (None, 1, 3):
        raise ValueError(f"`channels` must be None, 1 or 3. Received: channels={channels!r}")
    if data_dir is not None:
        data_dir = os.fspath(data_dir)

    if dataset == "digits":
        source = _digits_source(seed, validation_fraction, test_fraction)
    elif os.path.isdir(os.path.expanduser(dataset)):
        source = _folder_source(
            dataset, target_hw, channels, seed, validation_fraction, test_fraction
        )
    elif _looks_like_path(dataset):
        raise ValueError(
            f"`dataset` folder does not exist or is not a directory. Received: dataset={dataset!r}"
        )
    else:
        source = _tfds_source(dataset, data_dir, download, validation_fraction, test_fraction)

    return _build_splits(
        dataset,
        source,
        target_hw=target_hw or source.image_hw or DEFAULT_IMAGE_SIZE,
        channels=channels or source.channels,
        batch_size=batch_size,
        seed=seed,
        augment=augment,
        label_mode=label_mode,
    )


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


def _check_image_size(image_size: Any) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if _is_int(image_size):
        image_size = (image_size, image_size)
    if (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(_is_int(side) and side > 0 for side in image_size)
    ):
        return int(image_size[0]), int(image_size[1])
    raise ValueError(
        "`image_size` must be None, a positive integer or a (height, width) "
        f"pair of positive integers. Received: image_size={image_size!r}"
    )


def _check_fractions(validation_fraction: Any, test_fraction: Any) -> None:
    for name, value in (
        ("validation_fraction", validation_fraction),
        ("test_fraction", test_fraction),
    ):
        if (
            not isinstance(value, (int, float, np.floating))
            or isinstance(value, bool)
            or not 0 <= value < 1
        ):
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


# --- sources -----------------------------------------------------------------


def _stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """Returns a seeded permutation whose every prefix is class-balanced.

    Each class's examples get keys spread evenly over [0, 1) in random order,
    so sorting by key interleaves the classes in proportion.
    """
    rng = np.random.default_rng(seed)
    keys = np.empty(len(labels))
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        ranks = rng.permutation(len(members)) + rng.random(len(members))
        keys[members] = ranks / len(members)
    return np.argsort(keys, kind="stable")


def _digits_source(seed: int, validation_fraction: float, test_fraction: float) -> _Source:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32)[..., np.newaxis]
    labels = digits.target.astype(np.int32)
    order = _stratified_order(labels, seed)
    num_test = round(test_fraction * len(labels))
    num_validation = round(validation_fraction * len(labels))
    parts = {
        "train": order[num_test + num_validation :],
        "validation": order[num_test : num_test + num_validation],
        "test": order[:num_test],
    }
    datasets = {
        split: tf.data.Dataset.from_tensor_slices((images[idx], labels[idx]))
        for split, idx in parts.items()
    }
    return _Source(
        **datasets,
        sizes={split: len(idx) for split, idx in parts.items()},
        class_names=[str(name) for name in digits.target_names],
        image_hw=images.shape[1:3],
        channels=1,
        scale=16.0,  # load_digits pixels are counts 0..16
        flips=_flips_allowed("digits"),
    )


def _decodable_image_shapes(paths: list[str], channels: int) -> dict[str, tuple[int, int, int]]:
    """Decodes every file the way Keras will; returns the shapes of the good ones.

    The same TF decoder as the training pipeline is used (not PIL), so a file
    passes here exactly when it will decode during training.
    """

    def probe(path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.io.decode_image(
            tf.io.read_file(path), channels=channels, expand_animations=False
        )
        return path, tf.shape(image)

    probes = (
        tf.data.Dataset.from_tensor_slices(paths)
        .map(probe, num_parallel_calls=tf.data.AUTOTUNE)
        .ignore_errors()
    )
    return {path.decode(): tuple(shape) for path, shape in probes.as_numpy_iterator()}


def _split_counts(n: int, validation_fraction: float, test_fraction: float) -> tuple[int, ...]:
    """(train, validation, test) file counts of `n` files, as `_folder_source` cuts them."""
    held_out = validation_fraction + test_fraction
    held = int(held_out * n)  # Keras' own rounding in image_dataset_from_directory
    validation = round(held * validation_fraction / (held_out or 1))
    return n - held, validation, held - validation


def _images_needed(validation_fraction: float, test_fraction: float) -> int:
    """The fewest files that leave at least one for each split that is asked for."""
    wanted = (1, int(validation_fraction > 0), int(test_fraction > 0))
    for n in range(1, 100_000):
        counts = _split_counts(n, validation_fraction, test_fraction)
        if all(c >= w for c, w in zip(counts, wanted, strict=True)):
            return n
    return 100_000


def _folder_source(
    folder: str,
    target_hw: tuple[int, int] | None,
    channels: int | None,
    seed: int,
    validation_fraction: float,
    test_fraction: float,
) -> _Source:
    directory = os.path.abspath(os.path.expanduser(folder))
    # Same layout rules as Keras' indexing: visible subfolders are classes,
    # searched recursively for the image extensions it reads.
    class_names = [
        entry
        for entry in sorted(os.listdir(directory))
        if not entry.startswith(".") and os.path.isdir(os.path.join(directory, entry))
    ]
    if len(class_names) < 2:
        found = f"only {class_names[0]!r}" if class_names else "none"
        raise ValueError(
            "`dataset` folder needs at least two class subfolders (one subfolder of images "
            f"per class); it has {found}. Received: dataset={folder!r}"
        )
    files = [
        os.path.join(root, name)
        for class_name in class_names
        for root, _, names in os.walk(os.path.join(directory, class_name))
        for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS)
    ]
    if not files:
        raise ValueError(
            f"`dataset` folder has no images ({', '.join(IMAGE_EXTENSIONS)} "
            f"files in class subfolders). Received: dataset={folder!r}"
        )
    channels = channels or 3
    shapes = _decodable_image_shapes(files, channels)
    unreadable = sorted(set(files) - set(shapes))
    if len(unreadable) == len(files):
        raise ValueError(
            f"`dataset` folder has no readable images (none of its {len(files)} "
            f"image files could be decoded). Received: dataset={folder!r}"
        )
    if unreadable:
        listed = [os.path.relpath(path, directory) for path in unreadable]
        more = ", ..." if len(listed) > _MAX_LISTED_FILES else ""
        warnings.warn(
            f"skipped {len(unreadable)} unreadable "
            f"file{'s' if len(unreadable) > 1 else ''} in {folder}: "
            f"{', '.join(listed[:_MAX_LISTED_FILES])}{more}",
            stacklevel=3,
        )
    if target_hw is None:
        native_sizes = {shape[:2] for shape in shapes.values()}
        target_hw = native_sizes.pop() if len(native_sizes) == 1 else DEFAULT_IMAGE_SIZE

    held_out = validation_fraction + test_fraction
    needed = _images_needed(validation_fraction, test_fraction)
    if len(files) < needed:
        raise ValueError(
            f"`dataset` folder has {len(files)} images; splitting off "
            f"validation_fraction={validation_fraction} and test_fraction={test_fraction} "
            f"with at least one image each (and one to train on) needs at least {needed}. "
            f"Received: dataset={folder!r}"
        )
    options = dict(
        labels="inferred",
        label_mode="int",
        class_names=class_names,
        color_mode="grayscale" if channels == 1 else "rgb",
        batch_size=None,
        image_size=target_hw,
        shuffle=True,
        seed=seed,
        verbose=False,
    )
    # verbose=False does not silence Keras' "Using N files for validation",
    # which would be wrong here: that tail is split again below.
    with contextlib.redirect_stdout(io.StringIO()):
        if held_out:
            # Keras splits its seeded file shuffle into training and one
            # held-out tail (kept in file order), cut into validation and test.
            train, held = keras.utils.image_dataset_from_directory(
                directory, validation_split=held_out, subset="both", **options
            )
            held_paths = held.file_paths
        else:
            train = keras.utils.image_dataset_from_directory(directory, **options)
            held, held_paths = train.take(0), []
    num_validation_files = round(len(held_paths) * validation_fraction / (held_out or 1))

    def count_readable(paths: list[str]) -> int:
        return sum(path in shapes for path in paths)

    sizes = {
        "train": count_readable(train.file_paths),
        "validation": count_readable(held_paths[:num_validation_files]),
        "test": count_readable(held_paths[num_validation_files:]),
    }
    if not sizes["train"]:
        raise ValueError(
            "`dataset` folder has no readable images left for training. "
            f"Received: dataset={folder!r}"
        )
    # A file that fails to decode is dropped where it is read instead of
    # ending the epoch; ignore_errors keeps the order, so take/skip still
    # cut the held-out tail after the same files.
    held = held.ignore_errors()
    return _Source(
        train=train.ignore_errors(),
        validation=held.take(sizes["validation"]),
        test=held.skip(sizes["validation"]),
        sizes=sizes,
        class_names=class_names,
        image_hw=target_hw,
        channels=channels,
        scale=255.0,
        flips=True,
        train_is_shuffled=True,
    )


@contextlib.contextmanager
def _tfds_gcs_lookups_disabled() -> Iterator[None]:
    """Stops TFDS from querying its GCS bucket, which hangs offline.

    For a dataset that is not prepared locally, TFDS can look its metadata
    up on ``gs://tfds-data``; older releases did so by default (this flag is
    what they check), and the look-up waits on network timeouts offline.
    """
    from tensorflow_datasets.core.utils import gcs_utils

    previous = gcs_utils.__dict__.get("_is_gcs_disabled")
    gcs_utils._is_gcs_disabled = True
    try:
        yield
    finally:
        gcs_utils._is_gcs_disabled = previous


def _tfds_split_specs(
    splits: Any, name: str, validation_fraction: float, test_fraction: float
) -> dict[str, str | None]:
    """Maps train/validation/test to TFDS split strings (None: empty split).

    Missing validation / test splits are cut from the end of ``train`` by
    example index, so the split is exact and independent of `seed`.
    """
    if "train" not in splits:
        raise ValueError(
            f"`dataset` has no 'train' split (it has {sorted(splits)}). Received: dataset={name!r}"
        )
    total = splits["train"].num_examples
    num_validation = 0 if "validation" in splits else round(validation_fraction * total)
    num_test = 0 if "test" in splits else round(test_fraction * total)
    end = total - num_validation - num_test
    if end <= 0:
        raise ValueError(
            f"`dataset` has too few training examples ({total}) for "
            f"validation_fraction={validation_fraction} and "
            f"test_fraction={test_fraction}. Received: dataset={name!r}"
        )

    def carved(start: int, stop: int) -> str | None:
        return f"train[{start}:{stop}]" if stop > start else None

    return {
        "train": "train" if end == total else f"train[:{end}]",
        "validation": (
            "validation" if "validation" in splits else carved(end, end + num_validation)
        ),
        "test": "test" if "test" in splits else carved(total - num_test, total),
    }


def _tfds_source(
    name: str,
    data_dir: str | None,
    download: bool,
    validation_fraction: float,
    test_fraction: float,
) -> _Source:
    import tensorflow_datasets as tfds

    unknown = ValueError(
        "`dataset` is neither 'digits', an existing folder, nor a TensorFlow "
        f"Datasets name. Received: dataset={name!r}"
    )
    try:
        parsed, _ = tfds.core.naming.parse_builder_name_kwargs(name)
    except ValueError:
        raise unknown from None
    if parsed.namespace:
        # Community and Hugging Face datasets resolve their code over the
        # network, even to find out that nothing is prepared.
        raise ValueError(
            "`dataset` names a community TFDS dataset (namespace:name), which "
            f"is not supported. Received: dataset={name!r}"
        )

    with contextlib.nullcontext() if download else _tfds_gcs_lookups_disabled():
        try:
            builder = tfds.builder(name, data_dir=data_dir)
        except tfds.core.DatasetNotFoundError:
            raise unknown from None
        except ValueError as error:  # e.g. an unknown config or version
            raise ValueError(
                f"`dataset` is not a valid TensorFlow Datasets reference: {error} "
                f"Received: dataset={name!r}"
            ) from error
        # The code's features are known before preparing: reject e.g. text
        # datasets before asking for a download.
        _image_and_label_features(tfds, builder.info, name)
        if builder.is_prepared():
            info = builder.info
        elif not download:
            root = data_dir or os.fspath(builder.data_dir_root)
            raise DatasetNotPreparedError(
                f"TensorFlow Datasets dataset {name!r} is not prepared in "
                f"{root} (looked for {builder.data_dir}) and download=False, "
                "so nothing is fetched. On a machine with internet, either "
                "load it once with download=True (keras-resnet's --download "
                f"flag), or run `tfds build {name} --data_dir {root}`, then "
                f"copy {os.path.join(root, parsed.name)} to this machine's "
                "data_dir. "
                f"Received: dataset={name!r}, data_dir={data_dir!r}"
            )
        else:
            # Downloads and prepares; only then does TFDS know the splits.
            _, info = tfds.load(name, data_dir=data_dir, download=True, with_info=True)

        image_feature, label_feature = _image_and_label_features(tfds, info, name)
        specs = _tfds_split_specs(info.splits, name, validation_fraction, test_fraction)
        requested = [spec for spec in specs.values() if spec]
        loaded = dict(
            zip(
                requested,
                tfds.load(
                    name,
                    split=requested,
                    as_supervised=True,
                    data_dir=data_dir,
                    download=False,
                ),
                strict=True,
            )
        )

    empty = loaded[specs["train"]].take(0)
    datasets = {split: loaded[spec] if spec else empty for split, spec in specs.items()}
    height, width, native_channels = image_feature.shape
    dtype = np.dtype(image_feature.np_dtype)
    return _Source(
        **datasets,
        sizes={
            split: _num_examples(datasets[split], info.splits[spec]) if spec else 0
            for split, spec in specs.items()
        },
        class_names=list(label_feature.names),
        image_hw=(height, width) if height and width else None,
        channels=native_channels,
        scale=float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0,
        flips=_flips_allowed(parsed.name),
    )


def _image_and_label_features(tfds: Any, info: Any, name: str) -> tuple[Any, Any]:
    """Returns the features behind `as_supervised=True`'s (image, label) pair."""
    keys = info.supervised_keys
    features = info.features
    if (
        isinstance(keys, tuple)
        and len(keys) == 2
        and all(isinstance(key, str) and key in features for key in keys)
    ):
        image, label = (features[key] for key in keys)
        if isinstance(image, tfds.features.Image) and isinstance(label, tfds.features.ClassLabel):
            return image, label
    raise ValueError(
        "`dataset` is not an image classification dataset (it needs supervised "
        f"(image, class label) pairs). Received: dataset={name!r}"
    )


def _num_examples(ds: tf.data.Dataset, split_info: Any) -> int:
    # The pipeline's own count when known (TFDS asserts it when reading).
    cardinality = int(ds.cardinality())
    return cardinality if cardinality >= 0 else split_info.num_examples


# --- common processing -------------------------------------------------------


def _flips_allowed(name: str) -> bool:
    return not any(keyword in name.lower() for keyword in NO_FLIP_KEYWORDS)


def _convert_channels(image: tf.Tensor, source: int, target: int) -> tf.Tensor:
    if source == target:
        return image
    if source == 1:
        return tf.image.grayscale_to_rgb(image)
    rgb = image[..., :3]  # drops alpha
    return rgb if target == 3 else tf.image.rgb_to_grayscale(rgb)


def _augmenter(
    seed: int, flips: bool
) -> Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """Returns a batch map function applying seeded Keras augmentation layers."""
    layers = [
        # Zero fill + nearest sampling = whole-pixel shifts into black borders,
        # like CIFAR's pad-and-crop.
        keras.layers.RandomTranslation(
            _TRANSLATION_FACTOR,
            _TRANSLATION_FACTOR,
            fill_mode="constant",
            interpolation="nearest",
            seed=seed,
        )
    ]
    if flips:
        # Another seed: equal seeds would tie the flip to the translation draw.
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 1))

    def augment(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        for layer in layers:
            images = layer(images, training=True)
        return images, labels

    return augment


def _build_splits(
    name: str,
    source: _Source,
    *,
    target_hw: tuple[int, int],
    channels: int,
    batch_size: int,
    seed: int,
    augment: bool,
    label_mode: str,
) -> DatasetSplits:
    num_classes = len(source.class_names)
    image_shape = (*target_hw, channels)

    def prepare(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.cast(image, tf.float32)
        if tuple(image.shape[:2]) != target_hw:
            image = tf.image.resize(image, target_hw)
        image = _convert_channels(image, source.channels, channels) / source.scale
        image = tf.ensure_shape(image, image_shape)
        label = tf.cast(label, tf.int32)
        if label_mode == "categorical":
            label = tf.one_hot(label, num_classes, dtype=tf.float32)
        return image, label

    def pipeline(ds: tf.data.Dataset, training: bool) -> tf.data.Dataset:
        if training and not source.train_is_shuffled:
            # Source examples are shuffled before resizing; 4 bytes per value
            # bounds uint8 images and is exact for digits' float32.
            example_bytes = 4 * channels * int(np.prod(source.image_hw or target_hw))
            buffer = max(_MIN_SHUFFLE_BUFFER, _SHUFFLE_BUFFER_BYTES // example_bytes)
            ds = ds.shuffle(
                min(buffer, max(source.sizes["train"], 1)),
                seed=seed,
                reshuffle_each_iteration=True,
            )
        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(batch_size)
        if training and augment:
            ds = ds.map(_augmenter(seed, source.flips), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    return DatasetSplits(
        name=name,
        train=pipeline(source.train, training=True),
        validation=pipeline(source.validation, training=False),
        test=pipeline(source.test, training=False),
        class_names=source.class_names,
        image_shape=image_shape,
        sizes=source.sizes,
        label_mode=label_mode,
    )


__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "IMAGE_EXTENSIONS",
    "NO_FLIP_KEYWORDS",
    "OFFLINE_DATASETS",
    "DatasetNotPreparedError",
    "DatasetSplits",
    "load_dataset",
]
