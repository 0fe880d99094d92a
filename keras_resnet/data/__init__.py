"""Train / validation / test `tf.data` pipelines from one dataset reference.

`load_dataset` accepts three kinds of reference (`load_splits` is the same with
the data keywords as one `DataOptions`, what training, tuning and export pass):

* ``"digits"``: scikit-learn's bundled 8x8 handwritten digits (1,797 real
  images, 10 classes). Needs no download, so it works on offline machines.
* a path to a local folder with one subfolder of images per class, read with
  `keras.utils.image_dataset_from_directory`.
* a path to a folder with ``train/`` and ``test/`` (and ``val/`` or
  ``validation/``) subfolders of class folders, ImageNet's and CIFAR's layout:
  those folders are the splits (`keras_resnet.data.split_folder`; a missing
  validation or test split is carved from ``train/``), decoded once into memory
  when small (docs/training.md).
* a TensorFlow Datasets name (``"cifar10"``, ``"tf_flowers"``,
  ``"imagenette/160px"``, ...). Nothing is downloaded unless
  ``download=True``; a dataset that is not prepared yet fails fast with
  `DatasetNotPreparedError`.

Every pipeline yields ``(images, labels)`` batches:

* ``images``: ``float32``, shape ``(batch, H, W, C)`` (channels last), values
  scaled to **[0, 1]**: digits are divided by 16 (their maximum), 8-bit images
  by 255. Models trained on these pipelines (and the models exported from
  them) expect inputs in [0, 1], not [0, 255] nor ImageNet-normalised.
* ``labels``: ``int32`` class indices (``label_mode="int"``) or ``float32``
  one-hot vectors (``label_mode="categorical"``).

Splits are deterministic. Digits are split with a stratified permutation drawn
from ``seed``. Folders are split by Keras' seeded file shuffle. TFDS datasets
keep their own ``validation`` / ``test`` splits; a missing one is cut from the
end of ``train`` (TFDS shuffles examples when preparing them, so the tail is a
random sample), which does not depend on ``seed``.

Image size: ``image_size=None`` keeps the native size when the source has one
(digits 8x8, cifar10 32x32, a folder whose readable images all share one size)
and otherwise resizes to `DEFAULT_IMAGE_SIZE` (224x224, the ImageNet ResNet
input), e.g. for ``tf_flowers`` or a folder of mixed sizes.

Augmentation (training split only, ``augment=True``): a random translation of
up to 12.5% of each side with zero fill (CIFAR's "pad 4 pixels and crop" on
32x32 images) and a random horizontal flip. Flips are off for digit and
character sets, where a mirrored symbol is a different or invalid one:
``"digits"`` and TFDS names containing one of `NO_FLIP_KEYWORDS` (mnist,
emnist, kmnist, fashion_mnist, svhn_cropped, omniglot, ...).

>>> splits = load_dataset("digits", batch_size=32)
>>> images, labels = next(iter(splits.train))
>>> images.shape, splits.num_classes
(TensorShape([32, 8, 8, 1]), 10)
"""

from keras_resnet.data.base import (
    DEFAULT_IMAGE_SIZE,
    IMAGE_EXTENSIONS,
    NO_FLIP_KEYWORDS,
    OFFLINE_DATASETS,
    DatasetNotPreparedError,
)
from keras_resnet.data.options import DataOptions
from keras_resnet.data.pipeline import DatasetSplits, load_dataset, load_splits

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "IMAGE_EXTENSIONS",
    "NO_FLIP_KEYWORDS",
    "OFFLINE_DATASETS",
    "DataOptions",
    "DatasetNotPreparedError",
    "DatasetSplits",
    "load_dataset",
    "load_splits",
]
