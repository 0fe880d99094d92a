"""Every file a user hands the package is sized up before it is decoded.

A few hundred bytes can stand for gigabytes once decoded: a 30000x30000 PNG
(PIL refuses it only at decode time, with a DecompressionBombError that is no
OSError), a zip whose members inflate a thousandfold, a safetensors header that
claims a terabyte. Each check reads only a header or a listing, and a file over
its limit is one ValueError naming the argument, the file and the limit (the
CLI prints it as one line, exit 2) before anything is decoded or written.

The limits are the ecosystem's where it has one: PIL's `MAX_IMAGE_PIXELS` for
images, the `safetensors` package's own 100 MB header bound. The others are
far above anything keras_resnet writes: a ResNet152 `.keras` file with its
optimizer is under 1 GB, a run.json or manifest a few kB.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

MAX_JSON_BYTES = 16 * 2**20
MAX_ARCHIVE_BYTES = 16 * 2**30  # a .keras archive, its members inflated
MAX_ARCHIVE_RATIO = 200  # inflated / stored, per member: Keras' own files are near 1
MAX_SAFETENSORS_HEADER = 100_000_000  # safetensors' MAX_HEADER_SIZE


def default_max_image_pixels() -> int:
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS or 0


def over_limit(arg: str, value: os.PathLike | str, what: str, limit: str) -> ValueError:
    """The one error form: "`arg` <what>, over the limit of <limit>. Received: arg=value"."""
    return ValueError(
        f"`{arg}` {what}, over the limit of {limit}. Received: {arg}={os.fspath(value)!r}"
    )


def too_many_pixels(
    arg: str, value: os.PathLike | str, where: str, hw: tuple[int, int], max_pixels: int
) -> ValueError:
    """An image over the pixel limit: `where` names it ("file X is ", "holds X, ")."""
    height, width = hw
    return over_limit(
        arg,
        value,
        f"{where}{width}x{height} = {width * height:,} pixels",
        f"{max_pixels:,} (raise it with max_image_pixels, --max-image-pixels)",
    )


def _over(arg: str, path: os.PathLike | str, what: str, limit: str) -> ValueError:
    return over_limit(arg, path, f"file {os.fspath(path)} {what}", limit)


def check_json_file(path: str | os.PathLike, arg: str) -> None:
    size = _size(path)
    if size > MAX_JSON_BYTES:
        raise _over(arg, path, f"is {size:,} bytes", f"{MAX_JSON_BYTES:,} bytes for JSON")


def _size(path: str | os.PathLike) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0  # missing: the reader says so in its own words


@contextlib.contextmanager
def pil_pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """PIL's decompression-bomb limit set to `max_pixels` (None: none) within the block.

    PIL raises DecompressionBombError only above twice its limit and warns between;
    `check_image` has already applied ours, so PIL's is lifted to match it.
    """
    from PIL import Image

    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def check_image(path: str | os.PathLike, max_pixels: int | None, arg: str) -> None:
    """The image's size from its header (no pixel decoded) against `max_pixels` (None: any).

    A file PIL cannot identify is left to the reader's own message.
    """
    from PIL import Image, UnidentifiedImageError

    if max_pixels is None:
        return
    try:
        with pil_pixel_limit(None), Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError, ValueError):
        return
    if width * height > max_pixels:
        raise too_many_pixels(arg, path, f"file {os.fspath(path)} is ", (height, width), max_pixels)


def check_keras_archive(path: str | os.PathLike, arg: str) -> None:
    """A `.keras` zip's listing: members inflating past MAX_ARCHIVE_BYTES in all, or one
    inflating more than MAX_ARCHIVE_RATIO times its stored size, is refused unread."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return  # not a zip: the loader says so in its own words
    total = sum(m.file_size for m in members)
    if total > MAX_ARCHIVE_BYTES:
        raise _over(arg, path, f"inflates to {total:,} bytes", f"{MAX_ARCHIVE_BYTES:,}")
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > 2**20 and ratio > MAX_ARCHIVE_RATIO:
            raise _over(
                arg,
                path,
                f"has a member ({member.filename}) inflating {ratio:,.0f} times",
                f"{MAX_ARCHIVE_RATIO} times",
            )


def check_safetensors(path: str | os.PathLike, arg: str) -> None:
    """The header length a `.safetensors` file declares (its first 8 bytes) against the
    file's size (not a safetensors file) and the package's own bound."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return
    if len(head) < 8:
        return  # the reader reports the broken file
    declared = int.from_bytes(head, "little")
    size = path.stat().st_size
    if declared + 8 > size:
        raise ValueError(
            f"Not a readable .safetensors file (its first 8 bytes declare a {declared:,}-byte "
            f"header in a {size:,}-byte file). Received: {arg}={os.fspath(path)!r}"
        )
    if declared > MAX_SAFETENSORS_HEADER:
        raise _over(
            arg,
            path,
            f"declares a {declared:,}-byte header",
            f"{MAX_SAFETENSORS_HEADER:,} (safetensors' own)",
        )
