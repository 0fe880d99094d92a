"""The model registry (`create_model`, `list_models`, tags) and weights from the Hub, offline.

The Hub is a cache laid out on disk by `offline_hub` (conftest.py): timm/resnet18d.ra2_in1k
holding tests/fixtures' seeded timm state, HF_HUB_OFFLINE=1. Nothing is downloaded.
"""

import json
import os

import numpy as np
import pytest

import keras_resnet
from keras_resnet import registry
from keras_resnet.spec import get_spec
from tests.fixtures.torch_state import reference_input

pytestmark = pytest.mark.xdist_group("offline_hub")

INPUT = (64, 64, 3)


def _x(fixture):
    return reference_input(fixture["input_seed"], fixture["input_shape"]).transpose(0, 2, 3, 1)


def test_every_tag_names_a_spec_and_a_source_and_its_preprocessing():
    for full_name, cfg in registry.PRETRAINED.items():
        assert full_name == f"{cfg.name}.{cfg.tag}"
        get_spec(cfg.spec)  # raises for a typo in the table
        assert cfg.is_hub == (cfg.tag != "keras_in1k")
        assert cfg.preprocessing in ("torch", "caffe", "tf")
        assert 60 < cfg.top1 < 90 and 0.8 <= cfg.crop_pct <= 1 and cfg.input_size >= 224
        if cfg.is_hub:
            assert cfg.hf_hub_id == f"timm/{full_name}"


def test_the_tag_decides_the_graph():
    """torchvision's resnet50 and keras.applications' are different graphs (parameters as
    torchvision's and keras.applications' model cards give them)."""
    assert registry.spec_of("resnet50.tv2_in1k") == "tv_resnet50"
    assert registry.spec_of("resnet50.keras_in1k") == registry.spec_of("resnet50") == "resnet50"
    tv = get_spec(registry.spec_of("resnet50.tv2_in1k"))
    assert tv.count_params(trainable_only=True) == 25_557_032
    assert get_spec(registry.spec_of("resnet50")).count_params() == 25_636_712
    assert registry.resolve("resnet50", True)[1].full_name == "resnet50.keras_in1k"
    assert registry.resolve("tv_resnet50", True)[1].full_name == "resnet50.tv2_in1k"
    assert registry.resolve("ResNet50D", "ra2_in1k")[1].full_name == "resnet50d.ra2_in1k"
    assert registry.pretrained_cfg("resnet50v2").preprocessing == "tf"
    # keras.applications' own files are weights="imagenet"; paths and None pass through.
    assert registry.weights_for_spec("resnet50", "keras_in1k") == "imagenet"
    for weights in (None, "imagenet", "no/such/file.weights.h5"):
        assert registry.weights_for_spec("resnet50", weights) == weights


def test_list_models():
    assert keras_resnet.list_models() == keras_resnet.list_specs()
    assert keras_resnet.list_models("resnet50.*", pretrained=True) == [
        "resnet50.keras_in1k",
        "resnet50.tv2_in1k",
        "resnet50.tv_in1k",
        "resnet50.a1_in1k",
    ]
    assert keras_resnet.list_models("seresnet*", pretrained=True) == [
        "seresnet50.ra2_in1k",
        "seresnet50.a1_in1k",
    ]
    assert keras_resnet.list_models("*.racm_in1k", pretrained=True) == [
        "seresnext50_32x4d.racm_in1k"
    ]
    assert keras_resnet.list_models("resnet*d", pretrained=False) == [
        "resnet18d",
        "resnet34d",
        "resnet50d",
        "resnet101d",
        "resnet152d",
    ]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: registry.resolve("resnet50.ra2_in1k"), "Tags of 'resnet50': \\['resnet50.keras"),
        (lambda: registry.resolve("resnet20", True), "No pretrained weights for 'resnet20'"),
        (lambda: registry.resolve("resnet99"), "Unknown spec name"),
        (lambda: registry.resolve("resnet50.tv_in1k", "a1_in1k"), "name two tags"),
        (lambda: registry.resolve("resnet50", 1), "Received: pretrained=1"),
        (lambda: keras_resnet.ResNet50(weights="tv2_in1k"), "create_model\\('resnet50.tv2_in1k'"),
        (lambda: keras_resnet.ResNet18D(weights="ra3_in1k"), "\\['ra2_in1k'\\]"),
    ],
)
def test_bad_names_and_tags_are_one_line(call, message):
    with pytest.raises(ValueError, match=message) as e:
        call()
    assert "Received:" in str(e.value) and "\n" not in str(e.value)


def test_hub_weights_are_converted_once_and_give_timm_s_logits(offline_hub, monkeypatch):
    fixture = offline_hub["fixture"]
    model = keras_resnet.create_model(
        "resnet18d.ra2_in1k", pretrained=True, input_shape=INPUT, classifier_activation=None
    )
    assert np.abs(np.asarray(model(_x(fixture), training=False)) - fixture["logits"]).max() < 1e-4
    converted = os.listdir(offline_hub["keras"] / "models")
    name = f"timm--resnet18d.ra2_in1k--resnet18d--{offline_hub['sha256']}.weights.h5"
    assert converted == [name]  # keyed by the file's hash; no temporary file left behind

    # Converted once: the other two ways of naming the weights read the cached file.
    from keras_resnet import torch_weights

    def no_conversion(*args):
        raise AssertionError("converted twice")

    monkeypatch.setattr(torch_weights, "write_converted", no_conversion)
    for weights in ("ra2_in1k", "hf-hub:timm/resnet18d.ra2_in1k"):
        again = keras_resnet.ResNet18D(
            weights=weights, input_shape=INPUT, classifier_activation=None
        )
        for a, b in zip(model.get_weights(), again.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_new_head_keeps_the_pretrained_backbone(offline_hub):
    full = keras_resnet.create_model("resnet18d.ra2_in1k", pretrained=True, input_shape=INPUT)
    ten = keras_resnet.create_model("resnet18d", pretrained=True, input_shape=INPUT, classes=10)
    headless = keras_resnet.create_model(
        "resnet18d.ra2_in1k", pretrained=True, include_top=False, pooling="avg", input_shape=INPUT
    )
    assert ten.output_shape == (None, 10) and headless.output_shape == (None, 512)
    for model in (ten, headless):
        for layer in ("conv1_1_conv", "conv5_block2_2_bn"):
            for a, b in zip(
                full.get_layer(layer).get_weights(),
                model.get_layer(layer).get_weights(),
                strict=True,
            ):
                np.testing.assert_array_equal(a, b)


def test_a_file_missing_offline_says_how_to_download_it(offline_hub):
    with pytest.raises(OSError) as e:
        keras_resnet.create_model("resnet34d.ra2_in1k", pretrained=True)
    message = str(e.value)
    assert "\n" not in message and "HF_HUB_OFFLINE=1" in message
    assert "hf download timm/resnet34d.ra2_in1k model.safetensors" in message
    with pytest.raises(OSError, match="hf download timm/resnet18d.ra3_in1k"):
        keras_resnet.ResNet18D(weights="hf-hub:timm/resnet18d.ra3_in1k")


def test_eval_transform_resizes_the_shorter_side_then_crops_the_centre():
    from PIL import Image

    from keras_resnet.eval_images import eval_transform

    pixels = np.arange(256 * 512 * 3, dtype=np.uint32).reshape(256, 512, 3) % 251
    image = Image.fromarray(pixels.astype(np.uint8))
    # 224 / 0.875 = 256: the shorter side already is; the centre 224 square starts at (16, 144).
    out = eval_transform(image, 224, 0.875, "nearest")
    np.testing.assert_array_equal(out * 255, pixels[16:240, 144:368].astype(np.float32))
    doubled = image.resize((1024, 512), Image.Resampling.NEAREST)  # each pixel 2x2
    halved = eval_transform(doubled, 224, 0.875, "nearest")
    np.testing.assert_array_equal(halved, out)


def test_predict_takes_a_registry_name(offline_hub, tmp_path, capsys, monkeypatch):
    from keras.src.applications import imagenet_utils
    from PIL import Image

    from keras_resnet.eval_images import eval_transform
    from tests.helpers import run_cli

    # ImageNet's class names without their download (keras caches them in this global).
    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", index)
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.jpg"
    Image.fromarray(rng.integers(0, 256, (180, 240, 3), dtype=np.uint8)).save(path)
    code, out, err = run_cli(
        capsys, "predict", "resnet18d.ra2_in1k", str(path), "--top-k", "3", "--json"
    )
    assert code == 0, err
    results = json.loads(out)

    cfg = keras_resnet.pretrained_cfg("resnet18d.ra2_in1k")
    x = eval_transform(Image.open(path).convert("RGB"), 224, cfg.crop_pct, cfg.interpolation)
    x = keras_resnet.preprocess_input(x[None] * 255.0, mode=cfg.preprocessing)
    model = keras_resnet.create_model("resnet18d.ra2_in1k", pretrained=True)
    expected = np.asarray(model(x, training=False))[0]
    top = np.argsort(-expected)[:3]
    assert [p["class"] for p in results[0]["predictions"]] == top.tolist()
    assert results[0]["predictions"][0]["label"] == f"class_{top[0]}"
    np.testing.assert_allclose(
        [p["probability"] for p in results[0]["predictions"]], expected[top], rtol=1e-4
    )
    assert results[0]["image"] == str(path)


def test_a_tagged_model_is_exported_and_read_with_its_tags_preprocessing(offline_hub, tmp_path):
    """create_model names a model after its tag, so its .keras file keeps the tag: the export
    (Python and `export_run`) and `predict` then take the tag's preprocessing and feed the
    data as the model takes it; a run's model and an explicit choice are left as they were."""
    from keras_resnet.applications import preprocess_input
    from keras_resnet.data import load_dataset
    from keras_resnet.export import ExportOptions, export_run
    from keras_resnet.export.options import with_tag_preprocessing
    from keras_resnet.export.source import load_run_data
    from keras_resnet.predict import open_model
    from keras_resnet.registry import model_cfg
    from keras_resnet.training.loop import _resolve_model

    model = keras_resnet.create_model(
        "resnet18d.ra2_in1k", pretrained=True, classes=10, input_shape=(32, 32, 3)
    )
    assert model.name == "resnet18d.ra2_in1k" and model_cfg(model).preprocessing == "torch"
    assert model_cfg(keras_resnet.create_model("resnet18d", input_shape=INPUT)) is None
    path = tmp_path / "tuned.keras"
    model.save(path)
    assert open_model(path).preprocessing == "torch"

    tag = model_cfg(model)
    _, splits = load_run_data(
        model, None, path, dataset="digits", data_dir=None, calibrate=True, tag=tag
    )
    raw = load_dataset("digits", image_size=32, channels=3, augment=False, eval_crop=0.875)
    images, _ = next(iter(splits.test))
    expected = preprocess_input(next(iter(raw.test))[0] * 255.0, mode="torch")
    np.testing.assert_allclose(images, expected, atol=1e-5)

    manifest = export_run(
        path, tmp_path / "out", dataset="digits", formats="keras", latency_runs=0, verbose=False
    )
    assert manifest["input"]["preprocessing"] == "torch"
    assert manifest["artifacts"]["keras"]["verification"]["passed"]
    explicit = with_tag_preprocessing(ExportOptions(preprocessing="unit"), tag)
    assert explicit.preprocessing == "unit"
    # Trained by keras_resnet.training, it learns [0, 1] pixels: the tag goes from its name.
    assert _resolve_model(model, None) == (None, model)
    assert model.name == "resnet18d" and model_cfg(model) is None
