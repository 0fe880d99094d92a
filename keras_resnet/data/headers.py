"""Image sizes read from file headers, before any image of a folder is decoded.

`tf.io.decode_image` allocates height x width x channels for whatever a header claims: a
few hundred bytes of PNG can ask for gigabytes. `check_folder_images` reads every image
file's header and refuses the first one over the pixel limit with one line
(`keras_resnet._limits`), before the folder's images are probed or decoded. The formats
are the folder loader's (`IMAGE_EXTENSIONS`). The fields are read here because the
libraries' readers (PIL's `Image.open`, `tf.image.extract_jpeg_shape`) cost about as much
as the decode they guard (measured on CIFAR-10's JPEGs: the commit that added this module).
"""

from __future__ import annotations

import os

from keras_resnet._limits import default_max_image_pixels, too_many_pixels
from keras_resnet.data.base import IMAGE_EXTENSIONS

_FIRST_READ = 64 * 1024  # a JPEG's segments before its frame header rarely pass 64 KiB
# JPEG start-of-frame markers (C0-CF but C4 DHT, C8 JPG, CC DAC): height and width follow.
_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_hw(f, head: bytes) -> tuple[int, int] | None:
    """Walks the segments to the frame header, as libjpeg does."""
    data, i = head, 2
    while True:
        while i + 9 > len(data):
            more = f.read(_FIRST_READ)
            if not more:
                return None
            data += more
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker in _SOF:
            return int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(
                data[i + 7 : i + 9], "big"
            )
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length field
            i += 2
        else:
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")


def header_hw(path: str | os.PathLike) -> tuple[int, int] | None:
    """(height, width) an image file's header declares; None for a header not understood."""
    with open(path, "rb") as f:
        head = f.read(_FIRST_READ)
        if head[:2] == b"\xff\xd8":
            return _jpeg_hw(f, head)
    if len(head) < 26:
        return None
    if head[:4] == b"\x89PNG":  # IHDR: width, height, big-endian
        return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
    if head[:4] == b"GIF8":  # logical screen: width, height, little-endian
        return int.from_bytes(head[8:10], "little"), int.from_bytes(head[6:8], "little")
    if head[:2] == b"BM":  # BITMAPINFOHEADER: width, height (negative: top-down)
        height = int.from_bytes(head[22:26], "little", signed=True)
        return abs(height), int.from_bytes(head[18:22], "little", signed=True)
    return None


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
    if not max_pixels:
        return
    for path in image_files(directory):
        try:
            hw = header_hw(path)
        except OSError:
            continue
        if hw and hw[0] * hw[1] > max_pixels:
            raise too_many_pixels("dataset", folder, f"holds {path}, ", hw, max_pixels)
