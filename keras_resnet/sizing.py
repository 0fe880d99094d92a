"""Sizes computed from a spec alone: parameter counts and a memory estimate.

Budgets (the tuner's `max_params`) and the refusal of absurd sizes are checked
before anything is built, so these sum the layer plan (`keras_resnet.plan`), the same
description the builder makes its layers from. `ResNetSpec.count_params` and
`ResNetSpec.memory_bytes` call them.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from typing import Any

from keras_resnet._checks import received as _received
from keras_resnet.plan import plan


def _layers(spec: Any, input_shape: tuple, classes: int | None) -> list:
    """The plan the counts sum: `classes=None` is the model without its classifier head."""
    return plan(spec, input_shape, include_top=classes is not None, classes=classes or 1)


def count_params(
    spec: Any, channels: int = 3, classes: int | None = 1000, trainable_only: bool = False
) -> int:
    """See `ResNetSpec.count_params` (`spec` is one; spec.py imports this module)."""
    layers = _layers(spec, (None, None, channels), classes)
    return sum(layer.params + (0 if trainable_only else layer.non_trainable) for layer in layers)


def count_spec_macs(spec: Any, image_size: int, channels: int, classes: int | None) -> int:
    """See `ResNetSpec.count_macs`: the plan's MACs at `image_size`."""
    layers = _layers(spec, (image_size, image_size, channels), classes)
    return sum(layer.macs or 0 for layer in layers)


def physical_memory_bytes() -> int | None:
    """This machine's memory, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits_in_memory(
    spec: Any,
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
    spec: Any,
    input_shape: tuple[int, int, int],
    batch_size: int = 1,
    classes: int | None = 1000,
    training: bool = False,
) -> int:
    """A rough upper estimate of the memory a forward (or training) pass needs.

    Float32 parameters (four copies when training: weights, gradients and
    two optimizer slots) plus activations, from the plan's layer outputs: when
    training every layer's output is kept for the backward pass; at inference
    only two parts of the network (the stem, a block, the head) hold theirs
    at once, the widest counted twice. It is meant to refuse absurd sizes
    before anything is built, not to plan memory precisely.
    """
    h, w, channels = (int(v) for v in input_shape)
    layers = _layers(spec, (h, w, channels), classes)
    parts: dict[str, int] = defaultdict(int)
    for layer in layers:
        parts[layer.part] += math.prod(layer.output_shape)
    image = h * w * channels
    per_image = image + sum(parts.values()) if training else 2 * max(image, *parts.values())
    params = sum(layer.params + layer.non_trainable for layer in layers)
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
