"""A dataset folder whose `train/`, `test/` (and `val/` or `validation/`) hold class folders.

ImageNet's and CIFAR's layout: the splits are the folders, so the official test set stays the
test set. A missing validation (or test) folder is carved from `train/` by a seeded
permutation, with `validation_fraction` (`test_fraction`) of its files (CIFAR-10's 50,000
train images and the default 0.1 give He et al.'s 45k/5k split).

Small images are decoded once, in parallel, and kept in memory as one uint8 array per split
(`_CACHE_BYTES` bounds it: CIFAR-10's 60,000 32x32 images take 184 MB), so an epoch reads
no file and decodes nothing; larger datasets are decoded anew every epoch, in parallel, from
a seeded shuffle of the file names (shuffling names costs nothing, decoded images do).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import tensorflow as tf

from keras_resnet.data.base import IMAGE_EXTENSIONS, _Source

TRAIN_FOLDER = "train"
VALIDATION_FOLDERS = ("val", "validation")
TEST_FOLDER = "test"
SPLIT_FOLDERS = (TRAIN_FOLDER, *VALIDATION_FOLDERS, TEST_FOLDER)
"""A folder whose visible subfolders are among these, `train` included, is split by folder."""

_CACHE_BYTES = 2**30
"""Decoded images up to this many bytes (all splits) are kept in memory."""
_SIZE_SAMPLE = 32
"""Files decoded to learn the native size (the first of each class, round robin)."""
_DECODE_BATCH = 512


def split_folders(directory: str) -> dict[str, str] | None:
    """{"train"|"validation"|"test": path} when `directory` has the split layout, else None.

    Example:
        >>> split_folders("tests/fixtures/cifar10_sample")["test"].endswith("test")
        True
    """
    if not os.path.isdir(directory):
        return None
    names = {
        entry
        for entry in os.listdir(directory)
        if not entry.startswith(".") and os.path.isdir(os.path.join(directory, entry))
    }
    if TRAIN_FOLDER not in names or not names <= set(SPLIT_FOLDERS):
        return None
    found = {"train": TRAIN_FOLDER, "test": TEST_FOLDER if TEST_FOLDER in names else None}
    validation = [name for name in VALIDATION_FOLDERS if name in names]
    if len(validation) > 1:
        raise ValueError(
            "`dataset` folder must hold one validation folder, `val/` or `validation/`, not "
            f"both. Received: dataset={directory!r}"
        )
    found["validation"] = validation[0] if validation else None
    return {split: os.path.join(directory, name) for split, name in found.items() if name}


def _classes_of(split_dir: str) -> list[str]:
    return sorted(
        entry
        for entry in os.listdir(split_dir)
        if not entry.startswith(".") and os.path.isdir(os.path.join(split_dir, entry))
    )


def _check_same_classes(folders: dict[str, str], folder: str) -> list[str]:
    """The class names, the same in every split folder (one error line if not)."""
    classes = {split: _classes_of(path) for split, path in folders.items()}
    names = classes["train"]
    if len(names) < 2:
        raise ValueError(
            "`dataset` train/ folder needs at least two class subfolders. "
            f"Received: dataset={folder!r}"
        )
    for split, found in classes.items():
        if found != names:
            missing = sorted(set(names) - set(found))
            extra = sorted(set(found) - set(names))
            where = os.path.basename(folders[split])
            raise ValueError(
                f"`dataset` split folders must hold the same class folders: {where}/ lacks "
                f"{missing} and has {extra} beside train/. Received: dataset={folder!r}"
            )
    return names


def _files_and_labels(split_dir: str, class_names: list[str]) -> tuple[list[str], np.ndarray]:
    files, labels = [], []
    for label, name in enumerate(class_names):
        for root, _, entries in sorted(os.walk(os.path.join(split_dir, name))):
            for entry in sorted(entries):
                if entry.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.join(root, entry))
                    labels.append(label)
    return files, np.asarray(labels, np.int32)


def _decoder(channels: int, hw: tuple[int, int] | None):
    """path -> uint8 image (resized to `hw` when given and the file is another size)."""

    def decode(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.io.decode_image(
            tf.io.read_file(path), channels=channels, expand_animations=False
        )
        if hw is not None:
            image = tf.cond(
                tf.reduce_all(tf.shape(image)[:2] == hw),
                lambda: image,
                lambda: tf.cast(tf.round(tf.image.resize(image, hw)), tf.uint8),
            )
            image = tf.ensure_shape(image, (*hw, channels))
        return image, label

    return decode


def _native_hw(files: list[str], labels: np.ndarray, channels: int) -> tuple[int, int] | None:
    """The size shared by a sample of the files (one per class in turn), None if they differ."""
    by_class = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    round_robin = [idx[k] for k in range(_SIZE_SAMPLE) for idx in by_class if k < len(idx)]
    sample = [files[i] for i in round_robin[:_SIZE_SAMPLE]]
    decode = _decoder(channels, None)
    shapes = (
        tf.data.Dataset.from_tensor_slices(
            (tf.constant(sample, tf.string), np.zeros(len(sample), np.int32))
        )
        .map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        .ignore_errors()
        .map(lambda image, _: tf.shape(image)[:2])
    )
    sizes = {tuple(int(v) for v in hw) for hw in shapes.as_numpy_iterator()}
    return sizes.pop() if len(sizes) == 1 else None


def _decode_all(files, labels, channels, hw) -> tuple[np.ndarray, np.ndarray]:
    """Every readable file decoded (in parallel) into one uint8 array, with its labels."""
    ds = (
        tf.data.Dataset.from_tensor_slices((tf.constant(files, tf.string), labels))
        .map(_decoder(channels, hw), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .ignore_errors()
        .batch(_DECODE_BATCH)
    )
    images, kept = [], []
    for batch_images, batch_labels in ds.as_numpy_iterator():
        images.append(batch_images)
        kept.append(batch_labels)
    if not images:
        return np.zeros((0, *hw, channels), np.uint8), np.zeros((0,), np.int32)
    return np.concatenate(images), np.concatenate(kept)


def _carve(files, labels, fraction: float, seed: int, salt: int):
    """(rest, carved) of a seeded permutation: `fraction` of the files go to `carved`."""
    order = np.random.default_rng([seed, salt]).permutation(len(files))
    n = int(round(fraction * len(files)))
    take, keep = np.sort(order[:n]), np.sort(order[n:])
    pick = lambda idx: ([files[i] for i in idx], labels[idx])  # noqa: E731
    return pick(keep), pick(take)


def _warn_unreadable(lost: int, total: int, folder: str) -> None:
    if lost:
        warnings.warn(
            f"skipped {lost} unreadable file{'s' if lost > 1 else ''} of {total} in {folder}",
            stacklevel=4,
        )


def split_folder_source(
    folder: str,
    folders: dict[str, str],
    target_hw: tuple[int, int] | None,
    channels: int | None,
    seed: int,
    validation_fraction: float,
    test_fraction: float,
) -> _Source:
    """The splits of a split-layout folder: cached in memory when they fit, else streamed."""
    class_names = _check_same_classes(folders, folder)
    channels = channels or 3
    lists = {split: _files_and_labels(path, class_names) for split, path in folders.items()}
    for split, (files, _) in lists.items():
        if not files:
            raise ValueError(
                f"`dataset` {os.path.basename(folders[split])}/ folder has no images "
                f"({', '.join(IMAGE_EXTENSIONS)} files in class folders). "
                f"Received: dataset={folder!r}"
            )
    # Carved from train only when the folder is absent; salts keep the two draws apart.
    if "test" not in lists:
        lists["train"], lists["test"] = _carve(*lists["train"], test_fraction, seed, 1)
    if "validation" not in lists:
        rest, carved = _carve(*lists["train"], validation_fraction, seed, 2)
        lists["train"], lists["validation"] = rest, carved
    native = _native_hw(*lists["train"], channels)
    total = sum(len(files) for files, _ in lists.values())
    if native is not None and total * channels * int(np.prod(native)) <= _CACHE_BYTES:
        return _cached_source(lists, class_names, native, channels, folder)
    return _streamed_source(lists, class_names, native or target_hw, channels, seed)


def _cached_source(lists, class_names, hw, channels, folder) -> _Source:
    datasets, sizes = {}, {}
    for split, (files, labels) in lists.items():
        images, kept = _decode_all(files, labels, channels, hw)
        _warn_unreadable(len(files) - len(kept), len(files), folder)
        datasets[split] = tf.data.Dataset.from_tensor_slices((images, kept))
        sizes[split] = len(kept)
    if not sizes["train"]:
        raise ValueError(
            f"`dataset` folder has no readable training images. Received: dataset={folder!r}"
        )
    return _Source(
        **datasets,
        sizes=sizes,
        class_names=class_names,
        image_hw=hw,
        channels=channels,
        scale=255.0,
        flips=True,
        layout="split-folders (cached in memory)",
    )


def _streamed_source(lists, class_names, hw, channels, seed) -> _Source:
    """Decoded every epoch: file names shuffled (seeded, anew each epoch), decoded in parallel.

    Unreadable files are dropped where they are read; `sizes` counts files.
    """
    decode = _decoder(channels, None)

    def stream(files, labels, shuffle: bool) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices((tf.constant(files, tf.string), labels))
        if shuffle:
            ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()

    return _Source(
        train=stream(*lists["train"], shuffle=True),
        validation=stream(*lists["validation"], shuffle=False),
        test=stream(*lists["test"], shuffle=False),
        sizes={split: len(files) for split, (files, _) in lists.items()},
        class_names=class_names,
        image_hw=hw,
        channels=channels,
        scale=255.0,
        flips=True,
        train_is_shuffled=True,
        layout="split-folders (decoded every epoch)",
    )
