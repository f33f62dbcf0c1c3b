"""Data: the embedded dataset, deterministic batching, augmentation, clear errors."""

import jax
import numpy as np
import pytest

from eejax import data


def test_embedded_splits_are_real_disjoint_and_balanced():
    splits = {s: data.load("mnist_5k", s) for s in ["train", "validation", "test"]}
    assert [len(splits[s]) for s in splits] == [3500, 500, 1000]
    train = splits["train"]
    assert train.images.shape[1:] == (28, 28, 1) and train.images.dtype == np.float32
    assert 0.0 <= train.images.min() and train.images.max() <= 1.0
    assert np.bincount(train.labels, minlength=10).min() > 300  # ~350 per class
    flat = {s: {im.tobytes() for im in splits[s].images} for s in splits}
    assert not flat["train"] & flat["test"] and not flat["validation"] & flat["test"]


def test_batches_are_a_pure_function_of_seed_and_step():
    first = [data.batch_indices(100, 32, seed=0, step=s) for s in range(3)]  # one epoch
    again = [data.batch_indices(100, 32, seed=0, step=s) for s in range(3)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert len(set(np.concatenate(first).tolist())) == 96  # no repeats within an epoch
    assert not np.array_equal(data.batch_indices(100, 32, 0, 3), first[0])  # new epoch order
    assert not np.array_equal(data.batch_indices(100, 32, 1, 0), first[0])  # seed matters


def test_augmentation_shifts_and_flips_deterministically():
    images = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6, 1)
    out = data.augment_batch(jax.random.key(0), images, "crop_flip", pad=2)
    again = data.augment_batch(jax.random.key(0), images, "crop_flip", pad=2)
    np.testing.assert_array_equal(out, again)
    assert out.shape == images.shape
    np.testing.assert_array_equal(data.augment_batch(jax.random.key(0), images, "none"), images)


def test_unknown_names_and_missing_data_are_explained(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'cifar11'"):
        data.load("cifar11", "train")
    with pytest.raises(ValueError, match="split for 'mnist_5k' must be one of"):
        data.load("mnist_5k", "val")
    with pytest.raises(FileNotFoundError, match="not prepared in .*tfds build mnist"):
        data.load("mnist", "train", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="must not exceed the number of training examples"):
        data.steps_per_epoch(10, 32)


@pytest.mark.parametrize("name, shape, classes", [("cifar10", (32, 32, 3), 10),
                                                  ("mnist", (28, 28, 1), 10)])
def test_tfds_datasets_load_by_name_without_tensorflow(name, shape, classes):
    import tensorflow_datasets as tfds

    # A fake prepared dataset: tfds serves generated records through the same data_source API.
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        ds = data.load(name, "train", data_dir="/nonexistent")
    assert ds.images.shape == (12, *shape) and ds.images.dtype == np.float32
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    assert ds.num_classes == classes and ds.labels.dtype == np.int32
    assert ds.name == f"{name}:train"
