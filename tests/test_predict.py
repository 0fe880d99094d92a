"""`keras-resnet predict`: top-k classes of image files with a .keras, .tflite or export."""

import json

import keras
import numpy as np
import pytest

from keras_resnet import build_resnet, export
from tests.helpers import random_weights, run_cli, tiny_spec

pytestmark = pytest.mark.xdist_group("predict")  # the module fixture is built once


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    model = build_resnet(tiny_spec(), input_shape=(16, 16, 3), classes=3)
    random_weights(model, seed=2, scale=0.3)
    model.save(root / "tiny.keras")
    (root / "tiny.tflite").write_bytes(export.convert_tflite(model, "fp32"))
    rng = np.random.default_rng(0)
    images = []
    for i in range(2):  # 20x24 RGB: resized to the model's 16x16 on the way in
        path = root / f"image{i}.png"
        keras.utils.save_img(path, rng.integers(0, 256, (20, 24, 3)).astype("uint8"))
        images.append(path)
    return root, model, images


def _expected(model, images):
    pixels = np.stack(
        [keras.utils.img_to_array(keras.utils.load_img(p, target_size=(16, 16))) for p in images]
    )
    return model.predict(pixels / 255.0, verbose=0)


def test_predict_prints_top_k_as_json_for_keras_and_tflite(files, capsys):
    root, model, images = files
    expected = _expected(model, images)
    for source in ("tiny.keras", "tiny.tflite"):
        code, out, err = run_cli(
            capsys, "predict", str(root / source), *map(str, images), "--top-k", "2", "--json"
        )
        assert code == 0, err
        results = json.loads(out)
        assert [r["image"] for r in results] == [str(p) for p in images]
        for result, row in zip(results, expected, strict=True):
            top = result["predictions"]
            assert [p["class"] for p in top] == list(np.argsort(-row)[:2])
            np.testing.assert_allclose([p["probability"] for p in top], np.sort(row)[::-1][:2],
                                       rtol=1e-4)  # fmt: skip
            assert [p["label"] for p in top] == [str(p["class"]) for p in top]


def test_predict_reads_the_export_labels_and_prints_a_table(files, capsys, tmp_path):
    root, model, images = files
    x = np.random.default_rng(1).uniform(size=(8, 16, 16, 3)).astype("float32")
    names = ["cat", "dog", "owl"]
    export.export_model(model, tmp_path / "export", formats="keras", validation_data=x,
                        class_names=names, latency_runs=0, verbose=False)  # fmt: skip
    code, out, err = run_cli(capsys, "predict", str(tmp_path / "export"), str(images[0]))
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == str(images[0]) and len(lines) == 4  # the image, then 3 classes
    best = int(np.argmax(_expected(model, images[:1])[0]))
    assert lines[1].endswith(f"{names[best]} ({best})")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{root}/missing.keras", "{img}"], "Received: model="),
        (["{root}/tiny.keras", "{root}/not_an_image.png"], "Cannot read image"),
        (["{root}/tiny.keras", "{img}", "--top-k", "0"], "Received: top_k=0"),
        (["{root}/tiny.keras", "{img}", "--preprocessing", "bgr"], "Received: preprocessing="),
    ],
)
def test_bad_predict_input_is_one_line(files, capsys, argv, message):
    root, _, images = files
    (root / "not_an_image.png").write_text("hello")
    argv = [a.format(root=root, img=images[0]) for a in argv]
    code, out, err = run_cli(capsys, "predict", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_two_channel_model_is_refused_in_one_line(tmp_path, capsys, files):
    _, _, images = files
    model = build_resnet(tiny_spec(), input_shape=(16, 16, 2), classes=3)
    model.save(tmp_path / "two.keras")
    code, _, err = run_cli(capsys, "predict", str(tmp_path / "two.keras"), str(images[0]))
    assert code == 2 and "takes 2-channel images" in err
