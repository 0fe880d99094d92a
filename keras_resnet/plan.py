"""The layer plan: a `ResNetSpec` and an input shape as the ordered layers of the network.

The one description of the architecture, in pure Python (no Keras, no TensorFlow): each
`Layer` has the Keras name and configuration the model's layer gets, its kind, shapes,
parameters (trainable and not), MACs and the torchvision/timm keys it takes. The builder
turns it into Keras layers (`keras_resnet.network`); parameter counts and the memory
estimate sum it (`keras_resnet.sizing`); the latency model times slices of it; the torch
port names its keys with it. A new spec field is taught here (and its Keras layer, if it
needs a new kind, in `network.KERAS_LAYERS`), nothing else.

The plan is made of pieces that append to a `Planner`: `add_stem`, `add_block` (the
blocks of `keras_resnet.blocks`), `add_post` (v2's final BN-ReLU) and `add_top` (pooling
and the classifier); `plan` strings them together, and a slice of the network (one block
on its own, say) is the same functions on a planner of its own.

Example:

>>> from keras_resnet.spec import get_spec
>>> layers = plan(get_spec("resnet50"), (224, 224, 3))
>>> layers[1].name, layers[1].output_shape, layers[1].params
('conv1_conv', (112, 112, 64), 9472)
>>> sum(layer.params + layer.non_trainable for layer in layers)
25636712
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from keras_resnet.blocks import Layer, Planner, Shape, get_block, torch_keys, torch_layout

__all__ = ["INPUT", "Layer", "Planner", "plan", "block_layout", "add_stem", "add_block",
           "add_post", "add_top", "torch_keys", "torch_layout"]  # fmt: skip

INPUT = "input"
"""The name the first layers read their input by."""


def _deep_stem(p: Planner, x: str) -> str:
    """timm's `stem_type="deep"`: conv1.0/.1 -> conv1_1_*, conv1.3/.4 -> conv1_2_*,
    conv1.6 -> conv1_conv (and bn1 -> conv1_bn, as in the other stems)."""
    spec = p.spec
    mid, mid_bias = max(1, spec.scaled_stem_filters // 2), spec.use_bias and spec.version == "v1"
    for i, stride in ((1, 2), (2, 1)):
        x = p.conv(x, mid, 3, stride, f"conv1_{i}", use_bias=mid_bias)
        x = p.bn_relu(x, f"conv1_{i}", f"conv1_{i}_relu")
    return p.conv(x, spec.scaled_stem_filters, 3, 1, "conv1")


def add_stem(p: Planner, x: str) -> str:
    """The stem: a 7x7/2 conv (`imagenet`), three 3x3 convs (`deep`) or a 3x3 conv
    (`cifar`); BN-ReLU in v1; a 3x3/2 max pool but for the CIFAR stem."""
    spec, p.part = p.spec, "stem"
    if spec.stem == "deep":
        x = _deep_stem(p, x)
    else:
        imagenet = spec.stem == "imagenet"
        x = p.conv(x, spec.scaled_stem_filters, 7 if imagenet else 3, 2 if imagenet else 1, "conv1")
    if spec.version == "v1":
        x = p.bn_relu(x, "conv1", "conv1_relu")
    if spec.stem != "cifar":
        x = p.add("pad", "pool1_pad", x, padding=1, data_format=p.data_format)
        x = p.add("max_pool", "pool1_pool", x, pool_size=3, strides=2, data_format=p.data_format)
    return x


def block_layout(spec: Any) -> list[tuple[str, int, int, float]]:
    """Every block as (name, filters, stride, drop-path rate), in network order: stage i's
    block j is `conv{i+2}_block{j+1}`, keras.applications' name."""
    strides, rates = iter(spec.block_strides()), iter(spec.drop_path_rates())
    return [
        (f"conv{i + 2}_block{j + 1}", stage.filters, next(strides), next(rates))
        for i, stage in enumerate(spec.scaled_stages())
        for j in range(stage.blocks)
    ]


def add_block(
    p: Planner, x: str, filters: int, stride: int, name: str, drop_path: float = 0.0
) -> str:
    """One residual block of the spec's type (`keras_resnet.blocks`)."""
    p.part = name
    return get_block(p.spec)(p, x, filters, stride, name, drop_path)


def add_post(p: Planner, x: str) -> str:
    """v2's final BN-ReLU (v1 has none)."""
    p.part = "head"
    return p.bn_relu(x, "post", "post_relu") if p.spec.version == "v2" else x


def add_top(
    p: Planner,
    x: str,
    include_top: bool = True,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | Callable | None = "softmax",
) -> str:
    """keras.applications' top: global average pooling and the classifier, else the
    optional global pooling."""
    p.part, df = "head", p.data_format
    if include_top:
        x = p.add("global_avg_pool", "avg_pool", x, data_format=df)
        return p.add("dense", "predictions", x, units=classes, activation=classifier_activation)
    if pooling in ("avg", "max"):
        return p.add(f"global_{pooling}_pool", f"{pooling}_pool", x, data_format=df)
    return x


def plan(
    spec: Any,
    input_shape: Sequence[int | None],
    *,
    include_top: bool = True,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | Callable | None = "softmax",
    data_format: str = "channels_last",
) -> list[Layer]:
    """The layers of `build_resnet(spec, ...)` with the same arguments, in creation order.

    Args:
        spec: the `ResNetSpec` (checked already: a spec is valid once made).
        input_shape: the input's shape without the batch axis, in `data_format`'s
            order; spatial sides may be None (then so are the MACs).
        include_top, pooling, classes, classifier_activation, data_format: as
            `build_resnet`'s.
    """
    shape: Shape = tuple(None if d is None else int(d) for d in input_shape)
    p = Planner(spec, data_format, {INPUT: shape})
    x = add_stem(p, INPUT)
    for name, filters, stride, rate in block_layout(spec):
        x = add_block(p, x, filters, stride, name, rate)
    add_top(p, add_post(p, x), include_top, pooling, classes, classifier_activation)
    return p.with_torch_keys()
