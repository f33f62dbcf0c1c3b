"""Budgeted evaluation: proportions, thresholds found on validation, and the sweep."""

import numpy as np
import pytest
from conftest import np_softmax

from eejax import calibration


def reference_thresholds(predictions, proportions):
    """A loop transcription of the reference's `dynamic_eval_find_threshold`: per exit, walk the
    samples by descending confidence, count those no earlier exit took, and stop at the
    floor(N q_k)-th; 1e8 (nobody) if it is never reached."""
    num_exits, n, _ = predictions.shape
    confidence = np_softmax(predictions).max(-1)
    filtered = np.zeros(n)
    thresholds = np.full(num_exits, 1e8)
    for k in range(num_exits - 1):
        out_n, count = int(np.floor(n * proportions[k])), 0
        for i in np.argsort(-confidence[k], kind="stable"):
            if filtered[i] == 0:
                count += 1
                if count == out_n:
                    thresholds[k] = confidence[k, i]
                    break
        filtered += confidence[k] >= thresholds[k]
    return thresholds[:-1]


def test_proportions_follow_powers_of_p():
    np.testing.assert_allclose(calibration.exit_proportions(0.5, 3), np.array([4, 2, 1]) / 7)
    np.testing.assert_allclose(calibration.exit_proportions(1.0, 4), [0.25] * 4)
    with pytest.raises(ValueError, match="budget parameter p must be > 0"):
        calibration.exit_proportions(0.0, 3)


@pytest.mark.parametrize("p", [0.05, 0.5, 1.0, 1.95])
def test_thresholds_match_the_reference_search(p):
    predictions = np.random.default_rng(0).normal(size=(4, 97, 6)).astype(np.float32) * 2
    proportions = calibration.exit_proportions(p, 4)
    found = calibration.max_prob_thresholds(predictions, proportions)
    expected = reference_thresholds(predictions, proportions)
    expected = np.where(expected >= 1e8, np.inf, expected)
    np.testing.assert_allclose(found, expected, rtol=1e-6)


def test_sweep_sends_the_wanted_shares_on_the_split_it_was_calibrated_on(tiny_net):
    """Calibrated and evaluated on the same predictions, exit k takes floor(N q_k) samples
    (continuous confidences: no ties)."""
    net, _ = tiny_net
    predictions = np.random.default_rng(1).normal(size=(3, 200, 5)).astype(np.float32)
    labels = np.random.default_rng(2).integers(0, 5, 200)
    points = calibration.budgeted_sweep(net, predictions, labels, predictions, labels,
                                        budgets=[0.5, 2.0])
    for point in points:
        q = calibration.exit_proportions(point["p"], 3)
        wanted = np.floor(200 * q[:2]) / 200
        np.testing.assert_allclose(point["exit_fractions"][:2], wanted)
        assert point["val_accuracy"] == point["accuracy"]
    assert points[0]["mean_flops"] < points[1]["mean_flops"]
