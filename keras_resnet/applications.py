"""keras.applications drop-ins: `ResNet50(...)` and friends, each one builder call.

Signatures are keras.applications' (`include_top`, `weights`, `input_tensor`,
`input_shape`, `pooling`, `classes`, `classifier_activation`, `name`). The six
networks keras.applications ships (ResNet50/101/152 and their V2 forms)
default to `weights="imagenet"` as there; the others default to
`weights=None` because no ImageNet weights are published for them.

Instead of one hand-written wrapper per network (keras.applications has three
near-identical 40-line ones per family), a table maps each public name to its
named spec and defaults, and `_application` makes the function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras.applications import imagenet_utils  # public: preprocess_input, decode_predictions

from keras_resnet.builder import build_resnet
from keras_resnet.catalog import APPLICATION_TABLE
from keras_resnet.registry import PRETRAINED, weights_for_spec
from keras_resnet.spec import get_spec
from keras_resnet.weights import WEIGHTS_HASHES

_DOC = """Instantiates the {title} architecture{extra}.

Same arguments and behaviour as `keras.applications.ResNet50`; built by
`keras_resnet.build_resnet(get_spec("{spec}"), ...)`.

Args:
    include_top: whether to include the global-pooling + dense classifier.
    weights: `None` (random initialization), `"imagenet"` ({weights_note}),
        a pretrained tag of this network ({tags}), a Hub repository
        (`"hf-hub:timm/NAME.TAG"`), or the path to a weights file to load.
    input_tensor: optional Keras tensor (output of `keras.Input()`) to use as
        the image input.
    input_shape: optional shape tuple, only to be specified if `include_top`
        is False (otherwise the input shape has to be `{default_shape}`).
        Width and height should be no smaller than {min_size}.
    pooling: `None`, `"avg"` or `"max"`: global pooling applied to the last
        feature map when `include_top` is False.
    classes: number of classes, only to be specified if `include_top` is True
        and no `weights` are loaded. Defaults to {classes}.
    classifier_activation: activation of the top layer; `None` returns
        logits. With pretrained weights only `None` and `"softmax"` are allowed.
    name: the name of the model.

Returns:
    A `keras.Model`.

Example:

>>> model = keras_resnet.{title}(weights=None)
>>> model.count_params()
{params}
"""


def _application(public_name: str) -> Callable[..., keras.Model]:
    spec_key, extra, default_classes, params = APPLICATION_TABLE[public_name]
    spec = get_spec(spec_key)
    published = spec_key in WEIGHTS_HASHES

    def application(
        include_top: bool = True,
        weights: str | None = "imagenet" if published else None,
        input_tensor: Any = None,
        input_shape: tuple[int | None, ...] | None = None,
        pooling: str | None = None,
        classes: int = default_classes,
        classifier_activation: str | Callable | None = "softmax",
        name: str = spec_key,
    ) -> keras.Model:
        return build_resnet(
            spec,
            include_top=include_top,
            weights=weights_for_spec(spec_key, weights),
            input_tensor=input_tensor,
            input_shape=input_shape,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
            name=name,
        )

    size = spec.default_input_size
    application.__name__ = application.__qualname__ = public_name
    application.__module__ = __name__
    application.__doc__ = _DOC.format(
        title=public_name,
        extra=extra,
        spec=spec_key,
        weights_note="keras.applications' published weights"
        if published
        else "not available for this network: a ValueError",
        default_shape=f"({size}, {size}, 3)",
        min_size=spec.min_input_size,
        classes=default_classes,
        params=f"{params}",
        tags=", ".join(f'`"{c.tag}"`' for c in PRETRAINED.values() if c.spec == spec_key)
        or "none registered",
    )
    return application


ResNet18 = _application("ResNet18")
ResNet34 = _application("ResNet34")
ResNet50 = _application("ResNet50")
ResNet101 = _application("ResNet101")
ResNet152 = _application("ResNet152")
ResNet18V2 = _application("ResNet18V2")
ResNet34V2 = _application("ResNet34V2")
ResNet50V2 = _application("ResNet50V2")
ResNet101V2 = _application("ResNet101V2")
ResNet152V2 = _application("ResNet152V2")
ResNet20 = _application("ResNet20")
ResNet32 = _application("ResNet32")
ResNet44 = _application("ResNet44")
ResNet56 = _application("ResNet56")
ResNet110 = _application("ResNet110")
ResNet18D = _application("ResNet18D")
ResNet34D = _application("ResNet34D")
ResNet50D = _application("ResNet50D")
ResNet101D = _application("ResNet101D")
ResNet152D = _application("ResNet152D")
SEResNet50 = _application("SEResNet50")
SEResNeXt50 = _application("SEResNeXt50")
ResNeXt50 = _application("ResNeXt50")
ResNeXt101 = _application("ResNeXt101")
WideResNet50_2 = _application("WideResNet50_2")
WideResNet101_2 = _application("WideResNet101_2")
WideResNet28_10 = _application("WideResNet28_10")

APPLICATIONS: dict[str, Callable[..., keras.Model]] = {
    name: globals()[name] for name in APPLICATION_TABLE
}


PREPROCESS_MODES = ("caffe", "tf", "torch")


def preprocess_input(x: Any, data_format: str | None = None, mode: str = "caffe") -> Any:
    """ImageNet preprocessing; by default keras.applications' "caffe" mode for the v1 networks.

    - `"caffe"` (default, keras.applications' ResNet50/101/152): RGB -> BGR, then each
      channel zero-centred on ImageNet's mean, no scaling. Same function as
      `keras.applications.resnet.preprocess_input`.
    - `"torch"`: for weights ported from torchvision and timm (`load_torch_weights`,
      `keras-resnet convert-weights`): pixels to [0, 1], then ImageNet's mean and standard
      deviation per RGB channel, as torchvision's `Normalize` does.
    - `"tf"`: pixels to [-1, 1] (the V2 networks; see `preprocess_input_v2`).
    """
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"`mode` must be one of {list(PREPROCESS_MODES)}. Received: {mode=}")
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode=mode)


def preprocess_input_v2(x: Any, data_format: str | None = None) -> Any:
    """ImageNet preprocessing for the V2 networks: keras.applications' "tf" mode.

    Scales pixels to [-1, 1]. Same as `keras.applications.resnet_v2.preprocess_input`.
    """
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="tf")


def decode_predictions(preds: Any, top: int = 5) -> list:
    """Keras' ImageNet `decode_predictions`: `[(class_id, name, score), ...]` per sample."""
    return imagenet_utils.decode_predictions(preds, top=top)
