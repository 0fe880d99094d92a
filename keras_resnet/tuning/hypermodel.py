"""`HyperResNet`: hyperparameters -> `ResNetSpec` -> `build_resnet`, and its training.

It has no layer code: `declare_spec` turns a trial's hyperparameters into a
spec on top of a base spec, `build` hands that spec to the builder, `fit`
trains it with `keras_resnet.training`'s optimizers and losses unless the
candidate is over a budget (`keras_resnet.tuning.budgets`).
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
import tensorflow as tf

from keras_resnet._checks import check_image_shape, check_positive_int, is_number, received
from keras_resnet._signals import deferred
from keras_resnet.builder import build_resnet
from keras_resnet.constants import DEFAULT_LEARNING_RATE, DEFAULT_WEIGHT_DECAY, OBJECTIVES
from keras_resnet.spec import ResNetSpec, resolve_spec
from keras_resnet.training import TrainConfig, make_loss, make_optimizer
from keras_resnet.training.callbacks import StopOnSignal
from keras_resnet.training.tracing import build_training_state
from keras_resnet.tuning.budgets import Budget, corner_specs
from keras_resnet.tuning.latency import LatencyCache, LatencyTarget
from keras_resnet.tuning.latency_model import LatencyModel
from keras_resnet.tuning.space import (
    PARTS,
    SearchSpace,
    candidate_spec,
    default_base,
    stage_template,
)

METRICS = ("val_accuracy", "val_loss", "accuracy", "loss")
"""What `HyperResNet.fit` reports of the epoch best for the objective."""


class HyperResNet(kt.HyperModel):
    """A keras-tuner HyperModel: hyperparameters -> `ResNetSpec` -> `build_resnet`.

    Args:
        input_shape: `(H, W, C)` of the images.
        classes: number of classes.
        base: the spec the defaults derive from (name, spec or dict). Default:
            `resnet20` for images under 64 px, else `resnet18`.
        space: a `SearchSpace` (default `SearchSpace()`).
        objective: `"val_accuracy"` or `"val_loss"`; `fit` reports the epoch
            that is best for it.
        max_params: parameter budget (classifier included).
        max_latency_ms: batch-1 latency budget in ms on `latency_target`.
        latency_target: what latency is measured on (`keras_resnet.constants.
            LATENCY_TARGETS`): `"keras"` (default, a `tf.function`) or a TFLite
            variant in LiteRT (`"tflite-int8"`, ...); or a `LatencyTarget`.
        latency_threads: LiteRT's threads for a tflite target (default: every core).
        label_mode: `"int"` or `"categorical"` for the loss `build` compiles
            with; `fit` picks it from the data it gets.
        latency_cache: a `LatencyCache` or a JSON file path.
        latency_model: with a latency budget, predict each candidate's latency
            from its spec (`keras_resnet.tuning.latency_model`) before measuring
            it, and reject one predicted clearly over the budget (by more than
            the model's margin) unconverted and unbuilt; `search` turns it on.
            Candidates near or under the budget are still measured.

    Over-budget candidates are never trained: `fit` returns their size and
    latency with `rejected=1` and the score of a useless model, whichever
    tuner drives it. With `search` (or `make_tuner`) the parameter budget is
    checked before the candidate is even built.

    Example:

    >>> hm = HyperResNet((16, 16, 1), 10, max_params=100_000)
    >>> hp = keras_tuner.HyperParameters()
    >>> hm.declare_hyperparameters(hp)  # defaults: the base spec, resnet20
    >>> hm.declare_spec(hp).depth, hm.count_params(hp)
    (20, 270810)
    >>> model = hm.build(hp)   # compiled keras.Model
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        classes: int,
        base: ResNetSpec | str | dict | None = None,
        *,
        space: SearchSpace | None = None,
        objective: str = "val_accuracy",
        max_params: int | None = None,
        max_latency_ms: float | None = None,
        latency_target: LatencyTarget | str = "keras",
        latency_threads: int | None = None,
        label_mode: str | None = None,
        latency_cache: LatencyCache | str | os.PathLike | None = None,
        latency_model: bool = False,
        name: str | None = "HyperResNet",
        tunable: bool = True,
    ):
        super().__init__(name=name, tunable=tunable)
        input_shape = check_image_shape("input_shape", input_shape)
        check_positive_int("classes", classes)
        self.budget = Budget(objective, int(classes), max_params, max_latency_ms)
        self.latency_target = (
            latency_target
            if isinstance(latency_target, LatencyTarget)
            else LatencyTarget(latency_target, latency_threads)
        )
        if label_mode not in (None, "int", "categorical"):
            raise ValueError(
                "`label_mode` must be None, 'int' or 'categorical'. "
                f"{received('label_mode', label_mode)}"
            )
        if space is not None and not isinstance(space, SearchSpace):
            raise ValueError(f"`space` must be a SearchSpace. {received('space', space)}")
        self.input_shape = input_shape
        self.classes = int(classes)
        self.base = resolve_spec(default_base(min(self.input_shape[:2])) if base is None else base)
        self.space = (space or SearchSpace()).resolve(self.base, self.input_shape)
        self.label_mode = label_mode or "int"
        self.latency_cache = (
            latency_cache
            if isinstance(latency_cache, LatencyCache)
            else LatencyCache(latency_cache)
        )
        if not isinstance(latency_model, bool):
            raise ValueError(
                f"`latency_model` must be a bool. {received('latency_model', latency_model)}"
            )
        # Only a latency budget has use for predictions (none: the behaviour before #19).
        self.latency_model = (
            LatencyModel(self.latency_target, self.input_shape, self.classes)
            if latency_model and max_latency_ms is not None
            else None
        )
        self._example_counts: dict[int, tuple[Any, int | None]] = {}

    # hyperparameters -> spec ----------------------------------------------

    def declare_spec(self, hp: kt.HyperParameters) -> ResNetSpec:
        """The candidate's spec; declares the architecture hyperparameters in `hp`."""
        s = self.space
        width = _choice(hp, "width", s.widths, self.base.width)
        low, high = s.num_stages
        num_stages = low
        if low < high:
            default = _clip(len(self.base.stages), low, high)
            num_stages = hp.Int("num_stages", low, high, default=default)
        blocks = []
        for i in range(high):
            default = stage_template(self.base, i).blocks
            if s.blocks is None or s.blocks[0] == s.blocks[1]:
                value = default if s.blocks is None else s.blocks[0]
            elif i < low:
                value = hp.Int(f"conv{i + 2}_blocks", *s.blocks, default=_clip(default, *s.blocks))
            else:
                # Only the stages a candidate has are tuned (keras-tuner's conditional scopes).
                with hp.conditional_scope("num_stages", list(range(i + 1, high + 1))):
                    value = hp.Int(
                        f"conv{i + 2}_blocks", *s.blocks, default=_clip(default, *s.blocks)
                    )
            blocks.append(value)
        block = _choice(hp, "block", s.block_types, self.base.block)
        return self.make_spec(
            width=width,
            blocks=blocks[:num_stages],
            block=block,
            version=_choice(hp, "version", s.versions, self.base.version),
            stem=_choice(hp, "stem", s.stems, self.base.stem),
            **self._declare_parts(hp, block),
        )

    def _declare_parts(self, hp: kt.HyperParameters, block: str) -> dict[str, Any]:
        """The family's optional parts the space switches on (none by default)."""
        parts = {}
        for name, (field, *_) in PARTS.items():
            values = getattr(self.space, name)
            if not values:
                continue
            default = getattr(self.base, field)
            if name == "groups" and len(self.space.block_types) > 1:
                # Groups exist in bottleneck candidates only (keras-tuner's conditional scopes).
                with hp.conditional_scope("block", ["bottleneck"]):
                    value = _choice(hp, field, values, default)
                parts[field] = value if block == "bottleneck" else 1
            else:
                parts[field] = _choice(hp, field, values, default)
        return parts

    spec = declare_spec  # its former name, which tests/test_tuning.py still calls

    def make_spec(
        self,
        *,
        width: float,
        blocks: Sequence[int],
        block: str,
        version: str,
        stem: str,
        **parts: Any,
    ) -> ResNetSpec:
        """The spec for explicit choices (`len(blocks)` stages) on top of the base spec."""
        return candidate_spec(
            self.base, width=width, blocks=blocks, block=block, version=version, stem=stem, **parts
        )

    def training_hyperparameters(self, hp: kt.HyperParameters) -> dict[str, Any]:
        """Optimizer, learning rate, weight decay and batch size of the candidate.

        With several optimizers, each has its own `learning_rate_<optimizer>`
        and `weight_decay_<optimizer>` (conditional on `optimizer`), because
        their useful ranges differ by orders of magnitude.
        """
        s = self.space
        optimizer = _choice(hp, "optimizer", s.optimizers, s.optimizers[0])
        several = len(s.optimizers) > 1
        chosen: dict[str, float] = {}
        for opt in s.optimizers:
            suffix = f"_{opt}" if several else ""
            scope = (
                hp.conditional_scope("optimizer", [opt]) if several else contextlib.nullcontext()
            )
            with scope:
                for name, ranges, usual in (
                    ("learning_rate", s.learning_rate, DEFAULT_LEARNING_RATE),
                    ("weight_decay", s.weight_decay, DEFAULT_WEIGHT_DECAY),
                ):
                    low, high = ranges[opt]
                    value = low
                    if low < high:
                        default = min(max(usual[opt], low), high)
                        value = hp.Float(
                            f"{name}{suffix}", low, high, sampling="log", default=default
                        )
                    if opt == optimizer:
                        chosen[name] = value
        batch_size = _choice(hp, "batch_size", s.batch_sizes, 64)
        return {"optimizer": optimizer, "batch_size": batch_size, **chosen}

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        """Declares the whole space up front, so batch size is searched from trial 1."""
        self.declare_spec(hp)
        self.training_hyperparameters(hp)

    def count_params(self, hp: kt.HyperParameters) -> int:
        """Exact parameters of the candidate, without building it."""
        return self.spec_params(self.declare_spec(hp))

    def spec_params(self, spec: ResNetSpec) -> int:
        """Exact parameters of `spec` for this input and these classes, without building it."""
        return spec.count_params(channels=self.input_shape[-1], classes=self.classes)

    # budgets (the rules live in keras_resnet.tuning.budgets) --------------------

    objective = property(lambda self: self.budget.objective)
    max_params = property(lambda self: self.budget.max_params)
    max_latency_ms = property(lambda self: self.budget.max_latency_ms)
    penalty = property(lambda self: self.budget.penalty, doc="See `Budget.penalty`.")

    def budget_violation(self, params: int | None, latency_ms: float | None) -> str | None:
        """Why a candidate is over budget, or None."""
        return self.budget.violation(params, latency_ms)

    def rejected_result(self, params: int, latency_ms: float | None) -> dict[str, float]:
        """What a trial over budget reports to the oracle (it was not trained)."""
        return self.budget.rejected_result(params, latency_ms)

    def corner_specs(self) -> list[ResNetSpec]:
        """The smallest candidate of every discrete choice (min blocks): budget pre-checks."""
        return corner_specs(self.space, self.base)

    def cached_latency(self, spec: ResNetSpec) -> float | None:
        """The candidate's latency if already measured (no build), else None."""
        key = LatencyCache.key(spec, self.input_shape, self.classes, self.latency_target)
        return self.latency_cache.get(key)

    def predicted_latency(self, spec: ResNetSpec) -> float | None:
        """The latency model's prediction in ms (None without a model or a latency budget)."""
        return None if self.latency_model is None else self.latency_model.predict(spec)

    def predicted_rejection(self, spec: ResNetSpec, params: int) -> dict[str, float] | None:
        """The result of a candidate predicted clearly over the latency budget (rejected
        before any conversion or build), else None."""
        predicted = self.predicted_latency(spec)
        if predicted is None or not self.latency_model.clearly_over(predicted, self.max_latency_ms):
            return None
        result = self.budget.rejected_result(params, predicted)
        return {**result, "latency_predicted": 1.0, "predicted_latency_ms": predicted}

    def latency_ms(self, spec: ResNetSpec, model: keras.Model | None = None) -> float:
        """Batch-1 latency on the target (measured once per spec and target, then cached)."""
        return self.latency_cache.measure(
            spec, self.input_shape, self.classes, model, self.latency_target
        )

    # build and fit ------------------------------------------------------------

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        """Builds the candidate, compiled for `label_mode` at a constant learning rate.

        `fit` compiles again with the schedule for the epochs it actually runs
        (keras-tuner decides those, e.g. Hyperband's rounds).
        """
        spec = self.declare_spec(hp)
        model = build_resnet(spec, input_shape=self.input_shape, classes=self.classes)
        train_hp = self.training_hyperparameters(hp)
        config = _train_config(train_hp, epochs=1, schedule="constant")
        model.compile(
            optimizer=make_optimizer(config, steps_per_epoch=1),
            loss=make_loss(self.label_mode),
            metrics=["accuracy"],
        )
        return model

    def fit(
        self,
        hp: kt.HyperParameters,
        model: keras.Model,
        x: Any = None,
        y: Any = None,
        *,
        validation_data: Any = None,
        epochs: int = 1,
        initial_epoch: int = 0,
        callbacks: list | None = None,
        verbose: int | str = 0,
        **kwargs: Any,
    ) -> dict[str, float]:
        """Trains the candidate unless it is over budget; returns its metrics.

        Args:
            hp: the trial's hyperparameters.
            model: the model `build(hp)` returned (weights may be loaded by Hyperband).
            x, y: as in `keras.Model.fit`: arrays, or a `tf.data.Dataset` of
                batched or unbatched `(image, label)` pairs. A dataset is
                rebatched to the trial's batch size.
            validation_data: needed: the objective is a validation metric.
            epochs, initial_epoch, callbacks, verbose, **kwargs: as in `Model.fit`.

        Returns:
            The metrics of the epoch best for the objective, plus `params`,
            `latency_ms`, `epochs` (total trained) and `rejected` (0 or 1).
        """
        spec = self.declare_spec(hp)
        params = self.spec_params(spec)
        reason = self.budget.violation(params, None)
        predicted = None
        if not reason and self.cached_latency(spec) is None:
            screened = self.predicted_rejection(spec, params)
            if screened is not None:
                return screened
            predicted = self.predicted_latency(spec)
        latency = None if reason else self.latency_ms(spec, model)
        if reason or self.budget.violation(params, latency):
            return _with_prediction(self.budget.rejected_result(params, latency), predicted)
        if validation_data is None:
            raise ValueError(
                f"`validation_data` is needed: the objective is {self.objective!r}. "
                "Received: validation_data=None"
            )
        train_hp = self.training_hyperparameters(hp)
        x, fit_kwargs, examples, label_shape = self._batched(x, y, train_hp["batch_size"])
        self.label_mode = _label_mode(label_shape, self.classes)
        steps = math.ceil(examples / train_hp["batch_size"]) if examples else None
        config = _train_config(
            train_hp,
            epochs=max(1, epochs - initial_epoch),
            schedule="cosine" if steps else "constant",
        )
        model.compile(
            optimizer=make_optimizer(config, steps_per_epoch=steps or 1),
            loss=make_loss(self.label_mode),
            metrics=["accuracy"],
        )
        build_training_state(model, x, fit_kwargs.get("y"))
        # A signal stops fit between two steps, after keras-tuner's checkpoint of the epoch.
        with warnings.catch_warnings(), deferred():
            # A rebatched dataset has no known size until its first epoch ends, which
            # Keras reports as running out of data.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            history = model.fit(
                x,
                validation_data=validation_data,
                epochs=epochs,
                initial_epoch=initial_epoch,
                callbacks=[*(callbacks or []), keras.callbacks.TerminateOnNaN(), StopOnSignal()],
                verbose=verbose,
                **{**kwargs, **fit_kwargs},
            )
        return _with_prediction(
            self._best_epoch(history.history, params, latency, initial_epoch), predicted
        )

    def _batched(
        self, x: Any, y: Any, batch_size: int
    ) -> tuple[Any, dict[str, Any], int | None, Sequence[int | None]]:
        """`fit`'s data at the trial's batch size: (x, fit keywords, examples, label shape)."""
        if isinstance(x, tf.data.Dataset):
            examples = self._count_examples(x)
            labels = x.element_spec[1]
            batched = len(x.element_spec[0].shape) == len(self.input_shape) + 1
            x = (x.unbatch() if batched else x).batch(batch_size).prefetch(tf.data.AUTOTUNE)
            label_shape = labels.shape[1:] if batched else labels.shape
            return x, {"shuffle": False}, examples, label_shape  # a dataset shuffles itself
        return x, {"y": y, "batch_size": batch_size}, len(x), np.shape(y)[1:]

    def _best_epoch(
        self, history: dict[str, list], params: int, latency: float, initial_epoch: int
    ) -> dict[str, float]:
        scores = np.array(history.get(self.objective, []), dtype=float)
        if not scores.size:
            raise ValueError(
                f"Training reported no {self.objective!r}; it needs validation data. "
                f"Received: metrics={sorted(history)}"
            )
        result = {"params": float(params), "latency_ms": latency, "rejected": 0.0}
        result["epochs"] = float(initial_epoch + len(scores))
        # An epoch whose training loss is NaN or infinite diverged (TerminateOnNaN
        # stopped it), whatever its validation accuracy says: Keras still validates
        # the NaN weights, and their accuracy (about chance) is a number.
        losses = np.array(history.get("loss", []), dtype=float)
        if losses.size == scores.size:
            scores = np.where(np.isfinite(losses), scores, np.nan)
        if np.isnan(scores).all():
            # Diverged: a result, not a crash.
            result.update({self.objective: self.penalty, "diverged": 1.0})
            return result
        pick = np.nanargmax if OBJECTIVES[self.objective] == "max" else np.nanargmin
        best = int(pick(scores))
        for name in METRICS:
            values = history.get(name, [])
            if best < len(values) and np.isfinite(values[best]):
                result[name] = float(values[best])
        return result

    def _count_examples(self, ds: tf.data.Dataset) -> int | None:
        """Examples in a dataset (for the schedule), from its cardinality and first batch.

        The first batch gives the batch size; a short last batch makes this
        at most one step long, which a cosine schedule does not notice.
        """
        key = id(ds)
        if key not in self._example_counts:
            cardinality = int(ds.cardinality())
            count = None
            if cardinality > 0:
                if len(ds.element_spec[0].shape) == len(self.input_shape) + 1:
                    first = next(iter(ds.take(1)))[0]
                    count = cardinality * int(first.shape[0])
                else:
                    count = cardinality
            self._example_counts[key] = (ds, count)  # keeps ds alive, so its id stays unique
        return self._example_counts[key][1]


def _with_prediction(result: dict[str, float], predicted: float | None) -> dict[str, float]:
    """A measured trial's result with the latency model's prediction beside it, if any."""
    if predicted is None:
        return result
    return {**result, "latency_predicted": 0.0, "predicted_latency_ms": predicted}


def _choice(hp: kt.HyperParameters, name: str, values: Sequence[Any], default: Any) -> Any:
    if len(values) == 1:
        return values[0]
    default = min(values, key=lambda v: (v != default, abs(_rank(v) - _rank(default))))
    return hp.Choice(name, list(values), default=default)


def _rank(value: Any) -> float:
    return float(value) if is_number(value) else 0.0


def _clip(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _label_mode(label_shape: Sequence[int | None], classes: int) -> str:
    """Sparse integer labels, or one-hot labels with a last axis of `classes`."""
    shape = tuple(label_shape)
    if shape == () or shape == (1,):
        return "int"
    if shape == (classes,):
        return "categorical"
    raise ValueError(
        f"Labels must be class indices or one-hot vectors of {classes} classes. "
        f"Received: label shape {shape}"
    )


def _train_config(train_hp: dict[str, Any], *, epochs: int, schedule: str) -> TrainConfig:
    return TrainConfig(
        epochs=epochs,
        batch_size=train_hp["batch_size"],
        optimizer=train_hp["optimizer"],
        learning_rate=train_hp["learning_rate"],
        weight_decay=train_hp["weight_decay"],
        schedule=schedule,
        warmup_epochs=0,
    )
