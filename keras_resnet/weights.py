"""keras.applications' published ImageNet weights: the same URLs, hashes and cache.

A spec has published weights when it *equals* one of the six named specs that
keras.applications publishes weights for; a modified spec (another width, a
different depth) does not, so the weights can never be loaded into a graph
they were not trained for.

Files are fetched with `keras.utils.get_file` into the same cache
subdirectory (`~/.keras/models`) under the same file names, so a file that
keras.applications already downloaded is reused, and vice versa.

Nothing we did not write is deleted: a file already in the cache that fails its
hash check (get_file would download over it, and delete it if that download
failed) is first renamed to `<name>.bad-<its md5>` and kept; only a file this
call downloaded is removed when it fails the check.

`load_backbone_weights` starts a model from a weights file of its spec with
another head: a converted torchvision/timm file (1000 classes) under a new
10-class classifier, for fine-tuning (`train(..., init_weights=...)`). The models it
loads the file into come from `keras_resnet.network` (the builder without weights), since
the builder imports this module for the ImageNet files.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import warnings
from typing import Any

import keras

from keras_resnet.network import build_network
from keras_resnet.spec import ResNetSpec, resolve_spec, spec_name

BASE_WEIGHTS_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"

#: (with top, without top) md5 hashes, as published with keras.applications.
WEIGHTS_HASHES: dict[str, tuple[str, str]] = {
    "resnet50": ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": ("f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    "resnet152": ("100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
    "resnet50v2": ("3ef43a0b657b3be2300d5770ece849e0", "fac2f116257151a9d068a22e544a4917"),
    "resnet101v2": ("6343647c601c52e1368623803854d971", "c0ed64b8031c3730f411d2eb4eea35b5"),
    "resnet152v2": ("a49b44d1979771252814e80f8ec446f9", "ed17cf2e0169df9d443503ef94b23b33"),
}

#: Where `get_file` caches; None is Keras' own (`$KERAS_HOME`, else ~/.keras).
CACHE_DIR: str | None = None


def _cache_base() -> str:
    """The folder get_file caches under, with get_file's fallback for a read-only home."""
    from keras.src.backend import config

    base = os.path.expanduser(CACHE_DIR or config.keras_home())
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return base


def _md5(path: str) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _set_aside_if_bad(path: str, file_hash: str) -> str | None:
    """Renames a file at `path` that fails its hash check to `<path>.bad-<its md5>`.

    We did not write it (it may be a copy made by hand for an offline machine),
    so it is kept, under a name the cache never looks up. Returns the new path,
    or None when `path` holds no file or the right one.
    """
    if not os.path.isfile(path):
        return None
    actual = _md5(path)
    if actual == file_hash:
        return None
    kept = f"{path}.bad-{actual}"
    os.replace(path, kept)
    warnings.warn(
        f"{path} does not match its published md5 {file_hash}; kept as {kept}, "
        "downloading the published file.",
        stacklevel=3,
    )
    return kept


def published_weights_name(spec: ResNetSpec) -> str | None:
    """The keras.applications weights name for `spec`, or None if none is published."""
    name = spec_name(spec)
    return name if name in WEIGHTS_HASHES else None


def weights_file_name(name: str, include_top: bool) -> str:
    suffix = "" if include_top else "_notop"
    return f"{name}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"


def require_published(spec: ResNetSpec) -> str:
    """The weights name of `spec`; a ValueError if keras.applications publishes none."""
    name = published_weights_name(spec)
    if name is None:
        raise ValueError(
            "No published ImageNet weights for this architecture; keras.applications "
            f"publishes them for {sorted(WEIGHTS_HASHES)}. Use weights=None or a path to "
            f"a weights file. Received: weights='imagenet' for spec={spec_name(spec) or spec}"
        )
    return name


def imagenet_weights_path(spec: ResNetSpec, include_top: bool) -> str:
    """Downloads (or finds in the cache) the ImageNet weights file for `spec`.

    Raises:
        ValueError: no published weights for this spec, or the downloaded file
            fails its hash check (it is removed, so a retry downloads again).
        OSError: the file could not be downloaded (for example offline).
    """
    name = require_published(spec)
    file_name = weights_file_name(name, include_top)
    file_hash = WEIGHTS_HASHES[name][0 if include_top else 1]
    origin = BASE_WEIGHTS_PATH + file_name
    target = os.path.join(_cache_base(), "models", file_name)
    kept = _set_aside_if_bad(target, file_hash)
    cached = os.path.exists(target)  # then it passed the check: get_file downloads nothing
    try:
        return keras.utils.get_file(
            file_name, origin, cache_subdir="models", file_hash=file_hash, cache_dir=CACHE_DIR
        )
    except ValueError as e:
        if not cached and os.path.exists(target):  # what this call downloaded
            os.remove(target)
        raise ValueError(
            f"ImageNet weights file {file_name} downloaded from {origin} does not match "
            f"its published hash {file_hash}; the file was removed. ({e})"
        ) from None
    except Exception as e:  # get_file raises a bare Exception on network errors.
        note = f" The cached file that failed its hash check is kept as {kept}." if kept else ""
        raise OSError(
            f"Could not download ImageNet weights file {file_name} from {origin}: {e}. "
            "On an offline machine, copy the file into the Keras cache "
            f"(~/.keras/models/, or $KERAS_HOME/models/) and retry.{note}"
        ) from None


# A layer's own variables in a `.weights.h5` (not those of its parts, e.g. a seed generator's).
_LAYER_VARIABLE = re.compile(r"layers/[^/]+/vars/\d+")


def _count_layer_variables(path: str, received: str) -> int:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            names: list[str] = []
            f.visit(names.append)
    except OSError as e:
        raise ValueError(
            f"Not a readable .weights.h5 file ({str(e).splitlines()[0]}). {received}"
        ) from None
    return sum(bool(_LAYER_VARIABLE.fullmatch(n)) for n in names)


def _load_weights(model: keras.Model, path: str) -> None:
    with warnings.catch_warnings():
        # A failing load also warns about Keras' own bookkeeping attributes: noise here.
        warnings.filterwarnings("ignore", "Skipping nested container", UserWarning)
        model.load_weights(path)


def _first_mismatch(message: str) -> str:
    """The layer and both shapes from Keras' multi-line loading error, else its first line."""
    layer = re.search(r"object <\w+ name=([^,>]+)", message)
    shapes = re.search(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))", message)
    if layer and shapes:
        return f"layer {layer.group(1)!r} takes {shapes.group(1)}, the file has {shapes.group(2)}"
    return message.strip().splitlines()[0]


def read_backbone_weights(
    path: str | os.PathLike,
    spec: ResNetSpec | str,
    input_shape: tuple[int, int, int],
    classes: int,
    *,
    arg: str = "weights",
) -> tuple[dict[str, list[Any]], bool]:
    """The weights a `build_resnet(spec)` classifier's layers take from `path`, by layer name.

    `path` is a `.weights.h5` of a `build_resnet(spec)` classifier of any number of
    classes (`keras-resnet convert-weights` writes one) or without its head. Every
    backbone layer must load from it exactly; the classifier (`predictions`) is included
    only when it has `classes` outputs, so a 1000-class file starts a 10-class model with
    a fresh head.

    Returns:
        `({layer name: its weights}, whether the classifier's are among them)`.

    Raises:
        ValueError: one line, when the file is missing, unreadable or not of this spec
            and input channels (the first layer that does not load is named).
    """
    path = os.fspath(path)
    received = f"Received: {arg}={path!r}"
    if not path.endswith(".weights.h5"):
        raise ValueError(
            f"`{arg}` must be a Keras .weights.h5 file (keras-resnet convert-weights writes "
            f"one). {received}"
        )
    if not os.path.isfile(path):
        raise ValueError(f"No such weights file. {received}")
    stored = _count_layer_variables(path, received)
    spec, data_format = resolve_spec(spec), keras.config.image_data_format()
    backbone = build_network(
        spec, include_top=False, input_shape=input_shape, data_format=data_format
    )
    expected = len(backbone.weights)
    if stored not in (expected, expected + 2):
        raise ValueError(
            f"The weights file holds {stored} layer weights, where this spec's backbone has "
            f"{expected} (and its classifier 2): it is not this architecture. {received}"
        )
    try:
        _load_weights(backbone, path)
    except ValueError as e:
        raise ValueError(
            f"The weights file does not fit this spec at input {tuple(input_shape)} "
            f"({_first_mismatch(str(e))}). {received}"
        ) from None
    source, has_head = backbone, False
    if stored == expected + 2:
        full = build_network(
            spec, input_shape=input_shape, classes=classes, data_format=data_format
        )
        try:
            _load_weights(full, path)
            source, has_head = full, True
        except ValueError:  # another number of classes: the model keeps its new head
            pass
    return {layer.name: layer.get_weights() for layer in source.layers if layer.weights}, has_head


def load_backbone_weights(
    model: keras.Model, path: str | os.PathLike, spec: ResNetSpec | str, *, arg: str = "weights"
) -> dict[str, Any]:
    """Sets `model`'s ResNet layers from a `.weights.h5` of `spec`, by layer name.

    For fine-tuning a converted file on a new dataset: `model` is a `build_resnet(spec,
    classes=...)` classifier (other layers it has, such as a float32 softmax, are left
    alone). The backbone is loaded exactly; the classifier only when its classes are the
    file's, else it keeps its initialisation (`read_backbone_weights`).

    Example:
        >>> model = build_resnet("resnet18", input_shape=(32, 32, 3), classes=10)
        >>> load_backbone_weights(model, "resnet18.weights.h5", "resnet18")
        {'layers': 40, 'classifier': False}

    Returns:
        `{"layers": how many layers were set, "classifier": whether the head was}`.
    """
    layers = {layer.name: layer for layer in model.layers}
    if "predictions" not in layers:
        raise ValueError(
            "The model has no `predictions` classifier: build it with build_resnet(spec, "
            f"classes=...). Received: model={model.name!r}"
        )
    values, has_head = read_backbone_weights(
        path, spec, tuple(model.input_shape[1:]), layers["predictions"].units, arg=arg
    )
    missing = [name for name in values if name not in layers]
    if missing:
        raise ValueError(
            f"The model has no layer {missing[0]!r}: build it from the same spec. "
            f"Received: model={model.name!r}"
        )
    for name, weights in values.items():
        layers[name].set_weights(weights)
    return {"layers": len(values), "classifier": has_head}
