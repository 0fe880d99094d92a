"""`DataOptions`: how a dataset reference is read; the data keywords train, search and export share.

`load_dataset(..., channels=1)`, `train(..., channels=1, data_dir=...)`,
`search(..., image_size=16)` and `export_run(..., data_dir=...)` keep their keywords;
`load_dataset`, `train` and `search` take a whole one too (`data=DataOptions(...)`),
their keywords applying on top. Inside, they travel as one `DataOptions` to
`load_splits`, and are checked here, once, when it is made.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from keras_resnet._checks import check_choice, check_positive_int, is_int, is_number, received
from keras_resnet.constants import AUGMENTATIONS

LABEL_MODES = ("int", "categorical")
CHANNELS = (None, 1, 3)


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """The data keywords of `load_dataset`, `train`, `search` and `export_run`.

    Attributes:
        image_size: output ``(height, width)`` (an int means square); None keeps
            the native size, or `DEFAULT_IMAGE_SIZE` when the images have none.
        channels: ``1`` or ``3`` to convert images to grayscale / RGB; None
            keeps the native channels (folders are read as RGB).
        label_mode: ``"int"`` for sparse labels, ``"categorical"`` for one-hot.
        data_dir: TFDS data directory (None: TFDS' default); kept as a str.
        download: let TFDS download and prepare a missing dataset.
        augment: randomly translate or crop (and, where sensible, flip) training images.
        augmentation: which, when `augment`: ``"translate"`` (up to 12.5% of each side,
            on batches) or ``"random-resized-crop"`` (per image, `keras_resnet.data.crops`).
        eval_crop: evaluation's center-crop fraction (ImageNet's 0.875: resize the shorter
            side to size / 0.875, crop the center); None resizes the whole image.
        max_image_pixels: a folder holding an image whose header declares more pixels is
            refused before any is decoded (`keras_resnet.data.headers`); None: PIL's
            default limit (89,478,485).

    Example:
        >>> DataOptions(image_size=16, channels=1).hw
        (16, 16)
    """

    image_size: int | tuple[int, int] | None = None
    channels: int | None = None
    label_mode: str = "int"
    data_dir: str | None = None
    download: bool = False
    augment: bool = True
    augmentation: str = AUGMENTATIONS[0]
    eval_crop: float | None = None
    max_image_pixels: int | None = None

    def __post_init__(self) -> None:
        _image_hw(self.image_size)
        if self.channels not in CHANNELS:
            raise ValueError(
                f"`channels` must be None, 1 or 3. {received('channels', self.channels)}"
            )
        check_choice("label_mode", self.label_mode, LABEL_MODES)
        check_choice("augmentation", self.augmentation, AUGMENTATIONS)
        check_crop_fraction(self.eval_crop)
        check_positive_int("max_image_pixels", self.max_image_pixels, allow_none=True)
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))

    @property
    def hw(self) -> tuple[int, int] | None:
        """`image_size` as ``(height, width)``, or None."""
        return _image_hw(self.image_size)


def _image_hw(image_size: Any) -> tuple[int, int] | None:
    if image_size is None:
        return None
    hw = (image_size, image_size) if is_int(image_size) else image_size
    if (
        isinstance(hw, (tuple, list))
        and len(hw) == 2
        and all(is_int(side) and side > 0 for side in hw)
    ):
        return int(hw[0]), int(hw[1])
    raise ValueError(
        "`image_size` must be None, a positive integer or a (height, width) "
        f"pair of positive integers. {received('image_size', image_size)}"
    )


def check_crop_fraction(eval_crop: Any) -> None:
    """`eval_crop` is None or a fraction in (0, 1]."""
    if eval_crop is not None and not (is_number(eval_crop) and 0 < eval_crop <= 1):
        raise ValueError(
            f"`eval_crop` must be None or a number in (0, 1]. {received('eval_crop', eval_crop)}"
        )
