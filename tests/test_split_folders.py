"""Split-folder datasets (train/ val/ test/ of class folders) on a real CIFAR-10 sample.

tests/fixtures/cifar10_sample holds 20 JPEGs a class of CIFAR-10's train and test sets
(the first files of /work/data/cifar10's class folders, 400 in all, 369 KB).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from keras_resnet.data import DataOptions, load_dataset, load_splits, split_folder

pytestmark = pytest.mark.xdist_group("split_folders")  # its module fixture is built once

SAMPLE = Path(__file__).parent / "fixtures" / "cifar10_sample"
CLASSES = sorted(os.listdir(SAMPLE / "train"))
PER_CLASS = 20


def collect(ds):
    images, labels = zip(*ds.as_numpy_iterator(), strict=True)
    return np.concatenate(images), np.concatenate(labels)


def decoded(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The split's JPEGs decoded by TensorFlow, in class then file-name order."""
    images, labels = [], []
    for label, name in enumerate(CLASSES):
        for file in sorted((SAMPLE / split / name).iterdir()):
            images.append(tf.io.decode_jpeg(tf.io.read_file(str(file)), channels=3).numpy())
            labels.append(label)
    return np.stack(images), np.array(labels)


@pytest.fixture(scope="module")
def cifar_sample():
    return load_dataset(SAMPLE, batch_size=64, augment=False)


def test_split_folders_are_the_splits(cifar_sample):
    """test/ is the test split, image for image; validation is carved from train/ (10%)."""
    splits = cifar_sample
    assert splits.class_names == CLASSES
    assert splits.sizes == {"train": 180, "validation": 20, "test": 200}
    assert splits.layout == "split-folders (cached in memory)"
    assert splits.to_dict()["layout"] == splits.layout
    images, labels = collect(splits.test)
    expected_images, expected_labels = decoded("test")
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_allclose(images, expected_images / 255.0, atol=1e-6)
    # Train and validation together are train/, each image once.
    train_images, _ = collect(splits.train)
    val_images, _ = collect(splits.validation)
    together = np.concatenate([train_images, val_images]) * 255.0
    all_train, _ = decoded("train")
    assert sorted(map(bytes, np.round(together).astype(np.uint8))) == sorted(map(bytes, all_train))


def test_val_folder_is_used(tmp_path):
    """A val/ folder is the validation split: nothing is carved from train/."""
    root = tmp_path / "data"
    shutil.copytree(SAMPLE / "train", root / "train")
    shutil.copytree(SAMPLE / "test", root / "test")
    for name in CLASSES:
        (root / "val" / name).mkdir(parents=True)
        for file in sorted((root / "train" / name).iterdir())[:5]:
            file.rename(root / "val" / name / file.name)
    splits = load_dataset(root, batch_size=32, augment=False)
    assert splits.sizes == {"train": 150, "validation": 50, "test": 200}
    _, labels = collect(splits.validation)
    np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 5))


def test_class_lists_must_agree(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(SAMPLE / "train", root / "train")
    shutil.copytree(SAMPLE / "test", root / "test")
    (root / "test" / "ship").rename(root / "test" / "boat")
    with pytest.raises(ValueError) as info:
        load_dataset(root)
    message = str(info.value)
    assert "\n" not in message
    assert "test/ lacks ['ship'] and has ['boat']" in message
    assert f"Received: dataset={str(root)!r}" in message


def test_val_and_validation_together_are_refused(tmp_path):
    for name in ("train/a", "train/b", "val/a", "validation/a"):
        (tmp_path / name).mkdir(parents=True)
    with pytest.raises(ValueError, match=r"`val/` or `validation/`, not both"):
        load_dataset(tmp_path)


def test_a_class_tree_keeps_the_carve(tmp_path):
    """One class-folder tree (no train/) is split as before, and says so."""
    shutil.copytree(SAMPLE / "test", tmp_path / "tree")
    splits = load_dataset(tmp_path / "tree", batch_size=64, augment=False)
    assert splits.layout.startswith("class-folders")
    assert sum(splits.sizes.values()) == 200
    assert split_folder.split_folders(str(tmp_path / "tree")) is None


def test_streamed_equals_cached(monkeypatch, cifar_sample):
    """Past the memory budget the files are decoded every epoch: the same test images."""
    monkeypatch.setattr(split_folder, "_CACHE_BYTES", 0)
    streamed = load_dataset(SAMPLE, batch_size=64, augment=False)
    assert streamed.layout == "split-folders (decoded every epoch)"
    assert streamed.sizes == cifar_sample.sizes
    for a, b in zip(collect(streamed.test), collect(cifar_sample.test), strict=True):
        np.testing.assert_array_equal(a, b)
    images, labels = collect(streamed.train)
    assert images.shape == (180, 32, 32, 3) and len(set(labels.tolist())) == 10


def test_augmented_train_is_seeded_and_shuffled(cifar_sample):
    splits = load_splits(SAMPLE, DataOptions(), batch_size=180)
    first = next(iter(splits.train_for_epoch(0)))
    again = next(iter(load_splits(SAMPLE, DataOptions(), batch_size=180).train_for_epoch(0)))
    np.testing.assert_array_equal(first[0], again[0])
    labels = first[1].numpy()
    assert sorted(labels.tolist()) == sorted(collect(cifar_sample.train)[1].tolist())
    assert not np.all(np.diff(labels) >= 0)  # not in class order
    # Shifted and flipped: few images come out as they were decoded (no shift, no flip).
    originals = {image.tobytes() for image in collect(cifar_sample.train)[0]}
    unchanged = sum(image.tobytes() in originals for image in first[0].numpy())
    assert unchanged < 180 // 4


def test_metrics_record_recipe_and_layout(tmp_path):
    """A one-epoch run on the sample: run.json and metrics.json name the recipe and layout."""
    from keras_resnet.training import train
    from tests.helpers import tiny_spec

    metrics = train(
        tiny_spec(),
        str(SAMPLE),
        output_dir=tmp_path / "run",
        recipe="fast-cifar",
        epochs=1,
        image_size=16,
        verbose=0,
    )
    assert metrics["recipe"] == "fast-cifar"
    assert metrics["dataset"]["layout"] == "split-folders (cached in memory)"
    assert metrics["split_sizes"]["test"] == 200
    assert metrics["config"]["label_smoothing"] == 0.1
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["fingerprint"]["recipe"] == "fast-cifar"
    # A run recorded before `augmentation` and `eval_crop` existed (their defaults) is the
    # same run: the rerun returns its metrics instead of refusing another configuration.
    for key in ("augmentation", "eval_crop"):
        del run["fingerprint"][key]
    (tmp_path / "run" / "run.json").write_text(json.dumps(run))
    again = train(tiny_spec(), str(SAMPLE), output_dir=tmp_path / "run", recipe="fast-cifar",
                  epochs=1, image_size=16, verbose=0)  # fmt: skip
    assert again == metrics
    with pytest.raises(ValueError, match=r"another configuration \(differs in: eval_crop\)"):
        train(tiny_spec(), str(SAMPLE), output_dir=tmp_path / "run", recipe="fast-cifar",
              epochs=1, image_size=16, verbose=0, eval_crop=0.875)  # fmt: skip


def test_imagenet_crops_in_the_pipeline():
    """random-resized-crop trains on per-image crops (seeded); eval_crop center-crops test/."""
    from keras_resnet.data.crops import resize_center_crop

    options = DataOptions(image_size=24, augmentation="random-resized-crop", eval_crop=0.875)
    splits = load_splits(SAMPLE, options, batch_size=60)
    first = next(iter(splits.train_for_epoch(0)))[0].numpy()
    again = next(iter(load_splits(SAMPLE, options, batch_size=60).train_for_epoch(0)))[0]
    assert first.shape == (60, 24, 24, 3) and first.min() >= 0 and first.max() <= 1
    np.testing.assert_array_equal(first, again)
    images, _ = collect(splits.test)
    expected = np.stack([resize_center_crop(image, (24, 24)) for image in decoded("test")[0][:5]])
    expected /= 255.0
    np.testing.assert_allclose(images[:5], expected, atol=1e-5)


def test_odd_sized_and_unreadable_files(tmp_path):
    """A file of another size is resized to the common one as it is cached; an unreadable
    one is skipped with a counted warning."""
    root = tmp_path / "data"
    shutil.copytree(SAMPLE, root)
    big = tf.image.resize(decoded("test")[0][:1], (40, 48))[0]
    odd = tf.io.encode_png(tf.cast(tf.round(big), tf.uint8)).numpy()
    first_cat = sorted((root / "test" / "cat").iterdir())[0]
    first_cat.with_suffix(".png").write_bytes(odd)
    first_cat.unlink()
    (root / "test" / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable file of 201 in"):
        splits = load_dataset(root, batch_size=64, augment=False)
    assert splits.sizes["test"] == 200 and splits.image_shape == (32, 32, 3)
    images, labels = collect(splits.test)
    index = CLASSES.index("cat") * PER_CLASS  # the png sorts first of its class
    expected = tf.cast(
        tf.round(tf.image.resize(tf.cast(tf.round(big), tf.uint8), (32, 32))), tf.uint8
    )
    np.testing.assert_allclose(images[index] * 255, expected.numpy(), atol=1e-3)
    assert labels[index] == CLASSES.index("cat")
