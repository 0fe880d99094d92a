"""Property test: any spec and arguments either build the expected model or raise ValueError.

Draws 1,000 cases (500 + 300 + 200 in its three tests) mixing valid and
invalid values for every spec field and builder argument. A valid case must
build a model whose output shape is what the strides say and whose layers are
the layer plan's (`keras_resnet.plan`), layer for layer: the Keras class of its
kind, input and output shapes, trainable and non-trainable parameters, and in
all the MACs `count_macs` reads off the model and the parameters
`ResNetSpec.count_params` predicts; an invalid one must raise ValueError, never
any other exception.
"""

import math

import keras
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keras_resnet import build_resnet
from keras_resnet.network import KERAS_LAYERS
from keras_resnet.plan import plan
from keras_resnet.sizing import count_macs
from keras_resnet.spec import ResNetSpec, StageSpec, scale_filters

# Drawn specs: each is built (variables left uninitialised) and compared with its plan;
# the count is what the suite's time budget allows.
CASES = 250

stage = st.fixed_dictionaries(
    {"filters": st.integers(1, 12), "blocks": st.integers(1, 2), "stride": st.integers(1, 2)}
)
spec_kwargs = st.fixed_dictionaries(
    {"stages": st.lists(stage, min_size=1, max_size=4)},
    optional={
        "block": st.sampled_from(["basic", "bottleneck"]),
        "version": st.sampled_from(["v1", "v2"]),
        "width": st.sampled_from([0.25, 0.5, 1.0, 1.5]),
        "width_divisor": st.integers(1, 8),
        "stem": st.sampled_from(["imagenet", "cifar", "deep"]),
        "stem_filters": st.integers(1, 12),
        "shortcut": st.sampled_from(["projection", "zero_pad", "avg"]),
        "use_bias": st.booleans(),
        "stride_block": st.sampled_from(["first", "last"]),
        "bottleneck_stride": st.sampled_from(["1x1", "3x3"]),
        "expansion": st.integers(1, 4),
        "bn_momentum": st.floats(0.0, 0.999),
        "groups": st.sampled_from([1, 2, 4]),
        "width_per_group": st.sampled_from([16, 64, 128]),
        "se_ratio": st.sampled_from([0.0, 0.25]),
        "drop_path_rate": st.sampled_from([0.0, 0.2]),
        "zero_init_last": st.booleans(),
    },
)
build_kwargs = st.fixed_dictionaries(
    {
        "include_top": st.booleans(),
        "pooling": st.sampled_from([None, "avg", "max"]),
        "classes": st.integers(1, 7),
        "input_shape": st.one_of(
            st.none(),
            st.tuples(st.integers(8, 48), st.integers(8, 48), st.sampled_from([1, 3])),
            st.tuples(st.none(), st.none(), st.just(3)),
        ),
        "classifier_activation": st.sampled_from(["softmax", None, "sigmoid"]),
    }
)
# One wrong value at a time, so each invalid case tests one check.
BAD_SPEC = {
    "stages": [[], [{"filters": 0, "blocks": 1}], [{"filters": 4, "blocks": -1}],
               [{"filters": 4, "blocks": 1, "stride": 0}], [{"filters": 2.5, "blocks": 1}], "abc"],
    "block": ["dense", None], "version": ["v3", 2], "width": [0.0, -1.0, math.inf, "1"],
    "width_divisor": [0, 1.5], "stem": ["tiered"], "stem_filters": [0, "4"],
    "shortcut": ["none"], "groups": [0, 1.5], "width_per_group": [0, "4"],
    "se_ratio": [-0.1, 1.0], "drop_path_rate": [1.0, math.nan],
    "zero_init_last": [1], "use_bias": ["no", 1], "stride_block": ["middle"],
    "bottleneck_stride": ["5x5"], "expansion": [0], "bn_momentum": [1.5, -0.1],
    "bn_epsilon": [0.0, math.nan],
}  # fmt: skip
BAD_BUILD = {
    "pooling": ["sum", "mean"], "classes": [0, -3, 2.0],
    "input_shape": [(2, 2, 3), (32, 32), (32, 32, 0), (32, "a", 3), "32"],
    "classifier_activation": ["bogus"], "weights": ["missing.h5", "imagenet"],
}  # fmt: skip


@st.composite
def case(draw):
    sk, bk = draw(spec_kwargs), draw(build_kwargs)
    corrupt = draw(st.sampled_from(["none"] * 3 + ["spec", "build"]))
    table, target = {"spec": (BAD_SPEC, sk), "build": (BAD_BUILD, bk)}.get(corrupt, (None, None))
    if table:
        field = draw(st.sampled_from(sorted(table)))
        target[field] = draw(st.sampled_from(table[field]))
        if field in ("pooling",):
            bk["include_top"] = False
        if field in ("classes", "classifier_activation"):
            bk["include_top"] = True
    return sk, bk


def _expected_shape(spec: ResNetSpec, kw: dict) -> tuple:
    stages = spec.scaled_stages()
    channels = stages[-1].filters * (spec.expansion if spec.block == "bottleneck" else 1)
    if kw["include_top"]:
        return (None, kw["classes"])
    if kw["pooling"] in ("avg", "max"):
        return (None, channels)
    size = kw["input_shape"] or (None, None, 3)

    def out(side):
        if side is None:
            return None
        for stride in ([2, 2] if spec.stem != "cifar" else []) + [s.stride for s in stages]:
            side = -(-side // stride)  # every strided layer here outputs ceil(side / stride)
        return side

    return (None, out(size[0]), out(size[1]), channels)


def _built(layer) -> tuple:
    inputs = layer.input if isinstance(layer.input, list) else [layer.input]
    return (
        type(layer),
        tuple(tuple(t.shape[1:]) for t in inputs),
        tuple(layer.output.shape[1:]),
        sum(math.prod(w.shape) for w in layer.trainable_weights),
        sum(math.prod(w.shape) for w in layer.non_trainable_weights),
    )


def _planned(entry) -> tuple:
    shapes = (entry.input_shapes, entry.output_shape, entry.params, entry.non_trainable)
    return (KERAS_LAYERS[entry.kind], *shapes)


def _check_layers_are_the_plan(model, spec: ResNetSpec, kw: dict) -> None:
    planned = plan(
        spec,
        model.input_shape[1:],
        include_top=kw["include_top"],
        pooling=kw["pooling"],
        classes=kw["classes"],
        classifier_activation=kw["classifier_activation"],
    )
    named = {entry.name: entry for entry in planned if not entry.anonymous}
    built = model.layers[1:]  # after the InputLayer
    assert len(built) == len(planned)
    assert {layer.name for layer in built} >= set(named)
    for layer in built:
        if layer.name in named:
            assert _built(layer) == _planned(named[layer.name]), layer.name
    # keras.applications' unnamed pools: Keras names them, so they are compared as a set.
    unnamed = sorted((_built(layer) for layer in built if layer.name not in named), key=str)
    assert unnamed == sorted(map(_planned, (e for e in planned if e.anonymous)), key=str)
    if None not in model.input_shape[1:]:
        assert sum(entry.macs for entry in planned) == count_macs(model)


@pytest.mark.slow
def test_build_or_value_error():
    """The models are built in a `keras.StatelessScope` that leaves their variables
    uninitialised (Keras' deferred initialisation): shapes and counts are all that is
    compared, and drawing random initial values took half of the time."""

    @settings(
        max_examples=CASES,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case())
    def check(drawn):
        spec_kwargs, kw = drawn
        try:
            spec = ResNetSpec(**spec_kwargs)
            with keras.StatelessScope(initialize_variables=False):
                model = build_resnet(spec, **kw)
        except ValueError:
            event("ValueError")
            return
        event("built")
        assert model.output_shape == _expected_shape(spec, kw)
        _check_layers_are_the_plan(model, spec, kw)
        channels = model.input_shape[-1]
        assert model.count_params() == spec.count_params(
            channels=channels, classes=kw["classes"] if kw["include_top"] else None
        )

    try:
        check()
    finally:
        # Drops the uninitialised variables Keras keeps for a later initialisation.
        keras.backend.clear_session(free_memory=False)


def test_scale_filters_never_zero_and_divisible():
    @settings(max_examples=300, derandomize=True)
    @given(st.integers(1, 2048), st.floats(0.01, 8.0), st.integers(1, 16))
    def check(filters, width, divisor):
        out = scale_filters(filters, width, divisor)
        assert out >= 1
        if width != 1.0:
            assert out % divisor == 0 and out >= divisor
            assert out >= 0.9 * filters * width

    check()


def test_stage_spec_accepts_only_positive_ints():
    @settings(max_examples=200, derandomize=True)
    @given(st.one_of(st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=2), st.none()))
    def check(value):
        try:
            s = StageSpec(filters=value, blocks=1)
        except ValueError as e:
            assert "filters" in str(e)
            return
        assert isinstance(s.filters, int) and s.filters >= 1

    check()
