"""`HyperResNet`: hyperparameters -> `ResNetSpec` -> `build_resnet`, and its training.

It has no layer code: `declare_spec` turns a trial's hyperparameters into a
spec on top of a base spec, `build` hands that spec to the builder, `fit`
trains it with `keras_resnet.training`'s optimizers and losses unless its
`Screen` (`keras_resnet.tuning.screen`) rejects it. `TrialData` is a trial's
training data before its batch size is known, prepared once by `search`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
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
from keras_resnet.constants import DEFAULT_LEARNING_RATE, DEFAULT_WEIGHT_DECAY
from keras_resnet.data import DatasetSplits
from keras_resnet.spec import ResNetSpec, resolve_spec
from keras_resnet.training import TrainConfig, make_loss, make_optimizer
from keras_resnet.training.callbacks import StopOnSignal
from keras_resnet.training.tracing import build_training_state
from keras_resnet.tuning.budgets import BudgetOptions, corner_specs
from keras_resnet.tuning.screen import Screen
from keras_resnet.tuning.space import (
    PARTS,
    SearchSpace,
    candidate_spec,
    default_base,
    stage_template,
)

_BUDGET_KEYWORDS = frozenset(f.name for f in dataclasses.fields(BudgetOptions)) | {"latency_cache"}


class HyperResNet(kt.HyperModel):
    """A keras-tuner HyperModel: hyperparameters -> `ResNetSpec` -> `build_resnet`.

    Args:
        input_shape: `(H, W, C)` of the images.
        classes: number of classes.
        base: the spec the defaults derive from (name, spec or dict). Default:
            `resnet20` for images under 64 px, else `resnet18`.
        space: a `SearchSpace` (default `SearchSpace()`).
        screen: the `Screen` that judges candidates (budgets, latency target,
            cache and model), as `search` shares it; or, instead, `**budget`.
        label_mode: `"int"` (default) or `"categorical"`: the loss `build`
            compiles with; `fit` compiles with its data's.
        **budget: `BudgetOptions`' fields (`objective`, `max_params`,
            `max_latency_ms`, `latency_target`, `latency_threads`, and
            `latency_model`, off by default here) and `latency_cache` (a
            `LatencyCache` or a JSON file path): the screen made for you.

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
        screen: Screen | None = None,
        label_mode: str | None = None,
        name: str | None = "HyperResNet",
        tunable: bool = True,
        **budget: Any,
    ):
        super().__init__(name=name, tunable=tunable)
        self.input_shape = check_image_shape("input_shape", input_shape)
        check_positive_int("classes", classes)
        self.classes = int(classes)
        self.screen = _screen(screen, budget, self.input_shape, self.classes)
        if label_mode not in (None, "int", "categorical"):
            raise ValueError(
                "`label_mode` must be None, 'int' or 'categorical'. "
                f"{received('label_mode', label_mode)}"
            )
        if space is not None and not isinstance(space, SearchSpace):
            raise ValueError(f"`space` must be a SearchSpace. {received('space', space)}")
        self.base = resolve_spec(default_base(min(self.input_shape[:2])) if base is None else base)
        self.space = (space or SearchSpace()).resolve(self.base, self.input_shape)
        self.label_mode = label_mode or "int"
        # The screen's, under the names earlier versions gave them.
        self.latency_model, self.penalty = self.screen.model, self.screen.budget.penalty

    # hyperparameters -> spec ----------------------------------------------

    def declare_spec(self, hp: kt.HyperParameters) -> ResNetSpec:
        """The candidate's spec; declares the architecture hyperparameters in `hp`."""
        s, base = self.space, self.base
        width = _choice(hp, "width", s.widths, base.width)
        blocks = _declare_blocks(hp, s, base)
        block = _choice(hp, "block", s.block_types, base.block)
        return candidate_spec(
            base,
            width=width,
            blocks=blocks,
            block=block,
            version=_choice(hp, "version", s.versions, base.version),
            stem=_choice(hp, "stem", s.stems, base.stem),
            **_declare_parts(hp, s, base, block),
        )

    spec = declare_spec  # its former name, which tests/test_tuning.py still calls

    def training_hyperparameters(self, hp: kt.HyperParameters) -> dict[str, Any]:
        """Optimizer, learning rate, weight decay and batch size of the candidate.

        With several optimizers, each has its own `learning_rate_<optimizer>`
        and `weight_decay_<optimizer>` (conditional on `optimizer`), because
        their useful ranges differ by orders of magnitude.
        """
        s = self.space
        optimizer = _choice(hp, "optimizer", s.optimizers, s.optimizers[0])
        chosen: dict[str, float] = {}
        for opt in s.optimizers:  # every optimizer's, declared; the chosen one's, used
            values = _declare_optimizer(hp, s, opt)
            chosen = values if opt == optimizer else chosen
        batch_size = _choice(hp, "batch_size", s.batch_sizes, 64)
        return {"optimizer": optimizer, "batch_size": batch_size, **chosen}

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        """Declares the whole space up front, so batch size is searched from trial 1."""
        self.declare_spec(hp)
        self.training_hyperparameters(hp)

    def count_params(self, hp: kt.HyperParameters) -> int:
        """Exact parameters of the candidate, without building it."""
        return self.screen.params(self.declare_spec(hp))

    # The screen's latencies, as earlier versions had them.
    def cached_latency(self, spec: ResNetSpec) -> float | None:
        return self.screen.cached_latency(spec)

    def latency_ms(self, spec: ResNetSpec, model: keras.Model | None = None) -> float:
        return self.screen.latency_ms(spec, model)

    def predicted_latency(self, spec: ResNetSpec) -> float | None:
        return self.screen.predicted_latency(spec)

    # build and fit ------------------------------------------------------------

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        """Builds the candidate, compiled for `label_mode` at a constant learning rate.

        `fit` compiles again with the schedule for the epochs it actually runs
        (keras-tuner decides those, e.g. Hyperband's rounds).
        """
        spec = self.declare_spec(hp)
        model = build_resnet(spec, input_shape=self.input_shape, classes=self.classes)
        _compile(model, self.training_hyperparameters(hp), self.label_mode)
        return model

    def fit(
        self,
        hp: kt.HyperParameters,
        model: keras.Model | None,
        x: Any = None,
        y: Any = None,
        *,
        validation_data: Any = None,
        epochs: int = 1,
        initial_epoch: int = 0,
        callbacks: list | None = None,
        **kwargs: Any,
    ) -> dict[str, float]:
        """Trains the candidate unless its screen rejects it; returns its metrics.

        Args:
            hp: the trial's hyperparameters.
            model: the model `build(hp)` returned (weights may be loaded by Hyperband).
            x, y: `TrialData`, or as in `keras.Model.fit`: arrays, or a
                `tf.data.Dataset` of batched or unbatched `(image, label)` pairs
                (rebatched to the trial's batch size).
            validation_data: needed: the objective is a validation metric.
            epochs, initial_epoch, callbacks, **kwargs: as in `Model.fit`
                (`verbose` defaults to 0).

        Returns:
            The metrics of the epoch best for the objective, plus `params`,
            `latency_ms`, `epochs` (total trained) and `rejected` (0 or 1).
        """
        screening = self.screen.before_training(self.declare_spec(hp), model)
        if screening.rejected is not None:
            return screening.rejected
        if validation_data is None:
            raise ValueError(
                f"`validation_data` is needed: the objective is "
                f"{self.screen.budget.objective!r}. Received: validation_data=None"
            )
        train_hp = self.training_hyperparameters(hp)
        data = trial_data(x, y, self.input_shape, self.classes)
        x, fit_kwargs = data.batched(train_hp["batch_size"])
        steps = data.steps(train_hp["batch_size"])
        _compile(model, train_hp, data.label_mode, max(1, epochs - initial_epoch), steps)
        build_training_state(model, x, fit_kwargs.get("y"))
        callbacks = [*(callbacks or []), keras.callbacks.TerminateOnNaN(), StopOnSignal()]
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
                callbacks=callbacks,
                **{"verbose": 0, **kwargs, **fit_kwargs},
            )
        params, latency = screening.params, screening.latency_ms
        return screening.report(self._best_epoch(history.history, params, latency, initial_epoch))

    def _best_epoch(
        self, history: dict[str, list], params: int, latency: float, initial_epoch: int
    ) -> dict[str, float]:
        return self.screen.budget.trained_result(history, params, latency, initial_epoch)


def check_budgets_reachable(hypermodel: HyperResNet) -> None:
    """Budgets no candidate of the hypermodel's space can meet, alone or together, are an
    error before any training (`Screen.check_reachable` on the space's corners)."""
    corners = corner_specs(hypermodel.space, hypermodel.base)
    hypermodel.screen.check_reachable(corners, hypermodel.latency_ms)


@dataclasses.dataclass(frozen=True)
class TrialData:
    """A trial's training data before its batch size is known.

    `search` prepares it once from its splits (`from_splits`); `HyperResNet.fit`
    makes one from `keras.Model.fit`'s arguments otherwise (`trial_data`).

    Attributes:
        x: an unbatched `tf.data.Dataset` of (image, label) pairs, or images.
        y: the labels of an array `x`; None for a dataset.
        examples: how many there are (for the learning-rate schedule), or None.
        label_mode: `"int"` or `"categorical"`, from the labels' shape.
    """

    x: Any
    y: Any
    examples: int | None
    label_mode: str

    @classmethod
    def from_splits(cls, splits: DatasetSplits) -> TrialData:
        """The training split, unbatched, with its known size and label mode."""
        count = splits.sizes["train"]
        x = splits.train.unbatch().apply(tf.data.experimental.assert_cardinality(count))
        return cls(x, None, count, splits.label_mode)

    def batched(self, batch_size: int) -> tuple[Any, dict[str, Any]]:
        """`Model.fit`'s data at `batch_size`: (x, its fit keywords)."""
        if isinstance(self.x, tf.data.Dataset):
            batches = self.x.batch(batch_size).prefetch(tf.data.AUTOTUNE)
            return batches, {"shuffle": False}  # a dataset shuffles itself
        return self.x, {"y": self.y, "batch_size": batch_size}

    def steps(self, batch_size: int) -> int | None:
        """Steps per epoch at `batch_size`, or None when the size is unknown."""
        return math.ceil(self.examples / batch_size) if self.examples else None


def trial_data(x: Any, y: Any, input_shape: Sequence[int], classes: int) -> TrialData:
    """`fit`'s `x` and `y` as `TrialData` (as they are, if `x` is one already).

    A dataset's size comes from its cardinality and, when batched, its first
    batch: a short last batch makes this at most one step long, which a cosine
    schedule does not notice.
    """
    if isinstance(x, TrialData):
        return x
    if not isinstance(x, tf.data.Dataset):
        return TrialData(x, y, len(x), _label_mode(np.shape(y)[1:], classes))
    batched = len(x.element_spec[0].shape) == len(input_shape) + 1
    cardinality, examples = int(x.cardinality()), None
    if cardinality > 0:
        examples = cardinality * (int(next(iter(x.take(1)))[0].shape[0]) if batched else 1)
    labels = x.element_spec[1].shape
    label_mode = _label_mode(labels[1:] if batched else labels, classes)
    return TrialData(x.unbatch() if batched else x, None, examples, label_mode)


def _screen(screen: Screen | None, budget: dict[str, Any], shape: tuple, classes: int) -> Screen:
    """The hypermodel's screen: the one given (for these images), or one made from `budget`."""
    unknown = sorted(set(budget) - _BUDGET_KEYWORDS)
    if unknown:
        raise TypeError(f"HyperResNet() got an unexpected keyword argument {unknown[0]!r}")
    if screen is None:
        options = {k: v for k, v in budget.items() if k != "latency_cache"}
        options = BudgetOptions(**{"latency_model": False, **options})
        return Screen(options, shape, classes, budget.get("latency_cache"))
    if budget or (screen.input_shape, screen.classes) != (shape, classes):
        raise ValueError(
            "`screen` must be a Screen for these images and classes, given without budget "
            f"keywords. Received: screen for {screen.input_shape} and {screen.classes} "
            f"classes, {sorted(budget)}"
        )
    return screen


def _declare_blocks(hp: kt.HyperParameters, s: SearchSpace, base: ResNetSpec) -> list[int]:
    """The number of stages and the blocks of each stage present."""
    low, high = s.num_stages
    num_stages = low
    if low < high:
        num_stages = hp.Int("num_stages", low, high, default=_clip(len(base.stages), low, high))
    blocks = []
    for i in range(high):
        default = stage_template(base, i).blocks
        if s.blocks is None or s.blocks[0] == s.blocks[1]:
            value = default if s.blocks is None else s.blocks[0]
        else:
            # Only the stages a candidate has are tuned (keras-tuner's conditional scopes).
            scope = (
                contextlib.nullcontext()
                if i < low
                else hp.conditional_scope("num_stages", list(range(i + 1, high + 1)))
            )
            with scope:
                value = hp.Int(f"conv{i + 2}_blocks", *s.blocks, default=_clip(default, *s.blocks))
        blocks.append(value)
    return blocks[:num_stages]


def _declare_parts(
    hp: kt.HyperParameters, s: SearchSpace, base: ResNetSpec, block: str
) -> dict[str, Any]:
    """The family's optional parts the space switches on (none by default)."""
    parts = {}
    for name, (field, *_) in PARTS.items():
        values = getattr(s, name)
        if not values:
            continue
        default = getattr(base, field)
        if name == "groups" and len(s.block_types) > 1:
            # Groups exist in bottleneck candidates only (keras-tuner's conditional scopes).
            with hp.conditional_scope("block", ["bottleneck"]):
                value = _choice(hp, field, values, default)
            parts[field] = value if block == "bottleneck" else 1
        else:
            parts[field] = _choice(hp, field, values, default)
    return parts


def _declare_optimizer(hp: kt.HyperParameters, s: SearchSpace, opt: str) -> dict[str, float]:
    """`opt`'s learning rate and weight decay; with several optimizers, its own
    (`learning_rate_<opt>`, ...), active only when it is the one chosen."""
    several = len(s.optimizers) > 1
    suffix = f"_{opt}" if several else ""
    with hp.conditional_scope("optimizer", [opt]) if several else contextlib.nullcontext():
        learning_rate = _log_float(
            hp, f"learning_rate{suffix}", s.learning_rate[opt], DEFAULT_LEARNING_RATE[opt]
        )
        weight_decay = _log_float(
            hp, f"weight_decay{suffix}", s.weight_decay[opt], DEFAULT_WEIGHT_DECAY[opt]
        )
    return {"learning_rate": learning_rate, "weight_decay": weight_decay}


def _choice(hp: kt.HyperParameters, name: str, values: Sequence[Any], default: Any) -> Any:
    if len(values) == 1:
        return values[0]
    default = min(values, key=lambda v: (v != default, abs(_rank(v) - _rank(default))))
    return hp.Choice(name, list(values), default=default)


def _log_float(hp: kt.HyperParameters, name: str, bounds: tuple, usual: float) -> float:
    """A log-sampled float hyperparameter (default: `usual`, clipped), or a fixed value."""
    low, high = bounds
    if low >= high:
        return low
    return hp.Float(name, low, high, sampling="log", default=min(max(usual, low), high))


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


def _compile(
    model: keras.Model,
    train_hp: dict[str, Any],
    label_mode: str,
    epochs: int = 1,
    steps: int | None = None,
) -> None:
    """Compiles `model` with the trial's optimizer: a cosine schedule over `epochs` of
    `steps`, or a constant learning rate when the steps are unknown."""
    config = TrainConfig(
        epochs=epochs,
        batch_size=train_hp["batch_size"],
        optimizer=train_hp["optimizer"],
        learning_rate=train_hp["learning_rate"],
        weight_decay=train_hp["weight_decay"],
        schedule="cosine" if steps else "constant",
        warmup_epochs=0,
    )
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch=steps or 1),
        loss=make_loss(label_mode),
        metrics=["accuracy"],
    )
