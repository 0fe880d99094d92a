"""`train`: the ResNet50 train step (`train_on_batch`, batch 16, SGD) vs keras.applications."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks import timing
from benchmarks.common import Context, fmt_ratio, log
from benchmarks.models import (
    TRAIN_LOSS,
    TRAIN_OPTIMIZER,
    compile_for_training,
    model_pair,
    train_call,
)


def section_train(ctx: Context) -> dict[str, Any]:
    s = ctx.settings
    shape = (s.image_size, s.image_size, 3)
    ours, ref = model_pair("ResNet50", input_shape=shape)
    for model in (ours, ref):
        compile_for_training(model)
    rng = np.random.default_rng(1)
    x = rng.random((s.train_batch, *shape), dtype=np.float32)
    y = rng.integers(0, 1000, s.train_batch)
    record = timing.measure(
        train_call(ours, x, y), train_call(ref, x, y), reps=s.train_reps, work=s.train_batch
    )
    log(
        f"train ResNet50 batch {s.train_batch}: {record['ours_images_per_second']:.2f} vs "
        f"{record['reference_images_per_second']:.2f} images/s, "
        f"speed {fmt_ratio(record['speed_ratio'])}"
    )
    return {
        "model": "ResNet50",
        "image_size": s.image_size,
        "batch": s.train_batch,
        "call": "model.train_on_batch (Keras' compiled train function, what fit() runs)",
        "optimizer": TRAIN_OPTIMIZER,
        "loss": TRAIN_LOSS,
        "comparison": record,
    }
