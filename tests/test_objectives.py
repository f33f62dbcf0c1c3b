"""joint and distill losses against NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import np_boosted, np_softmax

import eejax
from eejax.objectives.joint import per_exit_cross_entropy


def np_cross_entropy(logits, labels):
    p = np_softmax(logits)
    return -np.log(p[np.arange(len(labels)), labels]).mean()


def np_kl(teacher_logits, student_logits, temperature):
    t = np_softmax(teacher_logits / temperature)
    s = np_softmax(student_logits / temperature)
    return (t * (np.log(t) - np.log(s))).sum(-1).mean()


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return rng.normal(size=(3, 7, 4)).astype(np.float32) * 2, rng.integers(0, 4, 7)


@pytest.mark.parametrize("weights, expected_w", [("uniform", [1, 1, 1]),
                                                 ("linear", [1 / 3, 2 / 3, 1]),
                                                 ([0.2, 0.0, 2.0], [0.2, 0.0, 2.0])])
def test_joint_matches_numpy(batch, weights, expected_w):
    logits, labels = batch
    loss, aux = eejax.objectives.get("joint", weights=weights)(jnp.asarray(logits), labels)
    ce = [np_cross_entropy(logits[k], labels) for k in range(3)]
    np.testing.assert_allclose(loss, np.dot(expected_w, ce), rtol=1e-5)
    np.testing.assert_allclose(aux["exit_loss"], ce, rtol=1e-5)
    accuracy = (logits.argmax(-1) == labels).mean(1)
    np.testing.assert_allclose(aux["exit_accuracy"], accuracy)


@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (3.0, 0.3), (4.0, 1.0)])
def test_distill_matches_numpy(batch, temperature, alpha):
    logits, labels = batch
    objective = eejax.objectives.get("distill", temperature=temperature, alpha=alpha)
    loss, aux = objective(jnp.asarray(logits), labels)
    expected = np_cross_entropy(logits[2], labels)
    for k in range(2):
        expected += ((1 - alpha) * np_cross_entropy(logits[k], labels)
                     + alpha * temperature**2 * np_kl(logits[2], logits[k], temperature))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(aux["distill_kl"][0], np_kl(logits[2], logits[0], temperature),
                               rtol=1e-5)


def test_distill_teacher_gets_no_gradient_from_distillation(batch):
    logits, labels = batch
    objective = eejax.objectives.get("distill", alpha=1.0)  # early exits: distillation only
    grad = jax.grad(lambda z: objective(z, labels)[0])(jnp.asarray(logits))
    # The last exit's gradient is then its own cross-entropy gradient, nothing from the KL.
    ce_grad = jax.grad(lambda z: per_exit_cross_entropy(z, labels)[2])(
        jnp.asarray(logits))
    np.testing.assert_allclose(grad[2], ce_grad[2], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("joint", {"weights": "quadratic"}, "weights must be 'uniform', 'linear'"),
        ("distill", {"temperature": 0.0}, "temperature must be > 0"),
        ("distill", {"alpha": 2.0}, "alpha must lie in"),
        ("boost", {}, "unknown objective 'boost'"),
        ("joint", {"weight": "uniform"}, "unknown option\\(s\\) \\['weight'\\]"),
    ],
)
def test_bad_objective_config_is_named(name, options, message):
    with pytest.raises(ValueError, match=message):
        eejax.objectives.get(name, **options)


def test_given_weights_must_match_exits(batch):
    logits, labels = batch
    with pytest.raises(ValueError, match="3 finite non-negative numbers"):
        eejax.objectives.get("joint", weights=[1.0, 1.0])(jnp.asarray(logits), labels)


def np_boosted_loss(raw, labels, reweight):
    """sum_k CE(f_k + r_{k-1} G_{k-1}) with G from the loop reference (values only)."""
    ensemble = np_boosted(raw, reweight)
    r = np.broadcast_to(np.asarray(reweight, np.float64), (raw.shape[0] - 1,))
    targets = [raw[0]] + [raw[k] + r[k - 1] * ensemble[k - 1] for k in range(1, raw.shape[0])]
    return np.array([np_cross_entropy(t, labels) for t in targets])


@pytest.mark.parametrize("reweight", [0.5, [0.9, 0.1]])
def test_boosted_loss_and_predictions_match_numpy(batch, reweight):
    logits, labels = batch
    objective = eejax.objectives.get("boosted", reweight=reweight)
    loss, aux = objective(jnp.asarray(logits), labels)
    ce = np_boosted_loss(logits, labels, reweight)
    np.testing.assert_allclose(aux["exit_loss"], ce, rtol=1e-5)
    np.testing.assert_allclose(loss, ce.sum(), rtol=1e-5)
    accuracy = (np_boosted(logits, reweight).argmax(-1) == labels).mean(1)
    np.testing.assert_allclose(aux["exit_accuracy"], accuracy)
    np.testing.assert_allclose(objective.readout(3).apply_all(jnp.asarray(logits)),
                               np_boosted(logits, reweight), rtol=1e-5)
    assert objective.gradient_rescale


def test_boosted_gradient_reaches_each_head_only_through_its_own_output():
    """d loss / d f_k = softmax(f_k + r sg(G_{k-1})) - onehot(y), over B: the earlier exits'
    outputs get no gradient from later exits' losses (the stop_gradient)."""
    rng = np.random.default_rng(2)
    raw = rng.normal(size=(3, 5, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 5)
    objective = eejax.objectives.get("boosted", reweight=0.5)
    grad = jax.grad(lambda f: objective(f, labels)[0])(jnp.asarray(raw))
    ensemble = np_boosted(raw, 0.5)
    targets = np.concatenate([raw[:1], raw[1:] + 0.5 * ensemble[:-1]])
    expected = (np_softmax(targets) - np.eye(4)[labels][None]) / 5
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)
