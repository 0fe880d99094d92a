"""torchvision/timm weights ported from .safetensors: outputs equal to the reference's.

The references are tests/fixtures/torch_refs/*.npz, made by the real torch and timm
(tests/fixtures/make_torch_refs.py): key names, shapes, the seeds and the logits. Here the
same state dict is regenerated from the seed with numpy, written to a .safetensors file,
ported into the keras_resnet model and run on the same input; no torch in this test.
"""

import numpy as np
import pytest
from safetensors.numpy import save_file

from keras_resnet import StageSpec, build_resnet, load_torch_weights
from tests.fixtures.torch_state import (
    fixture_path,
    load_fixture,
    reference_input,
    reference_state,
)

# (source, arch) -> our named spec: every architecture issue #16 lists.
PORTS = {
    ("torchvision", "resnet18"): "resnet18",
    ("torchvision", "resnet34"): "resnet34",
    ("torchvision", "resnet50"): "tv_resnet50",
    ("torchvision", "resnet101"): "tv_resnet101",
    ("torchvision", "resnet152"): "tv_resnet152",
    ("torchvision", "resnext50_32x4d"): "resnext50_32x4d",
    ("torchvision", "resnext101_32x8d"): "resnext101_32x8d",
    ("torchvision", "wide_resnet50_2"): "wide_resnet50_2",
    ("torchvision", "wide_resnet101_2"): "wide_resnet101_2",
    ("timm", "resnet18d"): "resnet18d",
    ("timm", "resnet34d"): "resnet34d",
    ("timm", "resnet50d"): "resnet50d",
    ("timm", "resnet101d"): "resnet101d",
    ("timm", "resnet152d"): "resnet152d",
    ("timm", "seresnet50"): "seresnet50",
    ("timm", "seresnext50_32x4d"): "seresnext50_32x4d",
}
# Ported by `make test`: one architecture per kind of part (basic and bottleneck blocks,
# torchvision's and ResNet-D's stems and shortcuts, groups, SE, wide bottlenecks). The rest
# are deeper copies of these, `exhaustive` (`make test-all`); test_plan.py still matches
# every architecture's keys and shapes to its real state dict.
KINDS = {
    "resnet18", "tv_resnet50", "resnet18d", "resnet50d", "seresnext50_32x4d", "resnext50_32x4d",
    "wide_resnet50_2",
}  # fmt: skip
CASES = [
    pytest.param(s, a, id=f"{s}-{a}", marks=() if name in KINDS else pytest.mark.exhaustive)
    for (s, a), name in PORTS.items()
]


def _write_reference(source, arch, tmp_path):
    fixture = load_fixture(fixture_path(source, arch))
    path = tmp_path / f"{arch}.safetensors"
    save_file(reference_state(fixture["keys_shapes_dtypes"], fixture["state_seed"]), str(path))
    return fixture, path


@pytest.mark.parametrize("source, arch", CASES)
def test_ported_outputs_equal_the_reference(source, arch, tmp_path):
    fixture, path = _write_reference(source, arch, tmp_path)
    _, _, h, w = fixture["input_shape"]
    model = build_resnet(PORTS[source, arch], input_shape=(h, w, 3), classifier_activation=None)
    load_torch_weights(model, path)
    x = reference_input(fixture["input_seed"], fixture["input_shape"]).transpose(0, 2, 3, 1)
    out = np.asarray(model(x, training=False))
    assert np.abs(out - fixture["logits"]).max() <= 1e-4


def test_a_file_of_another_architecture_is_refused_before_any_weight_is_set(tmp_path):
    _, path = _write_reference("torchvision", "resnet18", tmp_path)
    model = build_resnet("resnet18d", input_shape=(64, 64, 3))
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="no tensor for layer 'conv1_1_conv'|no layer for"):
        load_torch_weights(model, path)
    assert all((a == b).all() for a, b in zip(before, model.get_weights(), strict=True))
    ten = build_resnet("resnet18", input_shape=(64, 64, 3), classes=10)
    with pytest.raises(
        ValueError, match=r"Shape mismatch at 'fc.weight': the file's \(512, 1000\)"
    ):
        load_torch_weights(ten, path)


def test_unreadable_files_are_one_line(tmp_path):
    model = build_resnet("resnet20", input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="No such weights file"):
        load_torch_weights(model, tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="Not a readable .safetensors file"):
        load_torch_weights(model, bad)


def test_convert_weights_cli_writes_a_file_the_applications_load(tmp_path, capsys):
    import keras_resnet
    from tests.helpers import run_cli

    fixture, path = _write_reference("torchvision", "resnet18", tmp_path)
    out = tmp_path / "resnet18.weights.h5"
    code, stdout, err = run_cli(
        capsys, "convert-weights", str(path), "--model", "resnet18", "--output", str(out)
    )
    assert code == 0, err
    assert "1000 classes" in stdout and out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    x = reference_input(fixture["input_seed"], fixture["input_shape"]).transpose(0, 2, 3, 1)
    for model in (
        keras_resnet.ResNet18(weights=str(out), classifier_activation=None),
        build_resnet("resnet18", weights=str(out), classifier_activation=None),
    ):
        # Built at 224 px like torchvision; the same weights run the 64 px input.
        ported = build_resnet("resnet18", input_shape=(64, 64, 3), classifier_activation=None)
        ported.set_weights(model.get_weights())
        out_64 = np.asarray(ported(x, training=False))
        assert np.abs(out_64 - fixture["logits"]).max() <= 1e-4
    # Refusals: one line, exit 2, nothing written.
    for argv, message in (
        (["--model", "resnet18d", "--output", str(tmp_path / "d.weights.h5")], "not this arch"),
        (["--model", "resnet18", "--output", str(out)], "`output` exists"),
        (["--model", "resnet18", "--output", str(tmp_path / "x.h5")], "end in .weights.h5"),
    ):
        code, _, err = run_cli(capsys, "convert-weights", str(path), *argv)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "d.weights.h5").exists()


def test_torch_preprocessing_is_imagenet_mean_and_std_on_unit_pixels():
    import keras_resnet

    x = np.full((1, 2, 2, 3), 255.0, np.float32)
    expected = (1.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(
        keras_resnet.preprocess_input(x, mode="torch")[0, 0, 0], expected, rtol=1e-5
    )
    with pytest.raises(ValueError, match="Received: mode='pytorch'"):
        keras_resnet.preprocess_input(x, mode="pytorch")


def test_a_ported_resnet18_with_a_new_head_exports_with_torch_preprocessing(tmp_path):
    """Convert -> new 10-class head -> export: the path issue #16 promises, float formats.

    benchmarks/ported_export.py runs the same code with a one-epoch fine-tune on the digits
    and every TFLite variant, int8 included (int8 agreement needs a trained head); its
    results file is the evidence (benchmarks/results/ported_export-*.json).
    """
    from benchmarks.ported_export import IMAGE_SIZE, ported_classifier, run
    from keras_resnet.export import DEFAULT_TOLERANCES

    fixture, path = _write_reference("torchvision", "resnet18", tmp_path)
    (tmp_path / "check").mkdir()
    model = ported_classifier(path, tmp_path / "check")
    state = reference_state(fixture["keys_shapes_dtypes"], fixture["state_seed"])
    first, last = model.get_layer("conv1_conv"), model.get_layer("conv5_block2_2_bn")
    np.testing.assert_array_equal(first.kernel, state["conv1.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(last.moving_variance, state["layer4.1.bn2.running_var"])
    assert model.input_shape == (None, IMAGE_SIZE, IMAGE_SIZE, 3)

    result = run(path, tmp_path, epochs=0, formats="keras,tflite_fp32,tflite_fp16")
    manifest = result["manifest"]
    assert set(manifest["artifacts"]) == {"keras", "tflite_fp32", "tflite_fp16"}
    for fmt, artifact in manifest["artifacts"].items():
        check = artifact["verification"]
        assert check["passed"] and check["samples"] == 359, fmt
        assert check["criterion"] == DEFAULT_TOLERANCES[fmt], fmt
    assert manifest["input"]["preprocessing"] == "torch"
    assert 0 <= result["keras_test_accuracy"] <= 1


def _tiny_weights_file(path, classes, channels=1, seed=123):
    """A `.weights.h5` of the tiny spec's classifier, initialised from `seed`."""
    import keras

    from tests.helpers import tiny_spec

    keras.utils.set_random_seed(seed)
    model = build_resnet(tiny_spec(), input_shape=(8, 8, channels), classes=classes)
    model.save_weights(path)
    return model


def test_a_weights_file_starts_a_model_with_a_new_head_by_layer_name(tmp_path):
    from keras_resnet.weights import load_backbone_weights
    from tests.helpers import tiny_spec

    spec = tiny_spec()
    thousand = _tiny_weights_file(tmp_path / "t1000.weights.h5", classes=1000)
    ten = _tiny_weights_file(tmp_path / "t10.weights.h5", classes=10, seed=7)
    for path, source, classifier in ((tmp_path / "t1000.weights.h5", thousand, False),
                                     (tmp_path / "t10.weights.h5", ten, True)):  # fmt: skip
        model = build_resnet(spec, input_shape=(8, 8, 1), classes=10)
        fresh_head = [w.copy() for w in model.get_layer("predictions").get_weights()]
        done = load_backbone_weights(model, path, spec)
        assert done["classifier"] is classifier
        for layer in source.layers:
            if layer.weights and layer.name != "predictions":
                for a, b in zip(layer.get_weights(), model.get_layer(layer.name).get_weights(),
                                strict=True):  # fmt: skip
                    np.testing.assert_array_equal(a, b)
        head = model.get_layer("predictions").get_weights()
        expected = source.get_layer("predictions").get_weights() if classifier else fresh_head
        assert all((a == b).all() for a, b in zip(head, expected, strict=True))
    # Refusals: one line naming the file, nothing set.
    _tiny_weights_file(tmp_path / "rgb.weights.h5", classes=10, channels=3)
    wider = (StageSpec(16, 1, 1), StageSpec(16, 2, 2), StageSpec(16, 1, 2))  # same layers
    other = build_resnet(tiny_spec(stages=wider, stem_filters=16), input_shape=(8, 8, 1))
    other.save_weights(tmp_path / "other.weights.h5")
    deeper = build_resnet(tiny_spec(stages=(StageSpec(8, 2, 1),)), input_shape=(8, 8, 1))
    deeper.save_weights(tmp_path / "deeper.weights.h5")
    (tmp_path / "bad.weights.h5").write_bytes(b"not hdf5")
    for name, message in (
        ("rgb.weights.h5", r"at input \(8, 8, 1\) \(layer 'conv1_conv' takes \(3, 3, 1, 8\)"),
        (
            "other.weights.h5",
            r"layer 'conv1_conv' takes \(3, 3, 1, 8\), the file has \(3, 3, 1, 16\)",
        ),
        ("deeper.weights.h5", "not this architecture"),
        ("bad.weights.h5", "Not a readable .weights.h5 file"),
        ("missing.weights.h5", "No such weights file"),
        ("t10.h5", "must be a Keras .weights.h5 file"),
    ):
        model = build_resnet(spec, input_shape=(8, 8, 1), classes=10)
        before = [w.copy() for w in model.get_weights()]
        with pytest.raises(ValueError, match=message) as raised:
            load_backbone_weights(model, tmp_path / name, spec, arg="init_weights")
        assert len(str(raised.value).splitlines()) == 1, raised.value
        assert f"Received: init_weights='{tmp_path / name}'" in str(raised.value)
        assert all((a == b).all() for a, b in zip(before, model.get_weights(), strict=True))


def test_train_init_weights_starts_the_run_from_the_file(tmp_path, capsys):
    """`train(init_weights=...)` / `keras-resnet train --init-weights`: the model `train` builds
    (for fit and the multi-worker loop alike) starts from the file, with a new 10-class head;
    a file that does not fit is refused in one line before the run directory is made."""
    import types

    import keras

    from keras_resnet.training import TrainConfig
    from keras_resnet.training.config import build_model
    from tests.helpers import run_cli, tiny_spec

    source = _tiny_weights_file(tmp_path / "t1000.weights.h5", classes=1000)
    splits = types.SimpleNamespace(image_shape=(8, 8, 1), num_classes=10)
    config = TrainConfig(init_weights=tmp_path / "t1000.weights.h5")
    assert config.init_weights == str(tmp_path / "t1000.weights.h5")  # JSON in run.json
    net = build_model(tiny_spec(), None, splits, config)
    for layer in source.layers:
        if isinstance(layer, keras.layers.Conv2D):
            np.testing.assert_array_equal(net.get_layer(layer.name).kernel, layer.kernel)
    assert net.get_layer("predictions").units == 10

    _tiny_weights_file(tmp_path / "rgb.weights.h5", classes=10, channels=3)
    (tmp_path / "spec.json").write_text(tiny_spec().to_json())
    argv = ["train", "--spec", str(tmp_path / "spec.json"), "--image-size", "8", "--epochs", "1"]
    for name, message in (
        ("rgb.weights.h5", "layer 'conv1_conv' takes (3, 3, 1, 8), the file has (3, 3, 3, 8)"),
        ("missing.weights.h5", "No such weights file"),
    ):
        path = str(tmp_path / name)
        code, _, err = run_cli(
            capsys, *argv, "--output", str(tmp_path / "refused"), "--init-weights", path
        )
        assert code == 2 and message in err and f"init_weights='{path}'" in err, err
        assert len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "refused").exists()
