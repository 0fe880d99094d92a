"""Issue #16's end-to-end path on a ported backbone: convert -> new head -> fine-tune -> export.

    python -m benchmarks.ported_export [--epochs 1] [--output PATH]

torchvision's ResNet18 state dict (the seeded stand-in of tests/fixtures/torch_refs/: no
pretrained file can be downloaded here) is written to a .safetensors file, converted with
`convert_torch_weights`, loaded as a headless `keras_resnet.ResNet18` at 32x32 (the smallest
input it takes), given a new 10-class head and fine-tuned on the digits (torch
preprocessing, Adam 1e-3, batch 32, seed 0). The export then writes every TFLite variant,
int8 calibrated on the training images, and verifies each artifact on the digits' test split
(359 images, never trained on) with its default tolerances: float ones by max |diff|,
dynamic and int8 by >= 99% top-1 agreement with the Keras model. int8 needs the fine-tune:
on an untrained head the top-1 class is close to a tie and agreement says little.

The results file (`benchmarks/results/ported_export-<date>.json` by default) holds the Keras
accuracy, every artifact's verification, the CPU flags and the versions. This was a test
until its fine-tune (about 55 s of CPU) pushed the suite past its budget; the test suite
runs `run` without the fine-tune, on float formats (tests/test_torch_weights.py).
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.family_digits import environment  # noqa: E402

IMAGE_SIZE = 32
RESULTS = Path("benchmarks/results")


def _digits(size: int):
    """The digits' train and test splits as torch-preprocessed arrays at `size`."""
    import numpy as np

    import keras_resnet
    from keras_resnet.data import load_dataset

    splits = load_dataset("digits", image_size=size, channels=3, augment=False)

    def arrays(dataset):
        x, y = (np.concatenate(parts) for parts in zip(*dataset.as_numpy_iterator(), strict=True))
        return keras_resnet.preprocess_input(x * 255.0, mode="torch"), y

    return arrays(splits.train), arrays(splits.test)


def ported_classifier(safetensors: Path, scratch: Path, classes: int = 10):
    """The converted ResNet18 file as a headless backbone with a new softmax head."""
    import keras

    import keras_resnet
    from keras_resnet.torch_weights import convert_torch_weights

    converted = scratch / "resnet18.weights.h5"
    convert_torch_weights(safetensors, "resnet18", converted)
    base = keras_resnet.ResNet18(
        weights=str(converted),
        include_top=False,
        pooling="avg",
        input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
    )
    keras.utils.set_random_seed(0)  # the new head's initialisation and the fit's shuffling
    head = keras.layers.Dense(classes, activation="softmax", name="predictions")(base.output)
    return keras.Model(base.input, head, name="resnet18_digits")


def run(safetensors: Path, scratch: Path, *, epochs: int, formats: str) -> dict[str, Any]:
    """Fine-tune the ported ResNet18 for `epochs` on the digits and export `formats`."""
    import keras
    import tensorflow as tf

    from keras_resnet.export import export_model

    model = ported_classifier(safetensors, scratch)
    (x_train, y_train), (x_test, y_test) = _digits(IMAGE_SIZE)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    if epochs:
        model.fit(x_train, y_train, batch_size=32, epochs=epochs, verbose=0)
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    manifest = export_model(
        model,
        scratch / "export",
        formats=formats,
        representative_data=x_train,
        validation_data=tf.data.Dataset.from_tensor_slices((x_test, y_test)).batch(64),
        preprocessing="torch",
        latency_runs=0,
        verbose=False,
    )
    return {"epochs": epochs, "keras_test_accuracy": accuracy, "manifest": manifest}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)

    from keras_resnet._io import write_json
    from tests.test_torch_weights import _write_reference

    with tempfile.TemporaryDirectory(prefix="ported-export-") as tmp:
        _, safetensors = _write_reference("torchvision", "resnet18", Path(tmp))
        result = run(safetensors, Path(tmp), epochs=args.epochs, formats="keras,tflite")
    artifacts = result["manifest"]["artifacts"]
    checks = {fmt: artifact["verification"] for fmt, artifact in artifacts.items()}
    today = datetime.date.today().isoformat()
    output = args.output or RESULTS / f"ported_export-{today}.json"
    write_json(
        output,
        {
            "what": "torchvision ResNet18 (seeded stand-in) ported, fine-tuned on the digits at "
            "32x32, exported to every TFLite variant and verified on the test split",
            "command": f"python -m benchmarks.ported_export --epochs {args.epochs}",
            **environment(),
            "keras_test_accuracy": result["keras_test_accuracy"],
            "preprocessing": result["manifest"]["input"]["preprocessing"],
            "verification": checks,
            "all_passed": all(check["passed"] for check in checks.values()),
        },
    )
    for fmt, check in checks.items():
        agreement, diff = check.get("top1_agreement"), check.get("max_abs_diff")
        print(f"{fmt:<16} passed={check['passed']} top-1 agreement={agreement} max|diff|={diff}")
    print(f"Keras test accuracy {result['keras_test_accuracy']:.4f}; wrote {output}")
    return 0 if all(check["passed"] for check in checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
