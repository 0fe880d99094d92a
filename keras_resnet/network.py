"""The layer plan in Keras: one table from a plan kind to its Keras layer, and the network a
spec and keras.applications' arguments describe, before any weights are loaded.

`build_network` checks its arguments as keras.applications does (`input_shape`, `pooling`,
`classes`, `classifier_activation`, with the input shape worked out by Keras' own
`imagenet_utils.obtain_input_shape`, so a keras_resnet model accepts and rejects exactly
what the keras.applications one does), plans the layers (`keras_resnet.plan`) and makes
them. `keras_resnet.builder.build_resnet` adds the `weights`; `keras_resnet.weights`
builds here the models it loads a file into, so it needs no builder.

Built-in Keras layers only (no `Lambda`), so models load with `safe_mode=True`.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import keras
from keras import layers
from keras.src.applications import imagenet_utils

from keras_resnet.plan import INPUT, Layer, plan
from keras_resnet.spec import ResNetSpec, check_fits_in_memory, spec_name

POOLINGS = (None, "avg", "max")
DATA_FORMATS = ("channels_last", "channels_first")

#: The Keras layer of each kind of plan layer (`keras_resnet.blocks.KINDS`).
KERAS_LAYERS: dict[str, type[keras.layers.Layer]] = {
    "conv": layers.Conv2D,
    "bn": layers.BatchNormalization,
    "dense": layers.Dense,
    "relu": layers.Activation,
    "pad": layers.ZeroPadding2D,
    "max_pool": layers.MaxPooling2D,
    "avg_pool": layers.AveragePooling2D,
    "global_avg_pool": layers.GlobalAveragePooling2D,
    "global_max_pool": layers.GlobalMaxPooling2D,
    "add": layers.Add,
    "multiply": layers.Multiply,
    "permute": layers.Permute,
    "drop_path": layers.Dropout,
}


def keras_layer(layer: Layer) -> keras.layers.Layer:
    """The Keras layer a plan layer describes (unbuilt)."""
    return KERAS_LAYERS[layer.kind](name=None if layer.anonymous else layer.name, **layer.config)


def call_layers(planned: Sequence[Layer], x: Any) -> Any:
    """Makes the planned layers and calls them on `x` (the plan's `INPUT`), in order;
    returns the last one's output."""
    tensors = {INPUT: x}
    for layer in planned:
        inputs = [tensors[name] for name in layer.inputs]
        tensors[layer.name] = keras_layer(layer)(inputs if len(inputs) > 1 else inputs[0])
    return tensors[planned[-1].name] if planned else x


def plan_model(planned: Sequence[Layer], name: str) -> keras.Model:
    """A functional model of planned layers on an input of their input's shape."""
    inputs = layers.Input(shape=planned[0].input_shapes[0])
    return keras.Model(inputs, call_layers(planned, inputs), name=name)


def check_input_tensor(input_tensor: Any) -> None:
    if input_tensor is not None and not keras.backend.is_keras_tensor(input_tensor):
        # keras.applications keeps a branch for backend tensors that Keras 3's
        # Input(tensor=...) rejects anyway; say so plainly instead.
        raise ValueError(
            "`input_tensor` must be a Keras tensor (the output of `keras.Input()` or of a "
            f"layer). Received: input_tensor of type {type(input_tensor).__name__}"
        )


def _is_positive_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and value >= 1


def _check_shape_and_head(
    include_top: bool,
    input_shape: Sequence[int | None] | None,
    pooling: str | None,
    classes: int,
    data_format: str,
) -> None:
    if data_format not in DATA_FORMATS:
        raise ValueError(
            f"`data_format` must be one of {list(DATA_FORMATS)}. "
            f"Received: data_format={data_format!r}"
        )
    if input_shape is not None and (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or any(d is not None and not _is_positive_int(d) for d in input_shape)
    ):
        raise ValueError(
            "`input_shape` must be a tuple of three positive integers (or None for a "
            f"variable size). Received: input_shape={input_shape!r}"
        )
    if include_top and not _is_positive_int(classes):
        raise ValueError(f"`classes` must be a positive integer. Received: classes={classes!r}")
    if not include_top and pooling not in POOLINGS:
        raise ValueError(
            f"`pooling` must be one of {list(POOLINGS)}. Received: pooling={pooling!r}"
        )


def _check_activation(classifier_activation: str | Callable | None, weights: str | None) -> None:
    try:
        keras.activations.get(classifier_activation)
    except (ValueError, TypeError):
        raise ValueError(
            "`classifier_activation` must be None, a Keras activation name or a "
            f"callable. Received: classifier_activation={classifier_activation!r}"
        ) from None
    imagenet_utils.validate_activation(classifier_activation, weights)


def _check_memory(spec: ResNetSpec, input_shape, classes, data_format: str) -> None:
    """An input so large that one image's forward pass cannot fit is refused before building."""
    if any(side is None for side in input_shape):
        return
    shape = input_shape if data_format == "channels_last" else (*input_shape[1:], input_shape[0])
    check_fits_in_memory(spec, shape, classes=classes, value=tuple(input_shape))


def build_network(
    spec: ResNetSpec,
    *,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: Any = None,
    input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | Callable | None = "softmax",
    name: str | None = None,
    data_format: str = "channels_last",
) -> keras.Model:
    """`build_resnet`'s model with its arguments checked but no weights loaded.

    `weights` only says what will be loaded, for keras.applications' checks of the
    input shape and activation (`"imagenet"` wants 3 channels and softmax); the caller
    checks and loads it. `input_tensor` is checked with `check_input_tensor`.
    """
    if isinstance(input_shape, list):
        input_shape = tuple(input_shape)
    _check_shape_and_head(include_top, input_shape, pooling, classes, data_format)
    if include_top:
        _check_activation(classifier_activation, weights)
    input_shape = imagenet_utils.obtain_input_shape(
        input_shape,
        default_size=spec.default_input_size,
        min_size=spec.min_input_size,
        data_format=data_format,
        require_flatten=include_top,
        weights=weights,
    )
    _check_memory(spec, input_shape, classes if include_top else None, data_format)
    img_input = layers.Input(shape=input_shape) if input_tensor is None else input_tensor
    planned = plan(
        spec,
        tuple(img_input.shape[1:]),
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        data_format=data_format,
    )
    x = call_layers(planned, img_input)
    inputs = keras.utils.get_source_inputs(input_tensor) if input_tensor is not None else img_input
    return keras.Model(inputs, x, name=name or spec_name(spec) or "resnet")
