"""What the `keras-resnet` subcommands share: flag groups, the given-flags rule, --model/--spec.

Imports no TensorFlow (parsing must answer at once); see `keras_resnet.cli`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

# Library keywords every data-reading command passes on when their flag is given.
DATA_KEYS = ("image_size", "channels", "data_dir", "download", "seed", "augment")


def _given(args: argparse.Namespace, keys: Sequence[str]) -> dict[str, Any]:
    """The flags among `keys` that were given (the others keep the library's defaults)."""
    return {k: getattr(args, k) for k in keys if hasattr(args, k)}


def _choices(values: Sequence[Any]) -> str:
    return " | ".join(str(v) for v in values if v is not None)


def _default_classes(spec) -> int:
    # The CIFAR nets come with CIFAR's 10 classes, as ResNet20() does.
    return 10 if spec.stem == "cifar" else 1000


def _spec_from_args(args: argparse.Namespace, default: str | None = None):
    """--model NAME or --spec FILE (or `default`), with --width and --drop-path applied on top."""
    import dataclasses
    import json

    from keras_resnet.spec import ResNetSpec, get_spec

    if hasattr(args, "spec"):
        from keras_resnet._limits import check_json_file

        check_json_file(args.spec, "spec")
        try:
            with open(args.spec) as f:
                spec = ResNetSpec.from_dict(json.load(f))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read --spec {args.spec!r}: {e}") from None
    elif hasattr(args, "model") or default:
        spec = get_spec(getattr(args, "model", default))
    else:
        return None
    for field in ("width", "drop_path_rate"):
        if hasattr(args, field):
            spec = dataclasses.replace(spec, **{field: getattr(args, field)})
    return spec


def _add_data_arguments(p: argparse.ArgumentParser, image_size_default: str) -> None:
    p.add_argument("--dataset", default="digits", help="digits | a tfds name | an image folder")
    p.add_argument("--image-size", type=int, help=f"resize side (default: {image_size_default})")
    p.add_argument("--channels", type=int, help="1 or 3 (default: the dataset's own)")
    p.add_argument("--data-dir", help="tensorflow-datasets data_dir")
    p.add_argument("--download", action="store_true", help="let tfds download and prepare")
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--seed", type=int, help="data split, shuffling and initialisation (0)")
