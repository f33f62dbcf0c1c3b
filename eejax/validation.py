"""Checks of user input at the public boundary: clear ValueErrors instead of XLA traces."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp


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


def _dims(input_shape: Sequence[int]) -> str:
    return ", ".join(str(d) for d in input_shape)
