"""A local folder with one subfolder of images per class (Keras' folder loader)."""

from __future__ import annotations

import contextlib
import io
import os
import warnings

import keras
import tensorflow as tf

from keras_resnet.data.base import _MAX_LISTED_FILES, DEFAULT_IMAGE_SIZE, IMAGE_EXTENSIONS, _Source


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


def _class_names(directory: str, folder: str) -> list[str]:
    """Visible subfolders are classes (Keras' indexing rule); at least two."""
    names = [
        entry
        for entry in sorted(os.listdir(directory))
        if not entry.startswith(".") and os.path.isdir(os.path.join(directory, entry))
    ]
    if len(names) < 2:
        found = f"only {names[0]!r}" if names else "none"
        raise ValueError(
            "`dataset` folder needs at least two class subfolders (one subfolder of images "
            f"per class); it has {found}. Received: dataset={folder!r}"
        )
    return names


def _image_files(directory: str, class_names: list[str], folder: str) -> list[str]:
    """Every file of an image type under the class subfolders (searched recursively)."""
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
    return files


def _readable_shapes(
    files: list[str], channels: int, directory: str, folder: str
) -> dict[str, tuple[int, int, int]]:
    """The decodable files' shapes; none readable is an error, some unreadable a warning."""
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
            stacklevel=4,
        )
    return shapes


def _check_enough_images(n: int, validation_fraction: float, test_fraction: float, folder: str):
    needed = _images_needed(validation_fraction, test_fraction)
    if n < needed:
        raise ValueError(
            f"`dataset` folder has {n} images; splitting off "
            f"validation_fraction={validation_fraction} and test_fraction={test_fraction} "
            f"with at least one image each (and one to train on) needs at least {needed}. "
            f"Received: dataset={folder!r}"
        )


def _keras_split(directory: str, held_out: float, options: dict) -> tuple:
    """Keras' seeded file shuffle: (train, held-out tail, its file paths)."""
    # verbose=False does not silence Keras' "Using N files for validation",
    # which would be wrong here: that tail is split again by the caller.
    with contextlib.redirect_stdout(io.StringIO()):
        if not held_out:
            train = keras.utils.image_dataset_from_directory(directory, **options)
            return train, train.take(0), []
        # The held-out tail is kept in file order, to be cut into validation and test.
        train, held = keras.utils.image_dataset_from_directory(
            directory, validation_split=held_out, subset="both", **options
        )
        return train, held, held.file_paths


def _folder_source(
    folder: str,
    target_hw: tuple[int, int] | None,
    channels: int | None,
    seed: int,
    validation_fraction: float,
    test_fraction: float,
) -> _Source:
    directory = os.path.abspath(os.path.expanduser(folder))
    class_names = _class_names(directory, folder)
    files = _image_files(directory, class_names, folder)
    channels = channels or 3
    shapes = _readable_shapes(files, channels, directory, folder)
    if target_hw is None:
        native_sizes = {shape[:2] for shape in shapes.values()}
        target_hw = native_sizes.pop() if len(native_sizes) == 1 else DEFAULT_IMAGE_SIZE
    _check_enough_images(len(files), validation_fraction, test_fraction, folder)
    held_out = validation_fraction + test_fraction
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
    train, held, held_paths = _keras_split(directory, held_out, options)
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
