"""`train`: check, load the data, make the run (`training.run.Run`): it fits (resuming), then
evaluates and writes the run's results."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from keras_resnet._checks import config_with_overrides, require_tensorflow_backend
from keras_resnet.data import DataOptions, DatasetSplits, load_splits
from keras_resnet.precision import explain_mixed_precision
from keras_resnet.spec import ResNetSpec, check_fits_in_memory, resolve_spec
from keras_resnet.training import multiworker
from keras_resnet.training.cluster import Task
from keras_resnet.training.config import (
    TrainConfig,
    check_init_weights,
    default_strategy,
    to_one_hot,
)
from keras_resnet.training.run import Run
from keras_resnet.training.run_dir import RUN_CONFIG, print_summary
from keras_resnet.version import __version__

_CONFIG_DATA_FIELDS = ("image_size", "augment", "augmentation", "eval_crop")
"""The fields `DataOptions` and `TrainConfig` share: the config's, in the run's fingerprint."""
_DATA_KEYWORDS = tuple(
    f.name for f in dataclasses.fields(DataOptions) if f.name not in _CONFIG_DATA_FIELDS
)
"""The keywords `train` gives its `DataOptions` (`channels`, `label_mode`, `data_dir`,
`download`, `max_image_pixels`); the others go to its `TrainConfig`."""


def check_memory(spec, image_size, channels, batch_size) -> None:
    """Sizes whose model or activations cannot fit in memory are refused before loading data."""
    if spec is None:
        return
    side = image_size or spec.default_input_size
    check_fits_in_memory(
        spec,
        (side, side, channels or 3),
        batch_size=batch_size,
        classes=None,
        training=True,
        received_text=f"Received: image_size={side}, batch_size={batch_size}",
    )


def train(
    model: ResNetSpec | str | dict | keras.Model = "resnet20",
    dataset: str | DatasetSplits = "digits",
    *,
    output_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    data: DataOptions | None = None,
    strategy: tf.distribute.Strategy | None = None,
    width: float | None = None,
    verbose: int | str = "auto",
    callbacks: list[keras.callbacks.Callback] | None = None,
    **keywords: Any,
) -> dict[str, Any]:
    """Trains a ResNet and writes a run directory (see the package doc).

    Args:
        model: a named spec (`"resnet20"`), a `ResNetSpec`, its dict, or a
            built `keras.Model` (its input must match the dataset's images).
        dataset: a `load_dataset` reference (`"digits"`, a tfds name, an image
            folder) or already loaded `DatasetSplits`.
        output_dir: the run directory; rerunning with the same arguments
            resumes (or returns a finished run's metrics); another
            configuration there is refused.
        config: the hyperparameters (`TrainConfig`; default `TrainConfig()`).
        data: how the dataset is read (`keras_resnet.data.DataOptions`, as `search` and
            `load_dataset` take it; default `DataOptions()`), under the keywords of its
            fields. Its `image_size`, `augment`, `augmentation` and `eval_crop` are the
            config's (run.json's fingerprint records them): one it sets to other than
            its default sets the config's, as that keyword would. The data is loaded
            with the config's `batch_size` and `seed`.
        strategy: a `tf.distribute.Strategy`; default `default_strategy()`. A
            `MultiWorkerMirroredStrategy` trains through the custom loop of
            `keras_resnet.training.multiworker` (Keras 3's `fit` cannot), every
            worker calling `train` with the same arguments; only the chief
            writes `output_dir` and returns the metrics, the other workers
            return what they did. Any other strategy trains with `model.fit`.
        width: width multiplier applied to the spec.
        verbose: Keras' fit verbosity ("auto": progress bars on a terminal,
            one line per epoch otherwise).
        callbacks: more Keras callbacks for `fit` (after the run's own, before its
            backup), e.g. benchmarks/cifar10.py's per-epoch test accuracy. Not part of
            the run's fingerprint.
        **keywords: how the dataset is read, over `data`: `channels`, `label_mode`,
            `data_dir`, `download`, `max_image_pixels` (`DataOptions`' fields); and any
            `TrainConfig` field, over `config` (and `data`): `epochs`,
            `batch_size` (global, over all replicas), `optimizer` (`"sgd"`
            with momentum 0.9, Nesterov's unless `nesterov=False`, `"adam"`, `"adamw"`),
            `learning_rate` (peak; default by optimizer), `schedule`
            (`"cosine"` with `warmup_epochs` of linear warm-up, `"step"`: /10
            at 50% and 75%, `"constant"`), `weight_decay` (decoupled, on
            kernels only; default by optimizer), `label_smoothing`,
            `mixed_precision` (`"mixed_float16"`/`"mixed_bfloat16"`, or
            `"auto"`: bfloat16 on a CPU with avx512_bf16/amx_bf16, float16 on
            a GPU of compute capability 7.0+, else float32; see
            `keras_resnet.precision`; the output stays float32, and the policy
            used is printed and recorded in run.json and metrics.json as
            `dtype_policy`), `image_size` (default the spec's input size),
            `seed`, `augment`, `augmentation` (`"translate"` or `"random-resized-crop"`),
            `eval_crop` (evaluation's center-crop fraction, e.g. 0.875), `recipe` (a
            `keras_resnet.recipes` name: its defaults, under the other keywords; not with
            `config`), `init_weights` (a `.weights.h5` of the spec, e.g. from
            `keras-resnet convert-weights`: the backbone starts from it, by layer name, and
            the classifier too when its classes are the dataset's; a built model is refused).

    Returns:
        The contents of `metrics.json`.

    Raises:
        ValueError: a bad argument, before anything is written.
        TrainingDivergedError: the loss or a weight became NaN or infinite.

    Example:

    >>> metrics = train("resnet20", "digits", output_dir="runs/digits", epochs=30)
    >>> metrics["test_accuracy"] > 0.98
    True
    """
    require_tensorflow_backend("train()", "tf.data pipelines and tf.distribute")
    started = time.perf_counter()
    config, data = _options(config, data, keywords)
    spec, built_model = _resolve_model(model, width)
    splits = _load(dataset, spec, built_model, config, data)
    # Checked before the run directory is created, so a refused run leaves no files.
    check_init_weights(spec, built_model, splits, config)
    strategy = strategy or default_strategy()
    task = multiworker.custom_loop_task(strategy)  # None: one machine, model.fit
    run_dir = Path(output_dir)
    run = Run(
        spec,
        built_model,
        splits,
        config,
        run_dir,
        record=_record(run_dir, spec, built_model, splits, config, task),
        strategy=strategy,
        task=task,
        verbose=verbose,
        callbacks=list(callbacks or []),
        started=started,
    )
    if task is not None and not task.is_chief:
        return run.train_as_worker()
    # The other workers wait for the chief's word: train, or stop (finished or refused).
    with multiworker.Plan(strategy, task) as plan:
        metrics, evaluated = run.complete(plan)
    if evaluated:
        print_summary(metrics, run_dir)
    return metrics


def _options(
    config: TrainConfig | None, data: DataOptions | None, keywords: dict[str, Any]
) -> tuple[TrainConfig, DataOptions]:
    """The run's config and data options from `train`'s `config`, `data` and keywords.

    The config is made first (its errors come first, as before `data` existed); the data
    options then take the config's `_CONFIG_DATA_FIELDS`.
    """
    data = config_with_overrides(DataOptions, data, {}, arg="data", caller="train")
    defaults = DataOptions()
    from_data = {
        name: getattr(data, name)
        for name in _CONFIG_DATA_FIELDS
        if getattr(data, name) != getattr(defaults, name)
    }
    data_keywords = {name: keywords.pop(name) for name in _DATA_KEYWORDS if name in keywords}
    config = _config(config, {**from_data, **keywords})
    shared = {name: getattr(config, name) for name in _CONFIG_DATA_FIELDS}
    return config, dataclasses.replace(data, **data_keywords, **shared)


def _record(
    run_dir: Path, spec, built_model, splits: DatasetSplits, config: TrainConfig, task: Task | None
) -> dict[str, Any]:
    """What run.json records before training: the fingerprint a rerun must match (the
    multi-worker loop's own: its checkpoints are not fit's backup), the precision, the
    versions."""
    fingerprint = {
        "spec": spec.to_dict() if spec else {"model": built_model.name},
        "dataset": splits.name,
        "image_shape": list(splits.image_shape),
        **dataclasses.asdict(config),
    }
    precision = _precision(config)
    fingerprint = _as_recorded(fingerprint, run_dir)
    if task is not None:
        fingerprint["loop"] = "multi-worker"
    return {
        "fingerprint": fingerprint,
        "precision": precision,
        "keras_resnet": __version__,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
    }


ADDED_FIELDS = ("recipe", "augmentation", "eval_crop", "nesterov")
"""TrainConfig fields added after runs were recorded without them (#27)."""


def _as_recorded(fingerprint: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """`fingerprint` without the `ADDED_FIELDS` a run recorded before them lacks, when they
    hold their defaults: such a run resumes as it was asked (anything else is compared)."""
    try:
        before = json.loads((run_dir / RUN_CONFIG).read_text(encoding="utf-8"))["fingerprint"]
    except (OSError, ValueError, TypeError, KeyError):
        return fingerprint  # a new run, or one check_fingerprint will refuse with its reason
    if not isinstance(before, dict):
        return fingerprint
    defaults = TrainConfig()
    return {
        key: value
        for key, value in fingerprint.items()
        if not (key in ADDED_FIELDS and key not in before and value == getattr(defaults, key))
    }


def _config(config: TrainConfig | None, hyperparameters: dict[str, Any]) -> TrainConfig:
    """`config` (or a recipe's defaults) with the keyword overrides."""
    recipe = hyperparameters.get("recipe")
    if recipe is not None:
        if config is not None:
            raise ValueError(
                "`recipe` sets a new config's defaults; pass `recipe` or `config`, not both. "
                f"Received: recipe={recipe!r}"
            )
        config = TrainConfig.from_recipe(recipe)
    return config_with_overrides(TrainConfig, config, hyperparameters, arg="config", caller="train")


def _precision(config: TrainConfig) -> dict[str, str | None]:
    """The dtype policy the run trains under (what `auto` stands for here), printed if `auto`.

    Recorded outside the fingerprint: a run asked with `auto` resumes on another machine
    under that machine's choice (the checkpoints' variables are float32 either way).
    """
    policy, reason = explain_mixed_precision(config.mixed_precision)
    policy = policy or "float32"
    if config.mixed_precision == "auto":
        print(f"mixed_precision='auto': training in {policy} ({reason})")
    return {"mixed_precision": config.mixed_precision, "dtype_policy": policy, "reason": reason}


def _resolve_model(model: Any, width: float | None) -> tuple[ResNetSpec | None, Any]:
    """(spec, None) for a spec reference, (None, model) for a built keras.Model."""
    if isinstance(model, keras.Model):
        if width is not None:
            raise ValueError(
                f"`width` applies to a spec, not a built model. Received: width={width}"
            )
        _untag(model)
        return None, model
    spec = resolve_spec(model)
    return (dataclasses.replace(spec, width=width) if width is not None else spec), None


def _untag(model: keras.Model) -> None:
    """A model named after a pretrained tag (`create_model`) takes that tag's preprocessing;
    trained here it learns [0, 1] pixels instead, so it keeps its architecture's name only,
    and its exports and `predict` take [0, 1] pixels (`registry.model_cfg`)."""
    from keras_resnet.registry import model_cfg

    cfg = model_cfg(model)
    if cfg is not None:
        print(
            f"{model.name}: trained on [0, 1] pixels here, not its tag's {cfg.preprocessing} "
            f"preprocessing; renamed {cfg.name}"
        )
        model.name = cfg.name


def _load(dataset, spec, built_model, config: TrainConfig, data: DataOptions) -> DatasetSplits:
    """The dataset's splits at the model's input size (one-hot when smoothing labels)."""
    if isinstance(dataset, DatasetSplits):
        splits = dataset
    else:
        check_memory(spec, data.image_size, data.channels, config.batch_size)
        size = data.image_size
        if size is None:
            size = spec.default_input_size if spec else built_model.input_shape[1]
        splits = load_splits(
            dataset,
            dataclasses.replace(data, image_size=size),
            batch_size=config.batch_size,
            seed=config.seed,
        )
    if config.label_smoothing and splits.label_mode == "int":
        splits = to_one_hot(splits)
    return splits
