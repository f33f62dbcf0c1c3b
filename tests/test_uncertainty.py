"""ECE and per-exit conformal sets: hand-made cases and synthetic data with a known truth."""

import numpy as np
import pytest

from eejax import uncertainty


def test_ece_on_a_hand_made_case():
    """Two bins used: confidences 0.9 (2 samples, one right) and ~0.6 (2 samples, both right).
    ECE = 0.5 * |0.5 - 0.9| + 0.5 * |1.0 - 0.6|."""
    p_high, p_low = np.log([0.9, 0.1]), np.log([0.6, 0.4])
    logits = np.stack([p_high, p_high, p_low, p_low])
    labels = np.array([0, 1, 0, 0])
    expected = 0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6)
    assert uncertainty.expected_calibration_error(logits, labels, 10) == pytest.approx(expected)


def calibrated_data(n, classes, rng):
    """Logits and labels drawn from the softmax of those logits: a perfectly calibrated model."""
    logits = rng.normal(size=(n, classes)) * 2.5
    p = uncertainty.softmax(logits)
    labels = (p.cumsum(-1) > rng.random((n, 1))).argmax(-1)
    return logits, labels


def test_ece_of_a_calibrated_model_is_small_and_of_an_overconfident_one_is_not():
    logits, labels = calibrated_data(20_000, 5, np.random.default_rng(0))
    assert uncertainty.expected_calibration_error(logits, labels) < 0.02
    assert uncertainty.expected_calibration_error(3 * logits, labels) > 0.1


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.3])
def test_conformal_sets_reach_the_target_coverage_at_every_exit(alpha):
    """Split conformal guarantees 1 - alpha <= coverage <= 1 - alpha + 1/(n+1) on average over
    calibration draws. Over 30 draws (1,500 calibration and 6,000 test samples, 3 exits) the
    mean coverage of each exit must land there within 0.01 (its sampling error is ~0.003)."""
    rng = np.random.default_rng(1)
    num_exits, draws = 3, 30
    coverage = np.zeros((draws, num_exits))
    for d in range(draws):
        cal_logits, cal_labels = calibrated_data(1_500, 8, rng)
        test_logits, test_labels = calibrated_data(6_000, 8, rng)
        cal_exit, test_exit = rng.integers(0, num_exits, 1_500), rng.integers(0, num_exits, 6_000)
        quantiles = uncertainty.conformal_quantiles(cal_logits, cal_labels, cal_exit, num_exits,
                                                    alpha)
        sets = uncertainty.conformal_sets(test_logits, test_exit, quantiles)
        covered = sets[np.arange(6_000), test_labels]
        coverage[d] = [covered[test_exit == k].mean() for k in range(num_exits)]
    mean = coverage.mean(axis=0)
    assert np.all(mean >= 1 - alpha - 0.01) and np.all(mean <= 1 - alpha + 1 / 501 + 0.01), mean
    report = uncertainty.conformal_report((cal_logits, cal_labels, cal_exit),
                                          (test_logits, test_labels, test_exit), num_exits, alpha)
    assert report["coverage"] == pytest.approx(covered.mean())
    assert 1 <= report["mean_set_size"] < 8


def test_an_exit_without_enough_calibration_samples_returns_every_class():
    logits, labels = calibrated_data(20, 4, np.random.default_rng(2))
    exits = np.zeros(20, int)  # nobody calibrated exit 1
    quantiles = uncertainty.conformal_quantiles(logits, labels, exits, 2, alpha=0.1)
    assert quantiles[1] == 1.0
    assert uncertainty.conformal_sets(logits[:3], np.ones(3, int), quantiles).all()
    with pytest.raises(ValueError, match="alpha must lie in"):
        uncertainty.conformal_quantiles(logits, labels, exits, 2, alpha=1.0)
