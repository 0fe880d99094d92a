"""Residual blocks as entries of the layer plan: basic and bottleneck, v1 or v2.

Pure Python (no Keras): a block appends its layers to a `Planner`, each a `Layer` with its
Keras name and configuration, shapes, parameters, MACs and torch keys; `keras_resnet.plan`
strings stem, blocks and head together, and `keras_resnet.network` makes the Keras layers.

Every block is a function `(planner, x, filters, stride, name, drop_path) -> output name`.
Layer names and creation order follow keras.applications' `resnet.py`
(`conv2_block1_0_conv`, `..._preact_bn`, `..._add`, `..._out`): that is what makes its
published weight files load 1:1.

Shortcuts, decided from the block's input and output shapes:

- same shape: identity;
- `projection` (option B) where the channels change: a 1x1 conv (+BN in v1),
  strided as the block is. Where only the resolution changes, v1 projects too
  (torchvision's rule) and v2 subsamples with a 1x1 max pool
  (keras.applications' ResNetV2);
- `zero_pad` (option A, the paper's CIFAR nets): subsample with a 1x1 max pool
  and zero-pad the new channels, no parameters.

The family's parts, each a spec field (see `ResNetSpec`): grouped 3x3 convs
(ResNeXt, Wide ResNet), the `avg` shortcut (ResNet-D: `{name}_0_pool`, a 2x2
average pool, before the 1x1 conv), squeeze-and-excitation on the branch after
its last BN (`{name}_se_*`), stochastic depth as a `Dropout` with one value per
sample (`{name}_drop_path`), and a zero-initialised last BN gamma.

Layer names against torchvision's and timm's state-dict keys (`layer{i}.{j}` is
our `conv{i+1}_block{j+1}`; a weight port is this renaming, `torch_keys`):

    conv1_conv / conv1_bn        conv1 / bn1
    conv1_1_* / conv1_2_* / conv1_conv (deep stem)   conv1.0, .1 / conv1.3, .4 / conv1.6
    {name}_1_conv / _1_bn        conv1 / bn1
    {name}_2_conv / _2_bn        conv2 / bn2   (grouped for ResNeXt)
    {name}_3_conv / _3_bn        conv3 / bn3
    {name}_0_conv / _0_bn        downsample.0 / downsample.1   (torchvision, timm)
                                 downsample.1 / downsample.2   (timm's avg shortcut:
                                 downsample.0 is the pool, parameter-free)
    {name}_se_reduce / _expand   se.fc1 / se.fc2   (timm's SEModule)
    predictions                  fc

3x3 convs use `"same"` padding at stride 1 and an explicit symmetric
`ZeroPadding2D` at stride > 1, because TF's `"same"` pads a strided conv
asymmetrically and ported PyTorch weights would then be off by a pixel. v2
bottlenecks always pad explicitly, as keras.applications does.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Collection
from typing import Any

Shape = tuple[int | None, ...]
"""A tensor's shape without the batch axis, in the layer's data format."""


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer of the plan.

    Attributes:
        name: the Keras layer name (unique in the plan); see `anonymous`.
        kind: a key of `KINDS` (`conv`, `bn`, `relu`, `pad`, `max_pool`, ...).
        inputs: the names of the layers it reads (`"input"` for the image).
        input_shapes: their shapes, in order.
        output_shape: its output's shape.
        config: its Keras constructor's keyword arguments, besides `name`.
        params: trainable parameters.
        non_trainable: non-trainable ones (BatchNormalization's moving mean and variance).
        macs: multiply-accumulates of one image (convs and dense layers; None where a
            spatial side is unknown).
        torch: the torchvision/timm state-dict keys of its weights, in Keras' weight order.
        part: `"stem"`, the block's name (`"conv2_block1"`) or `"head"`.
        anonymous: Keras names it (keras.applications leaves this pool unnamed).
    """

    name: str
    kind: str
    inputs: tuple[str, ...]
    input_shapes: tuple[Shape, ...]
    output_shape: Shape
    config: dict[str, Any]
    params: int = 0
    non_trainable: int = 0
    macs: int | None = 0
    torch: tuple[str, ...] = ()
    part: str = ""
    anonymous: bool = False


# Shapes, parameters and MACs of each kind ------------------------------------------------


def _axes(config: dict[str, Any]) -> tuple[tuple[int, int], int]:
    """(the spatial axes, the channel axis) of a shape without the batch axis."""
    return ((0, 1), 2) if config.get("data_format") == "channels_last" else ((1, 2), 0)


def _side(size: int | None, kernel: int, stride: int, padding: str) -> int | None:
    if size is None:
        return None
    return -(-size // stride) if padding == "same" else (size - kernel) // stride + 1


def _windowed(shapes: tuple[Shape, ...], config: dict[str, Any]) -> Shape:
    """A conv's or a pool's output shape (channels as the input's; a conv sets its own)."""
    conv = "filters" in config
    kernel = config["kernel_size"] if conv else config["pool_size"]
    # Keras' defaults: a conv's stride is 1, a pool's its window.
    stride = config.get("strides") or (1 if conv else kernel)
    padding = config.get("padding", "valid")
    shape = list(shapes[0])
    spatial, channel = _axes(config)
    for axis in spatial:
        shape[axis] = _side(shape[axis], kernel, stride, padding)
    if conv:
        shape[channel] = config["filters"]
    return tuple(shape)


def _padded(shapes: tuple[Shape, ...], config: dict[str, Any]) -> Shape:
    padding = config["padding"]
    pads = ((padding, padding),) * 2 if isinstance(padding, int) else padding
    shape = list(shapes[0])
    for axis, (before, after) in zip(_axes(config)[0], pads, strict=True):
        shape[axis] = None if shape[axis] is None else shape[axis] + before + after
    return tuple(shape)


def _pooled(shapes: tuple[Shape, ...], config: dict[str, Any]) -> Shape:
    spatial, channel = _axes(config)
    channels = shapes[0][channel]
    if not config.get("keepdims"):
        return (channels,)
    return (1, 1, channels) if channel == 2 else (channels, 1, 1)


def _broadcast(shapes: tuple[Shape, ...], config: dict[str, Any]) -> Shape:
    """Add and Multiply: the inputs broadcast against each other (SE's gate is 1x1)."""
    return tuple(
        next((d for d in dims if d != 1), 1) if None not in dims else None
        for dims in zip(*shapes, strict=True)
    )


def _permuted(shapes: tuple[Shape, ...], config: dict[str, Any]) -> Shape:
    return tuple(shapes[0][d - 1] for d in config["dims"])


def _same(shapes: tuple[Shape, ...], config: dict[str, Any]) -> Shape:
    return shapes[0]


def _dense(shapes: tuple[Shape, ...], config: dict[str, Any]) -> Shape:
    return (config["units"],)


def _conv_weights(shapes: tuple[Shape, ...], config: dict[str, Any]) -> tuple[int, ...]:
    k, channels = config["kernel_size"], shapes[0][_axes(config)[1]]
    kernel = k * k * (channels // config.get("groups", 1)) * config["filters"]
    return (kernel, config["filters"]) if config.get("use_bias", True) else (kernel,)


def _bn_weights(shapes: tuple[Shape, ...], config: dict[str, Any]) -> tuple[int, ...]:
    return (shapes[0][config["axis"] - 1],) * 4  # gamma, beta, moving mean, moving variance


def _dense_weights(shapes: tuple[Shape, ...], config: dict[str, Any]) -> tuple[int, ...]:
    return (shapes[0][-1] * config["units"], config["units"])


def _no_weights(shapes: tuple[Shape, ...], config: dict[str, Any]) -> tuple[int, ...]:
    return ()


@dataclasses.dataclass(frozen=True)
class Kind:
    """What a kind of layer does to shapes, and the sizes of its weights in Keras' order."""

    shape: Callable[[tuple[Shape, ...], dict[str, Any]], Shape]
    weights: Callable[[tuple[Shape, ...], dict[str, Any]], tuple[int, ...]] = _no_weights
    non_trainable: int = 0  # how many of its weights, the last ones, are not trained


KINDS: dict[str, Kind] = {
    "conv": Kind(_windowed, _conv_weights),
    "bn": Kind(_same, _bn_weights, non_trainable=2),
    "dense": Kind(_dense, _dense_weights),
    "relu": Kind(_same),
    "pad": Kind(_padded),
    "max_pool": Kind(_windowed),
    "avg_pool": Kind(_windowed),
    "global_avg_pool": Kind(_pooled),
    "global_max_pool": Kind(_pooled),
    "add": Kind(_broadcast),
    "multiply": Kind(_broadcast),
    "permute": Kind(_permuted),
    "drop_path": Kind(_same),
}


def _macs(kind: str, shape: Shape, weights: tuple[int, ...], config: dict[str, Any]) -> int | None:
    """An image's multiply-accumulates: each output pixel of a conv costs its whole kernel."""
    if kind == "dense":
        return weights[0]
    if kind != "conv":
        return 0
    spatial = [shape[axis] for axis in _axes(config)[0]]
    return None if None in spatial else math.prod(spatial) * weights[0]


# torchvision's and timm's names for our layers (the table in the module doc) --------------

_TORCH_BLOCK = re.compile(r"conv(\d+)_block(\d+)_(?:([0-3])_(conv|bn)|se_(reduce|expand))")
_DEEP_STEM = {"conv1_1_conv": "conv1.0", "conv1_1_bn": "conv1.1", "conv1_2_conv": "conv1.3",
              "conv1_2_bn": "conv1.4"}  # fmt: skip
_TENSORS = {"conv": ("weight", "bias"), "dense": ("weight", "bias"),
            "bn": ("weight", "bias", "running_mean", "running_var")}  # fmt: skip


def torch_layout(names: Collection[str]) -> tuple[bool, bool]:
    """(a deep stem, avg shortcuts) in a network holding the layers `names`: what its torch
    keys depend on besides each layer's name. timm's deep stem ends in `conv1.6`; its avg
    shortcut puts the pool at `downsample.0` even where that is an identity (a stride-1
    block, which has no `_0_pool` here), so every downsample conv is `.1` in such a net."""
    return "conv1_1_conv" in names, any(name.endswith("_0_pool") for name in names)


def _torch_module(name: str, deep_stem: bool, avg_shortcut: bool) -> str | None:
    if name == "conv1_conv":
        return "conv1.6" if deep_stem else "conv1"
    if name in _DEEP_STEM or name in ("conv1_bn", "predictions"):
        return {"conv1_bn": "bn1", "predictions": "fc"}.get(name) or _DEEP_STEM[name]
    match = _TORCH_BLOCK.fullmatch(name)
    if match is None:
        return None
    stage, block, index, kind, se = match.groups()
    prefix = f"layer{int(stage) - 1}.{int(block) - 1}"
    if se:
        return f"{prefix}.se.fc{1 if se == 'reduce' else 2}"
    if index != "0":
        return f"{prefix}.{kind}{index}"
    return f"{prefix}.downsample.{int(avg_shortcut) + (kind == 'bn')}"


def torch_keys(name: str, kind: str, count: int, layout: tuple[bool, bool]) -> tuple[str, ...]:
    """The state-dict keys of a layer's first `count` weights, in Keras' order, in a
    network of `torch_layout` `layout` (none for a layer torchvision and timm do not have,
    such as v2's `post_bn`).

    Example:

    >>> torch_keys("conv3_block1_0_bn", "bn", 4, torch_layout({"conv3_block1_0_pool"}))[0]
    'layer2.0.downsample.2.weight'
    """
    module = _torch_module(name, *layout) if kind in _TENSORS else None
    if module is None:
        return ()
    return tuple(f"{module}.{tensor}" for tensor in _TENSORS[kind][:count])


# The planner --------------------------------------------------------------------------------


class Planner:
    """Appends layers to a plan, working out each one's shapes, parameters and MACs.

    `spec` is the `ResNetSpec` being planned (not imported here: spec.py counts its
    parameters with this module); `shapes` maps each tensor so far to its shape.
    """

    def __init__(self, spec: Any, data_format: str, shapes: dict[str, Shape]):
        self.spec, self.data_format = spec, data_format
        self.shapes = dict(shapes)
        self.layers: list[Layer] = []
        self.part = ""

    def add(self, kind: str, name: str, inputs: str | list[str], **config: Any) -> str:
        """Appends a layer reading `inputs`; returns its name (the tensor it outputs)."""
        anonymous = config.pop("anonymous", False)
        inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
        shapes = tuple(self.shapes[i] for i in inputs)
        rule = KINDS[kind]
        shape = rule.shape(shapes, config)
        weights = rule.weights(shapes, config)
        frozen = sum(weights[len(weights) - rule.non_trainable :]) if rule.non_trainable else 0
        self.layers.append(
            Layer(
                name, kind, inputs, shapes, shape, config,
                params=sum(weights) - frozen,
                non_trainable=frozen,
                macs=_macs(kind, shape, weights, config) if weights else 0,
                part=self.part,
                anonymous=anonymous,
            )
        )  # fmt: skip
        self.shapes[name] = shape
        return name

    def with_torch_keys(self) -> list[Layer]:
        """The layers so far, each with its torch keys (which depend on the whole network)."""
        layout, layers = torch_layout(self.shapes), []
        for layer in self.layers:
            count = len(KINDS[layer.kind].weights(layer.input_shapes, layer.config))
            keys = torch_keys(layer.name, layer.kind, count, layout)
            layers.append(dataclasses.replace(layer, torch=keys))
        return layers

    @property
    def channel_axis(self) -> int:
        # 3, not -1: keras.applications' value, so layer configs match too.
        return 3 if self.data_format == "channels_last" else 1

    def channels(self, x: str) -> int:
        return self.shapes[x][self.channel_axis - 1]

    def conv(self, x: str, filters: int, kernel: int, stride: int, name: str, **options: Any):
        """A conv with 'valid' padding for 1x1 and explicit-or-'same' padding for kxk (see
        the module doc). `options`: `use_bias` (default the spec's), `groups`."""
        padding = "valid"
        if kernel > 1 and stride > 1:
            x = self.add("pad", f"{name}_pad", x, padding=kernel // 2, data_format=self.data_format)
        elif kernel > 1:
            padding = "same"
        return self.add(
            "conv", f"{name}_conv", x,
            filters=filters, kernel_size=kernel, strides=stride, padding=padding,
            groups=options.get("groups", 1), use_bias=options.get("use_bias", self.spec.use_bias),
            data_format=self.data_format,
        )  # fmt: skip

    def bn(self, x: str, name: str, zero_gamma: bool = False) -> str:
        return self.add(
            "bn", f"{name}_bn", x,
            axis=self.channel_axis, epsilon=self.spec.bn_epsilon, momentum=self.spec.bn_momentum,
            gamma_initializer="zeros" if zero_gamma else "ones",
        )  # fmt: skip

    def relu(self, x: str, name: str) -> str:
        return self.add("relu", name, x, activation="relu")

    def bn_relu(self, x: str, name: str, relu_name: str) -> str:
        return self.relu(self.bn(x, name), relu_name)


# Shortcuts and branch ends --------------------------------------------------------------------


def _pad_channels(p: Planner, x: str, out_channels: int, name: str) -> str:
    """Zero-pads the channel axis with built-in layers (option A shortcut).

    ZeroPadding2D pads axes 1 and 2 of a 4-D tensor in its "channels_last"
    mode; bringing channels to axis 1 turns it into a channel pad.
    """
    extra = out_channels - p.channels(x)
    pad = ((extra // 2, extra - extra // 2), (0, 0))
    last = p.data_format == "channels_last"
    if last:
        x = p.add("permute", f"{name}_to_cf", x, dims=(3, 1, 2))
    x = p.add("pad", f"{name}_pad", x, padding=pad, data_format="channels_last")
    return p.add("permute", f"{name}_to_cl", x, dims=(2, 3, 1)) if last else x


def shortcut(p: Planner, x: str, preact: str, out_channels: int, stride: int, name: str) -> str:
    """The shortcut branch of a block whose input is `x` (v2: pre-activated `preact`)."""
    in_channels, spec = p.channels(x), p.spec
    if in_channels == out_channels and stride == 1:
        return x
    if spec.shortcut in ("projection", "avg") and (
        in_channels != out_channels or spec.version == "v1"
    ):
        s = x if spec.version == "v1" else preact
        if spec.shortcut == "avg" and stride > 1:
            # timm's AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False): "same"
            # pads only past the end and averages over the real pixels, as ceil_mode does.
            s = p.add("avg_pool", f"{name}_0_pool", s, pool_size=2, strides=stride,
                      padding="same", data_format=p.data_format)  # fmt: skip
            stride = 1
        s = p.conv(s, out_channels, 1, stride, f"{name}_0")
        return p.bn(s, f"{name}_0") if spec.version == "v1" else s
    if stride > 1:
        # Unnamed on purpose: keras.applications' ResNetV2 leaves this pool unnamed,
        # and its layer names are part of the compatibility we promise.
        x = p.add("max_pool", f"{name}_0_subsample", x, pool_size=1, strides=stride,
                  data_format=p.data_format, anonymous=True)  # fmt: skip
    return _pad_channels(p, x, out_channels, f"{name}_0") if in_channels != out_channels else x


def squeeze_excite(p: Planner, y: str, name: str) -> str:
    """timm's SEModule: mean over space, 1x1 conv-ReLU-1x1 conv (with biases), sigmoid gate."""
    c, df = p.channels(y), p.data_format
    s = p.add("global_avg_pool", f"{name}_squeeze", y, data_format=df, keepdims=True)
    s = p.add("conv", f"{name}_reduce", s, filters=p.spec.se_channels(c), kernel_size=1,
              data_format=df)  # fmt: skip
    s = p.relu(s, f"{name}_relu")
    s = p.add("conv", f"{name}_expand", s, filters=c, kernel_size=1, activation="sigmoid",
              data_format=df)  # fmt: skip
    return p.add("multiply", f"{name}_excite", [y, s])


def branch_end(p: Planner, y: str, name: str, drop_path: float) -> str:
    """What follows a residual branch's last layer before the add: SE, then drop path.

    Drop path is a `Dropout` whose noise has one value per sample (timm's
    `DropPath`: the whole branch kept or dropped, survivors scaled by
    1/(1 - rate)); at inference it is the identity.
    """
    if p.spec.se_ratio:
        y = squeeze_excite(p, y, f"{name}_se")
    if drop_path:
        y = p.add("drop_path", f"{name}_drop_path", y, rate=drop_path, noise_shape=(None, 1, 1, 1))
    return y


# Blocks -------------------------------------------------------------------------------------


def basic_v1(p: Planner, x: str, filters: int, stride: int, name: str, drop_path: float) -> str:
    """conv3x3-BN-ReLU-conv3x3-BN, add, ReLU (He et al. 2015, fig. 2)."""
    s = shortcut(p, x, x, filters, stride, name)
    y = p.bn_relu(p.conv(x, filters, 3, stride, f"{name}_1"), f"{name}_1", f"{name}_1_relu")
    y = p.bn(p.conv(y, filters, 3, 1, f"{name}_2"), f"{name}_2", p.spec.zero_init_last)
    y = p.add("add", f"{name}_add", [s, branch_end(p, y, name, drop_path)])
    return p.relu(y, f"{name}_out")


def _strides(p: Planner, stride: int) -> tuple[int, int]:
    """(the 1x1's, the 3x3's) stride of a bottleneck."""
    return (stride, 1) if p.spec.bottleneck_stride == "1x1" else (1, stride)


def bottleneck_v1(p: Planner, x: str, filters: int, stride: int, name: str, drop_path: float):
    """conv1x1-conv3x3-conv1x1 with BN-ReLU after each, add, ReLU (keras ResNet50)."""
    spec, (s1, s3) = p.spec, _strides(p, stride)
    out, inner = spec.expansion * filters, spec.inner_channels(filters)
    s = shortcut(p, x, x, out, stride, name)
    y = p.bn_relu(p.conv(x, inner, 1, s1, f"{name}_1"), f"{name}_1", f"{name}_1_relu")
    y = p.conv(y, inner, 3, s3, f"{name}_2", groups=spec.groups)
    y = p.bn_relu(y, f"{name}_2", f"{name}_2_relu")
    y = p.bn(p.conv(y, out, 1, 1, f"{name}_3"), f"{name}_3", spec.zero_init_last)
    y = p.add("add", f"{name}_add", [s, branch_end(p, y, name, drop_path)])
    return p.relu(y, f"{name}_out")


def basic_v2(p: Planner, x: str, filters: int, stride: int, name: str, drop_path: float) -> str:
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3, add (He et al. 2016, full pre-activation)."""
    pre = p.bn_relu(x, f"{name}_preact", f"{name}_preact_relu")
    s = shortcut(p, x, pre, filters, stride, name)
    y = p.conv(pre, filters, 3, stride, f"{name}_1", use_bias=False)
    y = p.bn_relu(y, f"{name}_1", f"{name}_1_relu")
    y = p.conv(y, filters, 3, 1, f"{name}_2")
    return p.add("add", f"{name}_out", [s, branch_end(p, y, name, drop_path)])


def bottleneck_v2(p: Planner, x: str, filters: int, stride: int, name: str, drop_path: float):
    """Pre-activation bottleneck, layer for layer keras.applications' ResNetV2 block."""
    spec, (s1, s3), df = p.spec, _strides(p, stride), p.data_format
    out, inner = spec.expansion * filters, spec.inner_channels(filters)
    pre = p.bn_relu(x, f"{name}_preact", f"{name}_preact_relu")
    s = shortcut(p, x, pre, out, stride, name)
    y = p.conv(pre, inner, 1, s1, f"{name}_1", use_bias=False)
    y = p.bn_relu(y, f"{name}_1", f"{name}_1_relu")
    y = p.add("pad", f"{name}_2_pad", y, padding=1, data_format=df)
    y = p.add("conv", f"{name}_2_conv", y, filters=inner, kernel_size=3, strides=s3,
              groups=spec.groups, use_bias=False, data_format=df)  # fmt: skip
    y = p.bn_relu(y, f"{name}_2", f"{name}_2_relu")
    y = p.conv(y, out, 1, 1, f"{name}_3")
    return p.add("add", f"{name}_out", [s, branch_end(p, y, name, drop_path)])


BlockFn = Callable[[Planner, str, int, int, str, float], str]

#: The one registry from a spec's (block, version) to its block function.
BLOCK_FUNCTIONS: dict[tuple[str, str], BlockFn] = {
    ("basic", "v1"): basic_v1,
    ("basic", "v2"): basic_v2,
    ("bottleneck", "v1"): bottleneck_v1,
    ("bottleneck", "v2"): bottleneck_v2,
}


def get_block(spec: Any) -> BlockFn:
    return BLOCK_FUNCTIONS[(spec.block, spec.version)]
