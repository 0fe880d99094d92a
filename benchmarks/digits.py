"""`digits`: ResNet-20 on the digits pipeline as `make demo` trains it: images/s, time to 98%."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.common import Context, log


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
