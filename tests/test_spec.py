"""The spec: validation, width scaling, JSON round trips, the named-spec table."""

import dataclasses
import json

import pytest

from keras_resnet.spec import (
    NAMED_SPECS,
    ResNetSpec,
    StageSpec,
    get_spec,
    list_specs,
    resolve_spec,
    scale_filters,
    spec_name,
)
from tests.helpers import tiny_spec

EXPECTED_NAMES = [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnet18v2", "resnet34v2", "resnet50v2", "resnet101v2", "resnet152v2",
    "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
]  # fmt: skip
FAMILY_NAMES = [
    "tv_resnet50", "tv_resnet101", "tv_resnet152",
    "resnet18d", "resnet34d", "resnet50d", "resnet101d", "resnet152d",
    "seresnet50", "seresnext50_32x4d", "resnext50_32x4d", "resnext101_32x8d",
    "wide_resnet50_2", "wide_resnet101_2", "wide_resnet28_10",
]  # fmt: skip


def test_named_specs_listed_and_looked_up():
    assert list_specs() == EXPECTED_NAMES + FAMILY_NAMES
    assert get_spec("ResNeXt50-32x4d") is NAMED_SPECS["resnext50_32x4d"]
    assert get_spec("wideresnet502") is NAMED_SPECS["wide_resnet50_2"]
    assert get_spec("ResNet50V2") is NAMED_SPECS["resnet50v2"]
    assert get_spec("resnet-20") is NAMED_SPECS["resnet20"]
    with pytest.raises(ValueError, match="Received: name='resnet7'"):
        get_spec("resnet7")


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_named_spec_depth_matches_name(name):
    spec = get_spec(name)
    assert spec.depth == int(name.removeprefix("resnet").removesuffix("v2"))
    assert spec_name(spec) == name


def test_cifar_specs_follow_the_paper():
    for depth in (20, 32, 44, 56, 110):
        spec = get_spec(f"resnet{depth}")
        n = (depth - 2) // 6
        assert [(s.filters, s.blocks, s.stride) for s in spec.stages] == [
            (16, n, 1), (32, n, 2), (64, n, 2)
        ]  # fmt: skip
        assert (spec.stem, spec.shortcut, spec.block) == ("cifar", "zero_pad", "basic")


@pytest.mark.parametrize("name", EXPECTED_NAMES + FAMILY_NAMES)
def test_json_round_trip(name):
    spec = get_spec(name)
    text = json.dumps(spec.to_dict())
    again = ResNetSpec.from_dict(json.loads(text))
    assert again == spec
    assert ResNetSpec.from_json(spec.to_json()) == spec
    assert isinstance(again.stages, tuple) and isinstance(again.stages[0], StageSpec)


def test_replace_gives_a_validated_variant():
    half = dataclasses.replace(get_spec("resnet20"), width=0.5)
    assert [s.filters for s in half.scaled_stages()] == [8, 16, 32]
    assert half.scaled_stem_filters == 8
    assert spec_name(half) is None
    with pytest.raises(ValueError, match="Received: width=0"):
        dataclasses.replace(get_spec("resnet20"), width=0)


@pytest.mark.parametrize(
    "filters, width, divisor, expected",
    [
        (64, 1.0, 8, 64),  # width 1 is exact whatever the divisor
        (20, 1.0, 8, 20),
        (64, 0.5, 8, 32),
        (16, 0.25, 8, 8),  # never below the divisor
        (16, 0.01, 8, 8),
        (3, 0.1, 1, 1),  # never zero
        (64, 1.3, 8, 80),  # 83.2 -> nearest multiple of 8
        (64, 0.7, 8, 48),  # 44.8 -> 48 (half rounds up)
        (100, 0.55, 16, 64),  # 55 -> 48 is < 90% of 55, so one more step
        (64, 1.5, 1, 96),
    ],
)
def test_width_rounding(filters, width, divisor, expected):
    assert scale_filters(filters, width, divisor) == expected


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(filters=0, blocks=1), "`filters` must be a positive integer. Received: filters=0"),
        (dict(filters=8, blocks=0), "`blocks` must be a positive integer. Received: blocks=0"),
        (dict(filters=8, blocks=True), "Received: blocks=True"),
        (dict(filters=8.0, blocks=1), "Received: filters=8.0"),
        (dict(filters=8, blocks=1, stride=0), "Received: stride=0"),
        (dict(filters=8, blocks=1, stride="2"), "Received: stride='2'"),
    ],
)
def test_stage_validation(kwargs, message):
    with pytest.raises(ValueError) as e:
        StageSpec(**kwargs)
    assert message in str(e.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(stages=()), "`stages` must be a non-empty sequence"),
        (dict(stages="abc"), "Received: stages='abc'"),
        (dict(stages=[{"filters": 8}]), "`stages` entries must be StageSpec or dicts"),
        (dict(stages=[{"filters": 8, "blocks": 0}]), "Received: blocks=0"),
        (dict(block="dense"), "must be one of ['basic', 'bottleneck']. Received: block='dense'"),
        (dict(version="v3"), "Received: version='v3'"),
        (dict(width=-1.0), "Received: width=-1.0"),
        (dict(width=float("nan")), "Received: width=nan"),
        (dict(width=100), "Received: width=100"),
        (dict(width_divisor=0), "Received: width_divisor=0"),
        (dict(stem="resnetd"), "Received: stem='resnetd'"),
        (dict(stem_filters=-8), "Received: stem_filters=-8"),
        (dict(shortcut="identity"), "Received: shortcut='identity'"),
        (dict(use_bias="yes"), "`use_bias` must be a bool. Received: use_bias='yes'"),
        (dict(bn_epsilon=0.0), "Received: bn_epsilon=0.0"),
        (dict(bn_momentum=1.0), "Received: bn_momentum=1.0"),
        (dict(stride_block="middle"), "Received: stride_block='middle'"),
        (dict(bottleneck_stride="5x5"), "Received: bottleneck_stride='5x5'"),
        (dict(expansion=0), "Received: expansion=0"),
        (
            dict(shortcut="zero_pad", stages=(StageSpec(16, 1, 1), StageSpec(8, 1, 2))),
            "`shortcut='zero_pad'` can only add channels, but stage 1 goes from 16 to 8",
        ),
    ],
)  # fmt: skip
def test_spec_validation(overrides, message):
    with pytest.raises(ValueError) as e:
        tiny_spec(**overrides)
    assert message in str(e.value)


def test_from_dict_rejects_unknown_and_missing_fields():
    d = get_spec("resnet20").to_dict()
    with pytest.raises(ValueError, match=r"Unknown spec field\(s\) \['widht'\]"):
        ResNetSpec.from_dict({**d, "widht": 0.5})
    d.pop("stages")
    with pytest.raises(ValueError, match="A spec needs `stages`"):
        ResNetSpec.from_dict(d)
    with pytest.raises(ValueError, match="A spec must be a dict"):
        ResNetSpec.from_dict([1, 2])


def test_resolve_spec():
    spec = get_spec("resnet18")
    assert resolve_spec("resnet18") is spec
    assert resolve_spec(spec) is spec
    assert resolve_spec(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="Received: spec=3"):
        resolve_spec(3)


def test_spec_is_frozen_and_hashable():
    spec = get_spec("resnet50")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.width = 2.0
    assert len({spec, get_spec("resnet50"), get_spec("resnet101")}) == 2
