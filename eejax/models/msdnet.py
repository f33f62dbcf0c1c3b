"""`msdnet`: the Multi-Scale Dense Network (Huang et al., ICLR 2018) with an exit after each block.

MSDNet keeps features at S scales (fine to coarse) through the whole depth. Each layer adds
`growth_rate * gr_factor[s]` channels at scale s, from a 3x3 conv of the same scale and a strided
3x3 conv of the finer one (dense connectivity: outputs are concatenated to inputs). Fine scales
are dropped as depth grows ("prune"), with a 1x1 transition that shrinks the channels. Each exit
reads the coarsest scale.

The stage output is a pytree, the list of the scales still alive ([B, H_s, W_s, D_s] each), so
engines gather and carry it like any other activation.

Layer plan, channel bookkeeping, initialisation and padding follow the reference PyTorch code
(kalviny/MSDNet-PyTorch, as used by BoostNet's `models/msdnet_ge.py`); two deliberate differences:
heads end in a global average pool (the reference's `AvgPool2d(2)` sees a 2x2 map in both of its
layouts, so this is the same there and also works for other input sizes), and gradient rescaling
(BoostNet's "msdnet_ge") is a training option of the objective, not a separate architecture.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from eejax.network import EarlyExitNet

# PyTorch's BatchNorm2d defaults and the reference's conv init: normal(0, sqrt(2 / (k*k*out))).
_BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# PyTorch's nn.Linear default weight init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)); bias zero.
_dense_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _conv(features: int, kernel: int, strides: int = 1, bias: bool = False) -> nn.Conv:
    pad = kernel // 2
    return nn.Conv(features, (kernel, kernel), strides, padding=((pad, pad), (pad, pad)),
                   use_bias=bias, kernel_init=_conv_init)


class ConvBasic(nn.Module):
    """conv (no bias) -> BN -> ReLU."""

    features: int
    kernel: int = 3
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = _conv(self.features, self.kernel, self.strides)(x)
        return nn.relu(_BatchNorm(use_running_average=not train)(x))


class ConvBN(nn.Module):
    """Optional 1x1 bottleneck (at most `bottleneck_width * features` channels), then a 3x3
    conv BN ReLU, strided for "down"."""

    features: int
    down: bool
    bottleneck: bool
    bottleneck_width: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.bottleneck:
            inner = min(x.shape[-1], self.bottleneck_width * self.features)
            x = ConvBasic(inner, kernel=1)(x, train)
        return ConvBasic(self.features, 3, 2 if self.down else 1)(x, train)


class MSDNLayer(nn.Module):
    """One dense layer over the scales: in_scales tensors -> out_scales tensors (each grown).

    Output scale j (absolute scale offset + j) concatenates its input, a 3x3 conv of it and,
    except at the finest kept scale when nothing is discarded, a strided conv of the next finer
    input; each new part has growth_rate * gr_factor[s] channels in all.
    """

    growth_rate: int
    in_scales: int
    out_scales: int
    gr_factor: tuple[int, ...]
    bn_factor: tuple[int, ...]
    bottleneck: bool

    @nn.compact
    def __call__(self, xs: list[jax.Array], train: bool) -> list[jax.Array]:
        num_scales = len(self.gr_factor)
        offset = num_scales - self.out_scales
        discard = self.in_scales - self.out_scales
        outputs = []
        for j in range(self.out_scales):
            scale = offset + j
            grow = self.growth_rate * self.gr_factor[scale]
            if j == 0 and discard == 0:  # finest kept scale, no finer input: normal conv only
                normal = ConvBN(grow, False, self.bottleneck, self.bn_factor[scale])
                outputs.append(jnp.concatenate([xs[0], normal(xs[0], train)], axis=-1))
                continue
            finer, same = xs[j + discard - 1], xs[j + discard]
            down = ConvBN(grow // 2, True, self.bottleneck, self.bn_factor[scale - 1])
            normal = ConvBN(grow // 2, False, self.bottleneck, self.bn_factor[scale])
            outputs.append(
                jnp.concatenate([same, down(finer, train), normal(same, train)], axis=-1))
        return outputs


class FirstLayer(nn.Module):
    """Image -> one feature map per scale (CIFAR: 3x3 stem; ImageNet: 7x7/2 conv + 3x3/2 max
    pool), then a strided 3x3 ConvBasic down to each coarser scale."""

    channels: int
    gr_factor: tuple[int, ...]
    imagenet: bool

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> list[jax.Array]:
        features = self.channels * self.gr_factor[0]
        if self.imagenet:
            x = _conv(features, 7, 2, bias=True)(x)  # the reference keeps this conv's bias
            x = nn.relu(_BatchNorm(use_running_average=not train)(x))
            x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        else:
            x = ConvBasic(features)(x, train)
        outputs = [x]
        for factor in self.gr_factor[1:]:
            x = ConvBasic(self.channels * factor, strides=2)(x, train)
            outputs.append(x)
        return outputs


class Transition(nn.Module):
    """1x1 ConvBasic per kept scale, shrinking channels to `channels * gr_factor[s]`."""

    channels: int
    gr_factor: tuple[int, ...]

    @nn.compact
    def __call__(self, xs: list[jax.Array], train: bool) -> list[jax.Array]:
        offset = len(self.gr_factor) - len(xs)
        return [ConvBasic(self.channels * self.gr_factor[offset + j], kernel=1)(x, train)
                for j, x in enumerate(xs)]


class MSDNetBlock(nn.Module):
    """One stage: a sequence of layers from the plan (see `msdnet_plan`)."""

    layers: tuple[tuple, ...]
    channels: int
    growth_rate: int
    gr_factor: tuple[int, ...]
    bn_factor: tuple[int, ...]
    bottleneck: bool
    imagenet: bool

    @nn.compact
    def __call__(self, x, train: bool) -> list[jax.Array]:
        for layer in self.layers:
            kind = layer[0]
            if kind == "first":
                x = FirstLayer(self.channels, self.gr_factor, self.imagenet)(x, train)
            elif kind == "dense":
                _, in_scales, out_scales = layer
                x = MSDNLayer(self.growth_rate, in_scales, out_scales, self.gr_factor,
                              self.bn_factor, self.bottleneck)(x, train)
            else:  # "transition"
                x = Transition(layer[1], self.gr_factor)(x, train)
        return list(x)


class MSDNetHead(nn.Module):
    """Exit head on the coarsest scale: two strided 3x3 ConvBasic, global average pool, dense.

    xs: the list of scales -> logits [B, C]. `inner` is the convs' width (CIFAR: 128;
    ImageNet: the input's own width).
    """

    num_classes: int
    inner: int | None

    @nn.compact
    def __call__(self, xs: list[jax.Array], train: bool) -> jax.Array:
        h = xs[-1]
        inner = self.inner or h.shape[-1]
        h = ConvBasic(inner, strides=2)(h, train)
        h = ConvBasic(inner, strides=2)(h, train)
        return nn.Dense(self.num_classes, kernel_init=_dense_init)(jnp.mean(h, axis=(1, 2)))


def msdnet_plan(num_blocks: int, step_mode: str, step: int, base: int, channels: int,
                growth_rate: int, num_scales: int, prune: str,
                reduction: float) -> list[list[tuple]]:
    """The layers of each block, as the reference builds them.

    Returns one list per block of ("first",), ("dense", in_scales, out_scales) and
    ("transition", out_channels) entries; channel counts are per unit of gr_factor.
    """
    steps = [base] + [step if step_mode == "even" else step * i + 1 for i in range(1, num_blocks)]
    total = sum(steps)
    n_in, current = channels, 0
    blocks = []
    for block_steps in steps:
        layers: list[tuple] = [("first",)] if current == 0 else []
        for _ in range(block_steps):
            current += 1
            if prune == "min":
                in_scales = min(num_scales, total - current + 2)
                out_scales = min(num_scales, total - current + 1)
            else:
                interval = math.ceil(total / num_scales)
                in_scales = num_scales - math.floor(max(0, current - 2) / interval)
                out_scales = num_scales - math.floor((current - 1) / interval)
            layers.append(("dense", in_scales, out_scales))
            n_in += growth_rate
            shrink = reduction > 0 and (
                (prune == "max" and in_scales > out_scales)
                or (prune == "min" and current in (math.floor(total / 3),
                                                   math.floor(2 * total / 3))))
            if shrink:
                n_in = math.floor(reduction * n_in)
                layers.append(("transition", n_in))
        blocks.append(layers)
    return blocks


def msdnet(
    num_classes: int = 100,
    input_shape: Sequence[int] = (32, 32, 3),
    num_blocks: int = 10,
    step_mode: str = "even",
    step: int = 2,
    base: int = 4,
    channels: int = 16,
    growth_rate: int = 6,
    gr_factor: Sequence[int] = (1, 2, 4),
    bn_factor: Sequence[int] = (1, 2, 4),
    bottleneck: bool = True,
    prune: str = "max",
    reduction: float = 0.5,
    layout: str = "auto",
) -> EarlyExitNet:
    """MSDNet with `num_blocks` exits (the reference's option names in snake case).

    Args:
      num_classes: C.
      input_shape: one image, (H, W, channels).
      num_blocks: K, blocks and exits.
      step_mode: "even" (every block after the first has `step` layers) or "lin_grow"
        (block i has step * i + 1 layers).
      step, base: layers per block; the first block has `base`.
      channels: nChannels, the stem's width (times gr_factor[s] at scale s).
      growth_rate: channels each layer adds (times gr_factor[s]).
      gr_factor, bn_factor: per scale, growth and bottleneck-width factors; their length is the
        number of scales S.
      bottleneck: 1x1 bottlenecks before the 3x3 convs.
      prune: "max" or "min", how fine scales are dropped with depth.
      reduction: transition layers keep floor(reduction * channels); 0 disables them.
      layout: "cifar" (3x3 stem, 128-wide heads), "imagenet" (7x7/2 stem + max pool, heads as
        wide as their input) or "auto" (imagenet when the input is at least 64 pixels high).
    """
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}")
    if num_blocks < 1 or step < 1 or base < 1 or channels < 1 or growth_rate < 1:
        raise ValueError(f"num_blocks, step, base, channels and growth_rate must be >= 1, got "
                         f"{num_blocks}, {step}, {base}, {channels}, {growth_rate}")
    if step_mode not in ("even", "lin_grow"):
        raise ValueError(f"step_mode must be 'even' or 'lin_grow', got {step_mode!r}")
    if prune not in ("max", "min"):
        raise ValueError(f"prune must be 'max' or 'min', got {prune!r}")
    if len(gr_factor) != len(bn_factor) or not gr_factor:
        raise ValueError(f"gr_factor and bn_factor need one entry per scale (same length), got "
                         f"{list(gr_factor)} and {list(bn_factor)}")
    if layout not in ("auto", "cifar", "imagenet"):
        raise ValueError(f"layout must be 'auto', 'cifar' or 'imagenet', got {layout!r}")
    if not 0 <= reduction <= 1:
        raise ValueError(f"reduction must lie in [0, 1], got {reduction}")
    imagenet = layout == "imagenet" or (layout == "auto" and input_shape[0] >= 64)
    gr, bn = tuple(int(g) for g in gr_factor), tuple(int(b) for b in bn_factor)
    plan = msdnet_plan(num_blocks, step_mode, step, base, channels, growth_rate, len(gr),
                       prune, reduction)
    stages = tuple(MSDNetBlock(tuple(layers), channels, growth_rate, gr, bn, bool(bottleneck),
                               imagenet) for layers in plan)
    heads = tuple(MSDNetHead(num_classes, None if imagenet else 128) for _ in plan)
    # The heads read only the coarsest scale: gradient rescaling applies to that leaf alone.
    return EarlyExitNet(stages, heads, tuple(input_shape), num_classes, name="msdnet",
                        head_leaf=-1)
