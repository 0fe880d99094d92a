"""scikit-learn's bundled 8x8 digits: the offline dataset (1,797 real images, 10 classes)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_resnet.data.base import _flips_allowed, _Source


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
