"""What an export takes besides the model and its data: `ExportOptions`, formats, tolerances.

The choices and defaults themselves live in `keras_resnet.constants` (the CLI reads them
there without importing TensorFlow); they are re-exported here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from keras_resnet._checks import check_positive_int, config_with_overrides
from keras_resnet.constants import (
    DEFAULT_CALIBRATION_SAMPLES,
    DEFAULT_FORMATS,
    DEFAULT_LATENCY_RUNS,
    DEFAULT_MIN_INT8_AGREEMENT,
    DEFAULT_TOP_K,
    DEFAULT_VERIFY_SAMPLES,
    FORMATS,
    PREPROCESSING,
    TFLITE_VARIANTS,
)
from keras_resnet.export.keras_bf16 import TOLERANCE as BF16_TOLERANCE
from keras_resnet.export.onnx import ONNX_PACKAGES, onnx_available

# Acceptance of each artifact against the Keras model on the verification images.
# Float artifacts: the largest absolute difference of any output value.
# Quantised ones: the share of images whose top-1 class is the Keras model's.
# The .keras file holds the BN-folded model by default: float32 rounding of the folded kernels,
# as the SavedModel's, not a byte-identical reload.
DEFAULT_TOLERANCES: dict[str, dict[str, float]] = {
    "keras": {"max_abs_diff": 1e-5},
    "keras_bf16": BF16_TOLERANCE,  # bfloat16's 8-bit significand: see export/keras_bf16.py
    "saved_model": {"max_abs_diff": 1e-5},
    "saved_model_uint8": {"max_abs_diff": 1e-5},
    "tflite_fp32": {"max_abs_diff": 1e-5},
    "tflite_fp16": {"max_abs_diff": 1e-2},
    "tflite_dynamic": {"top1_agreement": 0.99},
    "tflite_int8": {"top1_agreement": DEFAULT_MIN_INT8_AGREEMENT},
    "onnx": {"max_abs_diff": 1e-5},
}


def parse_formats(formats: str | Sequence[str]) -> list[str]:
    """Turns `"all"`, `"tflite"`, `"keras,tflite_int8"` or a list into known format names.

    Example:
        >>> parse_formats("keras,tflite")
        ['keras', 'tflite_fp32', 'tflite_fp16', 'tflite_dynamic', 'tflite_int8']
    """
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out: list[str] = []
    for raw in items:
        item = str(raw).strip().lower()
        if item == "all":
            expanded = list(DEFAULT_FORMATS) + (["onnx"] if onnx_available() else [])
        elif item == "tflite":
            expanded = [f"tflite_{v}" for v in TFLITE_VARIANTS]
        elif item in FORMATS:
            expanded = [item]
        else:
            raise ValueError(
                f"`formats` must be 'all', 'tflite' or among {', '.join(FORMATS)}. "
                f"Received: formats={formats!r}"
            )
        out += [f for f in expanded if f not in out]
    if not out:
        raise ValueError(f"`formats` names no format. Received: formats={formats!r}")
    return [f for f in FORMATS if f in out]


def _check_tolerances(tolerances: dict | None) -> dict[str, dict[str, float]]:
    merged = {k: dict(v) for k, v in DEFAULT_TOLERANCES.items()}
    for fmt, tol in (tolerances or {}).items():
        if fmt not in merged or not isinstance(tol, dict):
            raise ValueError(
                "`tolerances` maps a format to {'max_abs_diff': x} and/or "
                f"{{'top1_agreement': y}}. Received: tolerances={tolerances!r}"
            )
        for key, value in tol.items():
            if key not in ("max_abs_diff", "top1_agreement") or not float(value) >= 0:
                raise ValueError(
                    f"Unknown or negative tolerance. Received: tolerances={tolerances!r}"
                )
        merged[fmt] = {k: float(v) for k, v in tol.items()}
    return merged


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """How `export_model` and `export_run` export; every value checked when it is made.

    Attributes:
        formats: `"all"` (every format but the opt-in `keras_bf16`; ONNX when its
            extra is installed),
            `"tflite"` (the four variants), or names from `FORMATS`; stored as
            the tuple of format names it stands for, in `FORMATS` order.
        preprocessing: what the uint8 signature does to 0..255 pixels before the
            model: `"unit"` (/255, what `keras_resnet.training` trains on),
            `"caffe"`/`"tf"`/`"torch"` (keras.applications' modes) or `"none"`.
            Default (None): the pretrained tag's, for a model `create_model` made with
            weights (`registry.model_cfg`: its name is the tag), else `"unit"`.
        top_k: how many classes the uint8 signature returns (at most the model's).
        uint8_signature: add the `serving_uint8` signature to the SavedModel.
        overwrite: replace an existing `output_dir` that is an earlier export
            (its manifest.json is one `export_model` wrote). Anything else (a
            run, a folder holding exports, a file) is refused; an empty
            directory is used without it.
        tolerances: per-format overrides of `DEFAULT_TOLERANCES`.
        min_int8_agreement: shortcut for the int8 top-1 agreement (default 0.99).
        calibration_samples: training images that calibrate the int8 variant.
        verify_samples: held-out images every artifact is compared on.
        latency_runs: batch-1 samples per TFLite file, all files timed in turns so a
            change of load falls on each alike (and per Keras file with `keras_bf16`);
            the manifest's `fastest` compares them (0: skip latency).
        num_threads: LiteRT threads for the latency (default: all cores).
        fold: write the `.keras` file and the SavedModel (and so the TFLite
            files converted from it) from `keras_resnet.fold.fold_batchnorm(model)`,
            the inference form with BatchNormalization folded into the convs;
            every artifact is still verified against the unfolded model.
            False keeps the training graph. A model that is not functional
            is exported unfolded (the manifest's `fold` says why); a
            mixed-precision (16-bit) model is exported as its float32 copy,
            folded there (the manifest's `input.trained_dtype_policy`).
        verbose: print a table of the artifacts at the end.

    Example:
        >>> options = ExportOptions(formats="keras,tflite_int8", latency_runs=0)
        >>> options.formats
        ('keras', 'tflite_int8')
        >>> dataclasses.replace(options, overwrite=True).overwrite
        True
    """

    formats: str | Sequence[str] = "all"
    preprocessing: str | None = None
    top_k: int = DEFAULT_TOP_K
    uint8_signature: bool = True
    overwrite: bool = False
    tolerances: dict[str, dict[str, float]] | None = None
    min_int8_agreement: float | None = None
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES
    verify_samples: int = DEFAULT_VERIFY_SAMPLES
    latency_runs: int = DEFAULT_LATENCY_RUNS
    num_threads: int | None = None
    fold: bool = True
    verbose: bool = True

    def __post_init__(self) -> None:
        requested = self.formats
        object.__setattr__(self, "formats", tuple(parse_formats(requested)))
        if self.preprocessing is not None and self.preprocessing not in PREPROCESSING:
            raise ValueError(
                f"`preprocessing` must be one of {PREPROCESSING}. "
                f"Received: preprocessing={self.preprocessing!r}"
            )
        check_positive_int("top_k", self.top_k)
        check_positive_int("calibration_samples", self.calibration_samples)
        check_positive_int("verify_samples", self.verify_samples)
        if not isinstance(self.latency_runs, int) or self.latency_runs < 0:
            raise ValueError(
                "`latency_runs` must be a non-negative integer. "
                f"Received: latency_runs={self.latency_runs!r}"
            )
        if not isinstance(self.fold, bool):
            raise ValueError(f"`fold` must be True or False. Received: fold={self.fold!r}")
        self.resolved_tolerances()
        if "onnx" in self.formats and not onnx_available():
            raise ValueError(
                "The ONNX format needs the optional extra: pip install 'keras3-resnet[onnx]' "
                f"({', '.join(ONNX_PACKAGES)}). Received: formats={requested!r}"
            )

    def resolved_tolerances(self) -> dict[str, dict[str, float]]:
        """`DEFAULT_TOLERANCES` with `tolerances` and `min_int8_agreement` applied."""
        tols = _check_tolerances(self.tolerances)
        if self.min_int8_agreement is not None:
            if not 0.0 <= self.min_int8_agreement <= 1.0:
                raise ValueError(
                    "`min_int8_agreement` must be in [0, 1]. "
                    f"Received: min_int8_agreement={self.min_int8_agreement}"
                )
            tols["tflite_int8"] = {"top1_agreement": float(self.min_int8_agreement)}
        return tols


def with_tag_preprocessing(options: ExportOptions, tag: Any) -> ExportOptions:
    """`options` with a default (None) `preprocessing` made the pretrained `tag`'s (a
    `registry.PretrainedCfg`), or "unit" without one."""
    if options.preprocessing is not None:
        return options
    return dataclasses.replace(options, preprocessing=tag.preprocessing if tag else "unit")


def resolve_options(options: ExportOptions | None, overrides: Mapping[str, Any]) -> ExportOptions:
    """`options` (default `ExportOptions()`) with the keyword `overrides` applied and checked."""
    return config_with_overrides(
        ExportOptions, options, dict(overrides), arg="options", caller="export_model"
    )
