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
