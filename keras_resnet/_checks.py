"""Argument checks shared by the package's modules (file writes live in `_io`).

Error messages follow Keras' form: what the argument must be, then
"Received: name=value".
"""

from __future__ import annotations

import math
import numbers
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


def check_int_at_least(name: str, value: Any, minimum: int) -> None:
    if not is_int(value) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. {received(name, value)}")


def check_image_shape(name: str, value: Any) -> tuple[int, int, int]:
    """`value` as (height, width, channels) of positive integers, or one ValueError."""
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or not all(is_int(d) and d >= 1 for d in value)
    ):
        raise ValueError(
            f"`{name}` must be (height, width, channels), positive integers. "
            f"{received(name, value)}"
        )
    return tuple(int(d) for d in value)


def check_choice(name: str, value: Any, allowed: Any) -> None:
    """`value` must be one of `allowed` (a sequence, or a dict's keys)."""
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {list(allowed)}. {received(name, value)}")


def config_with_overrides(
    cls: type, config: Any, overrides: dict[str, Any], *, arg: str, caller: str
):
    """`config` (an instance of the dataclass `cls`, default `cls()`) with keyword overrides.

    The one way `train`, `search` and `export_model` take a config object and/or its fields
    as keywords: an unknown keyword is a TypeError (as Python's own), a `config` of another
    type a ValueError naming `arg`; the result is checked by `cls.__post_init__`. The
    keywords are the dataclass' fields, or its `KEYWORDS` when it has them (a config made of
    parts takes their fields too).
    """
    import dataclasses

    if config is not None and not isinstance(config, cls):
        article = "an" if cls.__name__[0] in "AEIOU" else "a"
        raise ValueError(
            f"`{arg}` must be {article} {cls.__name__}. Received: {arg}={type(config).__name__}"
        )
    keywords = getattr(cls, "KEYWORDS", None) or {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - keywords)
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")
    if config is None:
        return cls(**overrides)
    return dataclasses.replace(config, **overrides) if overrides else config


def require_tensorflow_backend(what: str, needs: str) -> None:
    """One line when `what` is called under another Keras backend than TensorFlow.

    Models, weights, `fold_batchnorm` and `predict` run on every backend; tf.data
    pipelines, SavedModel/TFLite export and tf.distribute do not.
    """
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ValueError(
            f"{what} needs Keras' TensorFlow backend ({needs}); set KERAS_BACKEND=tensorflow. "
            f"Received: KERAS_BACKEND={backend!r}"
        )
