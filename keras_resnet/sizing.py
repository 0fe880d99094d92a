"""Sizes computed from a spec alone: parameter counts and a memory estimate.

Budgets (the tuner's `max_params`) and the refusal of absurd sizes are checked
before anything is built, so these mirror the builder layer for layer without
building. `ResNetSpec.count_params` and `ResNetSpec.memory_bytes` call them.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

from keras_resnet._checks import received as _received

if TYPE_CHECKING:
    from keras_resnet.spec import ResNetSpec


def count_params(
    spec: ResNetSpec, channels: int = 3, classes: int | None = 1000, trainable_only: bool = False
) -> int:
    """See `ResNetSpec.count_params`."""
    counter = _ParamCounter(spec, trainable_only)
    cin = spec.scaled_stem_filters
    total = counter.stem(channels, cin)
    strides = iter(spec.block_strides())
    for stage in spec.scaled_stages():
        out = stage.filters * spec.block_expansion
        for _ in range(stage.blocks):
            total += counter.block(cin, stage.filters, out, next(strides))
            cin = out
    total += 0 if spec.version == "v1" else counter.bn(cin)
    if classes is not None:
        total += cin * classes + classes
    return total


class _ParamCounter:
    """Parameter counts of the builder's parts, layer for layer (see `count_params`)."""

    def __init__(self, spec: ResNetSpec, trainable_only: bool):
        self.spec, self.trainable_only = spec, trainable_only
        self.v1 = spec.version == "v1"

    def conv(self, k: int, cin: int, cout: int, bias: bool, groups: int = 1) -> int:
        return k * k * (cin // groups) * cout + (cout if bias else 0)

    def bn(self, c: int) -> int:
        # gamma, beta (+ moving mean and variance, not trainable)
        return 2 * c if self.trainable_only else 4 * c

    def stem(self, channels: int, filters: int) -> int:
        bias, bn_after = self.spec.use_bias, self.bn(filters) if self.v1 else 0
        if self.spec.stem == "imagenet":
            return self.conv(7, channels, filters, bias) + bn_after
        if self.spec.stem == "cifar":
            return self.conv(3, channels, filters, bias) + bn_after
        mid, mid_bias = max(1, filters // 2), bias and self.v1
        return (
            self.conv(3, channels, mid, mid_bias)
            + self.conv(3, mid, mid, mid_bias)
            + 2 * self.bn(mid)
            + self.conv(3, mid, filters, bias)
            + bn_after
        )

    def block(self, cin: int, filters: int, out: int, stride: int) -> int:
        s, bias, v1, bn = self.spec, self.spec.use_bias, self.v1, self.bn
        total = 0
        projected = s.shortcut in ("projection", "avg")
        if projected and (cin != out or (v1 and stride > 1)):
            total += self.conv(1, cin, out, bias) + (bn(out) if v1 else 0)
        inner = s.inner_channels(filters)
        if s.block == "basic":
            total += self.conv(3, cin, inner, bias and v1) + bn(inner)
            total += self.conv(3, inner, out, bias)
        else:
            total += self.conv(1, cin, inner, bias and v1) + bn(inner)
            total += self.conv(3, inner, inner, bias and v1, s.groups) + bn(inner)
            total += self.conv(1, inner, out, bias)
        total += bn(out) if v1 else bn(cin)
        se = s.se_channels(out)
        if se:
            total += self.conv(1, out, se, True) + self.conv(1, se, out, True)
        return total


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


def memory_bytes(
    spec: ResNetSpec,
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
    params = spec.count_params(channels=channels, classes=classes)
    stride = 1 if spec.stem == "cifar" else 2
    h, w = -(-h // stride), -(-w // stride)
    stem_convs = 3 if spec.stem == "deep" else 1
    tensors = [h * w * channels, 3 * stem_convs * h * w * spec.scaled_stem_filters]
    if spec.stem != "cifar":
        h, w = -(-h // 2), -(-w // 2)
    for stage in spec.scaled_stages():
        out = stage.filters * spec.block_expansion
        convs = 2 if spec.block == "basic" else 3
        for j in range(stage.blocks):
            if j == 0:
                h, w = -(-h // stage.stride), -(-w // stage.stride)
            inner = 3 * h * w * spec.inner_channels(stage.filters) * (convs - 1)
            tensors.append(inner + 6 * h * w * out)  # last conv, BN, shortcut, add, ReLU
    per_image = sum(tensors) if training else 2 * max(tensors)
    copies = 4 if training else 1
    return 4 * (copies * params + batch_size * per_image)


def count_macs(model: Any) -> int:
    """Multiply-accumulates of one image's forward pass through `model`'s convs and dense
    layers (what torchvision's and timm's tables call GFLOPS / GMACs; BN, ReLU, pooling and
    adds are left out, as they leave them out).

    Example:

    >>> from keras_resnet import build_resnet
    >>> round(count_macs(build_resnet("resnet50")) / 1e9, 2)
    3.86
    """
    total = 0
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        out = layer.output.shape
        spatial = 1
        if len(out) == 4:  # a conv: every output pixel costs the whole kernel
            axis = 1 if getattr(layer, "data_format", "") == "channels_first" else 3
            spatial = math.prod(d for i, d in enumerate(out[1:], 1) if i != axis)
        total += spatial * math.prod(kernel.shape)
    return int(total)
