"""benchmarks/cifar10.py's bookkeeping: the per-epoch test curve across resumes, --minutes, PNG.

The training itself is `train`'s (tests/test_training.py); here a tiny model stands in.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from benchmarks import cifar10


def tiny_model():
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def test_the_curve_adds_up_time_across_resumes_and_redoes_an_epoch(tmp_path):
    images = np.random.default_rng(0).random((12, 4, 4, 3), dtype=np.float32)
    labels = np.arange(12) % 3
    test = tf.data.Dataset.from_tensor_slices((images, labels)).batch(5)
    model = tiny_model()
    expected = float(np.mean(model.predict(images, verbose=0).argmax(-1) == labels))

    (curve,) = cifar10._callbacks(tmp_path, test, labels, None, time.perf_counter() - 10)
    curve.set_model(model)
    for epoch in (0, 1):
        curve.on_epoch_end(epoch, {"val_accuracy": 0.5})
    rows = json.loads((tmp_path / cifar10.CURVE).read_text())["epochs"]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[0]["test_accuracy"] == pytest.approx(expected)
    assert rows[0]["val_accuracy"] == 0.5 and rows[1]["wall_seconds"] >= 10

    # A resumed process: its clock starts at the recorded total; epoch 2 is done again.
    (curve,) = cifar10._callbacks(tmp_path, test, labels, None, time.perf_counter() - 1)
    curve.set_model(model)
    curve.on_epoch_end(1, {})
    rows = json.loads((tmp_path / cifar10.CURVE).read_text())["epochs"]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["wall_seconds"] >= rows[0]["wall_seconds"] + 1

    (curve,) = cifar10._callbacks(tmp_path, test, labels, 0.01, time.perf_counter() - 1)
    with pytest.raises(cifar10.SessionOverError, match="before epoch 3"):
        curve.on_epoch_begin(2)

    png = tmp_path / "curve.png"
    cifar10.plot_curve(rows, 91.25, png, "tiny")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_readme_table_reads_the_results(tmp_path):
    results = {
        "model": "resnet20",
        "recipe": "fast-cifar",
        "test_error_percent": 8.5,
        "paper_test_error_percent": 8.75,
        "tflite_int8": {"verification": {"accuracy": 0.912}},
        "curve": [{}] * 40,
        "training_wall_seconds": 5400.0,
        "train_images_per_second": 401.2,
        "machine": {"cpu": {"flags": ["avx", "avx2", "fma"]}},
    }
    path = tmp_path / "cifar10-resnet20-fast-cifar.json"
    path.write_text(json.dumps(results))
    row = cifar10.markdown_table([path]).splitlines()[-1]
    assert row == (
        "| resnet20 | `fast-cifar` | 8.50% | 8.75% | 8.80% | 40 | 1.50 h | 401 | avx avx2 fma |"
    )
