"""The architecture as data: stage specs, network specs and the named-spec table.

A `ResNetSpec` describes a whole residual network (stem, stages, block type,
pre- or post-activation, width multiplier, shortcut kind, normalisation
settings). It is validated entirely in `__post_init__`, so the builder never
sees a bad spec, and it round-trips through JSON with `to_dict`/`from_dict`.

Width scaling: every stage's `filters` and the `stem_filters` are multiplied by
`width` and rounded to the nearest multiple of `width_divisor` (half rounds
up), never below `width_divisor` and never more than 10% below the unrounded
value (the rule MobileNet's `_make_divisible` uses). With `width=1.0` the
filters are used exactly as written, whatever the divisor.

Example:

>>> import dataclasses
>>> from keras_resnet.spec import get_spec
>>> half = dataclasses.replace(get_spec("resnet20"), width=0.5)
>>> [s.filters for s in half.scaled_stages()]
[8, 16, 32]
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from typing import Any

from keras_resnet import sizing
from keras_resnet._checks import check_choice, is_int
from keras_resnet._checks import received as _received

# Re-exported for the modules that import it from here (it lives with the other sizes).
check_fits_in_memory = sizing.check_fits_in_memory

BLOCKS = ("basic", "bottleneck")
VERSIONS = ("v1", "v2")
STEMS = ("imagenet", "cifar", "deep")
SHORTCUTS = ("projection", "zero_pad", "avg")
#: How much each stem downsamples (the ImageNet and deep stems: a stride-2 conv and a max pool).
STEM_STRIDES = {"imagenet": 4, "deep": 4, "cifar": 1}
#: squeeze-and-excitation channels are rounded to a multiple of this (timm's `rd_divisor`).
SE_DIVISOR = 8
STRIDE_BLOCKS = ("first", "last")
BOTTLENECK_STRIDES = ("1x1", "3x3")

#: Fields added with the ResNet family (ResNeXt, SE, stochastic depth, zero-init): written
#: to JSON only when set (see `ResNetSpec.to_dict`).
FAMILY_FIELDS = ("groups", "width_per_group", "se_ratio", "drop_path_rate", "zero_init_last")

# Sizes past which a spec is a typo, not a network: they are refused before anything is
# built (a million blocks would hang the builder; ResNet-1202, the deepest in the papers,
# has 200 blocks a stage and 600 in all).
MAX_STAGE_BLOCKS = 512
MAX_TOTAL_BLOCKS = 1024
MAX_STAGES = 16
MAX_CHANNELS = 65536  # after width scaling and bottleneck expansion
MAX_STRIDE = 16


def _check_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> None:
    # bool is an int subclass: `blocks=True` is a bug, not one block.
    if not is_int(value) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"`{name}` must be {kind}. {_received(name, value)}")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be at most {maximum:,}. {_received(name, value)}")


def _check_float(name: str, value: Any, low: float, high: float, low_inclusive: bool) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and math.isfinite(value)
        and (value >= low if low_inclusive else value > low)
        and value < high
    )
    if not ok:
        bracket = "[" if low_inclusive else "("
        raise ValueError(
            f"`{name}` must be a number in {bracket}{low}, {high}). {_received(name, value)}"
        )


def make_divisible(value: float, divisor: int, round_limit: float = 0.9) -> int:
    """`value` rounded to the nearest multiple of `divisor` (half up), never below `divisor`,
    and bumped up one step when rounding lost more than `1 - round_limit` of it.

    The rule of MobileNet's `_make_divisible` and timm's `make_divisible` (which SE
    modules call with `round_limit=0`: no bump).

    Example:

    >>> make_divisible(83.2, 8), make_divisible(256 / 16, 8, 0.0), make_divisible(4.0, 8, 0.0)
    (80, 16, 8)
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return int(rounded)


def scale_filters(filters: int, width: float, divisor: int) -> int:
    """Scales a filter count by `width`, rounded as described in the module doc.

    Example:

    >>> scale_filters(64, 0.5, 8), scale_filters(16, 0.25, 8), scale_filters(16, 1.0, 8)
    (32, 8, 16)
    """
    if width == 1.0:
        return int(filters)
    return make_divisible(filters * width, divisor)


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """One stage: `blocks` residual blocks of `filters` filters, downsampling by `stride`.

    For bottleneck blocks `filters` is the bottleneck width; the stage outputs
    `expansion * filters` channels.
    """

    filters: int
    blocks: int
    stride: int = 2

    def __post_init__(self) -> None:
        _check_int("filters", self.filters, maximum=MAX_CHANNELS)
        _check_int("blocks", self.blocks, maximum=MAX_STAGE_BLOCKS)
        _check_int("stride", self.stride, maximum=MAX_STRIDE)

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
    """A whole residual network as data.

    Attributes:
        stages: the stages, in order (a tuple of `StageSpec`; lists and dicts
            are converted).
        block: `"basic"` (two 3x3 convs) or `"bottleneck"` (1x1-3x3-1x1).
        version: `"v1"` (post-activation, He et al. 2015) or `"v2"`
            (pre-activation, He et al. 2016, with a final BN-ReLU).
        width: multiplier on every filter count (see the module doc for rounding).
        width_divisor: filter counts are rounded to a multiple of this when
            `width != 1`.
        stem: `"imagenet"` (7x7/2 conv + 3x3/2 max pool), `"deep"` (three 3x3
            convs, the first strided, `stem_filters // 2` wide but the last,
            then the max pool: ResNet-C, timm's `stem_type="deep"`) or
            `"cifar"` (3x3/1 conv).
        stem_filters: filters of the stem's (last) conv (before width scaling).
        shortcut: `"projection"` (1x1 conv where the shape changes, option B),
            `"avg"` (ResNet-D: a 2x2 average pool strided as the block, then the
            1x1 conv at stride 1) or `"zero_pad"` (subsample and zero-pad
            channels, option A).
        use_bias: whether convs carry a bias. In v2, a conv that feeds straight
            into BatchNormalization never has one (keras.applications' layout).
        bn_epsilon: BatchNormalization epsilon.
        bn_momentum: BatchNormalization momentum (Keras convention: weight of
            the old moving average).
        stride_block: which block of a stage carries its stride: `"first"`
            (the paper, ResNet50) or `"last"` (keras.applications' ResNetV2).
        bottleneck_stride: where a bottleneck block strides: on its first
            `"1x1"` conv (Caffe/keras ResNet50) or on the `"3x3"` (ResNet v1.5,
            keras ResNetV2).
        expansion: channel expansion of bottleneck blocks.
        groups: groups of a bottleneck's 3x3 conv (ResNeXt's cardinality, 32 in
            ResNeXt-50 32x4d). Bottleneck blocks only.
        width_per_group: channels per group of that conv at `filters=64`
            (torchvision's `width_per_group`, timm's `base_width`): the 3x3
            conv has `filters * width_per_group // 64 * groups` channels, so 64
            is the plain ResNet, 4 with 32 groups ResNeXt-50 32x4d, 128 Wide
            ResNet-50-2. Bottleneck blocks only.
        se_ratio: squeeze-and-excitation on each residual branch (after its
            last BN, before the add, where timm places it), reducing to
            `out * se_ratio` channels rounded to a multiple of 8 as timm's
            `make_divisible(..., round_limit=0)` does; 0 turns it off
            (SE-ResNet: 1/16).
        drop_path_rate: stochastic depth: the residual branch of block k (of n
            in the network) is dropped per sample with probability
            `drop_path_rate * k / (n - 1)`, rising linearly from 0 (timm's rule);
            identity at inference.
        zero_init_last: start the last BatchNormalization of every residual
            branch with gamma = 0, so each block starts as the identity (timm's
            `zero_init_last`, Goyal et al. 2017). v1 only: a v2 branch ends in
            a conv.
    """

    stages: tuple[StageSpec, ...]
    block: str = "bottleneck"
    version: str = "v1"
    width: float = 1.0
    width_divisor: int = 8
    stem: str = "imagenet"
    stem_filters: int = 64
    shortcut: str = "projection"
    use_bias: bool = True
    bn_epsilon: float = 1.001e-5
    bn_momentum: float = 0.99
    stride_block: str = "first"
    bottleneck_stride: str = "1x1"
    expansion: int = 4
    groups: int = 1
    width_per_group: int = 64
    se_ratio: float = 0.0
    drop_path_rate: float = 0.0
    zero_init_last: bool = False

    def __post_init__(self) -> None:
        stages = self.stages
        if isinstance(stages, (list, tuple)):
            try:
                stages = tuple(
                    s if isinstance(s, StageSpec) else StageSpec(**s) if isinstance(s, dict) else s
                    for s in stages
                )
            except TypeError as e:
                raise ValueError(
                    f"`stages` entries must be StageSpec or dicts with keys filters, blocks, "
                    f"stride ({e}). {_received('stages', self.stages)}"
                ) from None
        if (
            not isinstance(stages, tuple)
            or not stages
            or not all(isinstance(s, StageSpec) for s in stages)
        ):
            raise ValueError(
                "`stages` must be a non-empty sequence of StageSpec. "
                f"{_received('stages', self.stages)}"
            )
        if len(stages) > MAX_STAGES:
            raise ValueError(
                f"`stages` must have at most {MAX_STAGES} stages. Received: {len(stages)} stages"
            )
        total = sum(s.blocks for s in stages)
        if total > MAX_TOTAL_BLOCKS:
            raise ValueError(
                f"`stages` must have at most {MAX_TOTAL_BLOCKS:,} blocks in all. "
                f"Received: {total:,} blocks ({[s.blocks for s in stages]})"
            )
        object.__setattr__(self, "stages", stages)
        check_choice("block", self.block, BLOCKS)
        check_choice("version", self.version, VERSIONS)
        _check_float("width", self.width, 0.0, 16.0, low_inclusive=False)
        _check_int("width_divisor", self.width_divisor)
        check_choice("stem", self.stem, STEMS)
        _check_int("stem_filters", self.stem_filters, maximum=MAX_CHANNELS)
        check_choice("shortcut", self.shortcut, SHORTCUTS)
        if not isinstance(self.use_bias, bool):
            raise ValueError(f"`use_bias` must be a bool. {_received('use_bias', self.use_bias)}")
        _check_float("bn_epsilon", self.bn_epsilon, 0.0, 1.0, low_inclusive=False)
        _check_float("bn_momentum", self.bn_momentum, 0.0, 1.0, low_inclusive=True)
        check_choice("stride_block", self.stride_block, STRIDE_BLOCKS)
        check_choice("bottleneck_stride", self.bottleneck_stride, BOTTLENECK_STRIDES)
        _check_int("expansion", self.expansion, maximum=64)
        self._check_family()
        self._check_channels()
        if self.shortcut == "zero_pad":
            self._check_channels_never_shrink()
        # Store plain floats so equality and JSON do not depend on the number type given.
        for name in ("width", "bn_epsilon", "bn_momentum", "se_ratio", "drop_path_rate"):
            object.__setattr__(self, name, float(getattr(self, name)))

    def _check_family(self) -> None:
        """The ResNeXt / SE / stochastic-depth / zero-init fields."""
        _check_int("groups", self.groups, maximum=MAX_CHANNELS)
        _check_int("width_per_group", self.width_per_group, maximum=MAX_CHANNELS)
        if self.block == "basic" and (self.groups, self.width_per_group) != (1, 64):
            raise ValueError(
                "`groups` and `width_per_group` apply to bottleneck blocks only (basic blocks "
                "need groups=1, width_per_group=64, as torchvision's). "
                f"Received: groups={self.groups!r}, width_per_group={self.width_per_group!r}"
            )
        _check_float("se_ratio", self.se_ratio, 0.0, 1.0, low_inclusive=True)
        _check_float("drop_path_rate", self.drop_path_rate, 0.0, 1.0, low_inclusive=True)
        if not isinstance(self.zero_init_last, bool):
            received = _received("zero_init_last", self.zero_init_last)
            raise ValueError(f"`zero_init_last` must be a bool. {received}")
        if self.zero_init_last and self.version == "v2":
            raise ValueError(
                "`zero_init_last` needs version='v1': a v2 residual branch ends in a conv, not "
                f"a BatchNormalization. {_received('version', self.version)}"
            )

    def _check_channels(self) -> None:
        scaled = self.scaled_stages()
        narrowest = min(self.inner_channels(s.filters) for s in scaled)
        if narrowest < self.groups:
            raise ValueError(
                f"`width_per_group` leaves a stage's 3x3 conv {narrowest} channels wide, fewer "
                f"than its {self.groups} groups (filters * width_per_group // 64 must be at "
                f"least 1). {_received('width_per_group', self.width_per_group)}"
            )
        widest = max(
            max(s.filters * self.block_expansion, self.inner_channels(s.filters)) for s in scaled
        )
        if max(widest, self.scaled_stem_filters) > MAX_CHANNELS:
            raise ValueError(
                f"`width` makes a layer {widest:,} channels wide, more than {MAX_CHANNELS:,}. "
                f"{_received('width', self.width)}"
            )

    def _check_channels_never_shrink(self) -> None:
        previous = self.scaled_stem_filters
        for i, stage in enumerate(self.scaled_stages()):
            out = stage.filters * self.block_expansion
            if out < previous:
                raise ValueError(
                    "`shortcut='zero_pad'` can only add channels, but stage "
                    f"{i} goes from {previous} to {out}. Use shortcut='projection'. "
                    f"{_received('stages', self.stages)}"
                )
            previous = out

    # Derived quantities ---------------------------------------------------

    def scaled_stages(self) -> tuple[StageSpec, ...]:
        """The stages with `width` applied to their filters."""
        return tuple(
            dataclasses.replace(s, filters=scale_filters(s.filters, self.width, self.width_divisor))
            for s in self.stages
        )

    @property
    def scaled_stem_filters(self) -> int:
        return scale_filters(self.stem_filters, self.width, self.width_divisor)

    def inner_channels(self, filters: int) -> int:
        """Channels of a block's 3x3 conv(s) for a stage of `filters` (scaled) filters.

        Bottleneck: torchvision's `int(planes * (width_per_group / 64.0)) * groups`.
        """
        if self.block == "basic":
            return filters
        return filters * self.width_per_group // 64 * self.groups

    def se_channels(self, channels: int) -> int:
        """Squeeze-and-excitation width for a branch of `channels` outputs (0: no SE)."""
        if not self.se_ratio:
            return 0
        return make_divisible(channels * self.se_ratio, SE_DIVISOR, round_limit=0.0)

    def drop_path_rates(self) -> list[float]:
        """Each block's stochastic-depth rate, in network order (timm's linear rule)."""
        n = sum(s.blocks for s in self.stages)
        return [self.drop_path_rate * k / max(n - 1, 1) for k in range(n)]

    @property
    def block_expansion(self) -> int:
        return self.expansion if self.block == "bottleneck" else 1

    @property
    def depth(self) -> int:
        """Weighted layers, counted as the papers do (stem conv + block convs + classifier)."""
        per_block = 3 if self.block == "bottleneck" else 2
        return 2 + per_block * sum(s.blocks for s in self.stages)

    @property
    def total_stride(self) -> int:
        stride = STEM_STRIDES[self.stem]
        for s in self.stages:
            stride *= s.stride
        return stride

    @property
    def min_input_size(self) -> int:
        """Smallest accepted input side: keras.applications' 32 for the ImageNet stem."""
        return 8 if self.stem == "cifar" else 32

    @property
    def default_input_size(self) -> int:
        return 32 if self.stem == "cifar" else 224

    def count_params(
        self, channels: int = 3, classes: int | None = 1000, trainable_only: bool = False
    ) -> int:
        """Parameters of the built model (all weights, as `keras.Model.count_params()`).

        Computed from the spec alone, without building anything, so budgets
        (the tuner's `max_params`) are checked before a candidate costs a build.
        `classes=None` counts the model without its classifier head;
        `trainable_only=True` leaves out BatchNormalization's moving mean and
        variance, which gives PyTorch's count (`sum(p.numel() for p in
        model.parameters())`: torch keeps them as buffers).
        """
        return sizing.count_params(self, channels, classes, trainable_only)

    def count_macs(
        self, image_size: int | None = None, channels: int = 3, classes: int | None = 1000
    ) -> int:
        """Multiply-accumulates of one image's forward pass, from the plan (nothing built).

        What `sizing.count_macs` counts on the built model (convs and dense layers, as
        torchvision's and timm's GMACs), at `image_size` (default: `default_input_size`).
        """
        size = image_size or self.default_input_size
        return sizing.count_spec_macs(self, size, channels, classes)

    def block_strides(self) -> list[int]:
        """Every block's stride, in network order."""
        strides = []
        for stage in self.stages:
            strided = 0 if self.stride_block == "first" else stage.blocks - 1
            strides += [stage.stride if j == strided else 1 for j in range(stage.blocks)]
        return strides

    def memory_bytes(self, input_shape, batch_size=1, classes=1000, training=False) -> int:
        """A rough upper estimate of a pass's memory (`keras_resnet.sizing.memory_bytes`)."""
        return sizing.memory_bytes(self, input_shape, batch_size, classes, training)

    # Serialisation ----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; `ResNetSpec.from_dict(spec.to_dict()) == spec`.

        The family fields (`groups` ... `zero_init_last`) are written only when
        they differ from their defaults, so a plain ResNet's dict is the one
        earlier versions wrote, and their run directories still resume.
        """
        d = dataclasses.asdict(self)
        d["stages"] = [s.to_dict() for s in self.stages]
        for field in dataclasses.fields(self):
            if field.name in FAMILY_FIELDS and d[field.name] == field.default:
                del d[field.name]
        return d

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> ResNetSpec:
        """Builds a spec from `to_dict()` output (or hand-written JSON).

        Unknown keys are an error, so a typo does not silently fall back to a default.
        """
        if not isinstance(config, dict):
            raise ValueError(f"A spec must be a dict. {_received('config', config)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(
                f"Unknown spec field(s) {unknown}; known fields are {sorted(known)}. "
                f"{_received('config', config)}"
            )
        if "stages" not in config:
            raise ValueError(f"A spec needs `stages`. {_received('config', config)}")
        return cls(**config)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> ResNetSpec:
        return cls.from_dict(json.loads(text))


def _stages(filters: tuple[int, ...], blocks: tuple[int, ...], strides: tuple[int, ...]):
    return tuple(StageSpec(f, b, s) for f, b, s in zip(filters, blocks, strides, strict=True))


_IMAGENET_FILTERS = (64, 128, 256, 512)
_V1_STRIDES = (1, 2, 2, 2)
# keras.applications' ResNetV2 strides in the *last* block of conv2..conv4.
_KERAS_V2_STRIDES = (2, 2, 2, 1)

# ResNet18/34 follow the paper and torchvision: no conv bias, BN eps 1e-5,
# momentum 0.9 (PyTorch's 0.1), so torchvision weights can be ported 1:1.
_TORCH_BN = dict(use_bias=False, bn_epsilon=1e-5, bn_momentum=0.9)


def _basic(blocks: tuple[int, ...], version: str) -> ResNetSpec:
    return ResNetSpec(
        _stages(_IMAGENET_FILTERS, blocks, _V1_STRIDES), block="basic", version=version, **_TORCH_BN
    )


def _keras_v1(blocks: tuple[int, ...]) -> ResNetSpec:
    return ResNetSpec(_stages(_IMAGENET_FILTERS, blocks, _V1_STRIDES))


def _keras_v2(blocks: tuple[int, ...]) -> ResNetSpec:
    return ResNetSpec(
        _stages(_IMAGENET_FILTERS, blocks, _KERAS_V2_STRIDES),
        version="v2",
        stride_block="last",
        bottleneck_stride="3x3",
    )


def _cifar(depth: int) -> ResNetSpec:
    n = (depth - 2) // 6
    return ResNetSpec(
        _stages((16, 32, 64), (n, n, n), (1, 2, 2)),
        block="basic",
        stem="cifar",
        stem_filters=16,
        shortcut="zero_pad",
        **_TORCH_BN,
    )


# The family in timm's and torchvision's layout (ResNet v1.5: the bottleneck strides on its
# 3x3), torch's BN, each branch's last BN zero-initialised as timm does.
_TORCH_FAMILY = dict(bottleneck_stride="3x3", zero_init_last=True, **_TORCH_BN)
_SE = 1 / 16  # timm's SE-ResNet reduction (rd_ratio)


def _family(blocks: tuple[int, ...], block: str = "bottleneck", **fields: Any) -> ResNetSpec:
    stages = _stages(_IMAGENET_FILTERS, blocks, _V1_STRIDES)
    return ResNetSpec(stages, block=block, **{**_TORCH_FAMILY, **fields})


def _resnet_d(blocks: tuple[int, ...], block: str = "bottleneck") -> ResNetSpec:
    """ResNet-D (He et al. 2019, "Bag of Tricks"): timm's resnet*d, keras-hub's *_vd."""
    return _family(blocks, block, stem="deep", shortcut="avg")


def _wide_cifar(depth: int, widen: int) -> ResNetSpec:
    """WRN-depth-widen (Zagoruyko & Komodakis 2016): pre-activation basic blocks, 1x1
    projection where the channels change, no dropout; as the authors' PyTorch code
    (szagoruyko/wide-residual-networks) and xternalz/WideResNet-pytorch build it."""
    n = (depth - 4) // 6
    filters = tuple(16 * widen * m for m in (1, 2, 4))
    return ResNetSpec(
        _stages(filters, (n, n, n), (1, 2, 2)),
        block="basic",
        version="v2",
        stem="cifar",
        stem_filters=16,
        **_TORCH_BN,
    )


NAMED_SPECS: dict[str, ResNetSpec] = {
    "resnet18": _basic((2, 2, 2, 2), "v1"),
    "resnet34": _basic((3, 4, 6, 3), "v1"),
    "resnet50": _keras_v1((3, 4, 6, 3)),
    "resnet101": _keras_v1((3, 4, 23, 3)),
    "resnet152": _keras_v1((3, 8, 36, 3)),
    "resnet18v2": _basic((2, 2, 2, 2), "v2"),
    "resnet34v2": _basic((3, 4, 6, 3), "v2"),
    "resnet50v2": _keras_v2((3, 4, 6, 3)),
    "resnet101v2": _keras_v2((3, 4, 23, 3)),
    "resnet152v2": _keras_v2((3, 8, 36, 3)),
    **{f"resnet{d}": _cifar(d) for d in (20, 32, 44, 56, 110)},
    # torchvision's resnet50/101/152 (v1.5, no conv bias), for its and timm's weights.
    "tv_resnet50": _family((3, 4, 6, 3), zero_init_last=False),
    "tv_resnet101": _family((3, 4, 23, 3), zero_init_last=False),
    "tv_resnet152": _family((3, 8, 36, 3), zero_init_last=False),
    "resnet18d": _resnet_d((2, 2, 2, 2), "basic"),
    "resnet34d": _resnet_d((3, 4, 6, 3), "basic"),
    "resnet50d": _resnet_d((3, 4, 6, 3)),
    "resnet101d": _resnet_d((3, 4, 23, 3)),
    "resnet152d": _resnet_d((3, 8, 36, 3)),
    "seresnet50": _family((3, 4, 6, 3), se_ratio=_SE),
    "seresnext50_32x4d": _family((3, 4, 6, 3), se_ratio=_SE, groups=32, width_per_group=4),
    "resnext50_32x4d": _family((3, 4, 6, 3), groups=32, width_per_group=4),
    "resnext101_32x8d": _family((3, 4, 23, 3), groups=32, width_per_group=8),
    "wide_resnet50_2": _family((3, 4, 6, 3), width_per_group=128),
    "wide_resnet101_2": _family((3, 4, 23, 3), width_per_group=128),
    "wide_resnet28_10": _wide_cifar(28, 10),
}


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


_BY_KEY = {_key(name): spec for name, spec in NAMED_SPECS.items()}


def list_specs() -> list[str]:
    """Names accepted by `get_spec`, in table order."""
    return list(NAMED_SPECS)


def get_spec(name: str) -> ResNetSpec:
    """Looks up a named spec (case, `-` and `_` ignored: `"ResNet50V2"`, `"ResNeXt50-32x4d"`).

    Example:

    >>> get_spec("resnet20").stages[0]
    StageSpec(filters=16, blocks=3, stride=1)
    """
    key = _key(name) if isinstance(name, str) else None
    if key not in _BY_KEY:
        raise ValueError(f"Unknown spec name. Known: {list_specs()}. {_received('name', name)}")
    return _BY_KEY[key]


def spec_name(spec: ResNetSpec) -> str | None:
    """The table name of a spec equal to `spec`, or None for a custom one."""
    for name, named in NAMED_SPECS.items():
        if named == spec:
            return name
    return None


def resolve_spec(spec: ResNetSpec | str | dict) -> ResNetSpec:
    """Accepts a spec, a table name or a `to_dict()` dict."""
    if isinstance(spec, ResNetSpec):
        return spec
    if isinstance(spec, str):
        return get_spec(spec)
    if isinstance(spec, dict):
        return ResNetSpec.from_dict(spec)
    raise ValueError(
        f"`spec` must be a ResNetSpec, a spec name or a dict. {_received('spec', spec)}"
    )
