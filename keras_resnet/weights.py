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
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings

import keras

from keras_resnet.spec import ResNetSpec, spec_name
from keras_resnet.torch_weights import load_torch_weights  # noqa: F401 (torchvision/timm files)

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
