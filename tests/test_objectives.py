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


def np_jei(logits, labels, gates, costs, lam, gate_objective="ce", pos=None):
    """Loop reference for JEI-DNN: oracle exits, gate targets, gate BCE, exit probabilities
    and the weighted classifier loss, one sample at a time."""
    num_exits, batch, _ = logits.shape
    ce = np.array([[-np.log(np_softmax(logits[k, i])[labels[i]]) for i in range(batch)]
                   for k in range(num_exits)])
    if gate_objective == "ce":
        oracle_loss = ce
    else:
        correct = (logits.argmax(-1) == labels[None]).astype(float)
        oracle_loss = -correct * (np_softmax(logits).max(-1) if gate_objective == "prob" else 1.0)
    pos = np.ones(num_exits - 1) if pos is None else np.asarray(pos)
    targets = np.zeros((num_exits - 1, batch))
    bce, classifier = [], []
    p_exit = np.zeros((num_exits, batch))
    for i in range(batch):
        best = int(np.argmin([oracle_loss[k, i] + lam * costs[k] for k in range(num_exits)]))
        reach = 1.0
        for k in range(num_exits - 1):
            t = float(best <= k)
            targets[k, i] = t
            g = 1 / (1 + np.exp(-gates[k, i]))
            bce.append((pos[k] if t else 1.0) * -(t * np.log(g) + (1 - t) * np.log(1 - g)))
            p_exit[k, i] = reach * g
            reach *= 1 - g
        p_exit[-1, i] = reach
        classifier.append(sum(p_exit[k, i] * ce[k, i] for k in range(num_exits)))
    return targets, p_exit, np.mean(bce), np.mean(classifier), ce


@pytest.mark.parametrize("lam, gate_objective, pos", [(0.0, "ce", None), (0.8, "ce", [2.0, 0.5]),
                                                      (0.5, "zero_one", None),
                                                      (0.3, "prob", [1.5, 3.0])])
def test_jei_targets_probabilities_and_losses_match_numpy(batch, lam, gate_objective, pos):
    from eejax.objectives.jei import exit_losses, exit_probabilities, gate_targets

    logits, labels = batch
    gates = np.random.default_rng(3).normal(size=(2, 7)).astype(np.float32)
    costs = np.array([0.3, 0.6, 1.0], np.float32)
    targets, p_exit, gate_loss, classifier, ce = np_jei(logits, labels, gates, costs, lam,
                                                        gate_objective, pos)
    losses = exit_losses(jnp.asarray(logits), labels, gate_objective)
    np.testing.assert_array_equal(gate_targets(losses, costs, lam), targets)
    np.testing.assert_allclose(exit_probabilities(jnp.asarray(gates)), p_exit,
                               rtol=1e-5)
    assert targets.any() and not targets.all(), "the case must mix targets"
    objective = eejax.objectives.get("jei", cost_tradeoff=lam, gate_objective=gate_objective,
                                     positive_weights=pos)
    loss, aux = objective(jnp.asarray(logits), labels, gate_logits=jnp.asarray(gates),
                          exit_costs=jnp.asarray(costs), step=0)
    np.testing.assert_allclose(aux["gate_loss"], gate_loss, rtol=1e-5)
    np.testing.assert_allclose(aux["classifier_loss"], classifier, rtol=1e-5)
    np.testing.assert_allclose(loss, (gate_loss + classifier) / 2, rtol=1e-5)


def test_jei_phases_warmup_released_and_alternating(batch):
    logits, labels = batch
    gates = np.zeros((2, 7), np.float32)
    costs = jnp.asarray([0.3, 0.6, 1.0])
    ce = np.array([[-np.log(np_softmax(logits[k, i])[labels[i]]) for i in range(7)]
                   for k in range(3)]).mean(1)
    context = {"gate_logits": jnp.asarray(gates), "exit_costs": costs}
    warm = eejax.objectives.get("jei", warmup_steps=10, classifier_loss="released")
    np.testing.assert_allclose(warm(jnp.asarray(logits), labels, step=3, **context)[0],
                               ce[2] + 3 * ce[0] + 2 * ce[1], rtol=1e-5)
    loss, aux = warm(jnp.asarray(logits), labels, step=10, **context)
    np.testing.assert_allclose(aux["classifier_loss"], ce[:2].mean(), rtol=1e-5)
    alternate = eejax.objectives.get("jei", schedule="alternate", alternate_every=5)
    first, aux = alternate(jnp.asarray(logits), labels, step=4, **context)
    second, aux2 = alternate(jnp.asarray(logits), labels, step=5, **context)
    np.testing.assert_allclose(first, aux["classifier_loss"], rtol=1e-6)
    np.testing.assert_allclose(second, aux2["gate_loss"], rtol=1e-6)


def test_jei_gradient_reaches_gates_only_through_the_gate_loss(tiny_net):
    """With the gates' inputs taken without gradient and the classifier weights fixed, the
    gate parameters' gradient equals that of the gate loss alone (halved in the joint mix)."""
    from eejax.gates import with_gates

    net, _ = tiny_net
    gated = with_gates(net)
    x = np.random.default_rng(4).normal(size=(6, 12, 12, 1)).astype(np.float32)
    labels = np.arange(6) % 5
    variables = gated.init(jax.random.key(0), x[:1])
    objective = eejax.objectives.get("jei", cost_tradeoff=0.2)
    costs = jnp.asarray([0.3, 0.6, 1.0])

    def total(params, part):
        logits, gate_logits, _ = gated.apply_train({**variables, "params": params}, x,
                                                   with_gates=True)
        loss, aux = objective(logits, labels, gate_logits=gate_logits, exit_costs=costs, step=0)
        return loss if part == "total" else aux["gate_loss"]

    full = jax.grad(total)(variables["params"], "total")
    gate_only = jax.grad(total)(variables["params"], "gate")
    for k in range(2):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b / 2, rtol=1e-5, atol=1e-7),
                     full[f"gate_{k}"], gate_only[f"gate_{k}"])
    assert all(np.all(g == 0) for g in jax.tree.leaves(gate_only["stage_0"]))


@pytest.mark.parametrize("options, message", [
    ({"cost_tradeoff": -1.0}, "cost_tradeoff must be"),
    ({"gate_objective": "hinge"}, "gate_objective must be one of"),
    ({"schedule": "cyclic"}, "schedule must be one of"),
    ({"positive_weights": [1.0, -2.0]}, "positive_weights must be"),
])
def test_bad_jei_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        eejax.objectives.get("jei", **options)
