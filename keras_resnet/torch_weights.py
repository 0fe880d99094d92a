"""torchvision's and timm's ResNet weights (`.safetensors` state dicts) in keras_resnet models.

No torch at run time: the file is read with the `safetensors` package into numpy
arrays, each key is renamed to the layer the builder gives the same module
(the table in keras_resnet/blocks.py), and every weight is set exactly once.
Anything that does not fit is refused before a single weight is set: a key no
layer takes, a layer weight no key gives, a shape that differs (the first such
key and both shapes are named). So the file decides which spec it needs: a
ResNet-50 file does not load into a ResNet-50-D, nor a 1000-class head into a
10-class one.

Renaming (`layer{i}.{j}` is `conv{i+1}_block{j+1}`):

    conv1.weight / bn1.*                    conv1_conv / conv1_bn
    conv1.0 / .1 / .3 / .4 / .6 (deep stem) conv1_1_conv / _1_bn / _2_conv / _2_bn / conv1_conv
    layer{i}.{j}.conv{k} / bn{k}            conv{i+1}_block{j+1}_{k}_conv / _{k}_bn
    layer{i}.{j}.downsample.{n}             _0_conv (the 4-D weight) / _0_bn (the BN after it)
    layer{i}.{j}.se.fc1 / se.fc2            _se_reduce / _se_expand
    fc                                      predictions

Tensors: conv kernels OIHW -> HWIO (grouped ones included: torch's `in/groups`
is Keras' input axis too), the classifier (out, in) -> (in, out), BN weight,
bias, running_mean, running_var -> gamma, beta, moving_mean, moving_variance;
`num_batches_tracked` carries nothing a model uses and is skipped.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from keras_resnet._limits import check_safetensors

_BN = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3}
_DEEP_STEM = {"0": ("conv1_1", "conv"), "1": ("conv1_1", "bn"), "3": ("conv1_2", "conv"),
              "4": ("conv1_2", "bn"), "6": ("conv1", "conv")}  # fmt: skip
_BLOCK = re.compile(r"layer(\d+)\.(\d+)\.(.+)")


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


def _module_target(module: str, state: dict[str, np.ndarray]) -> tuple[str, str] | None:
    """(our layer name, "conv" | "bn" | "dense") for a torch module path, or None."""
    if module == "fc":
        return "predictions", "dense"
    if module in ("conv1", "bn1"):
        return "conv1", "conv" if module == "conv1" else "bn"
    if module.startswith("conv1."):
        return _DEEP_STEM.get(module.removeprefix("conv1."))
    match = _BLOCK.fullmatch(module)
    if not match:
        return None
    stage, block, rest = match.groups()
    name = f"conv{int(stage) + 1}_block{int(block) + 1}"
    if m := re.fullmatch(r"(conv|bn)(\d)", rest):
        return f"{name}_{m.group(2)}", m.group(1)
    if rest.startswith("downsample."):
        is_conv = state.get(f"{module}.weight", np.zeros(0)).ndim == 4
        return f"{name}_0", "conv" if is_conv else "bn"
    if rest in ("se.fc1", "se.fc2"):
        return f"{name}_se_{'reduce' if rest == 'se.fc1' else 'expand'}", "se"
    return None


def _convert(kind: str, tensor: str, array: np.ndarray) -> tuple[int, np.ndarray]:
    """(index in the Keras layer's weights, the array in Keras' layout)."""
    if kind == "bn":
        return _BN[tensor], array
    if tensor == "bias":
        return 1, array
    if kind == "dense":
        return 0, array.T
    return 0, array.transpose(2, 3, 1, 0)  # OIHW -> HWIO


def _layer_suffix(kind: str) -> str:
    return {"conv": "_conv", "bn": "_bn"}.get(kind, "")


def torch_state_to_layers(
    state: dict[str, np.ndarray],
) -> tuple[dict[str, dict[int, tuple[str, np.ndarray]]], list[str]]:
    """Renames a state dict: {our layer: {weight index: (torch key, array)}}, unused keys."""
    layers: dict[str, dict[int, tuple[str, np.ndarray]]] = {}
    unused = []
    for key, array in state.items():
        module, _, tensor = key.rpartition(".")
        if tensor == "num_batches_tracked":
            continue
        target = _module_target(module, state)
        if target is None or (target[1] == "bn" and tensor not in _BN):
            unused.append(key)
            continue
        name, kind = target
        index, value = _convert(kind, tensor, np.asarray(array))
        layers.setdefault(name + _layer_suffix(kind), {})[index] = (key, value)
    return layers, unused


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
    layers, unused = torch_state_to_layers(state)
    if unused:
        raise ValueError(
            f"The weights file has {len(unused)} key(s) this model has no layer for "
            f"(first: {unused[0]!r}): it is not this architecture. {received}"
        )
    planned = []
    for layer in model.layers:
        expected = layer.get_weights()
        if not expected:
            continue
        given = layers.pop(layer.name, {})
        for index, current in enumerate(expected):
            if index not in given:
                raise ValueError(
                    f"The weights file has no tensor for layer {layer.name!r} (weight {index} of "
                    f"{len(expected)}): it is not this architecture. {received}"
                )
            key, value = given[index]
            if value.shape != current.shape:
                raise ValueError(
                    f"Shape mismatch at {key!r}: the file's {tuple(value.shape)} (in Keras' "
                    f"layout) against layer {layer.name!r}'s {tuple(current.shape)}. {received}"
                )
        planned.append((layer, [given[i][1] for i in range(len(expected))]))
    if layers:
        first = next(iter(layers.values()))
        key = next(iter(first.values()))[0]
        raise ValueError(
            f"The weights file has key(s) this model has no layer for (first: {key!r}): it is "
            f"not this architecture. {received}"
        )
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
