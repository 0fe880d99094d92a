"""`gpu`: fp32 vs mixed_float16, XLA off vs on, forward and train step; skipped without a GPU."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks import timing
from benchmarks.common import Context, Settings, log
from benchmarks.models import compile_for_training, train_call


def _runners(s: Settings, x: np.ndarray, rng: np.random.Generator) -> dict[str, Callable]:
    """`forward <policy>[+xla]` and `train <policy>[+xla]` calls of `s.gpu_model`."""
    import keras

    import keras_resnet

    runners: dict[str, Callable[[], Any]] = {}
    previous = keras.config.dtype_policy()
    for policy in ("float32", "mixed_float16"):
        for xla in s.gpu_xla:
            keras.config.set_dtype_policy(policy)
            try:
                model = getattr(keras_resnet, s.gpu_model)(weights=None, input_shape=x.shape[1:])
            finally:
                keras.config.set_dtype_policy(previous)
            compile_for_training(model, jit_compile=xla)
            y = rng.integers(0, model.output_shape[-1], s.gpu_batch)
            key = f"{policy}{'+xla' if xla else ''}"
            runners[f"forward {key}"] = lambda m=model: m.predict_on_batch(x)
            runners[f"train {key}"] = train_call(model, x, y)
    return runners


def section_gpu(ctx: Context, *, require_gpu: bool = True) -> dict[str, Any]:
    """fp32 vs mixed_float16, XLA off vs on, forward and train step of keras_resnet.

    `require_gpu=False` runs it on whatever device TF picks (the tests do, on CPU).
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if require_gpu and not gpus:
        return {"skipped": "no GPU visible: tf.config.list_physical_devices('GPU') is empty"}
    s = ctx.settings
    shape = (s.gpu_image_size, s.gpu_image_size, 3)
    rng = np.random.default_rng(4)
    x = rng.random((s.gpu_batch, *shape), dtype=np.float32)
    runners = _runners(s, x, rng)
    for fn in runners.values():
        fn(), fn()
    keys = list(runners)
    samples: dict[str, list[float]] = {key: [] for key in keys}
    for rep in range(s.gpu_reps):
        for key in timing.rotated(keys, rep):
            samples[key].append(timing.time_calls(runners[key], 1))
    out: dict[str, Any] = {
        "devices": [g.name for g in gpus] or ["CPU (require_gpu=False)"],
        "model": s.gpu_model,
        "image_size": s.gpu_image_size,
        "batch": s.gpu_batch,
        "calls": "predict_on_batch / train_on_batch, compiled with jit_compile=False/True",
        "configs": {},
    }
    for key in keys:
        phase = key.split()[0]
        out["configs"][key] = {
            "seconds": timing.summary(samples[key]),
            "images_per_second": s.gpu_batch / np.median(samples[key]),
            "speedup_vs_float32": timing.speed_ratio(samples[key], samples[f"{phase} float32"]),
        }
        log(f"gpu {key}: {out['configs'][key]['images_per_second']:.1f} images/s")
    return out
