"""Image sizes read from file headers in TensorFlow, before any image of a folder is decoded.

`tf.io.decode_image` allocates height x width x channels for whatever a header claims: a
few hundred bytes of PNG can ask for gigabytes. `check_folder_images` reads every image
file's header (in parallel, in a tf.data map) and refuses the first one over the pixel
limit with one line (`keras_resnet._limits`), before the folder's images are probed or
decoded. The formats are the folder loader's (`IMAGE_EXTENSIONS`): JPEG through
TensorFlow's own `extract_jpeg_shape`; PNG, GIF and BMP from their fixed header fields,
written here because TensorFlow has no header-only reader for them.
"""

from __future__ import annotations

import os

import tensorflow as tf

from keras_resnet._limits import default_max_image_pixels, over_limit
from keras_resnet.data.base import IMAGE_EXTENSIONS

_HEAD = 32  # bytes: every header field read below lies within them


def _unsigned(head: tf.Tensor, start: int, size: int, big_endian: bool) -> tf.Tensor:
    order = range(size) if big_endian else reversed(range(size))
    value = tf.constant(0, tf.int64)
    for i in order:
        value = value * 256 + head[start + i]
    return value


def header_hw(contents: tf.Tensor) -> tf.Tensor:
    """(height, width) an image file's header declares, int64; (-1, -1) for a format not read."""
    padded = tf.strings.substr(contents, 0, _HEAD) + b"\0" * _HEAD
    head = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 0, _HEAD), tf.uint8), tf.int64)
    prefix4 = tf.strings.substr(contents, 0, 4)

    def png():  # IHDR: width, height, big-endian, at bytes 16 and 20
        return tf.stack([_unsigned(head, 20, 4, True), _unsigned(head, 16, 4, True)])

    def gif():  # logical screen: width, height, little-endian, at bytes 6 and 8
        return tf.stack([_unsigned(head, 8, 2, False), _unsigned(head, 6, 2, False)])

    def bmp():  # BITMAPINFOHEADER: width, height (negative: top-down), at 18 and 22
        width, height = _unsigned(head, 18, 4, False), _unsigned(head, 22, 4, False)
        height = tf.where(height >= 2**31, 2**32 - height, height)
        return tf.stack([height, width])

    def jpeg():
        return tf.cast(tf.image.extract_jpeg_shape(contents)[:2], tf.int64)

    return tf.case(
        [
            (tf.io.is_jpeg(contents), jpeg),
            (tf.equal(prefix4, b"\x89PNG"), png),
            (tf.equal(prefix4, b"GIF8"), gif),
            (tf.equal(tf.strings.substr(contents, 0, 2), b"BM"), bmp),
        ],
        default=lambda: tf.constant([-1, -1], tf.int64),
        exclusive=False,
    )


def image_files(directory: str) -> list[str]:
    """Every file of an image type under `directory`, sorted."""
    found = []
    for root, _, names in os.walk(directory):
        found += [os.path.join(root, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(found)


def check_folder_images(directory: str, max_pixels: int | None, folder: str) -> None:
    """Refuses (one ValueError naming `dataset`) the first image under `directory` whose
    header declares more than `max_pixels` (None: PIL's default limit). A file whose header
    cannot be read is left to the loader, which skips unreadable files with a warning."""
    max_pixels = max_pixels or default_max_image_pixels()
    files = image_files(directory)
    if not files or not max_pixels:
        return

    def size(index, path):
        return index, header_hw(tf.io.read_file(path))

    over = (
        tf.data.Dataset.from_tensor_slices((tf.range(len(files), dtype=tf.int64), files))
        .map(size, num_parallel_calls=tf.data.AUTOTUNE)
        .ignore_errors()
        .filter(lambda index, hw: hw[0] * hw[1] > max_pixels)
        .take(1)
    )
    for index, (height, width) in over.as_numpy_iterator():
        raise over_limit(
            "dataset",
            folder,
            f"holds {files[index]}, {width}x{height} = {width * height:,} pixels",
            f"{max_pixels:,} (raise it with max_image_pixels, --max-image-pixels)",
        )
