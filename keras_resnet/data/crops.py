"""ImageNet's crops for tf.data: RandomResizedCrop for training, resize + center crop to evaluate.

Written by hand because Keras 3.15 has no RandomResizedCrop (keras-team/keras#21822 is open)
and `tf.image.sample_distorted_bounding_box` draws boxes by another rule (min object
covered, up to 100 attempts, no log-uniform aspect). The rule here is torchvision's
`RandomResizedCrop.get_params` (Szegedy et al. 2015's "Inception" crop):

* up to 10 attempts: area fraction ``s ~ U(scale)``, aspect ``r = exp(U(log ratio))``,
  ``w = round(sqrt(s * H * W * r))``, ``h = round(sqrt(s * H * W / r))``; the first attempt
  with ``0 < w <= W`` and ``0 < h <= H`` is placed uniformly at random in the image;
* if none fits: the whole image, center-cropped to the nearest aspect inside `ratio`.

The crop is then resized (bilinear) to the output size. Boxes are drawn with stateless ops
from a per-image seed, so a crop depends on its seed alone (tests/test_crops.py).
"""

from __future__ import annotations

import math

import tensorflow as tf

RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)
RRC_ATTEMPTS = 10
EVAL_CROP_FRACTION = 0.875
"""ImageNet evaluation: resize the shorter side to size / 0.875 (256 for 224), center crop."""


def random_resized_crop_box(
    image_hw: tf.Tensor,
    seed: tf.Tensor,
    scale: tuple[float, float] = RRC_SCALE,
    ratio: tuple[float, float] = RRC_RATIO,
) -> tf.Tensor:
    """``[top, left, height, width]`` (int32) of one RandomResizedCrop box in an image of
    ``image_hw`` = ``[H, W]``; `seed` is a shape ``[2]`` integer tensor.

    Example:
        >>> box = random_resized_crop_box(tf.constant([32, 32]), tf.constant([0, 1]))
        >>> bool(tf.reduce_all(box[2:] > 0))
        True
    """
    hw = tf.cast(image_hw, tf.float32)
    area = hw[0] * hw[1]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    target = area * tf.random.stateless_uniform([RRC_ATTEMPTS], seeds[0], scale[0], scale[1])
    log_r = tf.random.stateless_uniform(
        [RRC_ATTEMPTS], seeds[1], math.log(ratio[0]), math.log(ratio[1])
    )
    aspect = tf.exp(log_r)
    # Python's round (torchvision's) is half-to-even, as tf.round.
    w = tf.round(tf.sqrt(target * aspect))
    h = tf.round(tf.sqrt(target / aspect))
    fits = (w > 0) & (w <= hw[1]) & (h > 0) & (h <= hw[0])
    first = tf.argmax(tf.cast(fits, tf.int32))
    fallback_h, fallback_w = _fallback_hw(hw, ratio)
    any_fits = tf.reduce_any(fits)
    h = tf.where(any_fits, h[first], fallback_h)
    w = tf.where(any_fits, w[first], fallback_w)
    # torch.randint(0, H - h + 1): uniform over the valid offsets.
    unit = tf.random.stateless_uniform([2], seeds[2])
    top = tf.where(any_fits, tf.floor(unit[0] * (hw[0] - h + 1)), tf.floor((hw[0] - h) / 2))
    left = tf.where(any_fits, tf.floor(unit[1] * (hw[1] - w + 1)), tf.floor((hw[1] - w) / 2))
    return tf.cast(tf.stack([top, left, h, w]), tf.int32)


def _fallback_hw(hw: tf.Tensor, ratio: tuple[float, float]) -> tuple[tf.Tensor, tf.Tensor]:
    """The whole image, cut to the nearest aspect in `ratio` (torchvision's fallback)."""
    in_ratio = hw[1] / hw[0]
    h = tf.where(in_ratio < ratio[0], tf.round(hw[1] / ratio[0]), hw[0])
    w = tf.where(in_ratio > ratio[1], tf.round(hw[0] * ratio[1]), hw[1])
    return h, w


def random_resized_crop(
    image: tf.Tensor,
    size: tuple[int, int],
    seed: tf.Tensor,
    scale: tuple[float, float] = RRC_SCALE,
    ratio: tuple[float, float] = RRC_RATIO,
) -> tf.Tensor:
    """One image ``(H, W, C)`` -> a RandomResizedCrop of it, float32 ``(*size, C)``.

    Example:
        >>> crop = random_resized_crop(tf.zeros([40, 60, 3]), (32, 32), tf.constant([1, 2]))
        >>> crop.shape
        TensorShape([32, 32, 3])
    """
    box = random_resized_crop_box(tf.shape(image)[:2], seed, scale, ratio)
    crop = tf.image.crop_to_bounding_box(image, box[0], box[1], box[2], box[3])
    return tf.image.resize(tf.cast(crop, tf.float32), size)


def resize_center_crop(
    image: tf.Tensor, size: tuple[int, int], crop_fraction: float = EVAL_CROP_FRACTION
) -> tf.Tensor:
    """Resize so the crop `size` is `crop_fraction` of the shorter side, then center crop.

    timm's evaluation transform: 224 / 0.875 = 256 on the shorter side, then 224 x 224.

    Example:
        >>> resize_center_crop(tf.zeros([300, 400, 3]), (224, 224)).shape
        TensorShape([224, 224, 3])
    """
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    side = math.floor(max(size) / crop_fraction)
    factor = side / tf.reduce_min(hw)
    resized_hw = tf.maximum(tf.cast(tf.round(hw * factor), tf.int32), size)
    resized = tf.image.resize(tf.cast(image, tf.float32), resized_hw)
    top = (resized_hw[0] - size[0]) // 2
    left = (resized_hw[1] - size[1]) // 2
    return tf.image.crop_to_bounding_box(resized, top, left, size[0], size[1])
