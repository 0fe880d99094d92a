"""The one function that turns a `ResNetSpec` into a `keras.Model`, with its weights.

`build_resnet` takes keras.applications' arguments (`include_top`, `weights`,
`input_tensor`, `input_shape`, `pooling`, `classes`, `classifier_activation`, `name`):
it checks `weights`, has `keras_resnet.network` check the rest and make the layers the
plan describes (`keras_resnet.plan`), then loads the weights. Architectures come from
`keras_resnet.spec`, ImageNet weights from `keras_resnet.weights`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import keras

from keras_resnet.network import build_network, check_input_tensor
from keras_resnet.spec import ResNetSpec, resolve_spec
from keras_resnet.weights import imagenet_weights_path, require_published


def _check_weights(spec: ResNetSpec, weights: str | None, include_top: bool, classes: int) -> None:
    """keras.applications' checks of `weights`, before any layer is built or anything
    downloaded."""
    if not (
        weights in {"imagenet", None} or (isinstance(weights, str) and os.path.exists(weights))
    ):
        raise ValueError(
            "The `weights` argument should be either `None` (random initialization), "
            "'imagenet' (pre-training on ImageNet), or the path to the weights file to be "
            f"loaded. Received: weights={weights}"
        )
    if weights == "imagenet":
        require_published(spec)
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(
            "If using `weights='imagenet'` with `include_top=True`, `classes` should be "
            f"1000. Received: classes={classes}"
        )


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
    check_input_tensor(input_tensor)
    _check_weights(spec, weights, include_top, classes)
    model = build_network(
        spec,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
        data_format=data_format or keras.config.image_data_format(),
    )
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
