"""The input pipeline alone (no model) against Keras' folder loader and against the train step.

    python -m benchmarks.pipeline --data /work/data/cifar10 [--reps 8] [--output FILE.json]

Three things are timed in one process, interleaved (benchmarks.timing.interleave: both
sides back to back per repetition, the order alternating), in images per second.

A pipeline sample is one epoch from a fresh iterator. Timed:

* ours: `load_splits(DATA)`'s training pipeline, a folder with train/ and test/ class
  folders: decoded once into memory, shuffled, batched, then translated and flipped on
  whole batches (what `train` reads);
* keras: `keras.utils.image_dataset_from_directory(DATA/train)`, the loader the project
  used for folders, which decodes every JPEG every epoch, with the same scaling and the
  same augmentation layers on its batches;
* train step: ResNet-20's `train_on_batch` on one batch held in memory (the pipeline
  removed), the rate the pipeline has to keep up with.

The pipeline is not the bottleneck when its rate is well above the train step's: then
the prefetching thread needs a small share of the CPU the step needs. Ratios are medians
with 95% bootstrap intervals over the repetitions.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.machine import load_average, machine, versions  # noqa: E402
from benchmarks.timing import interleave, speed_ratio, summary  # noqa: E402
from keras_resnet._io import write_json  # noqa: E402

BATCH = 128
TRAIN_BATCHES = 4  # 512 images a sample: ~1-8 s on 2 shared cores
RESULTS = Path(__file__).parent / "results" / "pipeline-cifar10.json"


def keras_pipeline(train_dir: str, seed: int):
    """Keras' folder loader with our scaling and augmentation (pipeline._augmenter)."""
    import contextlib
    import io

    import keras
    import tensorflow as tf

    from keras_resnet.data.pipeline import _augmenter

    with contextlib.redirect_stdout(io.StringIO()):
        ds = keras.utils.image_dataset_from_directory(
            train_dir, batch_size=BATCH, image_size=(32, 32), shuffle=True, seed=seed
        )
    augment = _augmenter(seed, flips=True)
    ds = ds.map(lambda x, y: (x / 255.0, tf.cast(y, tf.int32)), tf.data.AUTOTUNE)
    return ds.map(augment, tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def epoch(ds):
    """One whole pass from a fresh iterator: no batch prefetched while the other side ran
    counts, and each sample pays the shuffle buffer's fill as every epoch does."""

    def read() -> None:
        for _ in ds:
            pass

    return read


def per_image(samples: list[float], images: int) -> list[float]:
    return [s / images for s in samples]


def rate(samples: list[float]) -> dict[str, Any]:
    """Images per second: the median and quartiles of per-image seconds, inverted."""
    stats = summary(samples)
    return {
        "images_per_second": round(1 / stats["median"], 1),
        "quartiles": [round(1 / stats["q75"], 1), round(1 / stats["q25"], 1)],
    }


def run(data: str, reps: int) -> dict[str, Any]:
    import tensorflow as tf

    from keras_resnet.data import DataOptions, load_splits
    from keras_resnet.spec import resolve_spec
    from keras_resnet.training.config import TrainConfig, compile_model

    load_before = load_average()
    tick = time.perf_counter()
    ours = load_splits(data, DataOptions(image_size=32), batch_size=BATCH)
    load_seconds = time.perf_counter() - tick
    theirs = keras_pipeline(os.path.join(data, "train"), seed=0)
    config = TrainConfig.from_recipe("fast-cifar", batch_size=BATCH, label_smoothing=0.0)
    net = compile_model(
        resolve_spec("resnet20"), None, ours, config, tf.distribute.get_strategy(), None
    )
    x, y = next(iter(ours.train))

    def step() -> None:
        for _ in range(TRAIN_BATCHES):
            net.train_on_batch(x, y)

    ours_call, keras_call = epoch(ours.train), epoch(theirs)
    for warm in (ours_call, keras_call, step):  # traces
        warm()
    a, b = interleave(ours_call, keras_call, reps=reps)
    c, d = interleave(ours_call, step, reps=reps)
    n_ours, n_keras = ours.sizes["train"], int(theirs.cardinality()) * BATCH
    n_step = TRAIN_BATCHES * BATCH
    ours_vs_keras = speed_ratio(per_image(a, n_ours), per_image(b, n_keras))
    ours_vs_step = speed_ratio(per_image(c, n_ours), per_image(d, n_step))
    return {
        "data": data,
        "layout": ours.layout,
        "sizes": ours.sizes,
        "batch_size": BATCH,
        "load_into_memory_seconds": round(load_seconds, 1),
        "images_per_sample": {"ours": n_ours, "keras": n_keras, "train_step": n_step},
        "ours": rate(per_image(a + c, n_ours)),
        "keras_image_dataset_from_directory": rate(per_image(b, n_keras)),
        "train_step_resnet20": rate(per_image(d, n_step)),
        "ours_vs_keras_speed_ratio": ours_vs_keras,
        "ours_vs_train_step_speed_ratio": ours_vs_step,
        "reps": reps,
        "raw_seconds": {"ours": a + c, "keras": b, "train_step": d},
        "machine": machine(),
        "versions": versions(),
        "load_average": {"before": load_before, "after": load_average()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="folder with train/ and test/ class folders")
    p.add_argument("--reps", type=int, default=8)
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    results = run(args.data, args.reps)
    write_json(args.output, results)
    print(
        f"images/s: ours {results['ours']['images_per_second']}, keras "
        f"{results['keras_image_dataset_from_directory']['images_per_second']}, ResNet-20 "
        f"train step {results['train_step_resnet20']['images_per_second']}; "
        f"ours/keras {results['ours_vs_keras_speed_ratio']}, "
        f"ours/train step {results['ours_vs_train_step_speed_ratio']} -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
