"""`make bench`: keras_resnet against keras.applications and the TFLite variants, as ratios.

    python -m benchmarks.bench [--quick] [--out DIR] [--only SECTION ...]

Everything runs in one process. Each A/B comparison interleaves the two sides
and repeats (see `benchmarks/timing.py`); the results file holds per side the
median, quartiles and raw samples, and the speed ratio keras_resnet / reference
with a 95% bootstrap interval. Sections (`--only` picks some):

  build    build time of ResNet50 and ResNet152, keras_resnet vs keras.applications
  forward  ResNet50 / ResNet50V2 forward at batch 1 and 32 vs keras.applications,
           through `predict_on_batch` (what users get by default) and through a
           `tf.function` of `model(x, training=False)`; same weights on both sides
  train    ResNet50 train step (`train_on_batch`, batch 16, SGD) vs keras.applications
  flops    ResNet50 forward GFLOP/s at batch 32 against the measured fp32 matmul rate
  import   `import keras_resnet` vs `import keras`, fresh interpreters
  digits   ResNet-20 on the digits pipeline: training images/s, the demo's time to 98%
  tflite   TFLite batch-1 latency of every `keras_resnet.export` variant, ResNet50 and
           ResNet-20, as speed-ups over fp32 TFLite and over Keras
  gpu      fp32 vs mixed precision, XLA off and on; skipped (saying so) without a GPU

The results go to `<out>/<host>-<date>-<time>.json` (`-quick` / `-partial`
suffixed for `--quick` and `--only` runs, which the README table never uses);
`python -m benchmarks.report` turns the latest full one into the README
table and a PNG chart. `--quick` (tiny inputs, few repetitions) is a smoke
check of this script, run by the test suite; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks import report, timing  # noqa: E402
from keras_resnet.timing import latency  # noqa: E402

SECTIONS = ("build", "forward", "train", "flops", "import", "digits", "tflite", "gpu")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMA = 1


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes and repetition counts; `FULL` for `make bench`, `QUICK` for the smoke test."""

    quick: bool = False
    build_models: tuple[str, ...] = ("ResNet50", "ResNet152")
    build_reps: int = 7
    forward_models: tuple[str, ...] = ("ResNet50", "ResNet50V2")
    image_size: int = 224  # forward, train, flops and the ResNet50 TFLite rows
    batches: tuple[int, ...] = (1, 32)
    forward_reps: int = 11
    min_sample_seconds: float = 0.5  # a sample repeats calls until it lasts this long
    train_batch: int = 16
    train_reps: int = 8
    matmul_sizes: tuple[int, ...] = (1024, 2048, 4096)
    flops_batch: int = 32
    flops_reps: int = 9
    import_reps: int = 11
    digits_epochs: int | None = None  # None: the demo's own epochs
    tflite_models: tuple[str, ...] = ("ResNet50", "ResNet20")
    tflite_rounds: int = 7
    tflite_runs: int = 20  # invocations per round; a round's figure is their median
    representative_images: int = 32
    eval_images: int = 16  # ResNet50 outputs compared with Keras (ResNet-20: the test split)
    gpu_model: str = "ResNet50"
    gpu_image_size: int = 224
    gpu_batch: int = 64
    gpu_reps: int = 9


FULL = Settings()
QUICK = Settings(
    quick=True,
    build_models=("ResNet50",),
    build_reps=2,
    forward_models=("ResNet50",),
    image_size=32,
    forward_reps=3,
    min_sample_seconds=0.05,
    train_reps=2,
    matmul_sizes=(256, 512),
    flops_reps=3,
    import_reps=1,
    digits_epochs=1,
    tflite_models=("ResNet20",),
    tflite_rounds=2,
    tflite_runs=5,
    representative_images=8,
    eval_images=4,
    gpu_model="ResNet20",
    gpu_image_size=16,
    gpu_batch=8,
    gpu_reps=2,
)

FORWARD_CALLS = {
    "predict_on_batch": (
        "model.predict_on_batch(numpy batch): Keras' compiled predict function, what "
        "predict()/predict_on_batch() users get by default (a tf.function; XLA only "
        "when a GPU is visible, Keras' jit_compile='auto')"
    ),
    "tf.function": (
        "tf.function(lambda x: model(x, training=False)) called on a tf.constant: "
        "TF's default tf.function, no XLA"
    ),
}


@dataclasses.dataclass
class Context:
    """What sections share: a scratch directory and the trained ResNet-20 of `digits`."""

    settings: Settings
    scratch: Path
    digits_model: Path | None = None


def log(message: str) -> None:
    print(message, flush=True)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _free() -> None:
    import keras

    keras.backend.clear_session()
    gc.collect()


def _fmt_ratio(ratio: dict[str, Any]) -> str:
    ci = ratio["ci95"]
    band = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    return f"{ratio['ratio']:.3f}x{band}"


# --- machine ---------------------------------------------------------------------------


def _cpuinfo() -> dict[str, Any]:
    info: dict[str, Any] = {"model": platform.processor() or platform.machine(), "flags": []}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    if model:
        info["model"] = model.group(1).strip()
    flags = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.M)
    if flags:
        # What decides fp32 and int8 kernel speed (VNNI: int8 dot products).
        wanted = ("avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16")
        have = set(flags.group(1).split())
        info["flags"] = [f for f in wanted if f in have] + sorted(
            f for f in have if f.startswith("amx")
        )
    cores = set()
    for block in text.split("\n\n"):
        ids = dict(re.findall(r"^(physical id|core id)\s*:\s*(\d+)", block, re.M))
        if len(ids) == 2:
            cores.add((ids["physical id"], ids["core id"]))
    if cores:
        info["physical_cores"] = len(cores)
    return info


def machine() -> dict[str, Any]:
    """Host, CPU, memory, accelerators and the thread settings the figures ran with."""
    import tensorflow as tf

    pages = os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    page_size = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 0
    gpus = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        gpus.append({"name": details.get("device_name", gpu.name), **details})
    return {
        "host": socket.gethostname(),
        "cpu": _cpuinfo(),
        "logical_cores": os.cpu_count(),
        "ram_gib": round(pages * page_size / 2**30, 1),
        "os": platform.platform(),
        "gpus": [{k: str(v) for k, v in g.items()} for g in gpus],
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "onednn_env": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
    }


def versions() -> dict[str, str | None]:
    from keras_resnet.export import software_versions

    return software_versions()


# --- models ----------------------------------------------------------------------------


def model_pair(name: str, **kwargs: Any):
    """keras_resnet's and keras.applications' `name`, ours holding the reference's weights."""
    import keras

    import keras_resnet

    reference = getattr(keras.applications, name)(weights=None, **kwargs)
    ours = getattr(keras_resnet, name)(weights=None, **kwargs)
    if [w.shape for w in ours.weights] != [w.shape for w in reference.weights]:
        raise RuntimeError(f"{name}: keras_resnet and keras.applications weights differ in shape")
    ours.set_weights(reference.get_weights())
    return ours, reference


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


# --- sections --------------------------------------------------------------------------


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
            _free()
        a, b = timing.interleave(
            lambda ours=ours: ours(weights=None),
            lambda ref=ref: ref(weights=None),
            reps=s.build_reps,
            before=_free,
        )
        out["models"][name] = record = timing.compare(a, b)
        log(
            f"build {name}: {record['ours_seconds']['median']:.3f} s vs "
            f"{record['reference_seconds']['median']:.3f} s, "
            f"speed {_fmt_ratio(record['speed_ratio'])}"
        )
    return out


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
        _free()
    return out


def _forward_model(name: str, images: np.ndarray, s: Settings) -> dict[str, Any]:
    import tensorflow as tf

    ours, ref = model_pair(name, input_shape=images.shape[1:])
    diff = np.abs(ours.predict_on_batch(images) - ref.predict_on_batch(images))
    out: dict[str, Any] = {
        "outputs_max_abs_diff": float(diff.max()),
        "predict_jit_compile": bool(ours.jit_compile),
    }
    f_ours, f_ref = (tf.function(lambda x, m=m: m(x, training=False)) for m in (ours, ref))
    for batch in s.batches:
        x = images[:batch]
        xt = tf.constant(x)
        sides = {
            "predict_on_batch": (
                lambda x=x: ours.predict_on_batch(x),
                lambda x=x: ref.predict_on_batch(x),
            ),
            "tf.function": (lambda xt=xt: f_ours(xt).numpy(), lambda xt=xt: f_ref(xt).numpy()),
        }
        for mode, (fa, fb) in sides.items():
            for fn in (fa, fb, fa, fb):  # trace, then settle
                fn()
            calls = timing.calls_for(fa, s.min_sample_seconds)
            a, b = timing.interleave(fa, fb, reps=s.forward_reps, calls=calls)
            record = timing.compare(a, b, work=batch)
            record["calls_per_sample"] = calls
            out.setdefault(f"batch_{batch}", {})[mode] = record
            log(
                f"forward {name} batch {batch} {mode}: "
                f"{record['ours_images_per_second']:.1f} vs "
                f"{record['reference_images_per_second']:.1f} images/s, "
                f"speed {_fmt_ratio(record['speed_ratio'])}"
            )
    return out


def section_train(ctx: Context) -> dict[str, Any]:
    import keras

    s = ctx.settings
    shape = (s.image_size, s.image_size, 3)
    ours, ref = model_pair("ResNet50", input_shape=shape)
    for model in (ours, ref):
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
            loss="sparse_categorical_crossentropy",
        )
    rng = np.random.default_rng(1)
    x = rng.random((s.train_batch, *shape), dtype=np.float32)
    y = rng.integers(0, 1000, s.train_batch)
    fa, fb = (lambda: ours.train_on_batch(x, y)), (lambda: ref.train_on_batch(x, y))
    for fn in (fa, fb, fa, fb):
        fn()
    a, b = timing.interleave(fa, fb, reps=s.train_reps)
    record = timing.compare(a, b, work=s.train_batch)
    log(
        f"train ResNet50 batch {s.train_batch}: {record['ours_images_per_second']:.2f} vs "
        f"{record['reference_images_per_second']:.2f} images/s, "
        f"speed {_fmt_ratio(record['speed_ratio'])}"
    )
    return {
        "model": "ResNet50",
        "image_size": s.image_size,
        "batch": s.train_batch,
        "call": "model.train_on_batch (Keras' compiled train function, what fit() runs)",
        "optimizer": "SGD(learning_rate=0.01, momentum=0.9)",
        "loss": "sparse_categorical_crossentropy",
        "comparison": record,
    }


def section_flops(ctx: Context) -> dict[str, Any]:
    import tensorflow as tf

    import keras_resnet

    s = ctx.settings
    model = keras_resnet.ResNet50(weights=None, input_shape=(s.image_size, s.image_size, 3))
    flops = count_flops(model)
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
        f"{matmuls[str(best)]['gflops']:.1f} GFLOP/s (n={best}), fraction {_fmt_ratio(fraction)}"
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


_IMPORT_CODE = "import time\nt = time.perf_counter()\n{}\nprint(time.perf_counter() - t)"
# keras_resnet imports its names on first use, so the import alone costs nothing: time what a
# user runs to get the model function, against the same for keras.applications.
_IMPORTS = {
    "keras_resnet": "import keras_resnet; keras_resnet.ResNet50",
    "keras": "import keras; keras.applications.ResNet50",
}


def _import_seconds(module: str) -> tuple[float, float]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_CODE.format(_IMPORTS[module])],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"import {module} failed: {proc.stderr[-1000:]}")
    return float(proc.stdout.strip().splitlines()[-1]), wall


def section_import(ctx: Context) -> dict[str, Any]:
    s = ctx.settings
    if not s.quick:
        _import_seconds("keras_resnet"), _import_seconds("keras")  # warm the file cache
    runs: dict[str, tuple[list[float], list[float]]] = {
        "keras_resnet": ([], []),
        "keras": ([], []),
    }
    for rep in range(s.import_reps):
        for module in ("keras_resnet", "keras") if rep % 2 == 0 else ("keras", "keras_resnet"):
            seconds, wall = _import_seconds(module)
            runs[module][0].append(seconds)
            runs[module][1].append(wall)
    ours, ref = runs["keras_resnet"][0], runs["keras"][0]
    record = timing.compare(ours, ref)
    record["extra_seconds"] = timing.difference(ours, ref)
    record["process_wall_seconds"] = {m: timing.summary(r[1]) for m, r in runs.items()}
    record["what"] = (
        "seconds of `import keras_resnet; keras_resnet.ResNet50` in a fresh interpreter "
        "(start-up excluded); reference: `import keras; keras.applications.ResNet50`"
    )
    log(
        f"import: keras_resnet {np.median(ours):.3f} s, keras {np.median(ref):.3f} s, "
        f"extra {record['extra_seconds']['delta']:+.3f} s"
    )
    return record


def _validation_accuracy(log_dir: Path) -> list[tuple[int, float, float]]:
    """(epoch, wall time, accuracy) of each validation summary Keras' TensorBoard wrote."""
    import tensorflow as tf

    points = []
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == "epoch_accuracy":
                    accuracy = (
                        float(tf.make_ndarray(value.tensor))
                        if value.HasField("tensor")
                        else value.simple_value
                    )
                    points.append((int(event.step), float(event.wall_time), accuracy))
    return sorted(points)


def section_digits(ctx: Context) -> dict[str, Any]:
    from keras_resnet.constants import DEMO_BATCH_SIZE, DEMO_EPOCHS, DEMO_IMAGE_SIZE
    from keras_resnet.training import BEST, train

    s = ctx.settings
    epochs = s.digits_epochs or DEMO_EPOCHS
    run_dir = ctx.scratch / "digits"
    start = time.time()
    metrics = train(
        "resnet20",
        "digits",
        output_dir=run_dir,
        epochs=epochs,
        batch_size=DEMO_BATCH_SIZE,
        image_size=DEMO_IMAGE_SIZE,
        seed=0,
        verbose=0,
    )
    wall = time.time() - start
    curve = _validation_accuracy(run_dir / "logs" / "validation")
    reached = next(((epoch, t) for epoch, t, acc in curve if acc >= 0.98), None)
    ctx.digits_model = run_dir / BEST
    out: dict[str, Any] = {
        "what": (
            "keras_resnet.training.train with the demo's settings (ResNet-20, digits "
            f"{DEMO_IMAGE_SIZE}x{DEMO_IMAGE_SIZE}, batch {DEMO_BATCH_SIZE}, seed 0)"
        ),
        "epochs": epochs,
        "demo_epochs": DEMO_EPOCHS,
        "train_images_per_second": metrics["train_images_per_second"],
        "throughput_what": "training phase of each epoch (validation excluded), all epochs",
        "test_accuracy": metrics["test_accuracy"],
        "demo_wall_seconds": wall,
        "validation_accuracy_by_epoch": [round(acc, 4) for _, _, acc in curve],
    }
    if reached:
        out["epochs_to_98"] = reached[0] + 1
        out["time_to_98_seconds"] = reached[1] - start
        out["time_to_98_what"] = (
            "from calling train() (data, build, compile included) to the end of the first "
            "epoch whose validation accuracy is >= 0.98"
        )
    else:
        out["time_to_98_seconds"] = None
        out["time_to_98_note"] = (
            f"quick mode: {epochs} epoch(s) only, not the demo"
            if s.quick
            else f"validation accuracy did not reach 0.98 in {epochs} epochs"
        )
    log(
        f"digits: {out['train_images_per_second']:.0f} train images/s, time to 98% "
        f"{out['time_to_98_seconds']}, test accuracy {out['test_accuracy']:.4f}"
    )
    return out


def _tflite_subject(name: str, ctx: Context) -> dict[str, Any]:
    """The Keras model, calibration and evaluation data of one TFLite row."""
    import keras

    import keras_resnet

    s = ctx.settings
    rng = np.random.default_rng(3)
    if name == "ResNet20":
        from keras_resnet.constants import DEMO_IMAGE_SIZE
        from keras_resnet.data import load_dataset

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
            model = keras_resnet.ResNet20(
                input_shape=(DEMO_IMAGE_SIZE, DEMO_IMAGE_SIZE, 1), classes=10
            )
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
        _free()
    return out


def _tflite_model(name: str, ctx: Context, threads: int) -> dict[str, Any]:
    import tensorflow as tf

    from keras_resnet import export

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
    contents, variants = {}, {}
    for variant in export.TFLITE_VARIANTS:
        start = time.perf_counter()
        content = export.convert_tflite(
            model,
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

    x1 = images[:1]
    x1_tensor = tf.constant(x1)
    forward = tf.function(lambda x: model(x, training=False))
    keras_calls = {
        "keras": lambda: model.predict_on_batch(x1),
        "keras_tf_function": lambda: forward(x1_tensor).numpy(),
    }

    # A round is `tflite_runs` samples of the library's timing policy, each sized to last
    # min_sample_seconds / tflite_runs (20 calls of a 0.15 ms model are too few to time).
    policy = {"min_sample_seconds": s.min_sample_seconds / s.tflite_runs}

    def one_round(key: str) -> dict[str, Any]:
        if key in keras_calls:
            return latency(keras_calls[key], samples=s.tflite_runs, warmup=0, **policy)
        result = export.tflite_latency(
            contents[key], runs=s.tflite_runs, warmup=3, num_threads=threads, **policy
        )
        out["runtime"] = result["runtime"]
        return result

    order = [*keras_calls, *export.TFLITE_VARIANTS]
    out["runs_per_round"] = {key: one_round(key)["runs"] for key in order}  # and a warm-up
    rounds: dict[str, list[float]] = {key: [] for key in order}
    for r in range(s.tflite_rounds):
        for key in timing.rotated(order, r):
            rounds[key].append(one_round(key)["median_ms"])
    out["keras_latency_ms"] = timing.summary(rounds["keras"])
    out["keras_tf_function_latency_ms"] = timing.summary(rounds["keras_tf_function"])
    for variant, record in variants.items():
        record["latency_ms"] = timing.summary(rounds[variant])
        record["speedup_vs_fp32"] = timing.speed_ratio(rounds[variant], rounds["fp32"])
        record["speedup_vs_keras"] = timing.speed_ratio(rounds[variant], rounds["keras"])
        record["speedup_vs_keras_tf_function"] = timing.speed_ratio(
            rounds[variant], rounds["keras_tf_function"]
        )
        log(
            f"tflite {name} {variant}: {np.median(rounds[variant]):.2f} ms, vs fp32 "
            f"{_fmt_ratio(record['speedup_vs_fp32'])}, vs Keras "
            f"{_fmt_ratio(record['speedup_vs_keras'])} (predict_on_batch), "
            f"{_fmt_ratio(record['speedup_vs_keras_tf_function'])} (tf.function)"
        )
    out["variants"] = variants
    out["kernels_1_thread"] = _tflite_kernels(contents, s, policy)
    return out


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
        ratio = _fmt_ratio(out[kernels]["int8_speedup_vs_fp32"])
        log(
            f"tflite 1 thread {kernels}: fp32 {np.median(fp32):.2f} ms, int8 "
            f"{np.median(int8):.2f} ms, int8 vs fp32 {ratio}"
        )
    return out


def section_gpu(ctx: Context, *, require_gpu: bool = True) -> dict[str, Any]:
    """fp32 vs mixed_float16, XLA off vs on, forward and train step of keras_resnet.

    `require_gpu=False` runs it on whatever device TF picks (the tests do, on CPU).
    """
    import keras
    import tensorflow as tf

    import keras_resnet

    gpus = tf.config.list_physical_devices("GPU")
    if require_gpu and not gpus:
        return {"skipped": "no GPU visible: tf.config.list_physical_devices('GPU') is empty"}
    s = ctx.settings
    shape = (s.gpu_image_size, s.gpu_image_size, 3)
    rng = np.random.default_rng(4)
    x = rng.random((s.gpu_batch, *shape), dtype=np.float32)
    runners: dict[str, Callable[[], Any]] = {}
    previous = keras.config.dtype_policy()
    for policy in ("float32", "mixed_float16"):
        for xla in (False, True):
            keras.config.set_dtype_policy(policy)
            try:
                model = getattr(keras_resnet, s.gpu_model)(weights=None, input_shape=shape)
            finally:
                keras.config.set_dtype_policy(previous)
            model.compile(
                optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                loss="sparse_categorical_crossentropy",
                jit_compile=xla,
            )
            y = rng.integers(0, model.output_shape[-1], s.gpu_batch)
            key = f"{policy}{'+xla' if xla else ''}"
            runners[f"forward {key}"] = lambda m=model: m.predict_on_batch(x)
            runners[f"train {key}"] = lambda m=model, y=y: m.train_on_batch(x, y)
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


SECTION_FUNCTIONS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "build": section_build,
    "forward": section_forward,
    "train": section_train,
    "flops": section_flops,
    "import": section_import,
    "digits": section_digits,
    "tflite": section_tflite,
    "gpu": section_gpu,
}


# --- driver ----------------------------------------------------------------------------


def _results_path(out_dir: Path, host: str, now: datetime.datetime, kind: str) -> Path:
    safe_host = re.sub(r"[^A-Za-z0-9._-]+", "-", host) or "host"
    suffix = "" if kind == "full" else f"-{kind}"
    return out_dir / f"{safe_host}-{now:%Y-%m-%d-%H%M%S}{suffix}.json"


def write_json(path: Path, results: dict[str, Any]) -> None:
    from keras_resnet._io import write_text_atomic

    write_text_atomic(path, json.dumps(results, indent=1, allow_nan=False) + "\n")


def run(settings: Settings, sections: tuple[str, ...], out_dir: Path) -> tuple[Path, bool]:
    """Runs the sections in order, writing the results file after each; returns (path, ok)."""
    import keras

    keras.utils.set_random_seed(0)
    out_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    kind = "quick" if settings.quick else ("full" if sections == SECTIONS else "partial")
    info = machine()
    path = _results_path(out_dir, info["host"], now, kind)
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": kind,
        "date": now.isoformat(timespec="seconds"),
        "machine": info,
        "versions": versions(),
        "settings": dataclasses.asdict(settings),
        "load_average": {"start": _load()},
        "complete": False,
        "sections": {},
    }
    log(f"benchmark ({kind}) -> {path}\nload average {results['load_average']['start']}")
    ok = True
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="keras_resnet_bench_") as scratch:
        ctx = Context(settings=settings, scratch=Path(scratch))
        for name in sections:
            log(f"--- {name}")
            load_before, t0 = _load(), time.perf_counter()
            try:
                section = SECTION_FUNCTIONS[name](ctx)
            except Exception as e:
                ok = False
                traceback.print_exc()
                section = {"error": f"{type(e).__name__}: {e}"}
            _free()  # the section's models are unreachable now
            section["seconds"] = round(time.perf_counter() - t0, 1)
            section["load_average"] = {"before": load_before, "after": _load()}
            results["sections"][name] = section
            write_json(path, results)
    results["load_average"]["end"] = _load()
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    results["complete"] = ok
    results["ratios"] = report.ratios(results)
    results["targets"] = report.targets(results)
    write_json(path, results)
    log(f"load average {results['load_average']['end']}; {results['wall_seconds']} s")
    log(report.summary_text(results))
    return path, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--quick", action="store_true", help="smoke check: tiny and few")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        metavar="SECTION",
        help=f"run only these sections ({', '.join(SECTIONS)})",
    )
    args = parser.parse_args(argv)
    sections = tuple(s for s in SECTIONS if s in args.only) if args.only else SECTIONS
    path, ok = run(QUICK if args.quick else FULL, sections, args.out)
    log(f"results: {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
