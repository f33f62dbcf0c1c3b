"""Learned exit gates (JEI-DNN: Regol, Chataoui & Coates, ICLR 2024).

Gate k reads exit k and returns an exit logit [B]; sigmoid(logit) is the probability of leaving
there. Two kinds:

  "uncertainty"  a linear layer on four confidence features of exit k's logits: the maximum
                 probability, the entropy, the top-1 minus top-2 margin, and the entropy of the
                 tempered distribution p^2 / sum p^2 (the released code's `LearnableUncGate`).
  "hidden"       a linear layer on stage k's features (the leaf the heads read, averaged over
                 space or tokens).

Gates see their inputs without gradient (`EarlyExitNet.apply_gate`): the gate loss trains the
gates, not the network under them.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from eejax.network import EarlyExitNet

GATE_KINDS = ("uncertainty", "hidden")


def uncertainty_features(logits: jax.Array) -> jax.Array:
    """[B, C] logits -> [B, 4]: max probability, entropy, margin, entropy of p^2 (normalised)."""
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    p = jnp.exp(log_p)
    top2 = jax.lax.top_k(p, 2)[0]
    entropy = -jnp.sum(p * log_p, axis=-1)
    log_p2 = jax.nn.log_softmax(2.0 * log_p, axis=-1)  # p^2 / sum p^2, in log space
    tempered_entropy = -jnp.sum(jnp.exp(log_p2) * log_p2, axis=-1)
    return jnp.stack([top2[:, 0], entropy, top2[:, 0] - top2[:, 1], tempered_entropy], axis=-1)


class UncertaintyGate(nn.Module):
    """Exit logit [B] from exit k's logits [B, C] (the features of `uncertainty_features`)."""

    @nn.compact
    def __call__(self, logits: jax.Array, h) -> jax.Array:
        return nn.Dense(1)(uncertainty_features(logits))[:, 0]


class HiddenGate(nn.Module):
    """Exit logit [B] from stage k's features (the last leaf, mean over all but the last axis)."""

    @nn.compact
    def __call__(self, logits: jax.Array, h) -> jax.Array:
        features = jax.tree.leaves(h)[-1]
        pooled = jnp.mean(features.reshape(features.shape[0], -1, features.shape[-1]), axis=1)
        return nn.Dense(1)(pooled.astype(jnp.float32))[:, 0]


def with_gates(net: EarlyExitNet, kind: str = "uncertainty") -> EarlyExitNet:
    """The same network with K-1 exit gates of `kind` ("uncertainty" or "hidden")."""
    if kind not in GATE_KINDS:
        raise ValueError(f"gate kind must be one of {list(GATE_KINDS)}, got {kind!r}")
    gate = UncertaintyGate if kind == "uncertainty" else HiddenGate
    return dataclasses.replace(net, gates=tuple(gate() for _ in range(net.num_exits - 1)))
