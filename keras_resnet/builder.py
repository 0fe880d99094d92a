"""The one function that turns a `ResNetSpec` into a `keras.Model`.

`build_resnet` is the only code that knows about stem, stages and head; blocks
come from `keras_resnet.blocks`, architectures from `keras_resnet.spec`. Its
arguments and checks are keras.applications' (`include_top`, `weights`,
`input_tensor`, `input_shape`, `pooling`, `classes`, `classifier_activation`,
`name`), with the input shape worked out by Keras' own
`imagenet_utils.obtain_input_shape`, so a keras_resnet model accepts and
rejects exactly what the keras.applications one does.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from collections.abc import Callable, Sequence
from typing import Any

import keras
from keras import layers
from keras.src.applications import imagenet_utils

from keras_resnet import blocks
from keras_resnet.spec import ResNetSpec, check_fits_in_memory, resolve_spec, spec_name
from keras_resnet.weights import imagenet_weights_path, require_published

POOLINGS = (None, "avg", "max")
DATA_FORMATS = ("channels_last", "channels_first")


def _check_arguments(
    spec: ResNetSpec,
    include_top: bool,
    weights: str | None,
    input_shape: Sequence[int | None] | None,
    pooling: str | None,
    classes: int,
    classifier_activation: str | Callable | None,
    data_format: str,
) -> None:
    """keras.applications' checks, plus the ones it leaves to a traceback deep in Keras."""
    if not (
        weights in {"imagenet", None} or (isinstance(weights, str) and os.path.exists(weights))
    ):
        raise ValueError(
            "The `weights` argument should be either `None` (random initialization), "
            "'imagenet' (pre-training on ImageNet), or the path to the weights file to be "
            f"loaded. Received: weights={weights}"
        )
    if weights == "imagenet":
        require_published(spec)  # before any layer is built or anything downloaded
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(
            "If using `weights='imagenet'` with `include_top=True`, `classes` should be "
            f"1000. Received: classes={classes}"
        )
    if data_format not in DATA_FORMATS:
        raise ValueError(
            f"`data_format` must be one of {list(DATA_FORMATS)}. "
            f"Received: data_format={data_format!r}"
        )
    if input_shape is not None and (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or any(
            d is not None and (isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1)
            for d in input_shape
        )
    ):
        raise ValueError(
            "`input_shape` must be a tuple of three positive integers (or None for a "
            f"variable size). Received: input_shape={input_shape!r}"
        )
    if include_top and (
        isinstance(classes, bool) or not isinstance(classes, numbers.Integral) or classes < 1
    ):
        raise ValueError(f"`classes` must be a positive integer. Received: classes={classes!r}")
    if not include_top and pooling not in POOLINGS:
        raise ValueError(
            f"`pooling` must be one of {list(POOLINGS)}. Received: pooling={pooling!r}"
        )
    if include_top:
        try:
            keras.activations.get(classifier_activation)
        except (ValueError, TypeError):
            raise ValueError(
                "`classifier_activation` must be None, a Keras activation name or a "
                f"callable. Received: classifier_activation={classifier_activation!r}"
            ) from None
        imagenet_utils.validate_activation(classifier_activation, weights)


def _deep_stem(x, spec: ResNetSpec, cfg: blocks.BlockConfig):
    """timm's `stem_type="deep"`: conv1.0/.1 -> conv1_1_*, conv1.3/.4 -> conv1_2_*,
    conv1.6 -> conv1_conv (and bn1 -> conv1_bn, as in the other stems)."""
    mid, mid_bias = max(1, spec.scaled_stem_filters // 2), spec.use_bias and spec.version == "v1"
    for i, stride in ((1, 2), (2, 1)):
        x = blocks.conv(x, mid, 3, stride, cfg, f"conv1_{i}", use_bias=mid_bias)
        x = blocks.relu(blocks.bn(x, cfg, f"conv1_{i}"), f"conv1_{i}_relu")
    return blocks.conv(x, spec.scaled_stem_filters, 3, 1, cfg, "conv1")


def _stem(x, spec: ResNetSpec, cfg: blocks.BlockConfig):
    filters = spec.scaled_stem_filters
    df = cfg.data_format
    if spec.stem == "imagenet":
        x = layers.ZeroPadding2D(3, data_format=df, name="conv1_pad")(x)
        x = layers.Conv2D(
            filters, 7, strides=2, use_bias=spec.use_bias, data_format=df, name="conv1_conv"
        )(x)
    elif spec.stem == "deep":
        x = _deep_stem(x, spec, cfg)
    else:
        x = layers.Conv2D(
            filters, 3, padding="same", use_bias=spec.use_bias, data_format=df, name="conv1_conv"
        )(x)
    if spec.version == "v1":
        x = blocks.relu(blocks.bn(x, cfg, "conv1"), "conv1_relu")
    if spec.stem != "cifar":
        x = layers.ZeroPadding2D(1, data_format=df, name="pool1_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, data_format=df, name="pool1_pool")(x)
    return x


def _stages(x, spec: ResNetSpec, cfg: blocks.BlockConfig) -> list:
    """Runs every stage; returns each stage's output (stage i is named `conv{i+2}`)."""
    block = blocks.get_block(spec)
    strides, rates = iter(spec.block_strides()), iter(spec.drop_path_rates())
    outputs = []
    for i, stage in enumerate(spec.scaled_stages()):
        for j in range(stage.blocks):
            block_cfg = dataclasses.replace(cfg, drop_path=next(rates))
            x = block(x, stage.filters, next(strides), block_cfg, f"conv{i + 2}_block{j + 1}")
        outputs.append(x)
    return outputs


def _check_memory(spec: ResNetSpec, input_shape, classes, data_format: str) -> None:
    """An input so large that one image's forward pass cannot fit is refused before building."""
    if any(side is None for side in input_shape):
        return
    shape = input_shape if data_format == "channels_last" else (*input_shape[1:], input_shape[0])
    check_fits_in_memory(spec, shape, classes=classes, value=tuple(input_shape))


def build_resnet(
    spec: ResNetSpec | str | dict,
    *,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: Any = None,
    input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | Callable | None = "softmax",
    name: str | None = None,
    data_format: str | None = None,
) -> keras.Model:
    """Builds the network a spec describes, with keras.applications' arguments.

    Args:
        spec: a `ResNetSpec`, a named spec (`"resnet50"`) or a `to_dict()` dict.
        include_top: add global average pooling and a `Dense(classes)` head.
        weights: None, `"imagenet"` (only for the specs keras.applications
            publishes weights for) or the path of a weights file to load.
        input_tensor: an optional Keras tensor (output of `keras.Input`) or
            backend tensor to use as the image input.
        input_shape: `(H, W, C)` (`(C, H, W)` for channels_first); H and W may
            be None without a top. Defaults to the stem's natural size (224
            for the ImageNet stem, 32 for the CIFAR stem) with a top.
        pooling: None, `"avg"` or `"max"`: global pooling without a top.
        classes: classes of the head.
        classifier_activation: activation of the head; None for logits.
        name: model name; defaults to the spec's table name, else `"resnet"`.
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`.

    Returns:
        A functional `keras.Model`.

    Example:

    >>> model = build_resnet("resnet20", input_shape=(32, 32, 3), classes=10)
    >>> model.output_shape
    (None, 10)
    """
    spec = resolve_spec(spec)
    data_format = data_format or keras.config.image_data_format()
    if input_tensor is not None and not keras.backend.is_keras_tensor(input_tensor):
        # keras.applications keeps a branch for backend tensors that Keras 3's
        # Input(tensor=...) rejects anyway; say so plainly instead.
        raise ValueError(
            "`input_tensor` must be a Keras tensor (the output of `keras.Input()` or of a "
            f"layer). Received: input_tensor of type {type(input_tensor).__name__}"
        )
    if isinstance(input_shape, list):
        input_shape = tuple(input_shape)
    _check_arguments(
        spec,
        include_top,
        weights,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        data_format,
    )
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

    cfg = blocks.BlockConfig.from_spec(spec, data_format)
    x = _stem(img_input, spec, cfg)
    x = _stages(x, spec, cfg)[-1]
    if spec.version == "v2":
        x = blocks.relu(blocks.bn(x, cfg, "post"), "post_relu")
    if include_top:
        x = layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(data_format=data_format, name="max_pool")(x)

    inputs = keras.utils.get_source_inputs(input_tensor) if input_tensor is not None else img_input
    model = keras.Model(inputs, x, name=name or spec_name(spec) or "resnet")
    if weights == "imagenet":
        model.load_weights(imagenet_weights_path(spec, include_top))
    elif weights is not None:
        model.load_weights(weights)
    return model


def build_backbone(
    spec: ResNetSpec | str | dict,
    *,
    weights: str | None = None,
    input_tensor: Any = None,
    input_shape: Sequence[int | None] | None = None,
    name: str | None = None,
    data_format: str | None = None,
) -> keras.Model:
    """A feature extractor whose outputs are the stage feature maps.

    Outputs are a dict keyed `"P2"`, `"P3"`, ... (stage 1, 2, ..., keras-hub's
    `pyramid_outputs` convention), for detection and segmentation heads. For
    the ImageNet stem with `stride_block="first"`, `P{k}` has stride `2**k`;
    keras.applications' ResNetV2 strides in each stage's last block, so its
    `P2` is already at stride 8. v2 stage outputs are the blocks' raw sums
    (pre-activation); the last is followed by the final BN-ReLU.

    Example:

    >>> features = build_backbone("resnet18", input_shape=(64, 64, 3))
    >>> {k: v.shape[1:] for k, v in features.output.items()}["P5"]
    (2, 2, 512)
    """
    spec = resolve_spec(spec)
    model = build_resnet(
        spec,
        include_top=False,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        data_format=data_format,
    )
    last = len(spec.stages) - 1
    outputs = {}
    for i, stage in enumerate(spec.stages):
        layer = (
            "post_relu"
            if (i == last and spec.version == "v2")
            else (f"conv{i + 2}_block{stage.blocks}_out")
        )
        outputs[f"P{i + 2}"] = model.get_layer(layer).output
    return keras.Model(model.inputs, outputs, name=name or f"{model.name}_backbone")
