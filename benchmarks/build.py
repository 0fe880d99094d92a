"""`build`: seconds to build ResNet50 / ResNet152, keras_resnet vs keras.applications."""

from __future__ import annotations

from typing import Any

from benchmarks import timing
from benchmarks.common import Context, fmt_ratio, free, log


def section_build(ctx: Context) -> dict[str, Any]:
    import keras

    import keras_resnet

    s = ctx.settings
    out: dict[str, Any] = {
        "what": "seconds to build the model with weights=None (random initialisation)",
        "models": {},
    }
    for name in s.build_models:
        ours = getattr(keras_resnet, name)
        ref = getattr(keras.applications, name)
        for fn in (ours, ref):  # warm-up: first-use imports and caches
            fn(weights=None)
            free()
        a, b = timing.interleave(
            lambda ours=ours: ours(weights=None),
            lambda ref=ref: ref(weights=None),
            reps=s.build_reps,
            before=free,
        )
        out["models"][name] = record = timing.compare(a, b)
        log(
            f"build {name}: {record['ours_seconds']['median']:.3f} s vs "
            f"{record['reference_seconds']['median']:.3f} s, "
            f"speed {fmt_ratio(record['speed_ratio'])}"
        )
    return out
