"""Named training recipes: documented sets of `TrainConfig` defaults that flags still override.

`train(..., recipe="paper-cifar", epochs=10)` is `train(..., config=recipe_config(
"paper-cifar"), epochs=10)`; `keras-resnet train --recipe paper-cifar --epochs 10` the same.
The recipe's name is a `TrainConfig` field, so run.json and metrics.json record it.

Weight decay. Keras' optimizers decay decoupled from the gradient (`w -= lr * wd * w` each
step, keras.optimizers.Optimizer's `weight_decay`), while the papers add an L2 term
`wd * w` to the gradient, which momentum then accumulates: in steady state the L2 shrink per
step is `lr * wd / (1 - momentum)`, ten times the decoupled one at momentum 0.9. The recipes
state the papers' L2 value and convert it with `decoupled_decay` (Loshchilov & Hutter 2019,
sec. 2, for the equivalence under plain SGD; with momentum it holds in steady state).

This module imports nothing heavy: the command line lists the recipes without TensorFlow.
"""

from __future__ import annotations

from typing import Any

from keras_resnet._checks import check_choice

SGD_MOMENTUM = 0.9
"""`make_optimizer`'s SGD momentum (keras_resnet.training.config)."""


def decoupled_decay(l2: float, momentum: float = SGD_MOMENTUM) -> float:
    """Keras' decoupled `weight_decay` that shrinks weights as an L2 term `l2` under momentum.

    Example:
        >>> round(decoupled_decay(1e-4), 6)
        0.001
    """
    return l2 / (1.0 - momentum)


RECIPES: dict[str, dict[str, Any]] = {
    # He et al. 2015, sec. 4.2 (CIFAR-10, Table 6): SGD 0.1, momentum 0.9, L2 1e-4, batch
    # 128, lr / 10 at 32k and 48k iterations, stop at 64k, on a 45k/5k train/val split:
    # 64k iterations of 128 are 182 epochs of 45,000 images (164 is the count over 50,000),
    # and 32k/48k are 50%/75% of them, the `step` schedule. 4-pixel pad + random crop + flip
    # is `translate` (a random shift of up to 4 pixels, zero fill) with flips.
    # Difference: no decay on BN gamma/beta (make_optimizer decays kernels only).
    "paper-cifar": dict(
        epochs=182,
        batch_size=128,
        optimizer="sgd",
        nesterov=False,
        learning_rate=0.1,
        schedule="step",
        warmup_epochs=0,
        weight_decay=decoupled_decay(1e-4),
        label_smoothing=0.0,
        augmentation="translate",
    ),
    # Ours, for a 2-hour CPU budget (docs/training.md): cosine to zero after a linear
    # warm-up, label smoothing 0.1 and 5x the paper's decay (L2 5e-4, the usual value for
    # short CIFAR schedules); bfloat16 only where `auto` picks it (avx512_bf16/amx_bf16).
    "fast-cifar": dict(
        epochs=40,
        batch_size=128,
        optimizer="sgd",
        learning_rate=0.1,
        schedule="cosine",
        warmup_epochs=2,
        weight_decay=decoupled_decay(5e-4),
        label_smoothing=0.1,
        mixed_precision="auto",
        augmentation="translate",
    ),
    # The torchvision/timm ImageNet baseline (Goyal et al. 2017's lr 0.1 per 256 images;
    # Szegedy et al.'s random-resized crop, scale 0.08-1, aspect 3/4-4/3; evaluation resizes
    # the shorter side to size / 0.875 and center-crops), with cosine and smoothing 0.1.
    "imagenet": dict(
        epochs=90,
        batch_size=256,
        optimizer="sgd",
        learning_rate=0.1,
        schedule="cosine",
        warmup_epochs=5,
        weight_decay=decoupled_decay(1e-4),
        label_smoothing=0.1,
        mixed_precision="auto",
        augmentation="random-resized-crop",
        eval_crop=0.875,
    ),
}
RECIPE_NAMES = tuple(RECIPES)


def recipe_defaults(name: str) -> dict[str, Any]:
    """The `TrainConfig` fields recipe `name` sets (its name included).

    Example:
        >>> recipe_defaults("paper-cifar")["schedule"]
        'step'
    """
    check_choice("recipe", name, RECIPES)
    return {**RECIPES[name], "recipe": name}
