"""EarlyExitNet: variables layout, functional batch norm, registry errors."""

import flax.linen as nn
import jax
import numpy as np
import pytest
from conftest import images

import eejax


def test_variables_hold_every_stage_and_head(tiny_net):
    net, variables = tiny_net
    names = {f"{part}_{k}" for part in ("stage", "head") for k in range(3)}
    assert set(variables["params"]) == names
    assert set(variables["batch_stats"]) == names
    assert net.apply_all(variables, images(3)).shape == (3, 3, 5)
    assert net.feature_shapes == [(12, 12, 4), (6, 6, 8), (3, 3, 16)]


def test_train_mode_returns_new_batch_stats_and_leaves_the_input_alone(tiny_net):
    net, variables = tiny_net
    before = jax.tree.map(np.array, variables["batch_stats"])
    logits, new_state = net.apply_train(variables, images(8) * 3 + 1)
    assert logits.shape == (3, 8, 5)
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), before, new_state["batch_stats"])
    assert all(jax.tree.leaves(changed))  # every running mean and variance moved
    jax.tree.map(np.testing.assert_array_equal, before, variables["batch_stats"])  # pure


def test_eval_mode_uses_running_statistics(tiny_net):
    net, variables = tiny_net
    x = images(4)
    one_by_one = np.concatenate([net.apply_all(variables, x[i : i + 1]) for i in range(4)], 1)
    np.testing.assert_allclose(net.apply_all(variables, x), one_by_one, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"name": "resnet"}, "unknown model 'resnet'; expected one of .*'resnet_ee'"),
        ({"name": "resnet_ee", "exits": 3}, "unknown option\\(s\\) \\['exits'\\]"),
        ({"name": "resnet_ee", "num_exits": 0}, "num_exits must be >= 1"),
        ({"name": "resnet_ee", "input_shape": (28, 28)}, "input_shape must be"),
    ],
)
def test_bad_model_requests_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        eejax.models.get(**options)


class _Scale(nn.Module):
    """h -> w * h with one scalar parameter (a stage or, with C=1 logits, a head)."""

    @nn.compact
    def __call__(self, h, train):
        return self.param("w", nn.initializers.constant(1.0), ()) * h


def test_gradient_rescale_matches_the_hand_derived_gradients():
    """Stages h_k = w_k h_{k-1}, heads z_k = v_k h_k, loss sum_k z_k, K = 3, x = 1.

    With rescaling, the gradient reaching h_k is g_k = (v_k + (K-k-1) w_{k+1} g_{k+1}) / (K-k):
    g_2 = v_2, g_1 = (v_1 + w_2 g_2) / 2, g_0 = (v_0 + 2 w_1 g_1) / 3; then dL/dw_k = h_{k-1} g_k.
    The heads' own gradients dL/dv_k = h_k are unchanged.
    """
    net = eejax.EarlyExitNet((_Scale(),) * 3, (_Scale(),) * 3, (1,), 1)
    w, v = [2.0, 3.0, 0.5], [1.5, -1.0, 4.0]
    params = {**{f"stage_{k}": {"w": w[k]} for k in range(3)},
              **{f"head_{k}": {"w": v[k]} for k in range(3)}}
    x = np.ones((1, 1), np.float32)

    def loss(params, rescale):
        logits, _ = net.apply_train({"params": params}, x, gradient_rescale=rescale)
        return logits.sum()

    g2 = v[2]
    g1 = (v[1] + w[2] * g2) / 2
    g0 = (v[0] + 2 * w[1] * g1) / 3
    h = np.cumprod(w)
    grads = jax.grad(loss)(params, True)
    np.testing.assert_allclose([grads[f"stage_{k}"]["w"] for k in range(3)],
                               [g0, h[0] * g1, h[1] * g2], rtol=1e-6)
    np.testing.assert_allclose([grads[f"head_{k}"]["w"] for k in range(3)], h, rtol=1e-6)
    plain = jax.grad(loss)(params, False)  # without rescaling: the ordinary chain rule
    assert plain["stage_0"]["w"] == pytest.approx(v[0] + w[1] * (v[1] + w[2] * v[2]))
    assert float(jax.grad(loss)(params, False)["stage_0"]["w"]) != pytest.approx(g0)
