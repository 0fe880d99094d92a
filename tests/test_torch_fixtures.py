"""The torch reference fixtures (tests/fixtures/torch_refs/) and their generator, without torch.

The weight-port test (issue #16) regenerates a state dict from a fixture's seed, writes it as
.safetensors, ports it into Keras and compares logits. These tests check the half it relies
on: every fixture loads and is sane, ``reference_state`` reproduces the recorded keys, shapes
and dtypes bit for bit (the recorded sha256), deterministically, and the arrays survive
``safetensors.numpy``. Full regeneration is limited to a few small architectures (the largest
state is 127M floats); every architecture's keys go through ``tensor_plan``, which draws nothing.
"""

import numpy as np
import pytest
import safetensors.numpy

from tests.fixtures import torch_state

# The module fixtures load and regenerate once per worker: keep this file on one.
pytestmark = pytest.mark.xdist_group("torch_fixtures")

ARCHS = torch_state.ARCHITECTURES
IDS = [f"{source}_{arch}" for source, arch in ARCHS]
# Regenerated in full (~100M floats, ~2 s): the plain stem with basic and bottleneck blocks,
# the deep stem with avg-pool shortcuts, and grouped convs with SE modules.
REGENERATED = [
    ("torchvision", "resnet18"),
    ("torchvision", "resnet50"),
    ("timm", "resnet18d"),
    ("timm", "resnet50d"),
    ("timm", "seresnext50_32x4d"),
]
# The kinds that are parameters (the rest are BatchNorm buffers).
PARAMETER_KINDS = {
    "conv_weight",
    "linear_weight",
    "bias",
    "bn_weight",
    "bn_weight_branch_end",
    "bn_bias",
}


@pytest.fixture(scope="module")
def fixtures() -> dict:
    return {key: torch_state.load_fixture(torch_state.fixture_path(*key)) for key in ARCHS}


@pytest.fixture(scope="module")
def regenerated(fixtures) -> dict:
    """``{(source, arch): state}`` for REGENERATED, each generated once from its fixture."""
    return {
        key: torch_state.reference_state(
            fixtures[key]["keys_shapes_dtypes"], fixtures[key]["state_seed"]
        )
        for key in REGENERATED
    }


def fixture_keys(fixture: dict) -> list[str]:
    return [key for key, _, _ in fixture["keys_shapes_dtypes"]]


def test_every_architecture_has_one_fixture():
    written = sorted(p.name for p in torch_state.REFS_DIR.glob("*.npz"))
    assert written == sorted(torch_state.fixture_path(*key).name for key in ARCHS)


@pytest.mark.parametrize("key", ARCHS, ids=IDS)
def test_fixture_loads_and_is_sane(fixtures, key):
    fixture = fixtures[key]
    assert (fixture["source"], fixture["arch"]) == key
    assert fixture["input_shape"] == torch_state.INPUT_SHAPE
    assert fixture["state_seed"] == torch_state.STATE_SEED
    assert fixture["input_seed"] == torch_state.INPUT_SEED
    assert fixture["param_count"] == torch_state.EXPECTED_PARAM_COUNTS[key]
    assert set(fixture["versions"]) >= {"torch", "torchvision", "timm", "numpy", "safetensors"}

    logits = fixture["logits"]
    assert logits.dtype == np.float32 and logits.shape == (2, 1000)
    assert np.isfinite(logits).all()
    assert 0.3 <= logits.std() <= 10
    assert np.isclose(logits.std(), fixture["logits_std"], rtol=1e-6)
    # The two images' logits differ: the input matters, not just the biases.
    assert np.abs(logits[0] - logits[1]).max() > 0.01 * logits.std()
    noise = np.abs(logits.astype(np.float64) - fixture["logits_float64"]).max()
    assert noise == pytest.approx(fixture["max_abs_diff_float32_vs_float64"], rel=1e-6)
    assert noise < 1e-5  # so a port compared at 1e-4 has room


@pytest.mark.parametrize("key", ARCHS, ids=IDS)
def test_every_key_has_a_distribution(fixtures, key):
    """Cheap for every size: the plan covers each recorded key, shape and dtype, in order."""
    fixture = fixtures[key]
    plan = torch_state.tensor_plan(fixture["keys_shapes_dtypes"])
    assert [(k, s, d) for k, _, s, d in plan] == fixture["keys_shapes_dtypes"]
    kinds = [kind for _, kind, _, _ in plan]
    assert set(kinds) <= set(torch_state.KINDS)
    # torch's parameters are exactly the non-buffer kinds, with the recorded count.
    params = sum(int(np.prod(s)) for _, kind, s, _ in plan if kind in PARAMETER_KINDS)
    assert params == fixture["param_count"]
    # One residual-branch end per block, one classifier, BatchNorms with all their buffers.
    assert kinds.count("linear_weight") == 1
    blocks = {k.rsplit(".bn1.", 1)[0] for k in fixture_keys(fixture) if ".bn1." in k}
    assert kinds.count("bn_weight_branch_end") == len(blocks)  # layerS.B
    assert kinds.count("bn_running_var") == kinds.count("bn_running_mean")
    assert kinds.count("bn_running_var") == kinds.count("bn_num_batches_tracked")


@pytest.mark.parametrize("key", ARCHS, ids=IDS)
def test_input_is_reproduced(fixtures, key):
    fixture = fixtures[key]
    x = torch_state.reference_input(fixture["input_seed"], fixture["input_shape"])
    assert x.dtype == np.float32 and x.shape == fixture["input_shape"]
    assert torch_state.array_digest(x) == fixture["input_sha256"]


@pytest.mark.parametrize("key", REGENERATED, ids=[f"{s}_{a}" for s, a in REGENERATED])
def test_state_is_regenerated_exactly(fixtures, regenerated, key):
    state = regenerated[key]
    recorded = fixtures[key]["keys_shapes_dtypes"]
    assert [(k, a.shape, a.dtype.name) for k, a in state.items()] == recorded
    assert torch_state.state_digest(state) == fixtures[key]["state_sha256"]
    for name, array in state.items():
        if name.endswith(".running_var"):
            assert (array > 0).all(), name
            assert array.min() >= torch_state.BN_VAR_RANGE[0]
        elif name.endswith(".num_batches_tracked"):
            assert array.shape == () and array.dtype == np.int64
        else:
            assert np.isfinite(array).all(), name
    # Running statistics are not the (0, 1) a port could get away with ignoring.
    means = np.concatenate([a for k, a in state.items() if k.endswith(".running_mean")])
    variances = np.concatenate([a for k, a in state.items() if k.endswith(".running_var")])
    assert abs(means.std() - torch_state.BN_MEAN_STD) < 0.05 * torch_state.BN_MEAN_STD
    assert np.abs(variances - 1).mean() > 0.3


def test_same_seed_same_state_other_seed_other_state(fixtures, regenerated):
    key = ("torchvision", "resnet18")
    triples = fixtures[key]["keys_shapes_dtypes"]
    first = regenerated[key]
    again = torch_state.reference_state(triples, fixtures[key]["state_seed"])
    other = torch_state.reference_state(triples, fixtures[key]["state_seed"] + 1)
    assert list(again) == list(first) == list(other)
    for name in first:
        np.testing.assert_array_equal(again[name], first[name])
        if first[name].dtype == np.float32:  # every drawn tensor changes with the seed
            assert not np.array_equal(other[name], first[name]), name
    x = torch_state.reference_input(1, (2, 3, 8, 8))
    np.testing.assert_array_equal(x, torch_state.reference_input(1, (2, 3, 8, 8)))
    assert not np.array_equal(x, torch_state.reference_input(2, (2, 3, 8, 8)))


def test_state_round_trips_through_safetensors(regenerated, tmp_path):
    state = regenerated[("torchvision", "resnet18")]
    path = tmp_path / "resnet18.safetensors"
    safetensors.numpy.save_file(state, str(path))
    loaded = safetensors.numpy.load_file(str(path))
    assert sorted(loaded) == sorted(state)
    for name, array in state.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape, name
        np.testing.assert_array_equal(loaded[name], array)


def test_branch_ends_and_unknown_keys():
    bns = {"bn1", "layer1.0.bn1", "layer1.0.bn2", "layer1.1.bn1", "layer1.1.bn2", "layer1.1.bn3"}
    bns |= {"conv1.1", "conv1.4", "layer2.0.downsample.2"}
    assert torch_state.branch_end_bns(bns) == {"layer1.0.bn2", "layer1.1.bn3"}
    with pytest.raises(ValueError, match="no reference distribution"):
        torch_state.tensor_plan([("head.scale", (3,), "float32")])
    with pytest.raises(ValueError, match="must be float32"):
        torch_state.tensor_plan([("fc.weight", (10, 4), "float16")])
    with pytest.raises(ValueError, match="duplicate"):
        torch_state.tensor_plan([("fc.bias", (10,), "float32")] * 2)
