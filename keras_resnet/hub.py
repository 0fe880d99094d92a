"""timm's weights from the Hugging Face Hub, converted once into a cached `.weights.h5`.

`hub_weights_path("timm/resnet50d.ra2_in1k", "resnet50d")`:

1. `huggingface_hub.hf_hub_download(repo, "model.safetensors")`: the Hub's own cache
   (`HF_HUB_CACHE`, `HF_HOME`), offline mode (`HF_HUB_OFFLINE=1`) and token (`HF_TOKEN`,
   `hf auth login`), nothing of ours.
2. The file's sha256 keys the conversion: the Hub cache names each large file's blob by its
   sha256 (the Hub's LFS object id), which is used as is; another file is hashed here.
3. Converted into the named spec with `torch_weights` (the same renaming and checks as
   `keras-resnet convert-weights`, safetensors read as numpy, no torch) and written
   atomically into Keras' cache (`~/.keras/models/`, or `$KERAS_HOME/models/`) as
   `<repo>--<spec>--<sha256>.weights.h5`, so a new revision of the file converts anew and an
   unchanged one is never converted twice.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

FILENAME = "model.safetensors"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _download_hint(repo_id: str) -> str:
    return f"`hf download {repo_id} {FILENAME}` on a machine with a network (same HF_HUB_CACHE)"


def download(repo_id: str) -> str:
    """The local path of `repo_id`'s model.safetensors, from the Hub's cache or the Hub."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    from keras_resnet.version import __version__

    try:
        return hf_hub_download(
            repo_id, FILENAME, library_name="keras_resnet", library_version=__version__
        )
    except LocalEntryNotFoundError:
        offline = " with HF_HUB_OFFLINE=1" if constants.HF_HUB_OFFLINE else ""
        raise OSError(
            f"{repo_id}/{FILENAME} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) "
            f"and could not be downloaded{offline}: run {_download_hint(repo_id)}, then retry."
        ) from None
    except RepositoryNotFoundError:
        raise ValueError(
            f"No such Hugging Face Hub repository (or it is private: set HF_TOKEN). "
            f"Received: weights='hf-hub:{repo_id}'"
        ) from None
    except EntryNotFoundError:
        raise ValueError(
            f"The repository has no {FILENAME}. Received: weights='hf-hub:{repo_id}'"
        ) from None


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a downloaded file: its blob's name in the Hub cache, else computed."""
    blob = Path(os.path.realpath(path)).name
    if _SHA256.fullmatch(blob):
        return blob
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def converted_path(repo_id: str, spec: str, sha256: str) -> Path:
    from keras_resnet.weights import _cache_base

    name = f"{repo_id.replace('/', '--')}--{spec}--{sha256}.weights.h5"
    return Path(_cache_base()) / "models" / name


def hub_weights_path(repo_id: str, spec: str) -> str:
    """A `.weights.h5` of the named `spec` with `repo_id`'s weights, converted at most once.

    Raises:
        OSError: the file is neither cached nor downloadable (one line saying how to get it).
        ValueError: no such repository or file, or a file of another architecture.
    """
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id or ""):
        raise ValueError(
            "`weights` must name a Hub repository as hf-hub:OWNER/NAME. "
            f"Received: weights='hf-hub:{repo_id}'"
        )
    source = download(repo_id)
    target = converted_path(repo_id, spec, file_sha256(source))
    if not target.exists():
        from keras_resnet.torch_weights import write_converted

        target.parent.mkdir(parents=True, exist_ok=True)
        write_converted(source, spec, target)
    return str(target)
