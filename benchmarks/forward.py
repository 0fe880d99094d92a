"""`forward`: ResNet50 / ResNet50V2 forward at batch 1 and 32 vs keras.applications.

Both models hold the same weights; each batch is timed through `predict_on_batch`
and through a `tf.function` (`models.FORWARD_CALLS`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks import timing
from benchmarks.common import Context, Settings, fmt_ratio, free, log
from benchmarks.models import FORWARD_CALLS, forward_call, model_pair


def section_forward(ctx: Context) -> dict[str, Any]:
    s = ctx.settings
    shape = (s.image_size, s.image_size, 3)
    rng = np.random.default_rng(0)
    images = rng.random((max(s.batches), *shape), dtype=np.float32)
    out: dict[str, Any] = {
        "image_size": s.image_size,
        "calls": FORWARD_CALLS,
        "weights": "random (keras.applications' initialisation), copied into keras_resnet",
        "models": {},
    }
    for name in s.forward_models:
        out["models"][name] = _forward_model(name, images, s)
        out["predict_jit_compile"] = out["models"][name].pop("predict_jit_compile")
        free()
    return out


def _forward_model(name: str, images: np.ndarray, s: Settings) -> dict[str, Any]:
    ours, ref = model_pair(name, input_shape=images.shape[1:])
    diff = np.abs(ours.predict_on_batch(images) - ref.predict_on_batch(images))
    out: dict[str, Any] = {
        "outputs_max_abs_diff": float(diff.max()),
        "predict_jit_compile": bool(ours.jit_compile),
    }
    for batch in s.batches:
        x = images[:batch]
        for mode in FORWARD_CALLS:
            record = timing.measure(
                forward_call(ours, x, mode),
                forward_call(ref, x, mode),
                reps=s.forward_reps,
                min_sample_seconds=s.min_sample_seconds,
                work=batch,
            )
            out.setdefault(f"batch_{batch}", {})[mode] = record
            log(
                f"forward {name} batch {batch} {mode}: "
                f"{record['ours_images_per_second']:.1f} vs "
                f"{record['reference_images_per_second']:.1f} images/s, "
                f"speed {fmt_ratio(record['speed_ratio'])}"
            )
    return out
