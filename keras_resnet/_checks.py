"""Argument checks and atomic JSON writes shared by the package's modules.

Error messages follow Keras' form: what the argument must be, then
"Received: name=value".
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import tempfile
from pathlib import Path
from typing import Any


def received(name: str, value: Any) -> str:
    return f"Received: {name}={value!r}"


def is_int(value: Any) -> bool:
    """An integer (numpy's included), but not a bool: `blocks=True` is a bug, not one block."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite real number, not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not is_int(value) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. {received(name, value)}")


def check_positive_number(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not is_number(value) or value <= 0:
        raise ValueError(f"`{name}` must be a positive number. {received(name, value)}")


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Atomic: a reader (or a resumed run) never sees half a file.

    The temporary file has a unique name, so processes sharing a directory
    (a tuner's chief and workers) never write or rename each other's.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    """`data` as indented JSON, written atomically (`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(data, indent=2, default=str))
