"""TensorFlow Datasets by name; nothing is downloaded unless asked."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from keras_resnet.data.base import DatasetNotPreparedError, _flips_allowed, _Source


@contextlib.contextmanager
def _tfds_gcs_lookups_disabled() -> Iterator[None]:
    """Stops TFDS from querying its GCS bucket, which hangs offline.

    For a dataset that is not prepared locally, TFDS can look its metadata
    up on ``gs://tfds-data``; older releases did so by default (this flag is
    what they check), and the look-up waits on network timeouts offline.
    """
    from tensorflow_datasets.core.utils import gcs_utils

    previous = gcs_utils.__dict__.get("_is_gcs_disabled")
    gcs_utils._is_gcs_disabled = True
    try:
        yield
    finally:
        gcs_utils._is_gcs_disabled = previous


def _tfds_split_specs(
    splits: Any, name: str, validation_fraction: float, test_fraction: float
) -> dict[str, str | None]:
    """Maps train/validation/test to TFDS split strings (None: empty split).

    Missing validation / test splits are cut from the end of ``train`` by
    example index, so the split is exact and independent of `seed`.
    """
    if "train" not in splits:
        raise ValueError(
            f"`dataset` has no 'train' split (it has {sorted(splits)}). Received: dataset={name!r}"
        )
    total = splits["train"].num_examples
    num_validation = 0 if "validation" in splits else round(validation_fraction * total)
    num_test = 0 if "test" in splits else round(test_fraction * total)
    end = total - num_validation - num_test
    if end <= 0:
        raise ValueError(
            f"`dataset` has too few training examples ({total}) for "
            f"validation_fraction={validation_fraction} and "
            f"test_fraction={test_fraction}. Received: dataset={name!r}"
        )

    def carved(start: int, stop: int) -> str | None:
        return f"train[{start}:{stop}]" if stop > start else None

    return {
        "train": "train" if end == total else f"train[:{end}]",
        "validation": (
            "validation" if "validation" in splits else carved(end, end + num_validation)
        ),
        "test": "test" if "test" in splits else carved(total - num_test, total),
    }


def _tfds_source(
    name: str,
    data_dir: str | None,
    download: bool,
    validation_fraction: float,
    test_fraction: float,
) -> _Source:
    import tensorflow_datasets as tfds

    parsed = _parse_name(tfds, name)
    with contextlib.nullcontext() if download else _tfds_gcs_lookups_disabled():
        builder = _builder(tfds, name, data_dir)
        # The code's features are known before preparing: reject e.g. text
        # datasets before asking for a download.
        _image_and_label_features(tfds, builder.info, name)
        info = _prepared_info(tfds, builder, name, parsed.name, data_dir, download)
        image_feature, label_feature = _image_and_label_features(tfds, info, name)
        specs = _tfds_split_specs(info.splits, name, validation_fraction, test_fraction)
        datasets = _load_splits(tfds, name, specs, data_dir)
    height, width, native_channels = image_feature.shape
    dtype = np.dtype(image_feature.np_dtype)
    return _Source(
        **datasets,
        sizes={
            split: _num_examples(datasets[split], info.splits[spec]) if spec else 0
            for split, spec in specs.items()
        },
        class_names=list(label_feature.names),
        image_hw=(height, width) if height and width else None,
        channels=native_channels,
        scale=float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0,
        flips=_flips_allowed(parsed.name),
    )


def _unknown(name: str) -> ValueError:
    return ValueError(
        "`dataset` is neither 'digits', an existing folder, nor a TensorFlow "
        f"Datasets name. Received: dataset={name!r}"
    )


def _parse_name(tfds: Any, name: str) -> Any:
    """TFDS' parsed reference; a name it cannot parse, or a community one, is refused."""
    try:
        parsed, _ = tfds.core.naming.parse_builder_name_kwargs(name)
    except ValueError:
        raise _unknown(name) from None
    if parsed.namespace:
        # Community and Hugging Face datasets resolve their code over the
        # network, even to find out that nothing is prepared.
        raise ValueError(
            "`dataset` names a community TFDS dataset (namespace:name), which "
            f"is not supported. Received: dataset={name!r}"
        )
    return parsed


def _builder(tfds: Any, name: str, data_dir: str | None) -> Any:
    """The dataset's TFDS builder; an unknown name, config or version is a ValueError."""
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError:
        raise _unknown(name) from None
    except ValueError as error:  # e.g. an unknown config or version
        raise ValueError(
            f"`dataset` is not a valid TensorFlow Datasets reference: {error} "
            f"Received: dataset={name!r}"
        ) from error


def _prepared_info(
    tfds: Any, builder: Any, name: str, base_name: str, data_dir: str | None, download: bool
) -> Any:
    """The prepared dataset's info, downloading and preparing it first only if `download`."""
    if builder.is_prepared():
        return builder.info
    if not download:
        root = data_dir or os.fspath(builder.data_dir_root)
        raise DatasetNotPreparedError(
            f"TensorFlow Datasets dataset {name!r} is not prepared in "
            f"{root} (looked for {builder.data_dir}) and download=False, "
            "so nothing is fetched. On a machine with internet, either "
            "load it once with download=True (keras-resnet's --download "
            f"flag), or run `tfds build {name} --data_dir {root}`, then "
            f"copy {os.path.join(root, base_name)} to this machine's "
            "data_dir. "
            f"Received: dataset={name!r}, data_dir={data_dir!r}"
        )
    # Downloads and prepares; only then does TFDS know the splits.
    _, info = tfds.load(name, data_dir=data_dir, download=True, with_info=True)
    return info


def _load_splits(
    tfds: Any, name: str, specs: dict[str, str | None], data_dir: str | None
) -> dict[str, tf.data.Dataset]:
    """train/validation/test datasets of the split specs (an empty one where a spec is None)."""
    requested = [spec for spec in specs.values() if spec]
    loaded = dict(
        zip(
            requested,
            tfds.load(name, split=requested, as_supervised=True, data_dir=data_dir, download=False),
            strict=True,
        )
    )
    empty = loaded[specs["train"]].take(0)
    return {split: loaded[spec] if spec else empty for split, spec in specs.items()}


def _image_and_label_features(tfds: Any, info: Any, name: str) -> tuple[Any, Any]:
    """Returns the features behind `as_supervised=True`'s (image, label) pair."""
    keys = info.supervised_keys
    features = info.features
    if (
        isinstance(keys, tuple)
        and len(keys) == 2
        and all(isinstance(key, str) and key in features for key in keys)
    ):
        image, label = (features[key] for key in keys)
        if isinstance(image, tfds.features.Image) and isinstance(label, tfds.features.ClassLabel):
            return image, label
    raise ValueError(
        "`dataset` is not an image classification dataset (it needs supervised "
        f"(image, class label) pairs). Received: dataset={name!r}"
    )


def _num_examples(ds: tf.data.Dataset, split_info: Any) -> int:
    # The pipeline's own count when known (TFDS asserts it when reading).
    cardinality = int(ds.cardinality())
    return cardinality if cardinality >= 0 else split_info.num_examples
