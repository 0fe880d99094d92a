"""keras_resnet: residual networks for Keras 3 from one validated spec.

Data flows one way: spec -> builder -> model -> (train | tune | export).

>>> import keras_resnet
>>> model = keras_resnet.ResNet50(weights=None)         # keras.applications drop-in
>>> small = keras_resnet.build_resnet("resnet20", classes=10)

The heavy optional parts (`keras_resnet.data`, `.training`, `.tuning`,
`.export`, `.cli`) are imported on first use, so `import keras_resnet` costs
little more than `import keras`.
"""

import importlib

from keras_resnet.applications import (
    ResNet18,
    ResNet18V2,
    ResNet20,
    ResNet32,
    ResNet34,
    ResNet34V2,
    ResNet44,
    ResNet50,
    ResNet50V2,
    ResNet56,
    ResNet101,
    ResNet101V2,
    ResNet110,
    ResNet152,
    ResNet152V2,
    decode_predictions,
    preprocess_input,
    preprocess_input_v2,
)
from keras_resnet.builder import build_backbone, build_resnet
from keras_resnet.spec import ResNetSpec, StageSpec, get_spec, list_specs
from keras_resnet.version import __version__

_LAZY_MODULES = ("data", "training", "tuning", "export", "cli")


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        return importlib.import_module(f"keras_resnet.{name}")
    raise AttributeError(f"module 'keras_resnet' has no attribute {name!r}")


__all__ = [
    "ResNet18",
    "ResNet18V2",
    "ResNet20",
    "ResNet32",
    "ResNet34",
    "ResNet34V2",
    "ResNet44",
    "ResNet50",
    "ResNet50V2",
    "ResNet56",
    "ResNet101",
    "ResNet101V2",
    "ResNet110",
    "ResNet152",
    "ResNet152V2",
    "ResNetSpec",
    "StageSpec",
    "__version__",
    "build_backbone",
    "build_resnet",
    "decode_predictions",
    "get_spec",
    "list_specs",
    "preprocess_input",
    "preprocess_input_v2",
]
