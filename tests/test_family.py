"""The ResNet family as spec fields: ResNet-D, SE, ResNeXt, Wide, stochastic depth, zero-init.

Parameter counts are the reference implementations' own: timm 1.0.31's
`create_model(name, pretrained=False)` and torchvision's, summed over
`parameters()` (torch keeps BN's moving statistics as buffers, so they are
compared with our trainable count); WRN-28-10 is xternalz/WideResNet-pytorch's.
"""

import dataclasses
import json

import keras
import numpy as np
import pytest

import keras_resnet
from keras_resnet import build_resnet, export
from keras_resnet.applications import APPLICATIONS
from keras_resnet.catalog import APPLICATION_TABLE
from keras_resnet.spec import ResNetSpec, StageSpec, get_spec
from tests.helpers import random_weights, run_cli, tiny_spec

REFERENCE_COUNTS = {
    "resnet18d": 11_708_744,
    "resnet34d": 21_816_904,
    "resnet50d": 25_576_264,
    "resnet101d": 44_568_392,
    "resnet152d": 60_212_040,
    "seresnet50": 28_088_024,
    "seresnext50_32x4d": 27_559_896,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "tv_resnet50": 25_557_032,
    "wide_resnet28_10": 36_479_194,  # CIFAR-10 head; the paper's "36.5M"
}
# One per new part: deep stem + avg shortcut (basic, bottleneck), SE, groups, wide, WRN.
BUILT = ["resnet18d", "resnet50d", "seresnext50_32x4d", "wide_resnet50_2", "wide_resnet28_10"]


def _classes(spec):
    return 10 if spec.stem == "cifar" else 1000


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("name", list(REFERENCE_COUNTS))
def test_counts_equal_the_reference_implementations(name):
    spec = get_spec(name)
    counted = spec.count_params(classes=_classes(spec), trainable_only=True)
    assert counted == REFERENCE_COUNTS[name]


@pytest.mark.parametrize("name", BUILT)
def test_built_models_have_the_counted_parameters(name):
    spec = get_spec(name)
    model = build_resnet(spec, input_shape=(32, 32, 3), classes=_classes(spec))
    assert _trainable(model) == REFERENCE_COUNTS[name]
    assert model.count_params() == spec.count_params(classes=_classes(spec))


def test_applications_cover_the_family():
    for public, (spec_name, _, classes, params) in APPLICATION_TABLE.items():
        assert get_spec(spec_name).count_params(classes=classes) == params, public
        assert public in keras_resnet.__all__
    model = APPLICATIONS["ResNet18D"](input_shape=(64, 64, 3), include_top=False, pooling="avg")
    assert model.name == "resnet18d" and model.output_shape == (None, 512)
    with pytest.raises(ValueError, match="No published ImageNet weights"):
        APPLICATIONS["SEResNet50"](weights="imagenet")


def test_layers_follow_timm_module_for_module():
    d = build_resnet("resnet50d", input_shape=(64, 64, 3))
    convs = [la for la in d.layers if isinstance(la, keras.layers.Conv2D)]
    stem = [(la.name, la.filters, la.strides) for la in convs if la.name.startswith("conv1_")]
    assert stem == [("conv1_1_conv", 32, (2, 2)), ("conv1_2_conv", 32, (1, 1)),
                    ("conv1_conv", 64, (1, 1))]  # fmt: skip
    # The first stage keeps its resolution: timm's downsample has no pool there.
    assert "conv2_block1_0_pool" not in [la.name for la in d.layers]
    pool = d.get_layer("conv3_block1_0_pool")
    assert isinstance(pool, keras.layers.AveragePooling2D) and pool.strides == (2, 2)
    assert d.get_layer("conv3_block1_0_conv").strides == (1, 1)
    assert d.get_layer("conv3_block1_2_conv").strides == (2, 2)  # v1.5: strides on the 3x3

    x = build_resnet("seresnext50_32x4d", input_shape=(32, 32, 3))
    assert x.get_layer("conv2_block1_2_conv").groups == 32
    assert x.get_layer("conv2_block1_2_conv").filters == 128  # 64 * 4 / 64 * 32
    assert x.get_layer("conv2_block1_se_reduce").filters == 16  # 256 / 16
    assert x.get_layer("conv5_block3_se_expand").filters == 2048


def test_se_width_is_rounded_as_timm_rounds_it():
    spec = get_spec("seresnet50")
    assert [spec.se_channels(c) for c in (256, 512, 1024, 2048, 24, 100)] == [
        16, 32, 64, 128, 8, 8
    ]  # fmt: skip


def _submodel(model, first, last):
    return keras.Model(model.get_layer(first).input, model.get_layer(last).output)


def test_avg_shortcut_averages_real_pixels_only_as_ceil_mode_does():
    """An odd side: timm's AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)."""
    spec = tiny_spec(
        stages=(StageSpec(4, 1, 1), StageSpec(8, 1, 2)), stem_filters=4, shortcut="avg"
    )
    model = build_resnet(spec, include_top=False, input_shape=(9, 9, 3))
    pool = keras.Model(model.input, model.get_layer("conv3_block1_0_pool").output)
    before = keras.Model(model.input, model.get_layer("conv3_block1_0_pool").input)
    x = np.random.default_rng(0).normal(size=(2, 9, 9, 3)).astype("float32")
    a = before.predict(x, verbose=0)
    expected = np.stack(
        [
            np.stack([a[:, i : i + 2, j : j + 2].mean(axis=(1, 2)) for j in range(0, 9, 2)], 1)
            for i in range(0, 9, 2)
        ],
        1,
    )
    np.testing.assert_allclose(pool.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_squeeze_excite_computes_timms_gate():
    spec = tiny_spec(se_ratio=0.25, stages=(StageSpec(16, 1, 1),), stem_filters=16)
    model = build_resnet(spec, include_top=False, input_shape=(8, 8, 3))
    random_weights(model, seed=3, scale=0.3)
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype("float32")
    y = keras.Model(model.input, model.get_layer("conv2_block1_2_bn").output).predict(x, verbose=0)
    w1, b1 = model.get_layer("conv2_block1_se_reduce").get_weights()
    w2, b2 = model.get_layer("conv2_block1_se_expand").get_weights()
    assert w1.shape == (1, 1, 16, 8)  # 16 * 0.25 = 4, rounded up to the divisor 8
    hidden = np.maximum(y.mean(axis=(1, 2)) @ w1[0, 0] + b1, 0)
    gate = 1 / (1 + np.exp(-(hidden @ w2[0, 0] + b2)))
    excited = keras.Model(model.input, model.get_layer("conv2_block1_se_excite").output)
    np.testing.assert_allclose(
        excited.predict(x, verbose=0), y * gate[:, None, None, :], rtol=1e-4, atol=1e-5
    )


def test_stochastic_depth_is_identity_at_inference():
    spec = tiny_spec(block="bottleneck", se_ratio=0.25, shortcut="avg")
    plain = build_resnet(spec, input_shape=(16, 16, 3), classes=4)
    dropped = build_resnet(
        dataclasses.replace(spec, drop_path_rate=0.5), input_shape=(16, 16, 3), classes=4
    )
    random_weights(plain, seed=0, scale=0.2)
    for layer in plain.layers[1:]:  # by name: the Dropout layers change the layer order
        dropped.get_layer(layer.name).set_weights(layer.get_weights())
    x = np.random.default_rng(2).uniform(size=(3, 16, 16, 3)).astype("float32")
    np.testing.assert_array_equal(dropped(x, training=False), plain(x, training=False))
    assert not np.allclose(dropped(x, training=True), dropped(x, training=True))


def test_stochastic_depth_drops_whole_samples_at_each_blocks_rate():
    spec = tiny_spec(drop_path_rate=0.3)  # four blocks: rates 0, 0.1, 0.2, 0.3
    model = build_resnet(spec, input_shape=(8, 8, 3), classes=2)
    drops = [la for la in model.layers if la.name.endswith("_drop_path")]
    assert [la.name for la in drops] == [
        "conv3_block1_drop_path", "conv3_block2_drop_path", "conv4_block1_drop_path"
    ]  # fmt: skip
    np.testing.assert_allclose([la.rate for la in drops], spec.drop_path_rates()[1:])
    n = 20_000
    for layer in drops:
        out = keras.ops.convert_to_numpy(layer(np.ones((n, 2, 2, 3), "float32"), training=True))
        flat = out.reshape(n, -1)
        assert (flat == flat[:, :1]).all(), "a sample is kept or dropped whole"
        kept = flat[:, 0] > 0
        np.testing.assert_allclose(flat[kept, 0], 1 / (1 - layer.rate), rtol=1e-6)
        sigma = (layer.rate * (1 - layer.rate) / n) ** 0.5
        assert abs((1 - kept.mean()) - layer.rate) < 5 * sigma


def test_zero_init_last_starts_each_branch_at_zero():
    model = build_resnet(tiny_spec(block="bottleneck", zero_init_last=True), input_shape=(8, 8, 3))
    gammas = {la.name: la.gamma.numpy() for la in model.layers if la.name.endswith("_bn")}
    for name, gamma in gammas.items():
        expected = 0.0 if name.endswith("_3_bn") else 1.0
        assert (gamma == expected).all(), name
    with pytest.raises(ValueError, match="needs version='v1'"):
        tiny_spec(version="v2", zero_init_last=True)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(groups=2), "bottleneck blocks only"),
        (dict(block="bottleneck", groups=32, width_per_group=1), "fewer than its 32 groups"),
        (dict(se_ratio=1.0), "Received: se_ratio=1.0"),
        (dict(drop_path_rate=-0.1), "Received: drop_path_rate=-0.1"),
        (dict(zero_init_last="yes"), "Received: zero_init_last='yes'"),
        (dict(stem="tiered"), "Received: stem='tiered'"),
        (dict(shortcut="max"), "Received: shortcut='max'"),
    ],
)
def test_bad_family_fields_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        tiny_spec(**fields)


def test_json_keeps_plain_specs_as_before_and_round_trips_the_family():
    plain = get_spec("resnet20").to_dict()
    assert not {"groups", "se_ratio", "drop_path_rate", "zero_init_last"} & set(plain)
    for name in ("seresnext50_32x4d", "resnet50d", "wide_resnet28_10"):
        spec = dataclasses.replace(get_spec(name), drop_path_rate=0.1)
        assert ResNetSpec.from_json(json.dumps(spec.to_dict())) == spec


def test_family_model_saves_and_loads_in_safe_mode(tmp_path):
    spec = tiny_spec(
        block="bottleneck", groups=2, width_per_group=32, se_ratio=0.25, shortcut="avg",
        stem="deep", drop_path_rate=0.2, zero_init_last=True,
    )  # fmt: skip
    model = build_resnet(spec, input_shape=(32, 32, 3), classes=3)
    random_weights(model, seed=5, scale=0.2)
    path = tmp_path / "family.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def _miniature(name):
    """A named spec with one block a stage: every part it has, a quarter of the layers."""
    spec = get_spec(name)
    stages = tuple(dataclasses.replace(s, blocks=1) for s in spec.stages)
    return dataclasses.replace(spec, stages=stages, drop_path_rate=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50d", "seresnext50_32x4d", "wide_resnet28_10"])
def test_named_family_converts_to_builtin_tflite_the_gpu_delegate_takes(name):
    spec = _miniature(name)
    model = build_resnet(spec, input_shape=(32, 32, 3), classes=10)
    x = np.random.default_rng(1).uniform(0, 1, (4, 32, 32, 3)).astype(np.float32)
    flatbuffer = export.convert_tflite(model, "fp32")  # builtin ops only, or it fails
    np.testing.assert_allclose(
        export.run_tflite(flatbuffer, x), model.predict(x, verbose=0), atol=1e-5
    )
    report = export.gpu_delegate_report(flatbuffer)
    assert report["compatible"], report["issues"]


def test_cli_train_takes_drop_path_and_records_it(tmp_path, capsys):
    """(tests/test_export.py trains and exports a family net: SE, avg shortcut, groups.)"""
    run = tmp_path / "run"
    argv = ["train", "--model", "resnet20", "--width", "0.25", "--output", str(run)]
    code, _, err = run_cli(capsys, *argv, "--drop-path", "1.5")
    assert code == 2 and "Received: drop_path_rate=1.5" in err and not run.exists()
    code, _, err = run_cli(
        capsys, *argv, "--drop-path", "0.2", "--image-size", "8", "--epochs", "1"
    )
    assert code == 0, err
    recorded = json.loads((run / "run.json").read_text())["fingerprint"]["spec"]
    assert recorded["drop_path_rate"] == 0.2
    model = keras.saving.load_model(run / "best.keras", safe_mode=True)
    assert sum(isinstance(la, keras.layers.Dropout) for la in model.layers) == 8  # 9 blocks


def test_cli_lists_the_family_with_its_applications(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["seresnext50_32x4d"][1] == "SEResNeXt50"
    assert rows["wide_resnet28_10"][4] == "36,497,146"
    assert "SE 1/16" in out and "32x4d groups" in out and "deep stem, avg shortcut" in out


# --- the search space's optional parts ------------------------------------------------------


def test_search_space_switches_the_family_parts_on(tmp_path):
    import keras_tuner as kt

    from keras_resnet.tuning import HyperResNet, SearchSpace
    from keras_resnet.tuning.tuners import make_tuner

    space = SearchSpace(
        widths=(0.25,), num_stages=None, blocks=(1, 1), se_ratios=(0, 0.25), groups=(1, 4),
        shortcuts=("projection", "avg"), drop_path_rates=(0, 0.1), stems=("cifar", "deep"),
    )  # fmt: skip
    hm = HyperResNet((32, 32, 3), 10, "resnet20", space=space)
    tuner = make_tuner(hm, "random", directory=tmp_path, max_trials=100)
    seen = set()
    for draw in range(40):
        hp = tuner.oracle.hyperparameters.copy()
        hp.values = tuner.oracle._random_values()
        spec = hm.spec(hp)
        assert spec.groups == 1 or spec.block == "bottleneck"
        assert spec.groups * spec.width_per_group == 64
        seen |= {("se", spec.se_ratio), ("groups", spec.groups), ("shortcut", spec.shortcut),
                 ("drop", spec.drop_path_rate), ("stem", spec.stem)}  # fmt: skip
        if draw < 6:
            assert hm.build(hp).count_params() == hm.count_params(hp)
    assert {
        ("se", 0.25),
        ("groups", 4),
        ("shortcut", "avg"),
        ("drop", 0.1),
        ("stem", "deep"),
    } <= seen
    plain = kt.HyperParameters()
    HyperResNet((32, 32, 3), 10, "resnet20").declare_hyperparameters(plain)
    assert not {"se_ratio", "groups", "shortcut", "drop_path_rate"} & set(plain.values)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(se_ratios=(1.5,)), r"Received: se_ratios=\(1.5,\)"),
        (dict(groups=(3,)), "dividing 64"),
        (dict(shortcuts="max"), "Received: shortcuts='max'"),
        (dict(groups=(1, 4), block_types="basic"), "apply to bottleneck blocks"),
    ],
)
def test_bad_family_parts_in_a_space_are_refused(kwargs, message):
    from keras_resnet.spec import get_spec
    from keras_resnet.tuning import SearchSpace

    with pytest.raises(ValueError, match=message):
        SearchSpace(**kwargs).resolve(get_spec("resnet20"), (32, 32, 3))


def test_cli_family_flags_reach_the_search_space(monkeypatch, tmp_path):
    from keras_resnet import cli, tuning

    seen = {}
    monkeypatch.setattr(tuning, "search", lambda dataset, **kwargs: seen.update(kwargs))
    argv = ["tune", "--output", str(tmp_path / "r"), "--se-ratios", "0,0.0625", "--groups",
            "1,4", "--shortcuts", "projection,avg", "--drop-path-rates", "0,0.1"]  # fmt: skip
    assert cli.main(argv) == 0
    space = seen["space"]
    assert space.se_ratios == (0.0, 0.0625) and space.groups == (1, 4)
    assert space.shortcuts == ("avg", "projection") and space.drop_path_rates == (0.0, 0.1)


def test_onnx_refuses_grouped_convs_in_one_line():
    from keras_resnet.export.onnx import check_onnx_supported

    model = build_resnet(tiny_spec(block="bottleneck", groups=2), input_shape=(8, 8, 3), classes=2)
    with pytest.raises(ValueError, match="grouped convs \\(first: conv2_block1_2_conv\\)"):
        check_onnx_supported(model)
    check_onnx_supported(build_resnet(tiny_spec(), input_shape=(8, 8, 3), classes=2))
