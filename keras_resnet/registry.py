"""One table of model names and pretrained tags: `create_model`, `list_models`, `pretrained_cfg`.

Names are the named specs (`resnet50d`, `seresnext50_32x4d`, `tv_resnet50`, ...), and a
pretrained model is `name.tag` as timm writes it (`resnet50d.ra2_in1k`). The tag decides the
graph: `resnet50.tv2_in1k` is torchvision's layout (the spec `tv_resnet50`: stride on the
3x3, no conv bias) and `resnet50.keras_in1k` keras.applications' (the spec `resnet50`), so
torchvision weights are never put into the keras.applications graph or the other way round.

Each tag records where its weights come from (a timm repository on the Hugging Face Hub, or
keras.applications' files), its preprocessing and the top-1 its publisher measured: the
`timm` rows are timm's `results/results-imagenet.csv` at the input size and crop given
here, the `keras_in1k` rows the table of keras.io/api/applications (which names no crop;
0.875 is the resize-256-crop-224 protocol).

This module imports neither Keras nor TensorFlow until a model is built, so `keras-resnet
list` and `keras_resnet.list_models` answer at once.

Example:

>>> keras_resnet.list_models("resnet50.*", pretrained=True)
['resnet50.keras_in1k', 'resnet50.tv2_in1k', 'resnet50.tv_in1k', 'resnet50.a1_in1k']
>>> model = keras_resnet.create_model("resnet50d.ra2_in1k", pretrained=True)
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any

from keras_resnet._checks import received
from keras_resnet.spec import get_spec, list_specs, spec_name

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HF_HUB_PREFIX = "hf-hub:"
KERAS_SOURCE = "keras.applications"


@dataclasses.dataclass(frozen=True)
class PretrainedCfg:
    """A pretrained tag: its graph, where its weights are, how its inputs are prepared.

    `preprocessing` is the name `keras_resnet.preprocess_input(x, mode=...)`, `predict` and
    `export_model(preprocessing=...)` take; `mean`/`std` are what it applies (RGB, on
    pixels scaled to [0, 1]; caffe mode works on BGR 0-255 pixels instead).
    """

    name: str
    tag: str
    spec: str
    source: str
    top1: float
    input_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    preprocessing: str = "torch"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def full_name(self) -> str:
        return f"{self.name}.{self.tag}"

    @property
    def hf_hub_id(self) -> str | None:
        """`timm/resnet50d.ra2_in1k` for Hub weights, None for keras.applications' files."""
        return self.source.removeprefix(HF_HUB_PREFIX) if self.is_hub else None

    @property
    def is_hub(self) -> bool:
        return self.source.startswith(HF_HUB_PREFIX)


def _timm(name: str, tag: str, top1: float, spec: str | None = None, **cfg: Any) -> PretrainedCfg:
    hub = f"{HF_HUB_PREFIX}timm/{name}.{tag}"
    return PretrainedCfg(name, tag, spec or name, hub, top1, **cfg)


def _tv(name: str, top1: float, spec: str | None = None) -> PretrainedCfg:
    """torchvision's original weights (timm's `tv_in1k`): bilinear, crop 0.875."""
    return _timm(name, "tv_in1k", top1, spec, interpolation="bilinear")


def _tv2(name: str, top1: float, spec: str | None = None) -> PretrainedCfg:
    """torchvision's 2022 recipe (`tv2_in1k`), evaluated at 224 with crop 0.965."""
    return _timm(name, "tv2_in1k", top1, spec, interpolation="bilinear", crop_pct=0.965)


def _keras(name: str, top1: float) -> PretrainedCfg:
    v2 = name.endswith("v2")
    return PretrainedCfg(
        name,
        "keras_in1k",
        name,
        KERAS_SOURCE,
        top1,
        interpolation="bilinear",
        preprocessing="tf" if v2 else "caffe",
        mean=(0.5, 0.5, 0.5) if v2 else (0.406, 0.456, 0.485),  # caffe: BGR, no scaling
        std=(0.5, 0.5, 0.5) if v2 else (1 / 255, 1 / 255, 1 / 255),
    )


# The first tag of a graph is what `pretrained=True` loads. `resnet50` is keras.applications'
# graph, so its first tag is keras_in1k; `tv_resnet50` (same weights file names as timm's
# `resnet50.*`) gets the torchvision-layout tags.
_TAGS: tuple[PretrainedCfg, ...] = (
    _tv("resnet18", 69.752),
    _timm("resnet18", "a1_in1k", 71.504, crop_pct=0.95),
    _tv("resnet34", 73.298),
    _timm("resnet34", "a1_in1k", 76.420, crop_pct=0.95),
    _keras("resnet50", 74.9),
    _tv2("resnet50", 80.846, "tv_resnet50"),
    _tv("resnet50", 76.156, "tv_resnet50"),
    _timm("resnet50", "a1_in1k", 80.382, "tv_resnet50", crop_pct=0.95),
    _keras("resnet101", 76.4),
    _tv2("resnet101", 81.906, "tv_resnet101"),
    _keras("resnet152", 76.6),
    _tv2("resnet152", 82.294, "tv_resnet152"),
    _keras("resnet50v2", 76.0),
    _keras("resnet101v2", 77.2),
    _keras("resnet152v2", 78.0),
    _timm("resnet18d", "ra2_in1k", 72.296),
    _timm("resnet34d", "ra2_in1k", 77.108),
    _timm("resnet50d", "ra2_in1k", 80.546),
    _timm("resnet101d", "ra2_in1k", 82.254, input_size=256, crop_pct=0.95),
    _timm("resnet152d", "ra2_in1k", 83.160, input_size=256, crop_pct=0.95),
    _timm("seresnet50", "ra2_in1k", 80.260),
    _timm("seresnet50", "a1_in1k", 80.012, crop_pct=0.95),
    _timm("seresnext50_32x4d", "racm_in1k", 81.268),
    _tv2("resnext50_32x4d", 81.190),
    _tv2("resnext101_32x8d", 82.832),
    _tv2("wide_resnet50_2", 81.612),
    _tv2("wide_resnet101_2", 82.514),
)
PRETRAINED: dict[str, PretrainedCfg] = {cfg.full_name: cfg for cfg in _TAGS}


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Model names matching a shell-style `pattern`, in table order.

    `pretrained=False`: every graph (the named specs). `pretrained=True`: every `name.tag`
    with weights, which `create_model(name, pretrained=True)` loads; a pattern without a
    dot is matched against the name alone (`"resnet*d"` finds `resnet50d.ra2_in1k`).

    Example:

    >>> list_models("seresnext*", pretrained=True)
    ['seresnext50_32x4d.racm_in1k']
    """
    pattern = pattern.lower()
    if not pretrained:
        return [n for n in list_specs() if fnmatch.fnmatchcase(n, pattern)]
    if "." not in pattern:
        pattern += ".*"
    return [n for n in PRETRAINED if fnmatch.fnmatchcase(n, pattern)]


def _spec_key(name: str) -> str:
    return spec_name(get_spec(name))  # "ResNet50D" -> "resnet50d"; unknown names raise


def _tag_cfg(arch: str, tag: str) -> PretrainedCfg:
    cfg = PRETRAINED.get(f"{arch}.{tag}")
    if cfg is None:
        known = [c.full_name for c in _TAGS if c.name == arch or c.spec == arch]
        raise ValueError(
            f"Unknown pretrained tag. Tags of {arch!r}: {known or 'none'}; all of them: "
            f"keras_resnet.list_models(pretrained=True). Received: name={f'{arch}.{tag}'!r}"
        )
    return cfg


def default_cfg(spec: str) -> PretrainedCfg | None:
    """The tag `pretrained=True` loads for a named spec: its first one in the table."""
    key = _spec_key(spec)
    return next((c for c in _TAGS if c.spec == key), None)


def resolve(name: str, pretrained: bool | str = False) -> tuple[str, PretrainedCfg | None]:
    """`(named spec, tag)` for `create_model(name, pretrained)`; the tag is None without one.

    A tag in `name` (`resnet50.tv2_in1k`) or in `pretrained` (`"tv2_in1k"`) picks its own
    graph even with `pretrained=False`; `pretrained=True` on a bare name picks its first tag.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a model name (list_models()). {received('name', name)}")
    if not isinstance(pretrained, (bool, str)) or pretrained == "":
        raise ValueError(
            f"`pretrained` must be True, False or a tag. {received('pretrained', pretrained)}"
        )
    arch, _, tag = name.lower().partition(".")
    if isinstance(pretrained, str):
        if tag and tag != pretrained.lower():
            raise ValueError(
                f"`name` and `pretrained` name two tags. Received: name={name!r}, "
                f"pretrained={pretrained!r}"
            )
        tag = pretrained.lower()
    if tag:
        cfg = _tag_cfg(arch, tag)
        return cfg.spec, cfg
    key = _spec_key(arch)
    if pretrained is False:
        return key, None
    cfg = default_cfg(key)
    if cfg is None:
        raise ValueError(
            f"No pretrained weights for {key!r}; the models with some: "
            f"keras_resnet.list_models(pretrained=True). Received: name={name!r}"
        )
    return key, cfg


def is_model_name(name: str) -> bool:
    """Whether `name` is a registry name (a named spec, or `name.tag` of one)."""
    arch = name.lower().partition(".")[0]
    return name.lower() in PRETRAINED or (arch == name.lower() and bool(_spec_key_or_none(arch)))


def _spec_key_or_none(name: str) -> str | None:
    try:
        return _spec_key(name)
    except ValueError:
        return None


def pretrained_cfg(name: str) -> PretrainedCfg:
    """The tag a name loads: `pretrained_cfg("resnet50d.ra2_in1k").preprocessing == "torch"`."""
    return resolve(name, pretrained=True)[1]


def weights_for_spec(spec: str, weights: Any) -> Any:
    """An application function's `weights` with tags resolved for the named spec `spec`.

    `None`, `"imagenet"` and file paths pass through. A tag of this graph (`"ra2_in1k"`) or
    a Hub address (`"hf-hub:timm/resnet50d.ra2_in1k"`) becomes the converted file's path
    (downloaded and converted once, `keras_resnet.hub`); `"keras_in1k"` is `"imagenet"`. A
    tag of another graph is refused, naming the graph it is for.
    """
    import os

    if not isinstance(weights, str) or weights == "imagenet" or os.path.exists(weights):
        return weights
    if not weights.startswith(HF_HUB_PREFIX) and (os.sep in weights or weights.endswith(".h5")):
        return weights  # a path that does not exist: the builder says so
    if weights.startswith(HF_HUB_PREFIX):
        from keras_resnet import hub

        return hub.hub_weights_path(weights.removeprefix(HF_HUB_PREFIX), spec)
    matches = [c for c in _TAGS if c.tag == weights.lower()]
    own = next((c for c in matches if c.spec == spec), None)
    if own is None:
        other = [c.full_name for c in matches]
        hint = f" (it is the graph of {other}: create_model({other[0]!r}))" if other else ""
        tags = [c.tag for c in _TAGS if c.spec == spec]
        raise ValueError(
            f"`weights` must be None, 'imagenet', a weights file, an hf-hub: address or a tag "
            f"of {spec!r} ({tags or 'it has none'}){hint}. Received: weights={weights!r}"
        )
    return cfg_weights(own)


def cfg_weights(cfg: PretrainedCfg) -> str:
    """What `build_resnet(cfg.spec, weights=...)` loads for a tag: a file path or "imagenet"."""
    if not cfg.is_hub:
        return "imagenet"
    from keras_resnet import hub

    return hub.hub_weights_path(cfg.hf_hub_id, cfg.spec)


def create_model(name: str, pretrained: bool | str = False, **kwargs: Any):
    """Builds a registered model, with its pretrained weights when asked.

    Args:
        name: a named spec (`"resnet50d"`), or `name.tag` (`"resnet50d.ra2_in1k"`):
            `list_models()` and `list_models(pretrained=True)`.
        pretrained: False (random initialisation; a tag in `name` still picks the
            graph), True (the tag in `name`, else the graph's first one) or a tag.
        **kwargs: `build_resnet`'s (`include_top`, `input_shape`, `pooling`, `classes`,
            `classifier_activation`, `name`, `data_format`). With weights and another
            number of `classes`, the backbone is loaded and the head starts fresh.

    Returns:
        A `keras.Model`. With weights it is named after its tag (`"resnet18d.ra2_in1k"`,
        unless `name` is given), which is how `export_model`, `keras-resnet export` and
        `predict` find its preprocessing (`model_cfg`), also once saved to `.keras`.

    Example:

    >>> model = create_model("resnet18d.ra2_in1k", pretrained=True, classes=10)
    """
    spec, cfg = resolve(name, pretrained)
    from keras_resnet.builder import build_resnet

    if cfg is None or pretrained is False:
        return build_resnet(spec, **kwargs)
    if "weights" in kwargs:
        raise TypeError("create_model() takes `pretrained`, not `weights`")
    kwargs.setdefault("name", cfg.full_name)
    new_head = kwargs.get("include_top", True) and kwargs.get("classes", 1000) != 1000
    if not new_head:
        return build_resnet(spec, weights=cfg_weights(cfg), **kwargs)
    from keras_resnet.weights import load_backbone_weights

    if not cfg.is_hub:
        raise ValueError(
            "keras.applications' weights take 1000 classes; for another head use "
            f"include_top=False. Received: classes={kwargs['classes']!r}"
        )
    model = build_resnet(spec, **kwargs)
    load_backbone_weights(model, cfg_weights(cfg), spec)
    return model


def model_cfg(model: Any) -> PretrainedCfg | None:
    """The tag whose weights `model` was created with (`create_model` names it so), or None.

    Example:

    >>> model_cfg(create_model("resnet18d.ra2_in1k", pretrained=True)).preprocessing
    'torch'
    """
    name = getattr(model, "name", None)
    return PRETRAINED.get(name.lower()) if isinstance(name, str) else None


def spec_of(name: str) -> str:
    """The named spec a registry name builds (`"resnet50.tv2_in1k"` -> `"tv_resnet50"`)."""
    return resolve(name)[0]
