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

# (source, arch) -> our named spec
PORTS = {
    ("torchvision", "resnet18"): "resnet18",
    ("torchvision", "resnet50"): "tv_resnet50",
    ("timm", "resnet18d"): "resnet18d",
    ("timm", "resnet50d"): "resnet50d",
    ("timm", "seresnext50_32x4d"): "seresnext50_32x4d",
    ("torchvision", "wide_resnet50_2"): "wide_resnet50_2",
}


def _write_reference(source, arch, tmp_path):
    fixture = load_fixture(fixture_path(source, arch))
    path = tmp_path / f"{arch}.safetensors"
    save_file(reference_state(fixture["keys_shapes_dtypes"], fixture["state_seed"]), str(path))
    return fixture, path


@pytest.mark.parametrize("source, arch", list(PORTS), ids=[f"{s}-{a}" for s, a in PORTS])
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
