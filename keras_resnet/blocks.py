"""Residual blocks: basic and bottleneck, each post-activation (v1) or pre-activation (v2).

Every block is a function `(x, filters, stride, cfg, name) -> tensor` built from
Keras' own layers only (no `Lambda`), so models load with `safe_mode=True`.
Layer names and creation order follow keras.applications' `resnet.py`
(`conv2_block1_0_conv`, `..._preact_bn`, `..._add`, `..._out`): that is what
makes its published weight files load 1:1.

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
our `conv{i+1}_block{j+1}`; a weight port is this renaming):

    {name}_1_conv / _1_bn        conv1 / bn1
    {name}_2_conv / _2_bn        conv2 / bn2   (grouped for ResNeXt)
    {name}_3_conv / _3_bn        conv3 / bn3
    {name}_0_conv / _0_bn        downsample.0 / downsample.1   (torchvision, timm)
                                 downsample.1 / downsample.2   (timm's avg shortcut:
                                 downsample.0 is the pool, parameter-free)
    {name}_se_reduce / _expand   se.fc1 / se.fc2   (timm's SEModule)

3x3 convs use `"same"` padding at stride 1 and an explicit symmetric
`ZeroPadding2D` at stride > 1, because TF's `"same"` pads a strided conv
asymmetrically and ported PyTorch weights would then be off by a pixel. v2
bottlenecks always pad explicitly, as keras.applications does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
from keras import layers

from keras_resnet.spec import ResNetSpec


@dataclasses.dataclass(frozen=True)
class BlockConfig:
    """What every block needs from the spec, resolved once by the builder."""

    data_format: str
    use_bias: bool
    bn_epsilon: float
    bn_momentum: float
    shortcut: str
    version: str
    bottleneck_stride: str
    expansion: int
    groups: int
    se_ratio: float
    zero_init_last: bool
    spec: ResNetSpec
    drop_path: float = 0.0  # this block's rate: the builder sets it block by block

    @classmethod
    def from_spec(cls, spec: ResNetSpec, data_format: str) -> BlockConfig:
        copied = {f.name for f in dataclasses.fields(cls)} - {"data_format", "spec", "drop_path"}
        return cls(data_format=data_format, spec=spec, **{f: getattr(spec, f) for f in copied})

    def inner(self, filters: int) -> int:
        """A bottleneck's 3x3 width (see `ResNetSpec.inner_channels`)."""
        return self.spec.inner_channels(filters)

    def se_channels(self, channels: int) -> int:
        return self.spec.se_channels(channels)

    @property
    def channel_axis(self) -> int:
        # 3, not -1: keras.applications' value, so layer configs match too.
        return 3 if self.data_format == "channels_last" else 1


# Layer helpers ----------------------------------------------------------------


def conv(
    x, filters: int, kernel: int, stride: int, cfg: BlockConfig, name: str, use_bias=None, groups=1
):
    """A conv with 'valid' padding for 1x1 and explicit-or-'same' padding for kxk (see module)."""
    bias = cfg.use_bias if use_bias is None else use_bias
    padding = "valid"
    if kernel > 1:
        if stride > 1:
            x = layers.ZeroPadding2D(kernel // 2, data_format=cfg.data_format, name=f"{name}_pad")(
                x
            )
        else:
            padding = "same"
    return layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding=padding,
        groups=groups,
        use_bias=bias,
        data_format=cfg.data_format,
        name=f"{name}_conv",
    )(x)


def bn(x, cfg: BlockConfig, name: str, zero_gamma: bool = False):
    return layers.BatchNormalization(
        axis=cfg.channel_axis,
        epsilon=cfg.bn_epsilon,
        momentum=cfg.bn_momentum,
        gamma_initializer="zeros" if zero_gamma else "ones",
        name=f"{name}_bn",
    )(x)


def relu(x, name: str):
    return layers.Activation("relu", name=name)(x)


def channels(x, cfg: BlockConfig) -> int:
    return int(x.shape[cfg.channel_axis])


def _subsample(x, stride: int, cfg: BlockConfig):
    # Unnamed on purpose: keras.applications' ResNetV2 leaves this pool unnamed,
    # and its layer names are part of the compatibility we promise.
    return layers.MaxPooling2D(1, strides=stride, data_format=cfg.data_format)(x)


def _pad_channels(x, out_channels: int, cfg: BlockConfig, name: str):
    """Zero-pads the channel axis with built-in layers (option A shortcut).

    ZeroPadding2D pads axes 1 and 2 of a 4-D tensor in its "channels_last"
    mode; bringing channels to axis 1 turns it into a channel pad.
    """
    extra = out_channels - channels(x, cfg)
    pad = ((extra // 2, extra - extra // 2), (0, 0))
    if cfg.data_format == "channels_last":
        x = layers.Permute((3, 1, 2), name=f"{name}_to_cf")(x)
    x = layers.ZeroPadding2D(pad, data_format="channels_last", name=f"{name}_pad")(x)
    if cfg.data_format == "channels_last":
        x = layers.Permute((2, 3, 1), name=f"{name}_to_cl")(x)
    return x


def shortcut(x, preact, out_channels: int, stride: int, cfg: BlockConfig, name: str):
    """The shortcut branch of a block whose input is `x` (v2: pre-activated `preact`)."""
    in_channels = channels(x, cfg)
    if in_channels == out_channels and stride == 1:
        return x
    projected = cfg.shortcut in ("projection", "avg")
    if projected and (in_channels != out_channels or cfg.version == "v1"):
        s = x if cfg.version == "v1" else preact
        if cfg.shortcut == "avg" and stride > 1:
            # timm's AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False): "same"
            # pads only past the end and averages over the real pixels, as ceil_mode does.
            pool = layers.AveragePooling2D(
                2, stride, padding="same", data_format=cfg.data_format, name=f"{name}_0_pool"
            )
            s = pool(s)
            stride = 1
        s = conv(s, out_channels, 1, stride, cfg, f"{name}_0")
        return bn(s, cfg, f"{name}_0") if cfg.version == "v1" else s
    s = _subsample(x, stride, cfg) if stride > 1 else x
    if in_channels != out_channels:
        s = _pad_channels(s, out_channels, cfg, f"{name}_0")
    return s


def squeeze_excite(y, cfg: BlockConfig, name: str):
    """timm's SEModule: mean over space, 1x1 conv-ReLU-1x1 conv (with biases), sigmoid gate."""
    c, df = channels(y, cfg), cfg.data_format
    s = layers.GlobalAveragePooling2D(data_format=df, keepdims=True, name=f"{name}_squeeze")(y)
    s = layers.Conv2D(cfg.se_channels(c), 1, data_format=df, name=f"{name}_reduce")(s)
    s = relu(s, f"{name}_relu")
    s = layers.Conv2D(c, 1, activation="sigmoid", data_format=df, name=f"{name}_expand")(s)
    return layers.Multiply(name=f"{name}_excite")([y, s])


def branch_end(y, cfg: BlockConfig, name: str):
    """What follows a residual branch's last layer before the add: SE, then drop path.

    Drop path is a `Dropout` whose noise has one value per sample (timm's
    `DropPath`: the whole branch kept or dropped, survivors scaled by
    1/(1 - rate)); at inference it is the identity.
    """
    if cfg.se_ratio:
        y = squeeze_excite(y, cfg, f"{name}_se")
    if cfg.drop_path:
        y = layers.Dropout(cfg.drop_path, noise_shape=(None, 1, 1, 1), name=f"{name}_drop_path")(y)
    return y


# Blocks -------------------------------------------------------------------------


def basic_v1(x, filters: int, stride: int, cfg: BlockConfig, name: str):
    """conv3x3-BN-ReLU-conv3x3-BN, add, ReLU (He et al. 2015, fig. 2)."""
    s = shortcut(x, x, filters, stride, cfg, name)
    y = relu(bn(conv(x, filters, 3, stride, cfg, f"{name}_1"), cfg, f"{name}_1"), f"{name}_1_relu")
    y = bn(conv(y, filters, 3, 1, cfg, f"{name}_2"), cfg, f"{name}_2", cfg.zero_init_last)
    y = layers.Add(name=f"{name}_add")([s, branch_end(y, cfg, name)])
    return relu(y, f"{name}_out")


def bottleneck_v1(x, filters: int, stride: int, cfg: BlockConfig, name: str):
    """conv1x1-conv3x3-conv1x1 with BN-ReLU after each, add, ReLU (keras ResNet50)."""
    out = cfg.expansion * filters
    s1, s3 = (stride, 1) if cfg.bottleneck_stride == "1x1" else (1, stride)
    inner = cfg.inner(filters)
    s = shortcut(x, x, out, stride, cfg, name)
    y = relu(bn(conv(x, inner, 1, s1, cfg, f"{name}_1"), cfg, f"{name}_1"), f"{name}_1_relu")
    y = conv(y, inner, 3, s3, cfg, f"{name}_2", groups=cfg.groups)
    y = relu(bn(y, cfg, f"{name}_2"), f"{name}_2_relu")
    y = bn(conv(y, out, 1, 1, cfg, f"{name}_3"), cfg, f"{name}_3", cfg.zero_init_last)
    y = layers.Add(name=f"{name}_add")([s, branch_end(y, cfg, name)])
    return relu(y, f"{name}_out")


def _preact(x, cfg: BlockConfig, name: str):
    return relu(bn(x, cfg, f"{name}_preact"), f"{name}_preact_relu")


def basic_v2(x, filters: int, stride: int, cfg: BlockConfig, name: str):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3, add (He et al. 2016, full pre-activation)."""
    p = _preact(x, cfg, name)
    s = shortcut(x, p, filters, stride, cfg, name)
    y = conv(p, filters, 3, stride, cfg, f"{name}_1", use_bias=False)
    y = relu(bn(y, cfg, f"{name}_1"), f"{name}_1_relu")
    y = conv(y, filters, 3, 1, cfg, f"{name}_2")
    return layers.Add(name=f"{name}_out")([s, branch_end(y, cfg, name)])


def bottleneck_v2(x, filters: int, stride: int, cfg: BlockConfig, name: str):
    """Pre-activation bottleneck, layer for layer keras.applications' ResNetV2 block."""
    out = cfg.expansion * filters
    s1, s3 = (stride, 1) if cfg.bottleneck_stride == "1x1" else (1, stride)
    inner = cfg.inner(filters)
    p = _preact(x, cfg, name)
    s = shortcut(x, p, out, stride, cfg, name)
    y = conv(p, inner, 1, s1, cfg, f"{name}_1", use_bias=False)
    y = relu(bn(y, cfg, f"{name}_1"), f"{name}_1_relu")
    y = layers.ZeroPadding2D(1, data_format=cfg.data_format, name=f"{name}_2_pad")(y)
    y = layers.Conv2D(
        inner,
        3,
        strides=s3,
        groups=cfg.groups,
        use_bias=False,
        data_format=cfg.data_format,
        name=f"{name}_2_conv",
    )(y)
    y = relu(bn(y, cfg, f"{name}_2"), f"{name}_2_relu")
    y = conv(y, out, 1, 1, cfg, f"{name}_3")
    return layers.Add(name=f"{name}_out")([s, branch_end(y, cfg, name)])


BlockFn = Callable[[keras.KerasTensor, int, int, BlockConfig, str], keras.KerasTensor]

#: The one registry from a spec's (block, version) to its block function.
BLOCK_FUNCTIONS: dict[tuple[str, str], BlockFn] = {
    ("basic", "v1"): basic_v1,
    ("basic", "v2"): basic_v2,
    ("bottleneck", "v1"): bottleneck_v1,
    ("bottleneck", "v2"): bottleneck_v2,
}


def get_block(spec: ResNetSpec) -> BlockFn:
    return BLOCK_FUNCTIONS[(spec.block, spec.version)]
