"""keras_resnet: residual networks for Keras 3 from one validated spec.

Data flows one way: spec -> builder -> model -> (train | tune | export).

>>> import keras_resnet
>>> model = keras_resnet.ResNet50(weights=None)         # keras.applications drop-in
>>> small = keras_resnet.build_resnet("resnet20", classes=10)
>>> net = keras_resnet.create_model("resnet50d.ra2_in1k", pretrained=True)  # timm's weights

Every name is imported on first use: `import keras_resnet` imports neither
Keras nor TensorFlow until a model, spec or module is asked for, and the heavy
parts (`keras_resnet.data`, `.training`, `.tuning`, `.export`) only when used.
"""

import importlib

from keras_resnet.catalog import APPLICATION_TABLE
from keras_resnet.version import __version__

# Every public name and the module it lives in, imported on first use (PEP 562), so
# `import keras_resnet` (and the `keras-resnet` command's argument parsing) does not
# import TensorFlow until a model is asked for.
_PUBLIC = {
    **dict.fromkeys(
        (
            *APPLICATION_TABLE,
            "decode_predictions",
            "preprocess_input",
            "preprocess_input_v2",
        ),
        "applications",
    ),
    "build_backbone": "builder",
    "build_resnet": "builder",
    "fold_batchnorm": "fold",
    "ResNetSpec": "spec",
    "StageSpec": "spec",
    "get_spec": "spec",
    "list_specs": "spec",
    "load_torch_weights": "torch_weights",
    "create_model": "registry",
    "list_models": "registry",
    "pretrained_cfg": "registry",
}
_LAZY_MODULES = ("data", "training", "tuning", "export", "cli")


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"keras_resnet.{_PUBLIC[name]}"), name)
    if name in _LAZY_MODULES:
        return importlib.import_module(f"keras_resnet.{name}")
    raise AttributeError(f"module 'keras_resnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC, *_LAZY_MODULES])


__all__ = ["__version__", *_PUBLIC]  # the lazy names, listed once above
