"""The application functions as data: public name -> named spec, title, classes, parameters.

Kept apart from `applications` (which imports Keras) so that `keras-resnet list` and
`keras_resnet.__all__` read it without importing TensorFlow.
"""

from __future__ import annotations

_D = " (ResNet-D: deep stem, average-pool shortcut; He et al. 2019, timm's resnet*d)"
_SE = " (squeeze-and-excitation, Hu et al. 2018; timm's layout)"
_NEXT = " (grouped convolutions, Xie et al. 2017; torchvision's layout)"
_WIDE = " (Zagoruyko & Komodakis 2016)"

# public name -> (spec name, paper/title extra, default classes, parameter count with top)
APPLICATION_TABLE: dict[str, tuple[str, str, int, int]] = {
    "ResNet18": ("resnet18", " (He et al. 2015)", 1000, 11_699_112),
    "ResNet34": ("resnet34", " (He et al. 2015)", 1000, 21_814_696),
    "ResNet50": ("resnet50", "", 1000, 25_636_712),
    "ResNet101": ("resnet101", "", 1000, 44_707_176),
    "ResNet152": ("resnet152", "", 1000, 60_419_944),
    "ResNet18V2": ("resnet18v2", " (pre-activation, He et al. 2016)", 1000, 11_695_528),
    "ResNet34V2": ("resnet34v2", " (pre-activation, He et al. 2016)", 1000, 21_811_112),
    "ResNet50V2": ("resnet50v2", "", 1000, 25_613_800),
    "ResNet101V2": ("resnet101v2", "", 1000, 44_675_560),
    "ResNet152V2": ("resnet152v2", "", 1000, 60_380_648),
    "ResNet20": ("resnet20", " for CIFAR (He et al. 2015, sec. 4.2)", 10, 271_098),
    "ResNet32": ("resnet32", " for CIFAR (He et al. 2015, sec. 4.2)", 10, 466_426),
    "ResNet44": ("resnet44", " for CIFAR (He et al. 2015, sec. 4.2)", 10, 661_754),
    "ResNet56": ("resnet56", " for CIFAR (He et al. 2015, sec. 4.2)", 10, 857_082),
    "ResNet110": ("resnet110", " for CIFAR (He et al. 2015, sec. 4.2)", 10, 1_736_058),
    "ResNet18D": ("resnet18d", _D, 1000, 11_718_472),
    "ResNet34D": ("resnet34d", _D, 1000, 21_834_056),
    "ResNet50D": ("resnet50d", _D, 1000, 25_629_512),
    "ResNet101D": ("resnet101d", _D, 1000, 44_673_864),
    "ResNet152D": ("resnet152d", _D, 1000, 60_363_592),
    "SEResNet50": ("seresnet50", _SE, 1000, 28_141_144),
    "SEResNeXt50": ("seresnext50_32x4d", " 32x4d" + _SE, 1000, 27_628_120),
    "ResNeXt50": ("resnext50_32x4d", " 32x4d" + _NEXT, 1000, 25_097_128),
    "ResNeXt101": ("resnext101_32x8d", " 32x8d" + _NEXT, 1000, 88_994_216),
    "WideResNet50_2": ("wide_resnet50_2", _WIDE, 1000, 68_951_464),
    "WideResNet101_2": ("wide_resnet101_2", _WIDE, 1000, 127_024_552),
    "WideResNet28_10": ("wide_resnet28_10", " for CIFAR" + _WIDE, 10, 36_497_146),
}


def application_name(spec_name: str) -> str | None:
    """The application function that builds the named spec `spec_name`, if any."""
    for public, (name, *_rest) in APPLICATION_TABLE.items():
        if name == spec_name:
            return public
    return None
