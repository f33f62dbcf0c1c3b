"""Deterministic batching: the batch of step t is a pure function of (seed, t).

So a run resumed from a checkpoint at step t sees exactly the batches an uninterrupted run sees.
"""

from __future__ import annotations

import numpy as np


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    if batch_size > num_examples:
        raise ValueError(f"batch_size ({batch_size}) must not exceed the number of training "
                         f"examples ({num_examples})")
    return num_examples // batch_size


def batch_indices(num_examples: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """[batch_size] example indices of training step `step` (a new permutation every epoch;
    the last partial batch of an epoch is dropped)."""
    per_epoch = steps_per_epoch(num_examples, batch_size)
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    return order[position * batch_size : (position + 1) * batch_size]
