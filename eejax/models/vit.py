"""`vit_ee`: a small Vision Transformer with an exit after chosen blocks (as JEI-DNN uses
transformers with intermediate heads).

Stage 0 embeds non-overlapping patches (a strided conv) and adds learned position embeddings,
then runs the blocks up to the first exit; each later stage runs the blocks up to the next exit.
Blocks are pre-norm: x + MHSA(LN(x)), then x + MLP(LN(x)). Every stage outputs tokens
[B, N, D]; each exit head is LayerNorm, mean over tokens and a dense layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from eejax.network import EarlyExitNet


class EncoderBlock(nn.Module):
    num_heads: int
    mlp_ratio: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.LayerNorm()(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.num_heads)(y, y)
        y = nn.LayerNorm()(x)
        y = nn.Dense(self.mlp_ratio * x.shape[-1])(y)
        return x + nn.Dense(x.shape[-1])(nn.gelu(y))


class ViTStage(nn.Module):
    """Optional patch embedding, then `num_blocks` encoder blocks: -> tokens [B, N, D]."""

    dim: int
    num_blocks: int
    num_heads: int
    mlp_ratio: int
    patch_size: int | None = None  # set on stage 0 only

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.patch_size is not None:
            p = self.patch_size
            x = nn.Conv(self.dim, (p, p), (p, p), padding="VALID")(x)
            x = x.reshape(x.shape[0], -1, self.dim)
            position = self.param("position", nn.initializers.normal(0.02), x.shape[1:])
            x = x + position
        for _ in range(self.num_blocks):
            x = EncoderBlock(self.num_heads, self.mlp_ratio)(x)
        return x


class TokenHead(nn.Module):
    """LayerNorm, mean over tokens, dense: [B, N, D] -> [B, C]."""

    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        return nn.Dense(self.num_classes)(jnp.mean(nn.LayerNorm()(x), axis=1))


def vit_ee(
    num_classes: int = 10,
    input_shape: Sequence[int] = (32, 32, 3),
    patch_size: int = 4,
    dim: int = 64,
    num_heads: int = 4,
    mlp_ratio: int = 2,
    exit_blocks: Sequence[int] = (2, 4, 6),
) -> EarlyExitNet:
    """A ViT whose exits follow blocks `exit_blocks` (1-based counts; the last is the depth).

    Args:
      num_classes: C.
      input_shape: (H, W, channels); H and W must be multiples of `patch_size`.
      patch_size: side of the square patches (tokens: (H / p) * (W / p)).
      dim: token width D (a multiple of num_heads).
      num_heads: attention heads per block.
      mlp_ratio: hidden width of the MLPs, in units of D.
      exit_blocks: strictly increasing block counts after which an exit sits.
    """
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}")
    if patch_size < 1 or input_shape[0] % patch_size or input_shape[1] % patch_size:
        raise ValueError(f"input height and width {tuple(input_shape[:2])} must be multiples "
                         f"of patch_size={patch_size}")
    if dim < 1 or num_heads < 1 or dim % num_heads:
        raise ValueError(f"dim must be a positive multiple of num_heads, got dim={dim}, "
                         f"num_heads={num_heads}")
    blocks = [int(b) for b in exit_blocks]
    if not blocks or blocks[0] < 1 or any(b <= a for a, b in zip(blocks, blocks[1:],
                                                                   strict=False)):
        raise ValueError(f"exit_blocks must be strictly increasing counts >= 1, got "
                         f"{list(exit_blocks)}")
    counts = [b - a for a, b in zip([0, *blocks[:-1]], blocks, strict=True)]
    stages = tuple(ViTStage(dim, n, num_heads, mlp_ratio, patch_size if k == 0 else None)
                   for k, n in enumerate(counts))
    heads = tuple(TokenHead(num_classes) for _ in counts)
    return EarlyExitNet(stages, heads, tuple(input_shape), num_classes, name="vit_ee")
