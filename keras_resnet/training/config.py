"""What a run is asked to do: `TrainConfig`, and the optimizer, loss, model and strategy from it."""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import keras
import tensorflow as tf

from keras_resnet._checks import (
    check_choice,
    check_int_at_least,
    check_positive_int,
    is_number,
    received,
)
from keras_resnet.builder import build_resnet
from keras_resnet.constants import (
    AUGMENTATIONS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LEARNING_RATE,
    DEFAULT_WARMUP_EPOCHS,
    DEFAULT_WEIGHT_DECAY,
    MIXED_PRECISION,
    OPTIMIZERS,
    SCHEDULES,
)
from keras_resnet.data import DatasetSplits
from keras_resnet.data.options import check_crop_fraction
from keras_resnet.recipes import RECIPES, recipe_defaults
from keras_resnet.training.tracing import build_training_state
from keras_resnet.weights import load_backbone_weights, read_backbone_weights


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of a run (what `run.json` records besides spec and dataset).

    `recipe` names the `keras_resnet.recipes` entry the other fields started from
    (`TrainConfig.from_recipe`); `augmentation` and `eval_crop` are `DataOptions`';
    `nesterov` is SGD's (He et al. used plain momentum).
    """

    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    optimizer: str = OPTIMIZERS[0]
    learning_rate: float | None = None
    schedule: str = SCHEDULES[0]
    warmup_epochs: int = DEFAULT_WARMUP_EPOCHS
    weight_decay: float | None = None
    label_smoothing: float = 0.0
    mixed_precision: str | None = None
    image_size: int | None = None
    seed: int = 0
    augment: bool = True
    init_weights: str | None = None
    recipe: str | None = None
    augmentation: str = AUGMENTATIONS[0]
    eval_crop: float | None = None
    nesterov: bool = True

    @classmethod
    def from_recipe(cls, name: str, **overrides: Any) -> TrainConfig:
        """Recipe `name`'s defaults, then `overrides` (any field).

        Example:
            >>> TrainConfig.from_recipe("paper-cifar", epochs=2).schedule
            'step'
        """
        return cls(**{**recipe_defaults(name), **overrides})

    def __post_init__(self) -> None:
        check_positive_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size)
        check_int_at_least("warmup_epochs", self.warmup_epochs, 0)
        check_positive_int("image_size", self.image_size, allow_none=True)
        for name, allowed in (
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("mixed_precision", MIXED_PRECISION),
            ("augmentation", AUGMENTATIONS),
        ):
            check_choice(name, getattr(self, name), allowed)
        if self.recipe is not None:
            check_choice("recipe", self.recipe, RECIPES)
        check_crop_fraction(self.eval_crop)
        if not isinstance(self.nesterov, bool):
            raise ValueError(
                f"`nesterov` must be True or False. {received('nesterov', self.nesterov)}"
            )
        for name, low, high in (
            ("learning_rate", 0.0, 10.0),
            ("weight_decay", -1e-12, 1.0),
            ("label_smoothing", -1e-12, 1.0),
        ):
            value = getattr(self, name)
            if value is not None and not (is_number(value) and low < value < high):
                raise ValueError(
                    f"`{name}` must be a number in ({max(low, 0.0)}, {high}). "
                    f"{received(name, value)}"
                )
        if self.init_weights is not None:
            if not isinstance(self.init_weights, (str, os.PathLike)):
                raise ValueError(
                    "`init_weights` must be the path of a .weights.h5 file. "
                    f"{received('init_weights', self.init_weights)}"
                )
            object.__setattr__(self, "init_weights", os.fspath(self.init_weights))

    @property
    def lr(self) -> float:
        return self.learning_rate or DEFAULT_LEARNING_RATE[self.optimizer]

    @property
    def wd(self) -> float:
        wd = self.weight_decay
        return DEFAULT_WEIGHT_DECAY[self.optimizer] if wd is None else wd


def default_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy over the visible GPUs when there are several, else the default."""
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimizer with its learning-rate schedule (Keras' own schedules)."""
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(config.warmup_epochs * steps_per_epoch, total - 1)
    lr: Any = config.lr
    if config.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else config.lr,
            decay_steps=total - warmup,
            warmup_target=config.lr if warmup else None,
            warmup_steps=warmup,
        )
    elif config.schedule == "step":
        # He et al. 2015, CIFAR: divide by 10 at 50% and 75% of training.
        lr = keras.optimizers.schedules.PiecewiseConstantDecay(
            [int(total * 0.5), int(total * 0.75)], [config.lr, config.lr / 10, config.lr / 100]
        )
    wd = config.wd or None
    if config.optimizer == "sgd":
        opt = keras.optimizers.SGD(lr, momentum=0.9, nesterov=config.nesterov, weight_decay=wd)
    elif config.optimizer == "adam":
        opt = keras.optimizers.Adam(lr, weight_decay=wd)
    else:
        opt = keras.optimizers.AdamW(lr, weight_decay=config.wd)
    if wd:
        # Decay conv/dense kernels only, not BatchNormalization or biases.
        opt.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return opt


def make_loss(label_mode: str, label_smoothing: float = 0.0) -> keras.losses.Loss:
    """Cross-entropy for sparse (`"int"`) or one-hot (`"categorical"`) labels."""
    if label_mode == "categorical":
        return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def to_one_hot(splits: DatasetSplits) -> DatasetSplits:
    """Label smoothing needs one-hot targets (Keras' sparse loss has no smoothing)."""
    depth = splits.num_classes

    def convert(ds):
        return ds.map(lambda x, y: (x, tf.one_hot(tf.cast(y, tf.int32), depth)))

    return dataclasses.replace(
        splits,
        train=convert(splits.train),
        validation=convert(splits.validation),
        test=convert(splits.test),
        label_mode="categorical",
        train_for_epoch=splits.train_for_epoch and (lambda e: convert(splits.train_for_epoch(e))),
    )


def build_model(spec, model, splits: DatasetSplits, config: TrainConfig) -> keras.Model:
    """The run's model, built under the dtype policy in force (`train` sets the run's)."""
    if model is not None:
        return model
    # The classifier output stays float32 under mixed precision (Keras' advice):
    # logits from the (mixed) Dense, then a float32 softmax. Decided by the policy in
    # force, not by `config.mixed_precision`, whose "auto" may stand for float32.
    mixed = keras.config.dtype_policy().compute_dtype != "float32"
    net = build_resnet(
        spec,
        input_shape=splits.image_shape,
        classes=splits.num_classes,
        classifier_activation=None if mixed else "softmax",
    )
    if config.init_weights:
        load_backbone_weights(net, config.init_weights, spec, arg="init_weights")
    if not mixed:
        return net
    probs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(net.output)
    return keras.Model(net.input, probs, name=net.name)


def check_init_weights(spec, built_model, splits: DatasetSplits, config: TrainConfig) -> None:
    """`init_weights` read once before the run directory is made: a wrong file writes nothing."""
    if not config.init_weights:
        return
    if spec is None:
        raise ValueError(
            "`init_weights` starts a model built from a spec; load a built model's weights "
            f"with model.load_weights. {received('init_weights', config.init_weights)}"
        )
    read_backbone_weights(
        config.init_weights, spec, splits.image_shape, splits.num_classes, arg="init_weights"
    )


def compile_model(
    spec, built_model, splits: DatasetSplits, config: TrainConfig, strategy, dtype_policy
) -> keras.Model:
    """The model (built from `spec` unless given) compiled as `train` trains it, in `strategy`.

    `dtype_policy` (None: float32) holds while the model is built, then the previous one is
    put back.
    """
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype_policy or "float32")
    try:
        with strategy.scope():
            net = build_model(spec, built_model, splits, config)
            steps = count_steps_per_epoch(splits, config.batch_size)
            net.compile(
                optimizer=make_optimizer(config, steps),
                loss=make_loss(splits.label_mode, config.label_smoothing),
                metrics=["accuracy"],
            )
            build_training_state(net, splits.train)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return net


def count_steps_per_epoch(splits: DatasetSplits, batch_size: int) -> int:
    """Batches per epoch, for the learning-rate schedule.

    The pipeline's own count when it knows it: splits loaded by the caller were batched
    with their own batch size, which need not be `batch_size`.
    """
    batches = int(splits.train.cardinality())
    if batches > 0:
        return batches
    return max(1, math.ceil(splits.sizes["train"] / batch_size))
