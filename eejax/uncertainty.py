"""Uncertainty of early-exit predictions, as JEI-DNN reports it: expected calibration error of
the exited predictions, and conformal prediction sets calibrated per exit.

Conformal sets (split conformal, score s = 1 - p_y): on a held-out split, for each exit k, the
samples that left at k give scores s_1..s_n and q_k is their ceil((n+1)(1-alpha))/n empirical
quantile; a test sample leaving at k gets the set {c : 1 - p_c <= q_k}. For exchangeable data
the set holds the true class with probability at least 1 - alpha at every exit. An exit where
too few calibration samples left (ceil((n+1)(1-alpha)) > n) returns every class.
"""

from __future__ import annotations

import math

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """[..., C] probabilities, in float64."""
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def expected_calibration_error(logits: np.ndarray, labels: np.ndarray,
                               num_bins: int = 15) -> float:
    """ECE with equal-width confidence bins: sum_b (n_b / N) |accuracy_b - confidence_b|.

    logits: [N, C] the predictions used (e.g. `InferenceResult.logits`); labels: [N].
    """
    probs = softmax(logits)
    confidence, prediction = probs.max(-1), probs.argmax(-1)
    correct = prediction == np.asarray(labels)
    bins = np.minimum((confidence * num_bins).astype(int), num_bins - 1)
    error = 0.0
    for b in range(num_bins):
        members = bins == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def conformal_quantiles(logits: np.ndarray, labels: np.ndarray, exit_index: np.ndarray,
                        num_exits: int, alpha: float) -> np.ndarray:
    """[K] per-exit score thresholds q_k from a calibration split.

    logits: [N, C] predictions used; labels: [N]; exit_index: [N] exit each sample left at.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    probs = softmax(logits)
    scores = 1.0 - probs[np.arange(len(labels)), np.asarray(labels)]
    quantiles = np.ones(num_exits)  # 1: every class is in the set
    for k in range(num_exits):
        exited = np.sort(scores[np.asarray(exit_index) == k])
        rank = math.ceil((len(exited) + 1) * (1 - alpha))
        if 0 < rank <= len(exited):
            quantiles[k] = exited[rank - 1]
    return quantiles


def conformal_sets(logits: np.ndarray, exit_index: np.ndarray,
                   quantiles: np.ndarray) -> np.ndarray:
    """[N, C] bool prediction sets: class c is in when 1 - p_c <= q_(sample's exit)."""
    return 1.0 - softmax(logits) <= np.asarray(quantiles)[np.asarray(exit_index)][:, None]


def conformal_report(calibration: tuple, test: tuple, num_exits: int, alpha: float) -> dict:
    """Coverage and mean set size on test of sets calibrated per exit.

    calibration, test: (logits [N, C], labels [N], exit_index [N]) each.
    """
    quantiles = conformal_quantiles(*calibration, num_exits=num_exits, alpha=alpha)
    logits, labels, exit_index = test
    sets = conformal_sets(logits, exit_index, quantiles)
    return {"alpha": float(alpha),
            "coverage": float(sets[np.arange(len(labels)), np.asarray(labels)].mean()),
            "mean_set_size": float(sets.sum(-1).mean()),
            "quantiles": quantiles.tolist()}
