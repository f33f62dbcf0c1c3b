"""Metrics of early-exit networks: per-exit accuracy and the accuracy/cost of a policy."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from eejax import policies
from eejax.engines import InferenceResult, select_exits
from eejax.network import EarlyExitNet, ExitCosts


def exit_accuracy(exit_logits: np.ndarray, labels: np.ndarray) -> list[float]:
    """Accuracy of each exit on every sample. exit_logits: [K, N, C], labels: [N]."""
    return [float(a) for a in (np.argmax(exit_logits, -1) == labels[None]).mean(axis=1)]


def policy_report(result: InferenceResult, labels: np.ndarray, costs: ExitCosts) -> dict:
    """Accuracy, mean FLOPs, ideal speedup and exit fractions of a policy's result.

    ideal_speedup = costs.total / mean(result.cost): what an engine that computes only the
    stages and heads each sample needs would gain over running the whole network.
    """
    exit_index = np.asarray(result.exit)
    mean_flops = float(np.mean(np.asarray(result.cost, np.float64)))
    counts = np.bincount(exit_index, minlength=len(costs.stage))
    return {
        "accuracy": float(np.mean(np.asarray(result.prediction) == labels)),
        "mean_flops": mean_flops,
        "ideal_speedup": costs.total / mean_flops,
        "exit_fractions": (counts / len(exit_index)).tolist(),
    }


def threshold_sweep(net: EarlyExitNet, exit_logits: np.ndarray, labels: np.ndarray, rule: str,
                    values: Sequence[float], gate_logits: np.ndarray | None = None) -> list[dict]:
    """One `policy_report` per threshold value (the same value at every exit).

    exit_logits: [K, N, C] precomputed, so a sweep costs no network evaluation;
    gate_logits: [K-1, N] for the "gates" rule.
    """
    return [{"threshold": float(value),
             **evaluate_thresholds(net, exit_logits, labels, rule, [value] * (net.num_exits - 1),
                                   gate_logits)}
            for value in values]


def evaluate_thresholds(net: EarlyExitNet, exit_logits: np.ndarray, labels: np.ndarray,
                        rule: str, thresholds: Sequence[float],
                        gate_logits: np.ndarray | None = None) -> dict:
    """`policy_report` of a threshold rule on precomputed predictions [K, N, C] (jitted once
    per net; new thresholds do not recompile)."""
    policy = policies.from_config(rule, thresholds=thresholds)
    index = jnp.arange(exit_logits.shape[1], dtype=jnp.int32)
    result = _jitted_select(net)(policy, exit_logits, index, gate_logits)
    return policy_report(result, labels, net.costs)


@functools.lru_cache(maxsize=16)
def _jitted_select(net: EarlyExitNet):
    return jax.jit(functools.partial(select_exits, net))
