"""The builder: every block/version/shortcut, shapes, formats, backbones, round trips, errors."""

import itertools

import keras
import numpy as np
import pytest

from keras_resnet import build_backbone, build_resnet
from keras_resnet.spec import StageSpec, get_spec
from tests.helpers import random_weights, tiny_spec

COMBOS = list(
    itertools.product(
        ("basic", "bottleneck"),
        ("v1", "v2"),
        ("projection", "zero_pad"),
        ("first", "last"),
    )
)


@pytest.mark.parametrize("block, version, shortcut, stride_block", COMBOS)
def test_every_combination_builds_and_runs(block, version, shortcut, stride_block):
    spec = tiny_spec(block=block, version=version, shortcut=shortcut, stride_block=stride_block)
    model = build_resnet(spec, input_shape=(32, 32, 3), classes=5)
    assert model.output_shape == (None, 5)
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    y = model.predict_on_batch(x)
    assert y.shape == (2, 5)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    features = build_resnet(spec, include_top=False, input_shape=(32, 32, 3))
    # cifar stem (stride 1) then stage strides 1, 2, 2.
    out_channels = 16 * (4 if block == "bottleneck" else 1)
    assert features.output_shape == (None, 8, 8, out_channels)


def test_zero_pad_shortcut_is_subsample_plus_zero_channels():
    """Option A, checked numerically against numpy on the shortcut branch."""
    spec = tiny_spec(shortcut="zero_pad", stages=(StageSpec(8, 1, 1), StageSpec(14, 1, 2)))
    model = build_resnet(spec, include_top=False, input_shape=(10, 10, 3))
    branch = keras.Model(model.input, model.get_layer("conv3_block1_0_to_cl").output)
    block_in = keras.Model(model.input, model.get_layer("conv2_block1_out").output)
    x = np.random.default_rng(1).normal(size=(2, 10, 10, 3)).astype("float32")
    expected = np.pad(block_in(x).numpy()[:, ::2, ::2, :], ((0, 0), (0, 0), (0, 0), (3, 3)))
    np.testing.assert_allclose(branch(x).numpy(), expected, atol=0)
    # and no parameters on the shortcut: ResNet-20's count is the paper's.
    assert not any("_0_conv" in layer.name for layer in model.layers)


def test_projection_where_channels_change_identity_elsewhere():
    model = build_resnet("resnet18", include_top=False, input_shape=(64, 64, 3))
    names = {layer.name for layer in model.layers}
    assert "conv2_block1_0_conv" not in names  # 64 -> 64, stride 1: identity
    assert {"conv3_block1_0_conv", "conv4_block1_0_conv", "conv5_block1_0_conv"} <= names
    # Stride-2 3x3 convs pad symmetrically (PyTorch-compatible), stride-1 ones use 'same'.
    assert model.get_layer("conv3_block1_1_conv").padding == "valid"
    assert model.get_layer("conv3_block1_1_pad").padding == ((1, 1), (1, 1))
    assert model.get_layer("conv3_block1_2_conv").padding == "same"
    assert not any(w.name == "bias" for w in model.weights)


def test_width_scales_every_conv():
    spec = tiny_spec(width=2.0)
    model = build_resnet(spec, include_top=False, input_shape=(32, 32, 3))
    assert model.get_layer("conv1_conv").filters == 16
    assert model.output_shape[-1] == 32


def test_stride_placement():
    last = build_resnet("resnet50v2", include_top=False, input_shape=(64, 64, 3))
    assert last.get_layer("conv2_block3_2_conv").strides == (2, 2)
    assert last.get_layer("conv2_block1_2_conv").strides == (1, 1)
    first = build_resnet("resnet50", include_top=False, input_shape=(64, 64, 3))
    assert first.get_layer("conv3_block1_1_conv").strides == (2, 2)  # on the 1x1, like keras
    v15 = build_resnet(
        tiny_spec(block="bottleneck", bottleneck_stride="3x3"),
        include_top=False,
        input_shape=(32, 32, 3),
    )
    assert v15.get_layer("conv3_block1_1_conv").strides == (1, 1)
    assert v15.get_layer("conv3_block1_2_conv").strides == (2, 2)


@pytest.mark.parametrize(
    "pooling, shape", [(None, (None, 2, 2, 16)), ("avg", (None, 16)), ("max", (None, 16))]
)
def test_pooling(pooling, shape):
    spec = tiny_spec(stem="imagenet")
    model = build_resnet(spec, include_top=False, pooling=pooling, input_shape=(32, 32, 3))
    assert model.output_shape == shape


def test_variable_input_size_without_top():
    model = build_resnet(tiny_spec(), include_top=False, pooling="avg")
    assert model.input_shape == (None, None, None, 3)
    for size in (16, 40):
        assert model.predict_on_batch(np.zeros((1, size, size, 3), "float32")).shape == (1, 16)


def test_one_and_four_channel_inputs():
    for channels in (1, 4):
        model = build_resnet(tiny_spec(), input_shape=(32, 32, channels), classes=3)
        assert model.input_shape == (None, 32, 32, channels)


def test_input_tensor_with_predecessors():
    inp = keras.Input((48, 48, 3))
    scaled = keras.layers.Rescaling(1 / 255.0)(inp)
    model = build_resnet(tiny_spec(), input_tensor=scaled, include_top=False, pooling="avg")
    assert model.inputs[0] is inp  # the source input, as keras.applications does
    assert model.output_shape == (None, 16)


def test_backend_tensor_as_input_tensor_is_a_clear_error():
    import tensorflow as tf

    with pytest.raises(ValueError, match="Received: input_tensor of type EagerTensor"):
        build_resnet(tiny_spec(), input_tensor=tf.zeros((2, 32, 32, 3)), include_top=False)


def _channels_first_runs_here() -> bool:
    try:
        layer = keras.layers.Conv2D(1, 3, data_format="channels_first")
        layer(np.zeros((1, 1, 4, 4), "float32"))
        pool = keras.layers.MaxPooling2D(2, data_format="channels_first")
        pool(np.zeros((1, 1, 4, 4), "float32"))
        return True
    except Exception:
        return False


@pytest.mark.parametrize("shortcut", ["projection", "zero_pad"])
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_channels_first(version, shortcut):
    spec = tiny_spec(version=version, shortcut=shortcut, stem="imagenet")
    cf = build_resnet(spec, input_shape=(3, 64, 64), classes=4, data_format="channels_first")
    cl = build_resnet(spec, input_shape=(64, 64, 3), classes=4, data_format="channels_last")
    assert cf.output_shape == (None, 4)
    assert cf.count_params() == cl.count_params()
    feats = build_resnet(
        spec, include_top=False, input_shape=(3, 64, 64), data_format="channels_first"
    )
    assert feats.output_shape == (None, 16, 4, 4)
    if not _channels_first_runs_here():
        pytest.skip("this TF build has no channels_first conv/pool kernels on CPU")
    cf.set_weights(cl.get_weights())
    x = np.random.default_rng(0).uniform(size=(2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(
        cf.predict_on_batch(x.transpose(0, 3, 1, 2)), cl.predict_on_batch(x), atol=1e-5
    )


def test_backbone_pyramid_outputs():
    features = build_backbone("resnet18", input_shape=(64, 64, 3))
    shapes = {k: v.shape for k, v in features.output.items()}
    assert list(shapes) == ["P2", "P3", "P4", "P5"]
    assert [shapes[k] for k in shapes] == [
        (None, 16, 16, 64), (None, 8, 8, 128), (None, 4, 4, 256), (None, 2, 2, 512)
    ]  # fmt: skip
    out = features.predict_on_batch(np.zeros((1, 64, 64, 3), "float32"))
    assert out["P5"].shape == (1, 2, 2, 512)
    v2 = build_backbone("resnet50v2", input_shape=(64, 64, 3)).output
    assert v2["P2"].shape == (None, 8, 8, 256) and v2["P5"].shape == (None, 2, 2, 2048)
    tiny = build_backbone(tiny_spec(), input_shape=(32, 32, 3)).output
    assert list(tiny) == ["P2", "P3", "P4"]


@pytest.mark.parametrize("version, shortcut", [("v1", "zero_pad"), ("v2", "projection")])
def test_config_round_trip(version, shortcut):
    model = build_resnet(
        tiny_spec(version=version, shortcut=shortcut), input_shape=(32, 32, 3), classes=3
    )
    random_weights(model)
    clone = keras.Model.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(clone.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)


@pytest.mark.parametrize("name", ["resnet20", "resnet18v2"])
def test_keras_file_round_trip_in_safe_mode(name, tmp_path):
    model = build_resnet(name, input_shape=(32, 32, 3), classes=10)
    random_weights(model, seed=3)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


def test_only_builtin_layers():
    for name in ("resnet20", "resnet18v2", "resnet50v2"):
        model = build_resnet(name, include_top=True, input_shape=(32, 32, 3), classes=10)
        for layer in model.layers:
            assert type(layer).__module__.startswith("keras.src.layers"), layer
            assert type(layer).__name__ != "Lambda"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(weights="nope.h5"), "Received: weights=nope.h5"),
        (dict(weights="imagenet", spec="resnet18"), "No published ImageNet weights"),
        (dict(weights="imagenet", spec="resnet50", classes=10), "Received: classes=10"),
        (dict(input_shape=(32, 32)), "Received: input_shape=(32, 32)"),
        (dict(input_shape=(32, 32, 0)), "Received: input_shape=(32, 32, 0)"),
        (dict(input_shape=(32.0, 32, 3)), "Received: input_shape=(32.0, 32, 3)"),
        (dict(input_shape="32x32"), "Received: input_shape='32x32'"),
        (dict(input_shape=(4, 4, 3)), "Input size must be at least 8x8"),
        (dict(spec="resnet18", input_shape=(16, 16, 3)), "Input size must be at least 32x32"),
        (dict(input_shape=(None, None, 3)), "you should specify a static `input_shape`"),
        (dict(classes=0), "Received: classes=0"),
        (dict(include_top=False, pooling="mean"), "Received: pooling='mean'"),
        (dict(classifier_activation="softmaxx"), "Received: classifier_activation='softmaxx'"),
        (dict(data_format="NHWC"), "Received: data_format='NHWC'"),
        (dict(spec="resnet99"), "Received: name='resnet99'"),
    ],
)
def test_argument_errors(kwargs, message):
    spec = kwargs.pop("spec", tiny_spec())
    with pytest.raises(ValueError) as e:
        build_resnet(spec, **kwargs)
    assert message in str(e.value)


def test_weights_from_a_path(tmp_path):
    model = build_resnet(tiny_spec(), input_shape=(32, 32, 3), classes=3)
    random_weights(model, seed=5)
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    again = build_resnet(tiny_spec(), input_shape=(32, 32, 3), classes=3, weights=path)
    for a, b in zip(again.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_default_names():
    assert build_resnet("resnet20").name == "resnet20"
    assert build_resnet(tiny_spec(), input_shape=(32, 32, 3)).name == "resnet"
    assert build_resnet(get_spec("resnet20"), name="mine").name == "mine"
