"""Policies on hand-made logits, against hand-worked answers and the NumPy reference."""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import np_first_exit

from eejax import policies

# Softmax of [2, 0, 0] = [0.787, 0.107, 0.107]; of [0, 0, 0] = uniform 1/3.
CONFIDENT = [2.0, 0.0, 0.0]
UNSURE = [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "policy, expected",
    [
        (policies.max_prob([0.7]), [True, False]),
        (policies.max_prob([0.8]), [False, False]),
        (policies.entropy([0.7]), [True, False]),  # entropies 0.657 and log(3) = 1.099
        (policies.entropy([1.1]), [True, True]),
        (policies.margin([0.6]), [True, False]),  # margins 0.680 and 0
        (policies.margin([0.7]), [False, False]),
    ],
)
def test_threshold_rules_on_hand_made_logits(policy, expected):
    fire, _ = policy.decide(jnp.asarray([CONFIDENT, UNSURE]), 0, {})
    np.testing.assert_array_equal(fire, expected)


def test_patience_counts_unchanged_predictions():
    policy = policies.patience(2)
    state = policy.init_state(jnp.arange(2))
    same, other = jnp.asarray([[3.0, 0, 0], [3.0, 0, 0]]), jnp.asarray([[3.0, 0, 0], [0, 3.0, 0]])
    fires = []
    for k, logits in enumerate([same, same, other, same]):
        fire, state = policy.decide(logits, k, state)
        fires.append(np.asarray(fire).tolist())
    # sample 0 predicts class 0 at every exit: count 0, 1, 2 -> fires at exit 2.
    # sample 1 predicts 0, 0, 1, 0: count 0, 1, 0, 0 -> never.
    assert fires == [[False, False], [False, False], [True, False], [True, False]]


def test_oracle_reads_targets_by_dataset_index():
    policy = policies.oracle([2, 0, 1, 0])
    state = policy.init_state(jnp.asarray([2, 0]))  # samples 2 and 0 of the dataset
    fire, _ = policy.decide(jnp.zeros((2, 3)), 1, state)
    np.testing.assert_array_equal(fire, [True, False])


@pytest.mark.parametrize("rule, thresholds", [("max_prob", [0.5, 0.8]), ("entropy", [0.5, 1.0]),
                                              ("margin", [0.2, 0.6])])
def test_confidence_matches_decide(rule, thresholds):
    logits = np.random.default_rng(0).normal(size=(3, 64, 4)) * 2
    policy = policies.from_config(rule, thresholds=thresholds)
    fires = np.stack([policy.decide(jnp.asarray(logits[k]), k, {})[0] for k in range(2)])
    expected = np_first_exit(logits, rule, thresholds)
    first = np.where(fires.any(0), fires.argmax(0), 2)
    np.testing.assert_array_equal(first, expected)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: policies.max_prob([0.5, 1.5]), "must lie in \\[0.0, 1.0\\]"),
        (lambda: policies.margin([-0.1]), "must lie in"),
        (lambda: policies.entropy([-1.0]), ">= 0.0"),
        (lambda: policies.max_prob([[0.5]]), "1-D"),
        (lambda: policies.max_prob([float("nan")]), "finite or \\+inf"),
        (lambda: policies.entropy([float("inf")]), "thresholds must be finite, got"),
        (lambda: policies.patience(0), "patience count must be an integer >= 1"),
        (lambda: policies.oracle([0.5]), "exit_index"),
        (lambda: policies.from_config("confidence", thresholds=[0.5]),
         "unknown policy 'confidence'"),
    ],
)
def test_bad_policy_arguments_are_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_infinite_max_prob_threshold_means_nobody_leaves_there():
    logits = jnp.asarray([[20.0, -20.0], [0.0, 0.0]])  # probabilities 1.0 and 0.5
    fire, _ = policies.max_prob([np.inf, 0.4]).decide(logits, 0, {})
    assert fire.tolist() == [False, False]


def test_threshold_count_must_match_exits():
    with pytest.raises(ValueError, match="one value per exit except the last: 2 for a 3-exit"):
        policies.max_prob([0.5, 0.5, 0.5]).check(num_exits=3, num_classes=5)
