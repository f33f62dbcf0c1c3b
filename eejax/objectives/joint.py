"""Joint training objectives: a weighted sum of per-exit cross-entropies, optionally with
distillation of the last exit into the earlier ones (Phuong & Lampert, ICCV 2019).

Every objective has one signature:  loss, aux = objective(logits [K, B, C], labels [B]).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from eejax.objectives.base import Objective


def exit_weights(weights: str | Sequence[float], num_exits: int) -> jnp.ndarray:
    """[K] weights: "uniform" (1 each), "linear" ((k+1)/K, later exits weigh more) or given."""
    if isinstance(weights, str):
        if weights == "uniform":
            return jnp.ones(num_exits)
        if weights == "linear":
            return jnp.arange(1, num_exits + 1) / num_exits
        raise ValueError(f"weights must be 'uniform', 'linear' or a sequence, got {weights!r}")
    values = np.asarray(weights, dtype=np.float32)
    if values.shape != (num_exits,) or np.any(values < 0) or not np.all(np.isfinite(values)):
        raise ValueError(f"weights must be {num_exits} finite non-negative numbers (one per "
                         f"exit), got {list(weights)}")
    return jnp.asarray(values)


def per_exit_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """[K] mean cross-entropy of each exit. logits: [K, B, C], labels: [B]."""
    ce = optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), jnp.broadcast_to(labels, logits.shape[:2]))
    return ce.mean(axis=1)


def exit_accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """[K] accuracy of each exit."""
    return (jnp.argmax(logits, -1) == labels[None]).mean(axis=1)


def joint(weights: str | Sequence[float] = "uniform") -> Objective:
    """loss = sum_k w_k * CE(logits_k, labels)."""
    if isinstance(weights, str):
        exit_weights(weights, 1)  # validates the name now, not at the first step

    def objective(logits: jax.Array, labels: jax.Array):
        ce = per_exit_cross_entropy(logits, labels)
        w = exit_weights(weights, logits.shape[0])
        return jnp.sum(w * ce), {"exit_loss": ce, "exit_accuracy": exit_accuracy(logits, labels)}

    return Objective(objective)


def distill(weights: str | Sequence[float] = "uniform", temperature: float = 3.0,
            alpha: float = 0.5) -> Objective:
    """Joint loss plus distillation of the last exit (teacher) into each earlier exit.

    For exit k < K-1:  w_k * [(1 - alpha) * CE(z_k, y) + alpha * T^2 * KL(p_T(z_K) || p_T(z_k))],
    with p_T the softmax at temperature T and the teacher's logits under stop_gradient; the last
    exit gets w_K * CE(z_K, y). The T^2 keeps the gradient scale independent of T (Hinton et al.).
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if isinstance(weights, str):
        exit_weights(weights, 1)

    def objective(logits: jax.Array, labels: jax.Array):
        logits = logits.astype(jnp.float32)
        ce = per_exit_cross_entropy(logits, labels)
        teacher = jax.nn.log_softmax(jax.lax.stop_gradient(logits[-1]) / temperature, axis=-1)
        student = jax.nn.log_softmax(logits[:-1] / temperature, axis=-1)  # [K-1, B, C]
        kl = jnp.sum(jnp.exp(teacher) * (teacher - student), axis=-1).mean(axis=1)  # [K-1]
        mixed = (1 - alpha) * ce[:-1] + alpha * temperature**2 * kl
        w = exit_weights(weights, logits.shape[0])
        loss = jnp.sum(w[:-1] * mixed) + w[-1] * ce[-1]
        return loss, {"exit_loss": ce, "distill_kl": kl,
                      "exit_accuracy": exit_accuracy(logits, labels)}

    return Objective(objective)
