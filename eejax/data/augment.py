"""On-device augmentation inside the jitted train step, driven by the step's PRNG key."""

from __future__ import annotations

import jax
import jax.numpy as jnp

AUGMENTATIONS = ("none", "crop", "crop_flip")


def augment_batch(rng: jax.Array, images: jax.Array, kind: str, pad: int = 4) -> jax.Array:
    """Random `pad`-pixel translation (zero padding, as in CIFAR ResNets) and, for "crop_flip",
    random horizontal flips. images: [B, H, W, C] -> [B, H, W, C]."""
    if kind not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {list(AUGMENTATIONS)}, got {kind!r}")
    if kind == "none":
        return images
    batch, height, width, _ = images.shape
    crop_rng, flip_rng = jax.random.split(rng)
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = jax.random.randint(crop_rng, (batch, 2), 0, 2 * pad + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0),
                                     (height, width, image.shape[-1]))

    images = jax.vmap(crop)(padded, offsets)
    if kind == "crop_flip":
        flip = jax.random.bernoulli(flip_rng, 0.5, (batch,))
        images = jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)
    return images
