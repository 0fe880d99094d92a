"""Batch-norm folding: the inference form of a trained functional model.

`fold_batchnorm(model)` returns a new functional model that computes what
`model(x, training=False)` computes, with fewer layers:

- a BatchNormalization that directly follows a Conv1D/2D/3D, DepthwiseConv2D
  or Dense whose output feeds only that BN (and that has no activation of its
  own) is folded into it: per output channel, `s = gamma / sqrt(var + eps)`,
  `kernel *= s`, `bias = (bias - mean) * s + beta`, in float64, and the layer
  gets `use_bias=True` under its own name. Grouped convs fold the same way
  (the kernel's last axis is still the output channel);
- every other BatchNormalization on an image tensor (v2's pre-activation
  `*_preact_bn` and `post_bn`, which follow an Add, and any BN whose conv
  output is also used elsewhere) becomes a `Rescaling` layer of the BN's name
  holding per-channel constants: `x * scale + offset`. Other BNs are kept;
- Dropout, spatial/Gaussian/alpha dropout, Gaussian noise and activity
  regularisation (identities at inference) are dropped.

It works on the functional graph, not on our builder's names: the graph comes
from the model's own config (public, the `.keras` format) and the new model
from `keras.models.clone_model` with a `clone_function` / `call_function`
that replace, drop or re-call each layer, so squeeze-and-excitation branches,
grouped convs, channels_first, headless models and nested functional models
fold alike. Layers keep their names; only built-in layers are used, so the
result saves and loads with `safe_mode=True`.

A BN that has no conv to fold into becomes a per-channel `Rescaling`: measured no
slower than a 1x1 DepthwiseConv2D in Keras, 3% faster in TFLite, faster than the BN
it replaces, and it needs no kernel for the data format (the measurement:
docs/performance.md, "Folding BatchNormalization").

TFLite: TensorFlow's converter already folds every conv + BN pair itself. The
fp32 file of an unfolded ResNet50 has the same 75 ops as the folded one's (53
CONV_2D, 16 ADD, no MUL; 102,158,788 vs 102,157,780 bytes), ResNet50V2's the
same 115 (the 17 leftover BNs as MUL + ADD either way). Folding is for the
`.keras` and SavedModel artifacts, which TensorFlow runs BN by BN as written.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np

Ref = tuple[str, int, int]  # (layer name, node index, tensor index), as a functional config has

# Layers that are identities at inference: dropped from the folded model.
INFERENCE_IDENTITY: tuple[type, ...] = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.AlphaDropout,
    keras.layers.ActivityRegularization,
)


def _scale_last_axis(kernel: np.ndarray, scale: np.ndarray) -> np.ndarray:
    # Conv1D/2D/3D (also grouped) and Dense: the kernel's last axis is the output channel.
    return kernel * scale


def _scale_depthwise(kernel: np.ndarray, scale: np.ndarray) -> np.ndarray:
    # DepthwiseConv2D: kernel (kh, kw, in, multiplier); output channel c * multiplier + m.
    return kernel * scale.reshape(kernel.shape[-2:])


# The layers a following BN folds into, and how their kernel takes a per-channel scale.
FOLDABLE: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    keras.layers.Conv1D: _scale_last_axis,
    keras.layers.Conv2D: _scale_last_axis,
    keras.layers.Conv3D: _scale_last_axis,
    keras.layers.Dense: _scale_last_axis,
    keras.layers.DepthwiseConv2D: _scale_depthwise,
}


def is_functional(model: Any) -> bool:
    """A functional keras.Model (not Sequential, not subclassed): what `fold_batchnorm` takes."""
    if not isinstance(model, keras.Model) or isinstance(model, keras.Sequential):
        return False
    try:
        config = model.get_config()
    except NotImplementedError:
        return False
    return isinstance(config, dict) and "input_layers" in config and "layers" in config


def _refs(obj: Any) -> Iterator[Ref]:
    """Every tensor reference `[layer, node, tensor]` inside a node's arguments or outputs."""
    if isinstance(obj, dict):
        for value in obj.values():
            yield from _refs(value)
    elif isinstance(obj, (list, tuple)):
        if len(obj) == 3 and isinstance(obj[0], str) and all(isinstance(i, int) for i in obj[1:]):
            yield (obj[0], obj[1], obj[2])
        else:
            for value in obj:
                yield from _refs(value)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What becomes of each layer (by name); layers not named are copied with their weights."""

    dropped: frozenset[str]  # identities at inference, and BNs folded into their conv
    folded: dict[str, str]  # conv name -> the BN folded into it
    affine: frozenset[str]  # BNs that become a per-channel scale and offset


def _channel_axis(layer: keras.layers.Layer, rank: int) -> int:
    fmt = getattr(layer, "data_format", "channels_last")
    return 1 if fmt == "channels_first" else rank - 1


def _foldable_into(conv: keras.layers.Layer, bn: keras.layers.Layer, config: dict) -> bool:
    """`bn` may fold into `conv`: a known layer, no activation of its own, same channel axis."""
    if type(conv) not in FOLDABLE or config.get("activation", "linear") != "linear":
        return False
    if getattr(conv.dtype_policy, "quantization_mode", None) is not None:
        return False
    rank = len(conv.output.shape)
    axis = bn.axis if isinstance(bn.axis, int) else None
    return axis is not None and axis % rank == _channel_axis(conv, rank)


def _plan(model: keras.Model) -> _Plan:
    """Reads the graph from the model's config and decides each BN's fate."""
    config = model.get_config()
    nodes = {lc["name"]: lc["inbound_nodes"] for lc in config["layers"]}
    layer_configs = {lc["name"]: lc.get("config", {}) for lc in config["layers"]}
    # Graph nodes that are not layers (keras.ops calls such as preprocess_input's, which
    # the config lists as operations) are neither dropped nor folded: clone_model reruns them.
    by_name = {layer.name: layer for layer in model.layers}
    layers = {name: by_name[name] for name in nodes if name in by_name}
    identity = {
        name
        for name, layer in layers.items()
        if type(layer) in INFERENCE_IDENTITY and len(nodes[name]) == 1
    }

    def source(ref: Ref) -> Ref:
        while ref[0] in identity:
            ref = next(_refs(nodes[ref[0]]))
        return ref

    uses = collections.Counter(source(r) for r in _refs(config["output_layers"]))
    for name, inbound in nodes.items():
        if name not in identity:
            uses.update(source(r) for r in _refs(inbound))

    folded, affine = {}, set()
    for name, layer in layers.items():
        if type(layer) is not keras.layers.BatchNormalization or len(nodes[name]) != 1:
            continue
        ref = source(next(_refs(nodes[name])))
        conv = layers.get(ref[0])
        if (
            conv is not None
            and len(nodes[ref[0]]) == 1
            and uses[ref] == 1
            and _foldable_into(conv, layer, layer_configs[ref[0]])
        ):
            folded[ref[0]] = name
        elif _affine_supported(layer):
            affine.add(name)
    return _Plan(frozenset(identity | set(folded.values())), folded, frozenset(affine))


# BatchNormalization's inference form ------------------------------------------------------


def _bn_scale_offset(bn: keras.layers.Layer) -> tuple[np.ndarray, np.ndarray]:
    """(s, t) with `bn(x) == x * s + t` per channel, in float64."""
    mean = np.asarray(bn.moving_mean, np.float64)
    var = np.asarray(bn.moving_variance, np.float64)
    gamma = np.asarray(bn.gamma, np.float64) if bn.scale else np.ones_like(mean)
    beta = np.asarray(bn.beta, np.float64) if bn.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.epsilon)
    return scale, beta - mean * scale


def _fold_weights(conv: keras.layers.Layer, bn: keras.layers.Layer) -> list[np.ndarray]:
    """[kernel, bias] of `conv` followed by `bn`, computed in float64."""
    scale, offset = _bn_scale_offset(bn)
    kernel = np.asarray(conv.kernel, np.float64)
    bias = np.asarray(conv.bias, np.float64) if conv.use_bias else 0.0
    kernel = FOLDABLE[type(conv)](kernel, scale)
    return [kernel.astype(np.float32), (bias * scale + offset).astype(np.float32)]


def _affine_supported(bn: keras.layers.Layer) -> bool:
    # Images only: Rescaling reshapes 1-D and 2-D constants by the global image_data_format,
    # which a 4-D input's (1, 1, C) / (C, 1, 1) constants escape; other BNs are kept as they are.
    return isinstance(bn.axis, int) and len(bn.input.shape) == 4


def _affine(bn: keras.layers.Layer) -> keras.layers.Layer:
    """A built-in layer computing `bn(x, training=False)` as `x * scale + offset`."""
    scale, offset = _bn_scale_offset(bn)
    rank = len(bn.input.shape)
    shape = [1] * (rank - 1)
    shape[bn.axis % rank - 1] = len(scale)
    # The constants carry the channel axis themselves, so Rescaling's own channels_first
    # reshape (which reads the global image_data_format) leaves them alone.
    return keras.layers.Rescaling(
        scale=scale.reshape(shape).astype(np.float32),
        offset=offset.reshape(shape).astype(np.float32),
        name=bn.name,
        dtype=bn.dtype_policy,
    )


# The new model --------------------------------------------------------------------------


class _Dropped:
    """Stands in for a dropped layer in `clone_model`: its call returns its input."""


_DROPPED = _Dropped()


def fold_batchnorm(model: keras.Model) -> keras.Model:
    """A new functional model with BatchNormalization folded away (see the module doc).

    Args:
        model: a functional `keras.Model` (e.g. from `build_resnet`), with
            trained or loaded weights. It is not changed.

    Returns:
        A new, uncompiled functional `keras.Model` with the same inputs,
        outputs and layer names (minus the folded BNs and dropped identities)
        that computes `model(x, training=False)` up to float32 rounding.
        Layers that are `keras.ops` calls (e.g. `preprocess_input` inside the
        model) are kept as they are.

    Raises:
        ValueError: `model` is not a functional keras.Model.

    Example:

    >>> model = build_resnet("resnet20", input_shape=(32, 32, 3), classes=10)
    >>> folded = fold_batchnorm(model)
    >>> len(folded.layers) < len(model.layers)
    True
    """
    if not is_functional(model):
        raise ValueError(
            "`model` must be a functional keras.Model (keras.Model(inputs, outputs), as "
            f"build_resnet makes). Received: model of type {type(model).__name__}"
        )
    plan = _plan(model)
    sources: dict[int, keras.layers.Layer] = {}  # id(new layer) -> the layer it stands for

    def clone(layer: keras.layers.Layer) -> Any:
        if layer.name in plan.dropped:
            return _DROPPED
        if layer.name in plan.affine:
            new = _affine(layer)
        elif is_functional(layer):
            new = fold_batchnorm(layer)
        else:
            config = layer.get_config()
            if layer.name in plan.folded:
                config["use_bias"] = True
            new = type(layer).from_config(config)
        sources[id(new)] = layer
        return new

    def call(new: Any, *args: Any, **kwargs: Any) -> Any:
        if new is _DROPPED:
            return args[0]
        if sources[id(new)].name in plan.affine:
            return new(args[0])
        return new(*args, **kwargs)

    folded = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for layer in folded.layers:
        source = sources.get(id(layer))
        if source is None or layer.name in plan.affine or is_functional(source):
            continue
        if layer.name in plan.folded:
            layer.set_weights(_fold_weights(source, model.get_layer(plan.folded[layer.name])))
        else:
            layer.set_weights(source.get_weights())
    # clone_model compiles the clone with the original's optimizer object, whose slot
    # variables (two per weight for Adam) a saved .keras then carries: 128 MiB instead
    # of 43 for a fine-tuned ResNet18. The inference form is returned uncompiled.
    return keras.Model(folded.input, folded.output, name=folded.name)
