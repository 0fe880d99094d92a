"""Tests for keras_resnet.data: digits, image folders and TFDS (all offline)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import re
import time
import types

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image
from sklearn.datasets import load_digits

from keras_resnet import data
from keras_resnet.data import (
    DataOptions,
    DatasetNotPreparedError,
    DatasetSplits,
    load_dataset,
    load_splits,
)
from keras_resnet.data.base import _flips_allowed
from keras_resnet.data.tfds import _tfds_split_specs

# One xdist worker runs this whole file: its module fixtures are built once.
pytestmark = pytest.mark.xdist_group("data")

NUM_DIGITS = 1797


def collect(ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Runs one full epoch and returns all images and labels."""
    images, labels = [], []
    for batch_images, batch_labels in ds:
        images.append(batch_images.numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(images), np.concatenate(labels)


def check_batches(splits: DatasetSplits, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Asserts the output contract on a whole split and returns its arrays."""
    images, labels = collect(getattr(splits, split))
    assert images.dtype == np.float32
    assert images.shape == (splits.sizes[split], *splits.image_shape)
    assert images.min() >= 0.0 and images.max() <= 1.0
    if splits.label_mode == "int":
        assert labels.dtype == np.int32
        assert labels.shape == (splits.sizes[split],)
        assert set(labels) <= set(range(splits.num_classes))
    else:
        assert labels.dtype == np.float32
        assert labels.shape == (splits.sizes[split], splits.num_classes)
        np.testing.assert_array_equal(labels.sum(axis=1), 1.0)
    return images, labels


# --- digits ------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> DatasetSplits:
    return load_dataset("digits", batch_size=128, augment=False)


def test_digits_splits_partition_all_images(digits):
    assert digits.sizes == {"train": 1258, "validation": 180, "test": 359}
    assert sum(digits.sizes.values()) == NUM_DIGITS
    pieces = [collect(getattr(digits, split)) for split in ("train", "validation", "test")]
    ours = np.concatenate([images for images, _ in pieces]).reshape(NUM_DIGITS, 64) * 16
    ours = np.concatenate([ours, np.concatenate([labels for _, labels in pieces])[:, None]], 1)
    reference = load_digits()
    theirs = np.concatenate([reference.data, reference.target[:, None]], 1)
    # Same multiset of (pixels, label) rows: nothing lost, duplicated or mislabelled.
    np.testing.assert_array_equal(np.unique(ours, axis=0), np.unique(theirs, axis=0))
    assert len(ours) == len(theirs)


def test_digits_splits_are_stratified(digits):
    totals = np.bincount(load_digits().target)
    for split, size in digits.sizes.items():
        _, labels = collect(getattr(digits, split))
        expected = totals * size / NUM_DIGITS
        assert np.abs(np.bincount(labels, minlength=10) - expected).max() <= 2, split


def test_digits_native_contract(digits):
    assert digits.image_shape == (8, 8, 1)
    assert digits.class_names == [str(i) for i in range(10)]
    assert digits.num_classes == 10 and digits.label_mode == "int"
    images, _ = check_batches(digits, "test")
    assert images.max() == 1.0  # 16 / 16: scaled by the true maximum, not 255
    check_batches(digits, "train")
    assert json.loads(json.dumps(digits.to_dict())) == {
        "name": "digits",
        "class_names": digits.class_names,
        "image_shape": [8, 8, 1],
        "sizes": digits.sizes,
        "label_mode": "int",
        "layout": "digits",
    }


def test_digits_resized_rgb_and_categorical(digits):
    splits = load_dataset(
        "digits", image_size=32, channels=3, label_mode="categorical", batch_size=128
    )
    assert splits.image_shape == (32, 32, 3)
    images, one_hot = check_batches(splits, "test")
    np.testing.assert_array_equal(images[..., 0], images[..., 2])  # gray copied to RGB
    _, sparse = collect(digits.test)
    np.testing.assert_array_equal(one_hot.argmax(axis=1), sparse)
    train_images, _ = next(iter(splits.train))
    assert train_images.shape == (128, 32, 32, 3)


def test_digits_split_depends_only_on_seed(digits):
    again = collect(load_dataset("digits", batch_size=128, augment=False).test)
    other = collect(load_dataset("digits", batch_size=128, augment=False, seed=1).test)
    first = collect(digits.test)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_digits_train_is_reshuffled_each_epoch(digits):
    first, second = collect(digits.train)[1], collect(digits.train)[1]
    assert len(first) == digits.sizes["train"]
    np.testing.assert_array_equal(np.bincount(first), np.bincount(second))
    assert not np.array_equal(first, second)


def shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`image` moved by whole pixels with zeros shifted in."""
    out = np.zeros_like(image)
    h, w = image.shape[:2]
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def test_digits_augmentation_translates_without_flips(digits):
    augmented = load_dataset("digits", batch_size=128, augment=True)
    plain = load_dataset("digits", batch_size=128, augment=False)
    # Same seed -> same first-epoch shuffle, so the batches hold the same examples.
    plain_batch = next(iter(plain.train))
    aug_batch = next(iter(augmented.train))
    np.testing.assert_array_equal(plain_batch[1], aug_batch[1])
    plain, aug = plain_batch[0].numpy(), aug_batch[0].numpy()
    assert not np.array_equal(plain, aug)
    assert aug.min() >= 0.0 and aug.max() <= 1.0
    moves = {(0, 0)} | {(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    for original, result in zip(plain, aug, strict=True):
        # Each digit is only moved by at most one pixel, never mirrored.
        assert any(np.array_equal(shifted(original, *move), result) for move in moves)
    np.testing.assert_array_equal(collect(augmented.test)[0], collect(digits.test)[0])
    np.testing.assert_array_equal(collect(augmented.validation)[0], collect(digits.validation)[0])


def test_flip_rule():
    assert not _flips_allowed("digits")
    for name in ("mnist", "fashion_mnist", "emnist", "svhn_cropped", "omniglot"):
        assert not _flips_allowed(name)
    assert _flips_allowed("cifar10") and _flips_allowed("tf_flowers")


def test_zero_fractions_give_empty_splits():
    splits = load_dataset("digits", validation_fraction=0.0, test_fraction=0.0)
    assert splits.sizes == {"train": NUM_DIGITS, "validation": 0, "test": 0}
    assert len(list(splits.test)) == 0


# --- image folders -----------------------------------------------------------

CLASS_COLOURS = {"cat": (220, 30, 30), "dog": (30, 220, 30), "fish": (30, 30, 220)}


def write_folder(root, sizes=((10, 14), (16, 12), (12, 12), (20, 9), (13, 17))):
    """One subfolder per class of solid-colour images; returns the root."""
    for name, colour in CLASS_COLOURS.items():
        (root / name).mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            pixels = np.full((h, w, 3), colour, dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


@pytest.fixture
def folder(tmp_path):
    root = write_folder(tmp_path / "pets")
    jpeg = (root / "cat" / "0.jpg").read_bytes()
    (root / "cat" / "broken.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # truncated
    (root / "dog" / "fake.png").write_text("not an image")
    (root / "fish" / "notes.txt").write_text("ignored: not an image extension")
    return root


def test_folder_skips_unreadable_files_and_runs_full_epochs(folder):
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable files in .*pets") as caught:
        splits = load_dataset(
            str(folder), image_size=16, batch_size=4, validation_fraction=0.2, test_fraction=0.2
        )
    message = str(caught[0].message)
    assert "broken.jpg" in message and "fake.png" in message and "notes.txt" not in message
    assert splits.class_names == ["cat", "dog", "fish"]
    assert splits.image_shape == (16, 16, 3)
    assert sum(splits.sizes.values()) == 15
    # 17 indexed files: 11 train, 6 held out (Keras' int(0.4 * 17)) split 3 / 3,
    # minus the 2 unreadable ones wherever the seeded shuffle put them.
    assert 9 <= splits.sizes["train"] <= 11
    assert 1 <= splits.sizes["validation"] <= 3 and 1 <= splits.sizes["test"] <= 3
    for split in ("train", "validation", "test"):
        for _ in range(2):  # a second epoch re-reads the broken files
            images, labels = check_batches(splits, split)
            # The solid colour's channel is the class: labels match images.
            np.testing.assert_array_equal(images.mean(axis=(1, 2)).argmax(axis=1), labels)


def test_folder_split_is_seeded(folder):
    def test_files(seed):
        with pytest.warns(UserWarning):
            splits = load_dataset(str(folder), image_size=8, seed=seed, test_fraction=0.4)
        return collect(splits.test)

    first, again, other = test_files(0), test_files(0), test_files(3)
    np.testing.assert_array_equal(first[0], again[0])
    assert not (np.array_equal(first[0], other[0]) and np.array_equal(first[1], other[1]))


def test_folder_native_size_mixed_size_default_and_grayscale(tmp_path):
    same = load_dataset(str(write_folder(tmp_path / "same", sizes=((12, 10),) * 4)))
    assert same.image_shape == (12, 10, 3)
    mixed = load_dataset(str(write_folder(tmp_path / "mixed")), channels=1, batch_size=2)
    assert mixed.image_shape == (*data.DEFAULT_IMAGE_SIZE, 1)
    check_batches(mixed, "validation")


def test_folder_errors(tmp_path):
    missing = str(tmp_path / "missing")
    with pytest.raises(
        ValueError,
        match=re.escape(f"does not exist or is not a directory. Received: dataset={missing!r}"),
    ):
        load_dataset(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="needs at least two class subfolders .* it has none"):
        load_dataset(str(tmp_path / "empty"))
    for folder in ("text", "junk"):
        for label in ("a", "b"):
            (tmp_path / folder / label).mkdir(parents=True)
    (tmp_path / "one" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="it has only 'a'"):
        load_dataset(str(tmp_path / "one"))
    (tmp_path / "text" / "a" / "readme.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"no images .*Received: dataset="):
        load_dataset(str(tmp_path / "text"))
    (tmp_path / "junk" / "a" / "x.jpg").write_bytes(b"\xff\xd8 garbage")
    with pytest.raises(ValueError, match="no readable images"):
        load_dataset(str(tmp_path / "junk"))
    tiny = write_folder(tmp_path / "tiny", sizes=((8, 8),))
    # 0.1 + 0.1 of n files leaves one for validation and one for test from n = 10 on.
    with pytest.raises(ValueError, match=r"has 3 images; .* needs at least 10\."):
        load_dataset(str(tiny), validation_fraction=0.1, test_fraction=0.1)


# --- TensorFlow Datasets -----------------------------------------------------


class KerasResnetTestShapes(tfds.core.GeneratorBasedBuilder):
    """A tiny real TFDS dataset built offline: dark / light 12x12 squares."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(12, 12, 3)),
                    "label": tfds.features.ClassLabel(names=["dark", "light"]),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(40), "test": self._generate_examples(10)}

    def _generate_examples(self, count):
        for i in range(count):
            yield i, {"image": np.full((12, 12, 3), 40 + 150 * (i % 2), np.uint8), "label": i % 2}


TEST_DATASET = "keras_resnet_test_shapes"


def test_tfds_real_download_path_and_carved_validation(tmp_path):
    # download=True runs the real tfds.load(download=True); this generator
    # builder needs no network, so it is prepared offline.
    splits = load_dataset(
        TEST_DATASET, data_dir=str(tmp_path), download=True, batch_size=8, augment=False
    )
    assert (tmp_path / TEST_DATASET / "1.0.0" / "dataset_info.json").exists()
    # Own test split kept; validation cut from train (10% of 40).
    assert splits.sizes == {"train": 36, "validation": 4, "test": 10}
    assert splits.class_names == ["dark", "light"]
    assert splits.image_shape == (12, 12, 3)
    for split in ("train", "validation", "test"):
        images, labels = check_batches(splits, split)
        np.testing.assert_allclose(images[:, 0, 0, 0], np.where(labels == 1, 190, 40) / 255)
    # Prepared now, so an offline load works and gives the same test split.
    offline = load_dataset(TEST_DATASET, data_dir=str(tmp_path), image_size=(6, 4), channels=1)
    assert offline.image_shape == (6, 4, 1) and offline.sizes == splits.sizes
    np.testing.assert_array_equal(collect(offline.test)[1], collect(splits.test)[1])


def test_tfds_split_specs():
    def fake(**sizes):
        return {name: types.SimpleNamespace(num_examples=n) for name, n in sizes.items()}

    specs = _tfds_split_specs(fake(train=1000), "x", 0.1, 0.2)
    assert specs == {
        "train": "train[:700]",
        "validation": "train[700:800]",
        "test": "train[800:1000]",
    }
    specs = _tfds_split_specs(fake(train=1000, validation=50, test=70), "x", 0.1, 0.2)
    assert specs == {"train": "train", "validation": "validation", "test": "test"}
    specs = _tfds_split_specs(fake(train=1000, test=70), "x", 0.0, 0.2)
    assert specs == {"train": "train", "validation": None, "test": "test"}
    with pytest.raises(ValueError, match="no 'train' split"):
        _tfds_split_specs(fake(test=5), "x", 0.1, 0.2)


def write_metadata(root, name, split_sizes, class_names):
    """Writes the metadata files of a prepared TFDS dataset (not its records)."""
    builder = tfds.builder(name, data_dir=str(root))
    # cifar10 reads its label names from the download; a prepared copy keeps
    # them in its metadata.
    builder.info.features["label"].names = class_names
    builder.info.set_splits(
        tfds.core.SplitDict(
            [
                tfds.core.SplitInfo(name=split, shard_lengths=[size], num_bytes=0)
                for split, size in split_sizes.items()
            ]
        )
    )
    os.makedirs(builder.data_dir)
    builder.info.write_to_directory(builder.data_dir)


@pytest.mark.parametrize(
    ("name", "split_sizes", "image_shape", "class_names"),
    [
        (
            "cifar10",
            {"train": 50000, "test": 10000},
            (32, 32, 3),
            [
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ],
        ),
        (
            "tf_flowers",
            {"train": 3670},
            (*data.DEFAULT_IMAGE_SIZE, 3),  # variable-size photos -> default size
            ["dandelion", "daisy", "tulips", "sunflowers", "roses"],
        ),
    ],
)
def test_tfds_mock_data(tmp_path, name, split_sizes, image_shape, class_names):
    write_metadata(tmp_path, name, split_sizes, class_names)
    with tfds.testing.mock_data(num_examples=6, data_dir=str(tmp_path)):
        splits = load_dataset(name, data_dir=str(tmp_path), batch_size=4, label_mode="categorical")
        # mock_data yields num_examples for every requested split.
        assert splits.sizes == {"train": 6, "validation": 6, "test": 6}
        assert splits.image_shape == image_shape
        assert splits.class_names == class_names
        for split in ("train", "validation", "test"):
            images, _ = check_batches(splits, split)
            assert images.max() > 0.5  # random uint8 pixels divided by 255


def test_tfds_not_prepared_fails_fast_offline(tmp_path):
    start = time.monotonic()
    with pytest.raises(DatasetNotPreparedError) as error:
        load_dataset("mnist", data_dir=str(tmp_path))
    assert time.monotonic() - start < 30
    assert isinstance(error.value, ValueError)
    message = str(error.value)
    assert str(tmp_path) in message and "tfds build mnist" in message
    assert "download=True" in message and "Received: dataset='mnist'" in message
    assert not any(tmp_path.iterdir())  # nothing half-downloaded


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("no_such_dataset_xyz", "is neither 'digits', an existing folder, nor"),
        ("not a name!", "is neither 'digits', an existing folder, nor"),
        ("huggingface:mnist", "community TFDS dataset"),  # would need the network
        ("cifar10/no_such_config", "not a valid TensorFlow Datasets reference"),
        ("imdb_reviews", "not an image classification dataset"),  # checked before preparing
    ],
)
def test_tfds_rejected_names(tmp_path, name, reason):
    start = time.monotonic()
    with pytest.raises(ValueError, match=re.escape(f"Received: dataset={name!r}")) as error:
        load_dataset(name, data_dir=str(tmp_path))
    assert reason in str(error.value)
    assert not isinstance(error.value, DatasetNotPreparedError)
    assert time.monotonic() - start < 30


# --- argument validation -----------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "`batch_size` must be a positive integer. Received: batch_size=0"),
        ({"batch_size": 2.5}, "Received: batch_size=2.5"),
        ({"batch_size": True}, "Received: batch_size=True"),
        ({"image_size": 0}, "`image_size` must be None, a positive integer"),
        ({"image_size": (32,)}, "Received: image_size=(32,)"),
        ({"image_size": (32, -1)}, "Received: image_size=(32, -1)"),
        ({"image_size": "32"}, "Received: image_size='32'"),
        ({"seed": -1}, "`seed` must be an integer in [0, 2**32). Received: seed=-1"),
        ({"validation_fraction": 1.0}, "Received: validation_fraction=1.0"),
        ({"validation_fraction": -0.1}, "`validation_fraction` must be a number in [0, 1)"),
        ({"test_fraction": "0.2"}, "Received: test_fraction='0.2'"),
        (
            {"validation_fraction": 0.5, "test_fraction": 0.5},
            "Received: validation_fraction=0.5, test_fraction=0.5",
        ),
        ({"label_mode": "onehot"}, "Received: label_mode='onehot'"),
        ({"channels": 2}, "`channels` must be None, 1 or 3. Received: channels=2"),
        ({"dataset": ""}, "Received: dataset=''"),
        ({"dataset": None}, "Received: dataset=None"),
    ],
)
def test_bad_arguments(kwargs, message):
    kwargs = {"dataset": "digits", **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        load_dataset(kwargs.pop("dataset"), **kwargs)


def test_the_data_keywords_are_checked_in_one_place_for_load_train_and_search(tmp_path):
    """`DataOptions` carries image_size, channels, label_mode, data_dir, download and augment
    through train, search and export; a bad one is the same error from every entry point."""
    from keras_resnet.training import train
    from keras_resnet.tuning.search import SearchConfig

    message = "`channels` must be None, 1 or 3. Received: channels=2"
    for call in (
        lambda: DataOptions(channels=2),
        lambda: load_dataset("digits", channels=2),
        lambda: train("resnet20", "digits", output_dir=tmp_path / "run", channels=2),
        lambda: SearchConfig(channels=2),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            call()
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match=re.escape("Received: label_mode='onehot'")):
        SearchConfig(label_mode="onehot")
    with pytest.raises(ValueError, match=re.escape("Received: image_size=0")):
        DataOptions(image_size=0)

    options = DataOptions(image_size=12, data_dir=tmp_path, augment=False)
    assert options.hw == (12, 12) and options.data_dir == str(tmp_path)
    assert SearchConfig(image_size=12, channels=1).data == DataOptions(image_size=12, channels=1)
    a = load_splits("digits", options, batch_size=512)
    b = load_dataset("digits", image_size=12, data_dir=tmp_path, augment=False, batch_size=512)
    np.testing.assert_array_equal(collect(a.test)[0], collect(b.test)[0])


def test_load_dataset_takes_a_data_part_with_keywords_on_top():
    """`load_dataset(dataset, DataOptions(...), **keywords)`, as a search takes its data part:
    the keywords apply on top of the part; a part of another type, or a keyword that is no
    `DataOptions` field, is one line before anything is read."""
    part = DataOptions(image_size=12, channels=3, augment=False)
    a = load_dataset("digits", part, label_mode="categorical", batch_size=512)
    b = load_dataset(
        "digits", image_size=12, channels=3, augment=False, label_mode="categorical",
        batch_size=512,
    )  # fmt: skip
    assert a.to_dict() == b.to_dict() and a.image_shape == (12, 12, 3)
    for x, y in zip(collect(a.test), collect(b.test), strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(TypeError, match="load_dataset.. got an unexpected keyword argument 'ep"):
        load_dataset("digits", part, epochs=2)
    message = "`data` must be a DataOptions. Received: data=dict"
    with pytest.raises(ValueError, match=re.escape(message)):
        load_dataset("digits", data={"image_size": 12})


def test_train_takes_a_data_part_as_load_dataset_and_search_do(tmp_path):
    """train's data keywords apply on top of its `data` part; the part's fields that train's
    config records (image_size, augment, augmentation, eval_crop) set the config's, a keyword
    of the same name winning. A part of another type is one line, before anything is read
    or written."""
    from keras_resnet.training import TrainConfig, train
    from keras_resnet.training.loop import _options

    part = DataOptions(image_size=12, channels=3, augment=False)
    config, options = _options(
        TrainConfig(epochs=2), part, {"image_size": 16, "label_mode": "categorical", "seed": 3}
    )
    assert (config.epochs, config.image_size, config.augment, config.seed) == (2, 16, False, 3)
    assert options == DataOptions(
        image_size=16, channels=3, augment=False, label_mode="categorical"
    )
    # The config's own value stays where the part leaves a field at its default.
    config, options = _options(TrainConfig(augment=False), DataOptions(channels=1), {})
    assert not config.augment and not options.augment and options.channels == 1

    run = tmp_path / "run"
    message = "`data` must be a DataOptions. Received: data=dict"
    with pytest.raises(ValueError, match=re.escape(message)):
        train("resnet20", "digits", output_dir=run, data={"channels": 3})
    with pytest.raises(ValueError, match=re.escape("Received: image_size=(16, 12)")):
        train("resnet20", "digits", output_dir=run, data=DataOptions(image_size=(16, 12)))
    assert not run.exists()
