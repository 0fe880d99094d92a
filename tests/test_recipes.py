"""Named training recipes (keras_resnet.recipes): TrainConfig defaults that flags override."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import math

import pytest

from keras_resnet import recipes
from keras_resnet.training import TrainConfig, make_optimizer, train
from tests.helpers import run_cli

CIFAR_TRAIN = 45_000  # He et al.'s 45k/5k split of the 50,000 training images


@pytest.mark.parametrize("name", recipes.RECIPE_NAMES)
def test_every_recipe_is_a_valid_config(name):
    config = TrainConfig.from_recipe(name)
    assert config.recipe == name
    for field, value in recipes.RECIPES[name].items():
        assert getattr(config, field) == value


def test_paper_cifar_is_the_papers_schedule():
    """64k iterations of 128, lr 0.1 divided by 10 at 32k and 48k (He et al. 2015, 4.2)."""
    config = TrainConfig.from_recipe("paper-cifar")
    steps = math.ceil(CIFAR_TRAIN / config.batch_size)
    assert config.epochs * steps == pytest.approx(64_000, rel=0.001)
    optimizer = make_optimizer(config, steps)
    lr = {}
    for step in (0, 31_900, 32_100, 47_900, 48_100, 64_000):
        optimizer.iterations.assign(step)
        lr[step] = float(optimizer.learning_rate)
    assert lr[0] == lr[31_900] == pytest.approx(0.1)
    assert lr[32_100] == lr[47_900] == pytest.approx(0.01)
    assert lr[48_100] == lr[64_000] == pytest.approx(0.001)
    assert config.augmentation == "translate" and config.augment
    assert optimizer.nesterov is False  # plain momentum 0.9, as the paper's
    assert optimizer.momentum == 0.9
    # L2 1e-4 under momentum 0.9 shrinks weights as Keras' decoupled 1e-3 does.
    assert config.weight_decay == pytest.approx(1e-3)


def test_fast_cifar_and_imagenet_defaults():
    fast = TrainConfig.from_recipe("fast-cifar")
    assert (fast.schedule, fast.label_smoothing, fast.mixed_precision) == ("cosine", 0.1, "auto")
    assert fast.warmup_epochs > 0
    imagenet = TrainConfig.from_recipe("imagenet")
    assert imagenet.augmentation == "random-resized-crop"
    assert imagenet.eval_crop == 0.875
    assert (imagenet.schedule, imagenet.label_smoothing) == ("cosine", 0.1)


def test_a_flag_overrides_the_recipe():
    config = TrainConfig.from_recipe("paper-cifar", epochs=3, learning_rate=0.05)
    assert (config.epochs, config.learning_rate, config.schedule) == (3, 0.05, "step")


def test_bad_recipes_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match=r"^`recipe` must be one of .*Received: recipe='fast'$"):
        TrainConfig.from_recipe("fast")
    with pytest.raises(ValueError, match=r"`recipe` or `config`, not both"):
        train("resnet20", "digits", output_dir=tmp_path / "r", config=TrainConfig(),
              recipe="fast-cifar")  # fmt: skip
    assert not (tmp_path / "r").exists()


def test_cli_passes_the_recipe_and_the_overrides(capsys, monkeypatch):
    import keras_resnet.training

    called = {}
    monkeypatch.setattr(keras_resnet.training, "train", lambda *a, **k: called.update(k))
    code, _, err = run_cli(
        capsys, "train", "--recipe", "paper-cifar", "--epochs", "3", "--output", "r"
    )
    assert code == 0, err
    assert called["recipe"] == "paper-cifar" and called["epochs"] == 3
    code, _, err = run_cli(capsys, "train", "--recipe", "bogus", "--output", "r")
    assert code == 2 and "--recipe" in err and "bogus" in err
