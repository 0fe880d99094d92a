"""BN folding: the folded model computes what the model computes, with no BN after a conv."""

import collections
import contextlib
import dataclasses
import io
import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnet
from keras_resnet import build_resnet, export
from keras_resnet.export import core
from keras_resnet.fold import fold_batchnorm
from keras_resnet.spec import get_spec, list_specs
from tests.helpers import run_cli, tiny_spec

RELATIVE = 1e-4
FOLDS_INTO = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def randomize(model, seed=0):
    """Random conv/dense biases and non-trivial BN statistics, on Keras' random kernels.

    Not `tests.helpers.random_weights`: its all-positive kernels grow the activations layer
    by layer, and with moving statistics that do not match them a 50-layer net overflows.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape
            sign = rng.choice([-1.0, 1.0], c)
            layer.gamma.assign(sign * rng.uniform(0.5, 1.5, c))
            layer.beta.assign(rng.normal(0, 0.5, c))
            layer.moving_mean.assign(rng.normal(0, 0.5, c))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c))
        elif getattr(layer, "use_bias", False) and getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))


def images(shape, n=2, seed=1):
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape)).astype("float32")


def eager(model, x):
    return np.asarray(model(x, training=False))


def graph(model, x):
    return model.predict(x, verbose=0)


def assert_same(model, folded, x, run=eager):
    expected, got = run(model, x), run(folded, x)
    scale = np.abs(expected).max()
    assert scale > 0
    assert np.abs(got - expected).max() <= RELATIVE * scale


def bn_after_a_conv(model):
    """BatchNormalization layers whose input a conv or dense layer makes (read from the config)."""
    kinds = {layer.name: type(layer) for layer in model.layers}
    return [
        lc["name"]
        for lc in model.get_config()["layers"]
        if lc["class_name"] == "BatchNormalization"
        and issubclass(
            kinds[lc["inbound_nodes"][0]["args"][0]["config"]["keras_history"][0]], FOLDS_INTO
        )
    ]


def check_fold(model, x, run=eager):
    assert bn_after_a_conv(model)
    folded = fold_batchnorm(model)
    assert_same(model, folded, x, run)
    assert type(folded.output) is type(model.output)  # a tensor stays a tensor, not a list
    assert not bn_after_a_conv(folded)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    assert len(folded.layers) < len(model.layers)
    return folded


# --- every named spec ----------------------------------------------------------------------


def _shallow(spec):
    """The spec's blocks once each: one block in stage 1, two (strided and not) in stage 2.

    Depth only repeats blocks, so this keeps every kind of block a named spec has (and every
    named spec whose blocks another already covers maps to the same shallow spec).
    """
    first, second = spec.stages[:2]
    stages = (dataclasses.replace(first, blocks=1), dataclasses.replace(second, blocks=2))
    return dataclasses.replace(spec, stages=stages)


def _distinct_shallow_specs():
    seen = {}
    for name in list_specs():
        seen.setdefault(_shallow(get_spec(name)), name)
    return sorted(seen.values(), key=list_specs().index)


def test_every_named_spec_has_a_distinct_shallow_form_tested():
    covered = {_shallow(get_spec(n)) for n in _distinct_shallow_specs()}
    assert covered == {_shallow(get_spec(n)) for n in list_specs()}


@pytest.mark.parametrize("name", _distinct_shallow_specs())
def test_named_specs_fold_exactly(name):
    model = build_resnet(
        _shallow(get_spec(name)), input_shape=(32, 32, 3), classes=10, classifier_activation=None
    )
    randomize(model)
    check_fold(model, images((32, 32, 3)))


@pytest.mark.parametrize("name", ["resnet50", "resnet50v2"])
def test_full_depth_v1_and_v2_fold_exactly(name):
    model = build_resnet(name, input_shape=(32, 32, 3), classes=10, classifier_activation=None)
    randomize(model)
    folded = check_fold(model, images((32, 32, 3)))
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    rescaled = [layer for layer in folded.layers if isinstance(layer, keras.layers.Rescaling)]
    # v1: every BN follows a conv; v2: only the pre-activation ones and post_bn do not.
    expected = sorted(b.name for b in bns if b.name.endswith("preact_bn") or b.name == "post_bn")
    assert sorted(r.name for r in rescaled) == expected
    assert len(folded.layers) == len(model.layers) - len(bns) + len(expected)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    for conv in convs:  # names kept; a conv that took a BN gained a bias
        assert isinstance(folded.get_layer(conv.name), keras.layers.Conv2D)
    assert folded.get_layer("conv2_block1_1_conv").use_bias
    assert folded.count_params() < model.count_params()


# --- the builder's options ---------------------------------------------------------------------

MATRIX = [
    (block, version, stem, shortcut)
    for block in ("basic", "bottleneck")
    for version in ("v1", "v2")
    for stem in ("cifar", "imagenet")
    for shortcut in ("projection", "zero_pad")
]
HEADS = [(True, None), (False, "avg"), (False, "max"), (False, None)]


@pytest.mark.parametrize("i", range(len(MATRIX)), ids=["-".join(m) for m in MATRIX])
def test_every_block_version_stem_shortcut_and_head(i):
    block, version, stem, shortcut = MATRIX[i]
    include_top, pooling = HEADS[i % len(HEADS)]
    spec = tiny_spec(
        block=block, version=version, stem=stem, shortcut=shortcut, use_bias=bool(i % 3)
    )
    model = build_resnet(
        spec,
        input_shape=(32, 32, 3),
        classes=10,
        include_top=include_top,
        pooling=pooling,
        classifier_activation=None,
    )
    randomize(model, seed=i)
    folded = check_fold(model, images((32, 32, 3), seed=i))
    assert folded.output_shape == model.output_shape
    assert [t.name for t in folded.inputs] == [t.name for t in model.inputs]


def test_channels_first():
    spec = tiny_spec(block="bottleneck", version="v2", shortcut="projection")
    model = build_resnet(
        spec,
        input_shape=(3, 32, 32),
        classes=10,
        data_format="channels_first",
        classifier_activation=None,
    )
    randomize(model)
    x = images((3, 32, 32))
    try:
        graph(model, x)
    except Exception as e:  # noqa: BLE001 - TF's CPU kernels may lack NCHW convs
        pytest.skip(f"this CPU runs no channels_first model: {str(e).splitlines()[0]}")
    # In graph mode: eagerly, TF 2.21's oneDNN CPU kernels get this (unfolded) model's
    # strided NCHW convs wrong (0.27 off a channels_last twin; graph mode agrees to 2e-7).
    check_fold(model, x, run=graph)


# --- the graph, generically ----------------------------------------------------------------


def _family_net():
    """SE, a grouped conv, a depthwise conv, drop path, spatial dropout and a Dense + BN head."""
    layers = keras.layers
    inputs = keras.Input((16, 16, 8))
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.Dropout(0.3, noise_shape=(None, 1, 1, 1), name="stem_drop_path")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)  # folds through the dropped drop path
    x = layers.ReLU(name="stem_relu")(x)
    y = layers.Conv2D(16, 3, padding="same", groups=4, name="grouped_conv")(x)
    y = layers.BatchNormalization(name="grouped_bn")(y)
    y = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw_conv")(y)
    y = layers.BatchNormalization(name="dw_bn")(y)
    y = layers.Conv2D(16, 1, name="dw_project")(y)
    s = layers.GlobalAveragePooling2D(keepdims=True, name="se_squeeze")(y)
    s = layers.Conv2D(4, 1, activation="relu", name="se_reduce")(s)
    s = layers.Conv2D(16, 1, activation="sigmoid", name="se_expand")(s)
    y = layers.Multiply(name="se_excite")([y, s])
    y = layers.SpatialDropout2D(0.2, name="spatial_drop")(y)
    x = layers.Add(name="add")([x, y])
    x = layers.BatchNormalization(name="after_add_bn")(x)
    x = layers.Conv2D(8, 3, activation="relu", name="relu_conv")(x)
    x = layers.BatchNormalization(name="after_activation_bn")(x)  # a conv with its own ReLU
    x = layers.GaussianNoise(0.1, name="noise")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dense(12, name="fc")(x)
    x = layers.BatchNormalization(name="fc_bn")(x)
    outputs = layers.Dense(5, name="logits")(x)
    return keras.Model(inputs, outputs, name="family")


def test_se_groups_depthwise_dropout_and_dense_fold():
    model = _family_net()
    randomize(model)
    folded = check_fold(model, images((16, 16, 8)))
    names = {layer.name: layer for layer in folded.layers}
    for conv in ("stem_conv", "grouped_conv", "dw_conv", "fc"):
        assert names[conv].use_bias, conv
    assert names["grouped_conv"].groups == 4
    for dropped in ("stem_drop_path", "spatial_drop", "noise", "stem_bn", "fc_bn", "dw_bn"):
        assert dropped not in names, dropped
    for kept in ("after_add_bn", "after_activation_bn"):
        assert isinstance(names[kept], keras.layers.Rescaling), kept
    assert {"se_squeeze", "se_reduce", "se_expand", "se_excite"} <= set(names)


def test_a_conv_output_used_elsewhere_keeps_its_bn_separate():
    inputs = keras.Input((8, 8, 4))
    c = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="shared_conv")(inputs)
    b = keras.layers.BatchNormalization(name="bn")(c)
    x = keras.layers.Add(name="add")([c, b])
    model = keras.Model(inputs, x)
    randomize(model)
    folded = fold_batchnorm(model)
    assert_same(model, folded, images((8, 8, 4)))
    assert not folded.get_layer("shared_conv").use_bias
    assert isinstance(folded.get_layer("bn"), keras.layers.Rescaling)
    # Nor when the conv's output is itself a model output.
    model = keras.Model(inputs, [c, b])
    folded = fold_batchnorm(model)
    assert not folded.get_layer("shared_conv").use_bias
    for got, expected in zip(folded(images((8, 8, 4))), model(images((8, 8, 4))), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_a_nested_functional_model_is_folded_inside():
    inner = build_resnet(tiny_spec(), input_shape=(32, 32, 3), include_top=False, pooling="avg")
    randomize(inner)
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(3, name="head")(inner(inputs))
    model = keras.Model(inputs, outputs)
    folded = fold_batchnorm(model)
    assert_same(model, folded, images((32, 32, 3)))
    folded_inner = folded.get_layer(inner.name)
    assert not any(isinstance(x, keras.layers.BatchNormalization) for x in folded_inner.layers)


@pytest.mark.parametrize("mode", ["caffe", "torch"])
def test_keras_ops_in_the_graph_are_kept(mode):
    """preprocess_input inside a model is keras.ops calls (graph nodes that are not layers)."""
    inner = build_resnet(tiny_spec(), input_shape=(32, 32, 3), include_top=False, pooling="avg")
    randomize(inner)
    inputs = keras.Input((32, 32, 3))
    x = keras_resnet.preprocess_input(keras.layers.Rescaling(255.0)(inputs), mode=mode)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(inner(x)))
    folded = fold_batchnorm(model)
    assert_same(model, folded, images((32, 32, 3)))
    assert not any(
        isinstance(x, keras.layers.BatchNormalization) for x in folded.get_layer(inner.name).layers
    )


def test_a_trained_models_optimizer_state_is_left_behind(tmp_path):
    model = build_resnet(tiny_spec(), input_shape=(32, 32, 3), classes=10)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.train_on_batch(images((32, 32, 3), n=4), np.zeros(4))
    folded = fold_batchnorm(model)
    assert getattr(folded, "optimizer", None) is None
    model.save(tmp_path / "model.keras")
    folded.save(tmp_path / "folded.keras")
    # Adam keeps two slots a weight: the folded file holds the weights alone.
    sizes = [(tmp_path / name).stat().st_size for name in ("model.keras", "folded.keras")]
    assert sizes[1] < 0.5 * sizes[0], sizes


def test_the_model_is_not_changed():
    model = build_resnet(tiny_spec(), input_shape=(32, 32, 3), classes=10)
    randomize(model)
    before = [w.copy() for w in model.get_weights()]
    layers = [layer.name for layer in model.layers]
    folded = fold_batchnorm(model)
    assert [layer.name for layer in model.layers] == layers
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not set(map(id, folded.weights)) & set(map(id, model.weights))


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_save_and_load_with_safe_mode(version, tmp_path):
    model = build_resnet(tiny_spec(version=version), input_shape=(32, 32, 3), classes=10)
    randomize(model)
    folded = fold_batchnorm(model)
    folded.save(tmp_path / "folded.keras")
    loaded = keras.saving.load_model(tmp_path / "folded.keras", safe_mode=True)
    x = images((32, 32, 3))
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), folded.predict(x, verbose=0))
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in folded.layers]


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)


@pytest.mark.parametrize(
    "make",
    [
        lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]),
        _Subclassed,
        lambda: keras.layers.Dense(2),
        lambda: "resnet20",
    ],
    ids=["sequential", "subclassed", "layer", "string"],
)
def test_a_model_that_is_not_functional_is_refused(make):
    with pytest.raises(ValueError, match=r"functional keras.Model.*Received: model of type") as e:
        fold_batchnorm(make())
    assert "\n" not in str(e.value)


def test_public_name():
    assert keras_resnet.fold_batchnorm is fold_batchnorm
    assert "fold_batchnorm" in keras_resnet.__all__


# --- export --------------------------------------------------------------------------------

EXPORT_SHAPE = (16, 16, 3)
FAST = dict(formats="keras,saved_model", latency_runs=0, uint8_signature=False, verbose=False)


def _classifier(version="v1"):
    spec = tiny_spec(block="bottleneck", version=version, shortcut="projection")
    model = build_resnet(spec, input_shape=EXPORT_SHAPE, classes=4)
    randomize(model)
    return model


def _bns(model):
    return [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]


def test_export_writes_the_folded_model_verified_against_the_original(tmp_path, capsys):
    model = _classifier()
    manifest = export.export_model(model, tmp_path / "out", **{**FAST, "verbose": True})
    assert "BatchNorm folded" in capsys.readouterr().out
    fold = manifest["fold"]
    assert fold["applied"] and fold["artifacts"] == ["keras", "saved_model"]
    assert fold["layers"] == [len(model.layers), len(model.layers) - len(_bns(model))]
    assert fold["params"] < manifest["params"] == model.count_params()
    x = images(EXPORT_SHAPE, n=8)
    reference = model.predict(x, verbose=0)
    loaded = keras.saving.load_model(tmp_path / "out" / "model.keras", safe_mode=True)
    assert not _bns(loaded) and loaded.count_params() == fold["params"]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), reference, atol=1e-5)
    serve = tf.saved_model.load(str(tmp_path / "out" / "saved_model")).signatures
    got = serve["serving_default"](images=tf.constant(x))["probabilities"].numpy()
    np.testing.assert_allclose(got, reference, atol=1e-5)
    stored = sum(f.stat().st_size for f in (tmp_path / "out/saved_model/variables").glob("*.data*"))
    assert 4 * fold["params"] <= stored < 4 * manifest["params"]
    for fmt in ("keras", "saved_model"):
        check = manifest["artifacts"][fmt]["verification"]
        assert check["passed"] and 0 < check["max_abs_diff"] <= 1e-5, fmt
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk["fold"] == fold


def test_a_wrong_fold_fails_the_export(tmp_path, monkeypatch):
    def off_by_a_bit(model):
        folded = fold_batchnorm(model)
        bias = folded.get_layer("conv1_conv").bias
        bias.assign(bias + 0.05)
        return folded

    monkeypatch.setattr(core, "fold_batchnorm", off_by_a_bit)
    with pytest.raises(export.ExportVerificationError, match="keras failed verification"):
        export.export_model(_classifier(), tmp_path / "out", **{**FAST, "formats": "keras"})
    assert not (tmp_path / "out").exists()


def test_a_sequential_classifier_is_exported_unfolded(tmp_path):
    model = keras.Sequential(
        [
            keras.Input(EXPORT_SHAPE),
            keras.layers.Conv2D(4, 3),
            keras.layers.BatchNormalization(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    manifest = export.export_model(model, tmp_path / "out", **{**FAST, "formats": "keras"})
    assert manifest["fold"] == {
        "applied": False,
        "reason": "not a functional keras.Model (Sequential)",
    }


def test_a_mixed_precision_model_is_exported_as_its_folded_float32_copy(tmp_path):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = _classifier()
    finally:
        keras.config.set_dtype_policy(previous)
    # Folded in bfloat16 it would be another computation, far past the tolerance of 1e-5;
    # the export works on the float32 copy (the same variables), where folding is exact.
    x = images(EXPORT_SHAPE, n=8)
    assert np.abs(eager(fold_batchnorm(model), x) - eager(model, x)).max() > 1e-4
    manifest = export.export_model(model, tmp_path / "out", **{**FAST, "formats": "keras"})
    assert manifest["input"]["trained_dtype_policy"] == "mixed_bfloat16"
    assert manifest["fold"]["applied"] is True
    assert manifest["artifacts"]["keras"]["verification"]["max_abs_diff"] <= 1e-5


def test_cli_no_fold_keeps_the_training_graph(tmp_path, capsys):
    model = _classifier("v2")
    model.save(tmp_path / "model.keras")
    out = tmp_path / "out"
    argv = ["export", str(tmp_path / "model.keras"), "--output", str(out), "--formats", "keras"]
    code, stdout, stderr = run_cli(capsys, *argv, "--latency-runs", "0", "--no-fold")
    assert code == 0, stderr
    assert "BatchNorm folded" not in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["fold"] == {"applied": False, "reason": "fold=False"}
    loaded = keras.saving.load_model(out / "model.keras", safe_mode=True)
    assert [la.name for la in _bns(loaded)] == [la.name for la in _bns(model)]
    assert manifest["artifacts"]["keras"]["verification"]["max_abs_diff"] == 0.0


def test_export_options_fold_is_a_bool():
    assert export.ExportOptions().fold is True
    with pytest.raises(ValueError, match=r"`fold` must be True or False. Received: fold='no'"):
        export.ExportOptions(fold="no")


def _tflite_ops(model):
    buffer = export.convert_tflite(model, "fp32")
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        tf.lite.experimental.Analyzer.analyze(model_content=buffer)
    return collections.Counter(re.findall(r"Op#\d+ (\w+)\(", text.getvalue()))


def test_tflite_conversion_folds_batchnorm_by_itself():
    """What the fold module doc states: the same ops from the folded and the unfolded model."""
    model = _classifier("v2")
    folded = fold_batchnorm(model)
    ops = _tflite_ops(model)
    assert ops == _tflite_ops(folded)
    # No op for the folded BNs; one MUL (and one ADD) for each BN left as a Rescaling.
    leftover = [la for la in folded.layers if isinstance(la, keras.layers.Rescaling)]
    assert ops["MUL"] == len(leftover) > 0
    convs = [la for la in model.layers if isinstance(la, keras.layers.Conv2D)]
    assert ops["CONV_2D"] == len(convs)
