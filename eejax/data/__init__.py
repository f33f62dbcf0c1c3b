"""Datasets by name, as random-access arrays, with deterministic batching and augmentation.

    ds = eejax.data.load("mnist_5k", "train")         # embedded: ships in a pip wheel, offline
    ds = eejax.data.load("cifar10", "train", data_dir="~/tensorflow_datasets")   # tfds

Names: "mnist_5k" (embedded default), "fashion_mnist_local" (Debian's dataset-fashion-mnist),
and any tensorflow-datasets name (read through `tfds.data_source`, no TensorFlow needed).
"""

from eejax.data.augment import augment_batch
from eejax.data.batching import batch_indices, steps_per_epoch
from eejax.data.sources import Dataset, load

__all__ = ["Dataset", "augment_batch", "batch_indices", "load", "steps_per_epoch"]
