"""torchvision's and timm's ResNet weights (`.safetensors` state dicts) in keras_resnet models.

No torch at run time: the file is read with the `safetensors` package into numpy
arrays, and each layer of the model takes the keys the layer plan names for it
(`keras_resnet.plan.torch_keys`, from its name and its network's stem and shortcut: the
table in keras_resnet/blocks.py), every weight set exactly once. Anything that does not fit is
refused before a single weight is set: a key no layer takes, a layer weight no key gives,
a shape that differs (the first such key and both shapes are named). So the file decides
which spec it needs: a ResNet-50 file does not load into a ResNet-50-D, nor a 1000-class
head into a 10-class one.

Tensors: conv kernels OIHW -> HWIO (grouped ones included: torch's `in/groups`
is Keras' input axis too), the classifier (out, in) -> (in, out), BN weight,
bias, running_mean, running_var -> gamma, beta, moving_mean, moving_variance;
`num_batches_tracked` carries nothing a model uses and is skipped.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from keras_resnet._limits import check_safetensors
from keras_resnet.plan import torch_keys, torch_layout

# The plan's kind of each Keras layer class that has weights.
_KINDS = {"Conv2D": "conv", "BatchNormalization": "bn", "Dense": "dense"}


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a `.safetensors` file as a numpy array (one clear line if unreadable)."""
    from safetensors.numpy import load_file

    check_safetensors(path, "path")
    try:
        return load_file(os.fspath(path))
    except FileNotFoundError:
        raise ValueError(f"No such weights file. Received: path={os.fspath(path)!r}") from None
    except Exception as e:  # safetensors raises its own error types for a bad header
        raise ValueError(
            f"Not a readable .safetensors file ({str(e).splitlines()[0]}). "
            f"Received: path={os.fspath(path)!r}"
        ) from None


def _convert(kind: str, index: int, array: np.ndarray) -> np.ndarray:
    """A state-dict tensor in Keras' layout for weight `index` of a layer of `kind`."""
    if kind == "conv" and index == 0:
        return array.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    if kind == "dense" and index == 0:
        return array.T
    return array


def _layer_keys(model: Any) -> list[tuple[Any, str, tuple[str, ...]]]:
    """Each layer with weights, its kind and the state-dict keys of its weights."""
    layout = torch_layout([layer.name for layer in model.layers])
    found = []
    for layer in model.layers:
        count = len(layer.weights)
        if count:
            kind = _KINDS.get(type(layer).__name__, "")
            found.append((layer, kind, torch_keys(layer.name, kind, count, layout)))
    return found


def load_torch_weights(model: Any, path: str | os.PathLike) -> Any:
    """Sets every weight of `model` from a torchvision/timm `.safetensors` state dict.

    Args:
        model: a keras_resnet model of the file's architecture (e.g.
            `build_resnet("resnet50d")` for timm's `resnet50d`), classes as
            the file's head.
        path: the `.safetensors` file.

    Returns:
        `model`, its weights set.

    Raises:
        ValueError: an unreadable file, a key no layer takes, a layer weight no
            key gives, or a shape mismatch; nothing is set then.
    """
    return _set_weights(model, read_safetensors(path), f"Received: path={os.fspath(path)!r}")


def _set_weights(model: Any, state: dict[str, np.ndarray], received: str) -> Any:
    layer_keys = _layer_keys(model)
    taken = {key for _, _, keys in layer_keys for key in keys}
    unused = [k for k in state if k not in taken and not k.endswith(".num_batches_tracked")]
    if unused:
        raise ValueError(
            f"The weights file has {len(unused)} key(s) this model has no layer for "
            f"(first: {unused[0]!r}): it is not this architecture. {received}"
        )
    planned = []
    for layer, kind, keys in layer_keys:
        values, expected = [], layer.get_weights()
        for index, current in enumerate(expected):
            key = keys[index] if index < len(keys) else None
            if key not in state:
                raise ValueError(
                    f"The weights file has no tensor for layer {layer.name!r} (weight {index} "
                    f"of {len(expected)}): it is not this architecture. {received}"
                )
            value = _convert(kind, index, np.asarray(state[key]))
            if value.shape != current.shape:
                raise ValueError(
                    f"Shape mismatch at {key!r}: the file's {tuple(value.shape)} (in Keras' "
                    f"layout) against layer {layer.name!r}'s {tuple(current.shape)}. {received}"
                )
            values.append(value)
        planned.append((layer, values))
    for layer, values in planned:
        layer.set_weights(values)
    return model


def convert_torch_weights(
    path: str | os.PathLike, model: str, output: str | os.PathLike
) -> dict[str, Any]:
    """Ports a `.safetensors` file into the named spec and writes Keras' `.weights.h5`.

    The head's classes come from the file (`fc.weight`); the model is built at
    the spec's input size. The result loads with `build_resnet(model,
    weights=output)` and the application functions (`ResNet18(weights=output)`).
    Nothing is written unless the whole file ports; the output is written
    atomically and never over an existing file.

    Returns:
        `{"model", "classes", "params", "output"}`.
    """
    output = os.fspath(output)
    if not output.endswith(".weights.h5"):
        raise ValueError(f"`output` must end in .weights.h5 (Keras' rule). Received: {output=}")
    if os.path.lexists(output):
        raise ValueError(f"`output` exists; choose a new file. Received: {output=}")
    return write_converted(path, model, output)


def write_converted(
    path: str | os.PathLike, model: str, output: str | os.PathLike
) -> dict[str, Any]:
    """`convert_torch_weights` without its checks of `output`: written atomically, over it."""
    from keras_resnet._io import atomic_path
    from keras_resnet.builder import build_resnet
    from keras_resnet.spec import get_spec

    spec = get_spec(model)
    state = read_safetensors(path)
    head = state.get("fc.weight")
    classes = int(head.shape[0]) if head is not None and head.ndim == 2 else 1000
    built = build_resnet(spec, classes=classes)
    _set_weights(built, state, f"Received: path={os.fspath(path)!r}, model={model!r}")
    with atomic_path(output) as tmp:
        built.save_weights(tmp)
    return {
        "model": model,
        "classes": classes,
        "params": built.count_params(),
        "output": os.fspath(output),
    }
