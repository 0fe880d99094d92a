"""What an export starts from: a training run or a `.keras` file, and the run's dataset."""

from __future__ import annotations

import dataclasses
import os
import zipfile
from pathlib import Path
from typing import Any

import keras

from keras_resnet._io import read_json_object
from keras_resnet._limits import check_keras_archive
from keras_resnet.export.export_utils import check_classifier


def load_model_file(path: str | os.PathLike, arg: str = "source") -> keras.Model:
    """Loads a `.keras` file with `safe_mode=True`; a missing or corrupt file is a ValueError.

    Example:
        >>> model = load_model_file("runs/demo/best.keras")
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"`{arg}` is not a file. Received: {arg}='{path}'")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ValueError(
            f"`{arg}` must be a Keras 3 `.keras` file (a zip archive). Received: {arg}='{path}'"
        )
    check_keras_archive(path, arg)
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as e:  # noqa: BLE001 - any failure of a corrupt file gets one message
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"`{arg}` cannot be loaded ({first}). Received: {arg}='{path}'") from None


def resolve_source(source: str | os.PathLike) -> tuple[Path, dict | None]:
    """The model file of a run directory or `.keras` path, and the run's run.json if any."""
    path = Path(source)
    run_dir = path if path.is_dir() else path.parent
    if path.is_dir():
        candidates = [path / "best.keras", path / "last.keras"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise ValueError(
                "`source` is a directory without best.keras or last.keras (not a finished run). "
                f"Received: source='{path}'"
            )
        path = found
    elif not path.exists():
        raise ValueError(f"`source` does not exist. Received: source='{path}'")
    run_json = run_dir / "run.json"
    return path, _read_run_json(run_json, source) if os.path.lexists(run_json) else None


def _read_run_json(run_json: Path, source: Any) -> dict[str, Any]:
    """The run's run.json; one that keras_resnet's training did not write is an error."""

    def not_a_run(reason: str) -> ValueError:
        return ValueError(
            f"`source` has a run.json that is not a keras_resnet run's ({reason}): {run_json}. "
            f"Received: source={str(source)!r}"
        )

    run = read_json_object(run_json, "a keras_resnet run.json", "source", error=not_a_run)
    if not isinstance(run.get("fingerprint"), dict):
        raise not_a_run("no `fingerprint` object")
    return run


def load_run_data(
    model: keras.Model,
    run: dict[str, Any] | None,
    source: Any,
    *,
    dataset: str | None,
    data_dir: str | None,
    calibrate: bool,
    tag: Any = None,
) -> tuple[dict[str, Any] | None, Any]:
    """The run's spec and its dataset's splits at the model's input size (None without one).

    The dataset is `dataset` or the one the run's run.json names, read as
    `DataOptions` at the model's input size and channels, not augmented;
    `calibrate` (an int8 export) makes a missing one an error. `tag`: the pretrained
    tag (`registry.PretrainedCfg`) whose input the model takes, its crop and
    preprocessing; None for [0, 1] pixels.
    """
    from keras_resnet.data import DataOptions, load_splits

    fingerprint = (run or {}).get("fingerprint", {})
    dataset = dataset or fingerprint.get("dataset")
    h, w, c, _ = check_classifier(model)
    spec = fingerprint.get("spec") if "stages" in fingerprint.get("spec", {}) else None
    if dataset is None:
        if calibrate:
            raise ValueError(
                "tflite_int8 needs calibration data and this source has no run.json naming its "
                f"dataset: pass --dataset (dataset=...). Received: source='{source}', dataset=None"
            )
        return spec, None
    # The run's evaluation crop (the imagenet recipe's 0.875), so the export is verified on
    # the images the run was tested on; a pretrained tag's model, its tag's crop.
    data = DataOptions(
        image_size=(h, w),
        channels=c,
        data_dir=data_dir,
        augment=False,
        eval_crop=fingerprint.get("eval_crop", tag.crop_pct if tag else None),
    )
    splits = load_splits(dataset, data, batch_size=64, seed=int(fingerprint.get("seed", 0)))
    return spec, _as_model_input(splits, tag)


def _as_model_input(splits: Any, cfg: Any) -> Any:
    """The splits' [0, 1] images as the model takes them: a pretrained tag's model takes its
    tag's preprocessing (`preprocess_input(x * 255, mode)`), a run's model [0, 1] pixels."""
    from keras_resnet.applications import PREPROCESS_MODES, preprocess_input

    if cfg is None or cfg.preprocessing not in PREPROCESS_MODES:
        return splits

    def prepared(images: Any, labels: Any) -> tuple[Any, Any]:
        return preprocess_input(images * 255.0, mode=cfg.preprocessing), labels

    return dataclasses.replace(
        splits,
        train=splits.train.map(prepared),
        validation=splits.validation.map(prepared),
        test=splits.test.map(prepared),
    )
