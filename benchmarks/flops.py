"""`flops`: ResNet50 forward GFLOP/s at batch 32 against the measured fp32 matmul rate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks import timing
from benchmarks.common import Context, Settings, fmt_ratio, log


def count_flops(model) -> int:
    """Forward FLOPs per image: 2 x the multiply-accumulates of every Conv2D and Dense.

    Batch norm, bias, activations, additions and pooling are left out (they add
    about 0.5% for ResNet50, which the TF profiler's count includes: the `flops`
    section records both). Keras' ResNet50 at 224x224: 7.716 GFLOPs (3.86 GMACs;
    its v1 strides in the first 1x1 conv, hence below the 4.1 GMACs of v1.5).
    """
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw, c_in_per_group, _ = layer.kernel.shape
            total += 2 * h * w * c_out * kh * kw * c_in_per_group
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
    return int(total)


def profiler_flops(model) -> int:
    """The TF profiler's float-op count of one image's forward graph (frozen)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    graph = convert_variables_to_constants_v2(concrete).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops)


def _samples(model, s: Settings) -> dict[str, list[float]]:
    """Seconds per call of ResNet50 at `flops_batch` and of each matmul size, in rotation."""
    import tensorflow as tf

    x = np.random.default_rng(2).random((s.flops_batch, *model.input_shape[1:]), np.float32)
    # A sum of the product keeps the result on the device until it is complete (a GPU
    # runs asynchronously) for n^2 extra additions against 2n^3 multiply-adds.
    matmul = tf.function(lambda a, b: tf.reduce_sum(tf.linalg.matmul(a, b)))
    runners: dict[str, Callable[[], Any]] = {"resnet50": lambda: model.predict_on_batch(x)}
    for n in s.matmul_sizes:
        a = tf.random.normal((n, n), seed=n)
        b = tf.random.normal((n, n), seed=n + 1)
        runners[f"matmul_{n}"] = lambda a=a, b=b: matmul(a, b).numpy()
    calls = {}
    for key, fn in runners.items():
        fn(), fn()
        calls[key] = timing.calls_for(fn, s.min_sample_seconds)
    samples: dict[str, list[float]] = {key: [] for key in runners}
    keys = list(runners)
    for rep in range(s.flops_reps):
        for key in timing.rotated(keys, rep):
            samples[key].append(timing.time_calls(runners[key], calls[key]))
    return samples


def section_flops(ctx: Context) -> dict[str, Any]:
    import keras_resnet

    s = ctx.settings
    model = keras_resnet.ResNet50(weights=None, input_shape=(s.image_size, s.image_size, 3))
    flops = count_flops(model)
    samples = _samples(model, s)
    matmuls = {}
    for n in s.matmul_sizes:
        seconds = samples[f"matmul_{n}"]
        matmuls[str(n)] = {
            "seconds": timing.summary(seconds),
            "gflops": 2 * n**3 / np.median(seconds) / 1e9,
        }
    best = max(s.matmul_sizes, key=lambda n: matmuls[str(n)]["gflops"])
    forward_gflops = flops * s.flops_batch / np.median(samples["resnet50"]) / 1e9
    # fraction = (F / t_forward) / (M / t_matmul): the speed ratio of the two timings, scaled.
    scaled = timing.speed_ratio(samples["resnet50"], samples[f"matmul_{best}"])
    scale = flops * s.flops_batch / (2 * best**3)
    fraction = {
        "ratio": scaled["ratio"] * scale,
        "ci95": [c * scale for c in scaled["ci95"]] if scaled["ci95"] else None,
    }
    try:
        profiled: int | None = profiler_flops(model)
    except Exception as e:  # the v1 profiler is best effort: the analytic count stands
        profiled, reason = None, f"{type(e).__name__}: {e}"
    log(
        f"flops: ResNet50 {forward_gflops:.1f} GFLOP/s at batch {s.flops_batch}, matmul "
        f"{matmuls[str(best)]['gflops']:.1f} GFLOP/s (n={best}), fraction {fmt_ratio(fraction)}"
    )
    out = {
        "image_size": s.image_size,
        "batch": s.flops_batch,
        "flops_per_image": flops,
        "flops_counted": "2 x MACs of Conv2D and Dense layers (count_flops)",
        "profiler_flops_per_image": profiled,
        "resnet50_call": "predict_on_batch",
        "resnet50_seconds": timing.summary(samples["resnet50"]),
        "resnet50_gflops": forward_gflops,
        "matmul": matmuls,
        "matmul_what": "tf.linalg.matmul of two n x n float32 matrices in a tf.function",
        "matmul_best_n": best,
        "matmul_best_gflops": matmuls[str(best)]["gflops"],
        "fraction_of_matmul": fraction,
    }
    if profiled is None:
        out["profiler_note"] = reason
    return out
