"""Checks of user input at the public boundary: clear ValueErrors instead of XLA traces."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np


def check_images(x, input_shape: Sequence[int], name: str = "x") -> None:
    """Checks that `x` is a floating-point batch of shape [B, *input_shape]."""
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is None or dtype is None:
        raise ValueError(f"{name} must be an array of shape [B, {_dims(input_shape)}], "
                         f"got {type(x).__name__}")
    expected = (None, *input_shape)
    if len(shape) != len(expected) or tuple(shape[1:]) != tuple(input_shape):
        raise ValueError(
            f"{name} must have shape [B, {_dims(input_shape)}] (batch, then one sample's shape), "
            f"got {tuple(shape)}"
        )
    if shape[0] < 1:
        raise ValueError(f"{name} must hold at least one sample, got batch size {shape[0]}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"{name} must be a floating-point array (e.g. float32 scaled to [0, 1]), got {dtype}; "
            f"convert with x.astype(np.float32) / 255 for uint8 images"
        )


def check_labels(labels, batch_size: int, num_classes: int, name: str = "labels") -> None:
    """Checks integer class labels of shape [B] in [0, num_classes)."""
    shape = getattr(labels, "shape", None)
    if shape is None or tuple(shape) != (batch_size,):
        raise ValueError(f"{name} must have shape [{batch_size}], got {shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"{name} must be integer class indices, got dtype {labels.dtype}")
    if isinstance(labels, np.ndarray) and labels.size:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            raise ValueError(f"{name} must lie in [0, {num_classes}), got values in [{low}, {high}]")


def check_exit_logits(logits, name: str = "logits") -> None:
    """Checks per-exit logits of shape [K, B, C]."""
    shape = getattr(logits, "shape", None)
    if shape is None or len(shape) != 3:
        raise ValueError(f"{name} must have shape [K, B, C] (exits, batch, classes), got {shape}")


def _dims(input_shape: Sequence[int]) -> str:
    return ", ".join(str(d) for d in input_shape)
