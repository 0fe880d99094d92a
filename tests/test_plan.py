"""The layer plan against what it describes without Keras: torch's own state dicts.

The plan is checked against the built model in tests/test_property.py (every layer's class,
shapes and parameters, 500 drawn specs). Here its torch keys meet the real torchvision and
timm state dicts recorded in tests/fixtures/torch_refs/ (made by torch 2.14 / timm 1.0.31):
every key of every ported architecture is named by exactly one layer of its plan, and each
layer's parameters are the sum of its tensors' sizes. No model is built.
"""

import math

import pytest

from keras_resnet.plan import plan
from keras_resnet.spec import get_spec
from tests.fixtures.torch_state import fixture_path, load_fixture
from tests.test_torch_weights import PORTS


@pytest.mark.parametrize("source, arch", sorted(PORTS), ids=[f"{s}-{a}" for s, a in sorted(PORTS)])
def test_the_plans_torch_keys_are_the_state_dicts(source, arch):
    fixture = load_fixture(fixture_path(source, arch))
    sizes = {
        key: math.prod(shape)
        for key, shape, _ in fixture["keys_shapes_dtypes"]
        if not key.endswith(".num_batches_tracked")
    }
    _, channels, h, w = fixture["input_shape"]
    classes = next(shape[0] for key, shape, _ in fixture["keys_shapes_dtypes"] if key == "fc.bias")
    layers = plan(get_spec(PORTS[source, arch]), (h, w, channels), classes=classes)
    named = [key for layer in layers for key in layer.torch]
    assert sorted(named) == sorted(sizes)  # each key once, none missing, none extra
    for layer in layers:
        if layer.torch:
            total = layer.params + layer.non_trainable
            assert sum(sizes[key] for key in layer.torch) == total, layer.name
        else:
            assert layer.params + layer.non_trainable == 0, layer.name


@pytest.mark.parametrize(
    "name, size, classes",
    [
        ("resnet20", 32, 10),
        ("resnet18d", 64, None),
        ("seresnext50_32x4d", 64, 1000),
        ("wide_resnet28_10", 16, 100),
    ],  # fmt: skip
)
def test_a_specs_macs_are_the_built_models(name, size, classes):
    """`ResNetSpec.count_macs` sums the plan: the count `sizing.count_macs` takes from the
    built model's kernels and output shapes (grouped convs, SE, a deep stem, no head)."""
    from keras_resnet import build_resnet
    from keras_resnet.sizing import count_macs

    spec = get_spec(name)
    model = build_resnet(
        spec, input_shape=(size, size, 3), include_top=classes is not None, classes=classes or 1
    )
    assert spec.count_macs(size, classes=classes) == count_macs(model) > 0
