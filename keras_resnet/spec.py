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
import os
from typing import Any

from keras_resnet._checks import is_int
from keras_resnet._checks import received as _received

BLOCKS = ("basic", "bottleneck")
VERSIONS = ("v1", "v2")
STEMS = ("imagenet", "cifar")
SHORTCUTS = ("projection", "zero_pad")
STRIDE_BLOCKS = ("first", "last")
BOTTLENECK_STRIDES = ("1x1", "3x3")

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


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}. {_received(name, value)}")


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


def scale_filters(filters: int, width: float, divisor: int) -> int:
    """Scales a filter count by `width`, rounded as described in the module doc.

    Example:

    >>> scale_filters(64, 0.5, 8), scale_filters(16, 0.25, 8), scale_filters(16, 1.0, 8)
    (32, 8, 16)
    """
    if width == 1.0:
        return int(filters)
    value = filters * width
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


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
        stem: `"imagenet"` (7x7/2 conv + 3x3/2 max pool) or `"cifar"` (3x3/1 conv).
        stem_filters: filters of the stem conv (before width scaling).
        shortcut: `"projection"` (1x1 conv where the shape changes, option B)
            or `"zero_pad"` (subsample and zero-pad channels, option A).
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
        _check_choice("block", self.block, BLOCKS)
        _check_choice("version", self.version, VERSIONS)
        _check_float("width", self.width, 0.0, 16.0, low_inclusive=False)
        _check_int("width_divisor", self.width_divisor)
        _check_choice("stem", self.stem, STEMS)
        _check_int("stem_filters", self.stem_filters, maximum=MAX_CHANNELS)
        _check_choice("shortcut", self.shortcut, SHORTCUTS)
        if not isinstance(self.use_bias, bool):
            raise ValueError(f"`use_bias` must be a bool. {_received('use_bias', self.use_bias)}")
        _check_float("bn_epsilon", self.bn_epsilon, 0.0, 1.0, low_inclusive=False)
        _check_float("bn_momentum", self.bn_momentum, 0.0, 1.0, low_inclusive=True)
        _check_choice("stride_block", self.stride_block, STRIDE_BLOCKS)
        _check_choice("bottleneck_stride", self.bottleneck_stride, BOTTLENECK_STRIDES)
        _check_int("expansion", self.expansion, maximum=64)
        self._check_channels()
        if self.shortcut == "zero_pad":
            self._check_channels_never_shrink()
        # Store plain floats so equality and JSON do not depend on the number type given.
        object.__setattr__(self, "width", float(self.width))
        object.__setattr__(self, "bn_epsilon", float(self.bn_epsilon))
        object.__setattr__(self, "bn_momentum", float(self.bn_momentum))

    def _check_channels(self) -> None:
        widest = max(s.filters for s in self.scaled_stages()) * self.block_expansion
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
        stride = 4 if self.stem == "imagenet" else 1
        for s in self.stages:
            stride *= s.stride
        return stride

    @property
    def min_input_size(self) -> int:
        """Smallest accepted input side: keras.applications' 32 for the ImageNet stem."""
        return 32 if self.stem == "imagenet" else 8

    @property
    def default_input_size(self) -> int:
        return 224 if self.stem == "imagenet" else 32

    def count_params(self, channels: int = 3, classes: int | None = 1000) -> int:
        """Parameters of the built model (all weights, as `keras.Model.count_params()`).

        Computed from the spec alone, without building anything, so budgets
        (the tuner's `max_params`) are checked before a candidate costs a build.
        `classes=None` counts the model without its classifier head.
        """

        def conv(k: int, cin: int, cout: int, bias: bool) -> int:
            return k * k * cin * cout + (cout if bias else 0)

        def bn(c: int) -> int:
            return 4 * c  # gamma, beta, moving mean, moving variance

        v1, bias = self.version == "v1", self.use_bias
        cin = self.scaled_stem_filters
        total = conv(7 if self.stem == "imagenet" else 3, channels, cin, bias)
        total += bn(cin) if v1 else 0
        for stage in self.scaled_stages():
            f = stage.filters
            out = f * self.block_expansion
            strided = 0 if self.stride_block == "first" else stage.blocks - 1
            for j in range(stage.blocks):
                stride = stage.stride if j == strided else 1
                project = self.shortcut == "projection" and (cin != out or (v1 and stride > 1))
                if project:
                    total += conv(1, cin, out, bias) + (bn(out) if v1 else 0)
                if self.block == "basic":
                    total += conv(3, cin, f, bias and v1) + bn(f) + conv(3, f, f, bias)
                    total += bn(f) if v1 else bn(cin)
                else:
                    total += conv(1, cin, f, bias and v1) + bn(f)
                    total += conv(3, f, f, bias and v1) + bn(f) + conv(1, f, out, bias)
                    total += bn(out) if v1 else bn(cin)
                cin = out
        total += 0 if v1 else bn(cin)
        if classes is not None:
            total += cin * classes + classes
        return total

    def memory_bytes(
        self,
        input_shape: tuple[int, int, int],
        batch_size: int = 1,
        classes: int | None = 1000,
        training: bool = False,
    ) -> int:
        """A rough upper estimate of the memory a forward (or training) pass needs.

        Float32 parameters (four copies when training: weights, gradients and
        two optimizer slots) plus activations: when training every block's
        conv, BN and ReLU outputs are kept for the backward pass; at inference
        only the two widest tensors live at once. It is meant to refuse absurd
        sizes before anything is built, not to plan memory precisely.
        """
        h, w, channels = (int(v) for v in input_shape)
        params = self.count_params(channels=channels, classes=classes)
        stride = 2 if self.stem == "imagenet" else 1
        h, w = -(-h // stride), -(-w // stride)
        tensors = [h * w * channels, 3 * h * w * self.scaled_stem_filters]
        if self.stem == "imagenet":
            h, w = -(-h // 2), -(-w // 2)
        for stage in self.scaled_stages():
            out = stage.filters * self.block_expansion
            convs = 2 if self.block == "basic" else 3
            for j in range(stage.blocks):
                if j == 0:
                    h, w = -(-h // stage.stride), -(-w // stage.stride)
                inner = 3 * h * w * stage.filters * (convs - 1)
                tensors.append(inner + 6 * h * w * out)  # last conv, BN, shortcut, add, ReLU
        per_image = sum(tensors) if training else 2 * max(tensors)
        copies = 4 if training else 1
        return 4 * (copies * params + batch_size * per_image)

    # Serialisation ----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; `ResNetSpec.from_dict(spec.to_dict()) == spec`."""
        d = dataclasses.asdict(self)
        d["stages"] = [s.to_dict() for s in self.stages]
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


def physical_memory_bytes() -> int | None:
    """This machine's memory, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits_in_memory(
    spec: ResNetSpec,
    input_shape: tuple[int, int, int],
    *,
    batch_size: int = 1,
    classes: int | None = 1000,
    training: bool = False,
    arg: str = "input_shape",
    value: Any = None,
    received_text: str | None = None,
) -> None:
    """Refuses, before anything is built or loaded, a model that cannot fit in memory.

    `arg` and `value` name what the user gave (e.g. `image_size=100000`);
    `received_text` replaces the "Received: ..." part where several arguments
    share the blame (image size and batch size).
    """
    limit = physical_memory_bytes()
    if limit is None:
        return
    need = spec.memory_bytes(input_shape, batch_size, classes, training)
    if need > limit:
        what = "training at batch size " + str(batch_size) if training else "one forward pass"
        raise ValueError(
            f"`{arg}` is too large: the model needs about {need / 2**30:,.1f} GiB for "
            f"{what} (parameters and activations), more than this machine's "
            f"{limit / 2**30:,.1f} GiB. "
            f"{received_text or _received(arg, input_shape if value is None else value)}"
        )


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
}


def list_specs() -> list[str]:
    """Names accepted by `get_spec`, in table order."""
    return list(NAMED_SPECS)


def get_spec(name: str) -> ResNetSpec:
    """Looks up a named spec (case-insensitive; `"ResNet50V2"` works).

    Example:

    >>> get_spec("resnet20").stages[0]
    StageSpec(filters=16, blocks=3, stride=1)
    """
    key = name.lower().replace("-", "").replace("_", "") if isinstance(name, str) else name
    if key not in NAMED_SPECS:
        raise ValueError(f"Unknown spec name. Known: {list_specs()}. {_received('name', name)}")
    return NAMED_SPECS[key]


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
