"""torchvision/timm weights ported from .safetensors: outputs equal to the reference's.

The references are tests/fixtures/torch_refs/*.npz, made by the real torch and timm
(tests/fixtures/make_torch_refs.py): key names, shapes, the seeds and the logits. Here the
same state dict is regenerated from the seed with numpy, written to a .safetensors file,
ported into the keras_resnet model and run on the same input; no torch in this test.
"""

import numpy as np
import pytest
from safetensors.numpy import save_file

from keras_resnet import build_resnet, load_torch_weights
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
# Ported in every run: one per kind of part. The deeper and wider ones are marked slow
# (still run by `make test`; `-m "not slow"` skips them).
FAST = {"resnet18", "tv_resnet50", "resnet18d", "resnet50d", "seresnext50_32x4d", "resnext50_32x4d"}
CASES = [
    pytest.param(s, a, id=f"{s}-{a}", marks=() if name in FAST else pytest.mark.slow)
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
