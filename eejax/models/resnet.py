"""`resnet_ee`: a ResNet-style CNN for small images (MNIST, CIFAR) with an exit after each stage.

Stage 0 is a 3x3 stem plus residual blocks at full resolution; every later stage halves the
resolution and doubles the width, so the stages cost about the same FLOPs (a useful property for
early exit: leaving one stage earlier saves a fixed share of the work). Each exit head is small:
one strided 3x3 convolution, batch norm, ReLU, global average pooling and a dense layer.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from eejax.network import EarlyExitNet

_BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (He et al., 2016)."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        norm = functools.partial(_BatchNorm, use_running_average=not train)
        y = nn.Conv(self.features, (3, 3), self.strides, use_bias=False)(x)
        y = nn.relu(norm()(y))
        y = nn.Conv(self.features, (3, 3), use_bias=False)(y)
        # Zero-initialised last scale: each block starts as the identity, which trains stably.
        y = norm(scale_init=nn.initializers.zeros)(y)
        if x.shape[-1] != self.features or self.strides != 1:
            x = norm()(nn.Conv(self.features, (1, 1), self.strides, use_bias=False)(x))
        return nn.relu(x + y)


class ResNetStage(nn.Module):
    """An optional stem, then `num_blocks` residual blocks (the first one strided)."""

    features: int
    num_blocks: int
    strides: int
    stem: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.stem:
            x = nn.Conv(self.features, (3, 3), use_bias=False)(x)
            x = nn.relu(_BatchNorm(use_running_average=not train)(x))
        for i in range(self.num_blocks):
            x = BasicBlock(self.features, self.strides if i == 0 else 1)(x, train)
        return x


class PoolHead(nn.Module):
    """Exit head: a 3x3 conv (strided on large maps), BN, ReLU, global average pooling, dense.

    [B, H, W, D] -> [B, C]. The conv gives early exits, whose features are shallow, some
    capacity of their own; it costs a small fraction of a stage.
    """

    num_classes: int
    features: int

    @nn.compact
    def __call__(self, h: jax.Array, train: bool) -> jax.Array:
        strides = 2 if min(h.shape[1:3]) >= 8 else 1
        h = nn.Conv(self.features, (3, 3), strides, use_bias=False)(h)
        h = nn.relu(_BatchNorm(use_running_average=not train)(h))
        return nn.Dense(self.num_classes)(jnp.mean(h, axis=(1, 2)))


def resnet_ee(
    num_classes: int = 10,
    input_shape: Sequence[int] = (32, 32, 3),
    num_exits: int = 4,
    width: int = 16,
    blocks_per_stage: int = 1,
) -> EarlyExitNet:
    """A `num_exits`-stage ResNet; stage k has `width * 2**k` channels.

    Args:
      num_classes: C, classes of every exit.
      input_shape: one image, (H, W, channels).
      num_exits: K, the number of stages and exits.
      width: channels of the first stage.
      blocks_per_stage: residual blocks in each stage.
    """
    if num_exits < 1:
        raise ValueError(f"num_exits must be >= 1, got {num_exits}")
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}")
    if width < 1 or blocks_per_stage < 1 or num_classes < 2:
        raise ValueError(
            f"width and blocks_per_stage must be >= 1 and num_classes >= 2, got width={width}, "
            f"blocks_per_stage={blocks_per_stage}, num_classes={num_classes}"
        )
    stages = tuple(
        ResNetStage(width * 2**k, blocks_per_stage, strides=1 if k == 0 else 2, stem=k == 0)
        for k in range(num_exits)
    )
    heads = tuple(PoolHead(num_classes, features=width * 2**k)
                  for k in range(num_exits))
    return EarlyExitNet(stages, heads, tuple(input_shape), num_classes, name="resnet_ee")
