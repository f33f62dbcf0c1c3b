"""Optimizers from config: the gate learning-rate scale touches exit gates only."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from eejax.optim import make_optimizer


def test_gate_learning_rate_scale_multiplies_gate_updates_only():
    params = {"stage_0": {"w": jnp.ones(3)}, "head_0": {"w": jnp.ones(2)},
              "gate_0": {"Dense_0": {"kernel": jnp.ones((4, 1)), "bias": jnp.zeros(1)}}}
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)

    def updates(scale):
        config = ml_collections.ConfigDict({
            "name": "sgd", "learning_rate": 0.1, "momentum": 0.0, "weight_decay": 0.0,
            "schedule": "constant", "gate_learning_rate_scale": scale})
        optimizer = make_optimizer(config, total_steps=10, steps_per_epoch=5)
        return optimizer.update(grads, optimizer.init(params), params)[0]

    plain, scaled = updates(1.0), updates(10.0)
    for name in ("stage_0", "head_0"):
        jax.tree.map(np.testing.assert_array_equal, scaled[name], plain[name])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, 10 * b, rtol=1e-6),
                 scaled["gate_0"], plain["gate_0"])
    np.testing.assert_allclose(plain["stage_0"]["w"], -0.05)
