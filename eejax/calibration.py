"""Thresholds from held-out data: budgeted evaluation as MSDNet and BoostNet report it.

For a budget parameter p, the target share of samples leaving at exit k (0-based) is
q_k = p^(k+1) / sum_j p^(j+1): p < 1 favours early exits, p > 1 late ones. The max-probability
threshold of each exit is chosen on a validation split so that those shares leave there, then
the test split is evaluated with those thresholds. The reference sweeps p = i / 20 for
i = 1..39 (`adaptive_inference.py`), searching thresholds on 5,000 held-out training images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eejax import policies
from eejax.evaluation import evaluate_thresholds
from eejax.network import EarlyExitNet

REFERENCE_BUDGETS = tuple(i / 20 for i in range(1, 40))


def exit_proportions(p: float, num_exits: int) -> np.ndarray:
    """[K] shares q_k proportional to p^(k+1), summing to 1."""
    if not p > 0:
        raise ValueError(f"budget parameter p must be > 0, got {p}")
    q = float(p) ** np.arange(1, num_exits + 1, dtype=np.float64)
    return q / q.sum()


def max_prob_thresholds(predictions: np.ndarray, proportions: Sequence[float]) -> np.ndarray:
    """[K-1] max-probability thresholds under which `proportions` of the samples leave each exit.

    Exit by exit, among the samples no earlier exit took, the floor(N * q_k) most confident
    ones leave: the threshold is the confidence of the last of them (ties leave too). When
    fewer samples remain, the threshold is +inf and nobody leaves there.

    predictions: [K, N, C] every exit's logits on the validation split (after the readout).
    """
    predictions = np.asarray(predictions)
    num_exits, n, _ = predictions.shape
    if len(proportions) != num_exits:
        raise ValueError(f"proportions must have one share per exit ({num_exits}), "
                         f"got {len(proportions)}")
    confidence = np.asarray(policies.confidence("max_prob", predictions))  # [K, N]
    taken = np.zeros(n, bool)
    thresholds = np.full(num_exits - 1, np.inf, np.float32)
    for k in range(num_exits - 1):
        wanted = int(np.floor(n * proportions[k]))
        order = np.argsort(-confidence[k], kind="stable")
        remaining = order[~taken[order]]
        if 0 < wanted <= len(remaining):
            thresholds[k] = confidence[k, remaining[wanted - 1]]
        taken |= confidence[k] >= thresholds[k]
    return thresholds


def budgeted_sweep(net: EarlyExitNet, val_predictions: np.ndarray, val_labels: np.ndarray,
                   test_predictions: np.ndarray, test_labels: np.ndarray,
                   budgets: Sequence[float] = REFERENCE_BUDGETS) -> list[dict]:
    """Budgeted evaluation: per p, thresholds from validation, accuracy and FLOPs on test.

    predictions: [K, N, C] every exit's logits (after the readout). Returns one dict per p with
    p, thresholds, validation accuracy and the test `policy_report` (accuracy, mean_flops,
    ideal_speedup, exit_fractions).
    """
    points = []
    for p in budgets:
        thresholds = max_prob_thresholds(val_predictions, exit_proportions(p, net.num_exits))
        val = evaluate_thresholds(net, val_predictions, val_labels, "max_prob", thresholds)
        test = evaluate_thresholds(net, test_predictions, test_labels, "max_prob", thresholds)
        points.append({"p": float(p), "thresholds": thresholds.tolist(),
                       "val_accuracy": val["accuracy"], **test})
    return points

