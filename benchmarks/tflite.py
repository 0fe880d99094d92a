"""`tflite`: batch-1 latency of every `keras_resnet.export` TFLite variant, against each other
and against Keras, for ResNet50 and the ResNet-20 the `digits` section trained; then fp32
against int8 on one thread with and without XNNPACK."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks import timing
from benchmarks.common import Context, Settings, fmt_ratio, free, log
from benchmarks.models import forward_call
from keras_resnet.timing import latency

# How the rounds time Keras on one image (the keys of the results' *_latency_ms figures).
KERAS_CALLS = {"keras": "predict_on_batch", "keras_tf_function": "tf.function"}


def section_tflite(ctx: Context) -> dict[str, Any]:
    s = ctx.settings
    threads = os.cpu_count() or 1
    out: dict[str, Any] = {
        "num_threads": threads,
        "batch": 1,
        "keras_calls": (
            "keras: predict_on_batch on one numpy image (the default); keras_tf_function: "
            "tf.function(lambda x: model(x, training=False)) on a tf.constant; a round's "
            "figure is the per-call median"
        ),
        "what": (
            f"{s.tflite_rounds} rounds, the order of Keras and the variants rotating each "
            f"round; a round's figure is the median of {s.tflite_runs} samples of "
            "keras_resnet.timing.latency, each as many invocations as last "
            f"{s.min_sample_seconds / s.tflite_runs:g} s (runs_per_round: invocations in all); "
            "reported: the median over rounds"
        ),
        "models": {},
    }
    for name in s.tflite_models:
        out["models"][name] = _tflite_model(name, ctx, threads)
        out["runtime"] = out["models"][name].pop("runtime")
        free()
    return out


# --- what a row converts, calibrates and compares on ----------------------------------------


def _tflite_subject(name: str, ctx: Context) -> dict[str, Any]:
    """The Keras model, calibration and evaluation data of one TFLite row."""
    return _digits_subject(ctx) if name == "ResNet20" else _random_subject(name, ctx.settings)


def _digits_subject(ctx: Context) -> dict[str, Any]:
    """ResNet-20 as the demo trains it (the `digits` section's model), on the digits splits."""
    import keras

    import keras_resnet
    from keras_resnet.constants import DEMO_IMAGE_SIZE
    from keras_resnet.data import load_dataset

    s = ctx.settings
    splits = load_dataset(
        "digits", image_size=DEMO_IMAGE_SIZE, channels=1, augment=False, batch_size=256
    )
    train_images = np.concatenate([x for x, _ in splits.train.as_numpy_iterator()])
    test = [(x, y) for x, y in splits.test.as_numpy_iterator()]
    images = np.concatenate([x for x, _ in test])
    labels = np.concatenate([y for _, y in test])
    if s.quick:
        images, labels = images[: s.eval_images], labels[: s.eval_images]
    if ctx.digits_model is not None and ctx.digits_model.exists():
        model = keras.saving.load_model(ctx.digits_model)
        weights = "trained: the best.keras of this run's digits section"
    else:
        model = keras_resnet.ResNet20(input_shape=(DEMO_IMAGE_SIZE, DEMO_IMAGE_SIZE, 1), classes=10)
        weights = "random initialisation (the digits section did not run)"
    return {
        "model": model,
        "representative": train_images[: s.representative_images],
        "images": images,
        "labels": labels,
        "weights": weights,
        "representative_what": f"the first {s.representative_images} digits train images",
        "eval_what": "digits test split" + (" (first images; quick mode)" if s.quick else ""),
    }


def _random_subject(name: str, s: Settings) -> dict[str, Any]:
    """An ImageNet-sized keras_resnet model with random weights, on random images."""
    import keras_resnet

    rng = np.random.default_rng(3)
    shape = (s.image_size, s.image_size, 3)
    model = getattr(keras_resnet, name)(weights=None, input_shape=shape)

    def model_ready(n: int) -> np.ndarray:
        pixels = rng.uniform(0, 255, (n, *shape)).astype(np.float32)
        return keras_resnet.preprocess_input(pixels)

    return {
        "model": model,
        "representative": model_ready(s.representative_images),
        "images": model_ready(s.eval_images),
        "labels": None,
        "weights": "random initialisation (latency does not depend on the weights)",
        "representative_what": (
            f"{s.representative_images} uniform random images through preprocess_input"
        ),
        "eval_what": f"{s.eval_images} uniform random images through preprocess_input",
    }


# --- one model: convert, time in rotating rounds, ratios --------------------------------------


def _tflite_model(name: str, ctx: Context, threads: int) -> dict[str, Any]:
    s = ctx.settings
    subject = _tflite_subject(name, ctx)
    model, images, labels = subject["model"], subject["images"], subject["labels"]
    keras_outputs = model.predict(images, batch_size=32, verbose=0)
    out: dict[str, Any] = {
        "input_shape": list(model.input_shape[1:]),
        "weights": subject["weights"],
        "representative_data": subject["representative_what"],
        "eval_data": subject["eval_what"],
    }
    if labels is not None:
        out["keras_accuracy"] = float(np.mean(keras_outputs.argmax(-1) == labels))
    contents, variants = _convert_variants(name, subject, keras_outputs, threads)
    keras_calls = {key: forward_call(model, images[:1], call) for key, call in KERAS_CALLS.items()}
    # A round is `tflite_runs` samples of the library's timing policy, each sized to last
    # min_sample_seconds / tflite_runs (20 calls of a 0.15 ms model are too few to time).
    policy = {"min_sample_seconds": s.min_sample_seconds / s.tflite_runs}
    rounds, out["runs_per_round"], out["runtime"] = _latency_rounds(
        keras_calls, contents, s, threads, policy
    )
    out["keras_latency_ms"] = timing.summary(rounds["keras"])
    out["keras_tf_function_latency_ms"] = timing.summary(rounds["keras_tf_function"])
    for variant, record in variants.items():
        _add_speedups(record, rounds, variant)
        log(
            f"tflite {name} {variant}: {np.median(rounds[variant]):.2f} ms, vs fp32 "
            f"{fmt_ratio(record['speedup_vs_fp32'])}, vs Keras "
            f"{fmt_ratio(record['speedup_vs_keras'])} (predict_on_batch), "
            f"{fmt_ratio(record['speedup_vs_keras_tf_function'])} (tf.function)"
        )
    out["variants"] = variants
    out["kernels_1_thread"] = _tflite_kernels(contents, s, policy)
    return out


def _convert_variants(
    name: str, subject: dict[str, Any], keras_outputs: np.ndarray, threads: int
) -> tuple[dict[str, bytes], dict[str, dict[str, Any]]]:
    """Every variant's flatbuffer, and its size, conversion time and agreement with Keras."""
    from keras_resnet import export

    images, labels = subject["images"], subject["labels"]
    contents, variants = {}, {}
    for variant in export.TFLITE_VARIANTS:
        start = time.perf_counter()
        content = export.convert_tflite(
            subject["model"],
            variant,
            representative_data=subject["representative"] if variant == "int8" else None,
        )
        convert_seconds = time.perf_counter() - start
        outputs = export.run_tflite(content, images, num_threads=threads)
        contents[variant] = content
        variants[variant] = record = {
            "size_bytes": len(content),
            "convert_seconds": convert_seconds,
            "top1_agreement_with_keras": float(
                np.mean(outputs.argmax(-1) == keras_outputs.argmax(-1))
            ),
            "max_abs_diff_vs_keras": float(np.abs(outputs - keras_outputs).max()),
        }
        if labels is not None:
            record["accuracy"] = float(np.mean(outputs.argmax(-1) == labels))
        log(
            f"tflite {name} {variant}: converted in {convert_seconds:.1f} s, "
            f"{len(content) / 1e6:.2f} MB"
        )
    return contents, variants


def _latency_rounds(
    keras_calls: dict[str, Callable[[], Any]],
    contents: dict[str, bytes],
    s: Settings,
    threads: int,
    policy: dict[str, float],
) -> tuple[dict[str, list[float]], dict[str, int], str]:
    """Keras and every variant in rotating order: per key the round medians (ms), the
    invocations of one round (a warm-up round counts them) and the LiteRT runtime."""
    from keras_resnet import export

    runtime = ""

    def one_round(key: str) -> dict[str, Any]:
        nonlocal runtime
        if key in keras_calls:
            return latency(keras_calls[key], samples=s.tflite_runs, warmup=0, **policy)
        result = export.tflite_latency(
            contents[key], runs=s.tflite_runs, warmup=3, num_threads=threads, **policy
        )
        runtime = result["runtime"]
        return result

    order = [*keras_calls, *export.TFLITE_VARIANTS]
    runs_per_round = {key: one_round(key)["runs"] for key in order}
    rounds: dict[str, list[float]] = {key: [] for key in order}
    for r in range(s.tflite_rounds):
        for key in timing.rotated(order, r):
            rounds[key].append(one_round(key)["median_ms"])
    return rounds, runs_per_round, runtime


def _add_speedups(record: dict[str, Any], rounds: dict[str, list[float]], variant: str) -> None:
    """The variant's latency and its speed-ups over fp32 TFLite and the two Keras calls."""
    record["latency_ms"] = timing.summary(rounds[variant])
    for key, against in (
        ("speedup_vs_fp32", "fp32"),
        ("speedup_vs_keras", "keras"),
        ("speedup_vs_keras_tf_function", "keras_tf_function"),
    ):
        record[key] = timing.speed_ratio(rounds[variant], rounds[against])


# --- int8 against fp32 by kernel library ------------------------------------------------------


def _tflite_kernels(
    contents: dict[str, bytes], s: Settings, policy: dict[str, float]
) -> dict[str, Any]:
    """fp32 against int8 on one thread, with XNNPACK (LiteRT's default) and without it.

    Evidence for why int8 is or is not faster than fp32 on this CPU: which of
    the two kernel libraries gains from int8, measured rather than assumed.
    """
    from keras_resnet import export

    configs = [
        (kernels, variant) for kernels in ("xnnpack", "builtin") for variant in ("fp32", "int8")
    ]
    kwargs = {"xnnpack": {"xnnpack": True}, "builtin": {"xnnpack": False}}

    def one_round(config: tuple[str, str]) -> float:
        kernels, variant = config
        return export.tflite_latency(
            contents[variant], runs=s.tflite_runs, warmup=3, num_threads=1, **kwargs[kernels],
            **policy,
        )["median_ms"]  # fmt: skip

    rounds: dict[tuple[str, str], list[float]] = {c: [] for c in configs}
    for r in range(max(2, s.tflite_rounds // 2)):
        for c in timing.rotated(configs, r):
            rounds[c].append(one_round(c))
    out: dict[str, Any] = {
        "what": (
            "num_threads=1; xnnpack: LiteRT's default (XNNPACK delegate); builtin: "
            "OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES (LiteRT's own kernels)"
        )
    }
    for kernels in ("xnnpack", "builtin"):
        fp32, int8 = rounds[(kernels, "fp32")], rounds[(kernels, "int8")]
        out[kernels] = {
            "fp32_ms": timing.summary(fp32),
            "int8_ms": timing.summary(int8),
            "int8_speedup_vs_fp32": timing.speed_ratio(int8, fp32),
        }
        ratio = fmt_ratio(out[kernels]["int8_speedup_vs_fp32"])
        log(
            f"tflite 1 thread {kernels}: fp32 {np.median(fp32):.2f} ms, int8 "
            f"{np.median(int8):.2f} ms, int8 vs fp32 {ratio}"
        )
    return out
