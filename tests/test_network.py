"""EarlyExitNet: variables layout, functional batch norm, registry errors."""

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
        ({"name": "resnet"}, "unknown model 'resnet'; expected one of \\['resnet_ee'\\]"),
        ({"name": "resnet_ee", "exits": 3}, "unknown option\\(s\\) \\['exits'\\]"),
        ({"name": "resnet_ee", "num_exits": 0}, "num_exits must be >= 1"),
        ({"name": "resnet_ee", "input_shape": (28, 28)}, "input_shape must be"),
    ],
)
def test_bad_model_requests_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        eejax.models.get(**options)
