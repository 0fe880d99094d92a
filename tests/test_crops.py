"""keras_resnet.data.crops: RandomResizedCrop and resize + center crop, against definitions."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import math
import random

import numpy as np
import pytest
import tensorflow as tf

from keras_resnet.data import crops


def boxes(hw, n: int, start: int = 0) -> np.ndarray:
    """`n` boxes [top, left, h, w] for seeds (start, 0) ... (start + n - 1, 0)."""
    seeds = tf.stack([tf.range(start, start + n), tf.zeros(n, tf.int32)], axis=1)
    draw = tf.function(
        lambda s: tf.map_fn(
            lambda seed: crops.random_resized_crop_box(tf.constant(hw), seed),
            s,
            fn_output_signature=tf.int32,
        )
    )
    return draw(seeds).numpy()


def torchvision_box(height: int, width: int, rng: random.Random) -> tuple[int, int, int, int]:
    """torchvision.transforms.RandomResizedCrop.get_params, in Python with Python's RNG."""
    area = height * width
    log_ratio = (math.log(3 / 4), math.log(4 / 3))
    for _ in range(10):
        target_area = area * rng.uniform(0.08, 1.0)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    raise AssertionError("a 400 x 300 image always fits within 10 attempts here")


def test_boxes_follow_the_definition():
    """Inside the image, area fraction in [0.08, 1], aspect in [3/4, 4/3] (up to rounding
    to pixels), and distributed as torchvision's draws: large boxes of a skewed aspect do
    not fit and are drawn again, which pulls the mean area below 0.54."""
    hw = (300, 400)
    top, left, h, w = boxes(hw, 4000).T
    assert np.all((top >= 0) & (left >= 0) & (top + h <= hw[0]) & (left + w <= hw[1]))
    area = h * w / (hw[0] * hw[1])
    aspect = w / h
    assert area.min() >= 0.08 - 0.005 and area.max() <= 1.0
    assert aspect.min() >= 0.75 * 0.99 and aspect.max() <= 4 / 3 * 1.01
    rng = random.Random(0)
    ref = np.array([torchvision_box(*hw, rng) for _ in range(4000)]).T
    ref_area, ref_aspect = ref[2] * ref[3] / (hw[0] * hw[1]), ref[3] / ref[2]
    # 4000 draws each: quantiles of the area agree within ~3 standard errors (~0.01 each).
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        assert np.quantile(area, q) == pytest.approx(np.quantile(ref_area, q), abs=0.03)
        assert np.quantile(np.log(aspect), q) == pytest.approx(
            np.quantile(np.log(ref_aspect), q), abs=0.02
        )
    # Offsets uniform over the valid positions: the mean position is the middle.
    for offset, room in ((top, hw[0] - h), (left, hw[1] - w)):
        assert np.mean(offset / np.maximum(room, 1)) == pytest.approx(0.5, abs=0.02)


def test_the_fallback_is_a_center_crop_at_the_nearest_aspect():
    """No attempt fits a 4 x 400 strip: the whole height, width 4 * 4/3 = 5, centered."""
    top, left, h, w = boxes((4, 400), 20).T
    np.testing.assert_array_equal(h, 4)
    np.testing.assert_array_equal(w, 5)  # round(4 * 4/3)
    np.testing.assert_array_equal(top, 0)
    np.testing.assert_array_equal(left, (400 - 5) // 2)
    top, left, h, w = boxes((400, 4), 5).T
    np.testing.assert_array_equal(w, 4)
    np.testing.assert_array_equal(h, 5)  # round(4 / (3/4))
    np.testing.assert_array_equal(top, (400 - 5) // 2)


def test_a_crop_depends_on_its_seed_alone():
    image = tf.random.stateless_uniform([48, 64, 3], [1, 2])
    a = crops.random_resized_crop(image, (24, 24), tf.constant([7, 1]))
    b = crops.random_resized_crop(image, (24, 24), tf.constant([7, 1]))
    c = crops.random_resized_crop(image, (24, 24), tf.constant([8, 1]))
    assert a.shape == (24, 24, 3) and a.dtype == tf.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_the_crop_is_the_box_resized():
    image = tf.random.stateless_uniform([50, 70, 3], [3, 4], maxval=255)
    seed = tf.constant([5, 6])
    top, left, h, w = crops.random_resized_crop_box(tf.constant([50, 70]), seed).numpy()
    expected = tf.image.resize(image[top : top + h, left : left + w], (16, 16))
    np.testing.assert_allclose(crops.random_resized_crop(image, (16, 16), seed), expected)


def test_resize_center_crop():
    """300 x 400 for 224 at 0.875: shorter side to 256 (256 x 341), the center 224 x 224."""
    image = tf.random.stateless_uniform([300, 400, 3], [0, 1])
    resized = tf.image.resize(image, (256, 341))
    expected = resized[16:240, 58:282]
    np.testing.assert_allclose(crops.resize_center_crop(image, (224, 224)), expected)
    # An image already at size / 0.875 is only center-cropped.
    small = tf.random.stateless_uniform([36, 36, 1], [0, 2])
    np.testing.assert_allclose(
        crops.resize_center_crop(small, (32, 32), crop_fraction=32 / 36), small[2:34, 2:34]
    )
