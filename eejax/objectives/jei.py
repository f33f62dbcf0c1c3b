"""JEI-DNN's objective: jointly learned exit gates and classifiers (Regol, Chataoui & Coates,
"Jointly-Learned Exit and Inference for a Dynamic Neural Network", ICLR 2024).

Per sample, the oracle exit is k* = argmin_k (loss_k + lam * c_k), with loss_k the exit's loss
and c_k its normalised cumulative cost (c_{K-1} = 1). Gate k's target is 1 when k* <= k.

  gate loss        weighted binary cross-entropy of the K-1 gates against those targets
                   (positive targets weighted per gate); gates only (their inputs carry no
                   gradient).
  classifier loss  "weighted" (the paper): sum_k P(exit at k) * CE_k, with
                   P(exit at k) = g_k prod_{j<k} (1 - g_j) from the gates' probabilities g held
                   fixed; "released": what the released code's weighting reduces to, the plain
                   mean of the intermediate exits' cross-entropy (the P factors divide out).
  warm-up          CE_{K-1} + sum_{k<K-1} (K - k) CE_k: early exits weigh more
                   (`learning_helper.get_warmup_loss`), for the first `warmup_steps` steps.
  then             "joint": (gate loss + classifier loss) / 2, or "alternate": classifier and
                   gate phases of `alternate_every` steps each (the released code: 200).

Called as `objective(logits [K, B, C], labels [B], gate_logits=[K-1, B], exit_costs=[K],
step=scalar)`; `eejax.training` supplies the last three for objectives with `uses_gates`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from eejax.objectives.base import Objective
from eejax.objectives.joint import exit_accuracy

GATE_OBJECTIVES = ("ce", "zero_one", "prob")
CLASSIFIER_LOSSES = ("weighted", "released")
SCHEDULES = ("joint", "alternate")


def exit_losses(logits: jax.Array, labels: jax.Array, kind: str) -> jax.Array:
    """[K, B] per-sample loss of each exit: cross-entropy, minus correctness ("zero_one"), or
    minus the top probability when correct ("prob")."""
    logits = logits.astype(jnp.float32)
    if kind == "ce":
        return optax.softmax_cross_entropy_with_integer_labels(
            logits, jnp.broadcast_to(labels, logits.shape[:2]))
    correct = (jnp.argmax(logits, -1) == labels[None]).astype(jnp.float32)
    if kind == "zero_one":
        return -correct
    return -correct * jnp.max(jax.nn.softmax(logits, -1), -1)


def gate_targets(losses: jax.Array, exit_costs: jax.Array, cost_tradeoff: float) -> jax.Array:
    """[K-1, B] float targets: 1 where the oracle exit argmin_k(loss_k + lam c_k) is <= k."""
    oracle = jnp.argmin(losses + cost_tradeoff * exit_costs[:, None], axis=0)  # [B]
    gates = jnp.arange(losses.shape[0] - 1)[:, None]
    return (oracle[None] <= gates).astype(jnp.float32)


def exit_probabilities(gate_logits: jax.Array) -> jax.Array:
    """[K, B] probability of leaving at each exit, g_k prod_{j<k}(1 - g_j) (the last exit:
    prod_j (1 - g_j)), from the gates' exit logits [K-1, B]."""
    g = jax.nn.sigmoid(gate_logits.astype(jnp.float32))
    stay = jnp.cumprod(1.0 - g, axis=0)  # prob of passing gates 0..k
    reach = jnp.concatenate([jnp.ones_like(g[:1]), stay], axis=0)  # prob of reaching exit k
    return reach * jnp.concatenate([g, jnp.ones_like(g[:1])], axis=0)


def jei(cost_tradeoff: float = 0.1, gate_objective: str = "ce",
        positive_weights: str | Sequence[float] | None = None,
        classifier_loss: str = "weighted", warmup_steps: int = 0, schedule: str = "joint",
        alternate_every: int = 200) -> Objective:
    """The JEI-DNN objective (see the module docstring).

    Args:
      cost_tradeoff: lam >= 0; larger values favour earlier exits.
      gate_objective: loss_k for the oracle: "ce", "zero_one" or "prob".
      positive_weights: weights of positive gate targets: None (1), "balanced" (per gate,
        negatives / positives in the batch) or K-1 numbers (e.g. measured on validation data).
      classifier_loss: "weighted" (the paper) or "released" (see the module docstring).
      warmup_steps: steps of the warm-up loss before the gates train.
      schedule: "joint" or "alternate" after the warm-up.
      alternate_every: phase length for "alternate".
    """
    if not np.isfinite(cost_tradeoff) or cost_tradeoff < 0:
        raise ValueError(f"cost_tradeoff must be a finite number >= 0, got {cost_tradeoff}")
    for name, value, allowed in (("gate_objective", gate_objective, GATE_OBJECTIVES),
                                 ("classifier_loss", classifier_loss, CLASSIFIER_LOSSES),
                                 ("schedule", schedule, SCHEDULES)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    if warmup_steps < 0 or alternate_every < 1:
        raise ValueError(f"warmup_steps must be >= 0 and alternate_every >= 1, got "
                         f"{warmup_steps} and {alternate_every}")
    if positive_weights is not None and not isinstance(positive_weights, str):
        weights = np.asarray(positive_weights, np.float32)
        if weights.ndim != 1 or np.any(weights <= 0) or not np.all(np.isfinite(weights)):
            raise ValueError(f"positive_weights must be None, 'balanced' or positive numbers "
                             f"(one per gate), got {positive_weights!r}")
    elif positive_weights not in (None, "balanced"):
        raise ValueError(f"positive_weights must be None, 'balanced' or positive numbers, got "
                         f"{positive_weights!r}")

    def loss(logits, labels, gate_logits, exit_costs, step):
        num_exits = logits.shape[0]
        ce = exit_losses(logits, labels, "ce")  # [K, B]
        oracle_losses = ce if gate_objective == "ce" else exit_losses(logits, labels,
                                                                      gate_objective)
        targets = gate_targets(jax.lax.stop_gradient(oracle_losses), exit_costs, cost_tradeoff)
        weights = _positive_weights(positive_weights, targets, num_exits)
        bce = optax.sigmoid_binary_cross_entropy(gate_logits.astype(jnp.float32), targets)
        gate_loss = jnp.mean(bce * jnp.where(targets > 0, weights[:, None], 1.0))

        if classifier_loss == "weighted":
            p_exit = exit_probabilities(jax.lax.stop_gradient(gate_logits))
            classifier = jnp.mean(jnp.sum(p_exit * ce, axis=0))
        else:
            classifier = jnp.mean(ce[:-1])
        ce_mean = ce.mean(axis=1)
        warm = ce_mean[-1] + jnp.sum((num_exits - jnp.arange(num_exits - 1)) * ce_mean[:-1])
        if schedule == "joint":
            trained = (gate_loss + classifier) / 2
        else:
            gate_phase = ((step - warmup_steps) // alternate_every) % 2 == 1
            trained = jnp.where(gate_phase, gate_loss, classifier)
        total = jnp.where(step < warmup_steps, warm, trained)
        return total, {"exit_loss": ce_mean, "exit_accuracy": exit_accuracy(logits, labels),
                       "gate_loss": gate_loss, "classifier_loss": classifier,
                       "oracle_exit_fractions": jnp.mean(
                           jnp.concatenate([targets, jnp.ones_like(targets[:1])])
                           - jnp.concatenate([jnp.zeros_like(targets[:1]), targets]), axis=1)}

    return Objective(loss, uses_gates=True)


def _positive_weights(option, targets: jax.Array, num_exits: int) -> jax.Array:
    """[K-1] weight of a positive target at each gate."""
    if option is None:
        return jnp.ones(num_exits - 1)
    if option == "balanced":  # negatives / positives per gate, from the batch itself
        positives = jnp.sum(targets, axis=1)
        negatives = targets.shape[1] - positives
        return jax.lax.stop_gradient(negatives / jnp.maximum(positives, 1.0))
    weights = jnp.asarray(option, jnp.float32)
    if weights.shape != (num_exits - 1,):
        raise ValueError(f"positive_weights needs one weight per gate ({num_exits - 1}), got "
                         f"{weights.shape[0]}")
    return weights
