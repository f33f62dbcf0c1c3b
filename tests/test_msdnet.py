"""MSDNet against the reference PyTorch implementation's own counts.

tests/data/msdnet_reference_counts.json holds what BoostNet's `models/msdnet_ge.py` and its
`op_counter.py` report for three configurations (tests/data/msdnet_reference_counts.py made it).
Here parameters come from our variables and multiply-adds from a walk over the jaxpr of our
stages and heads: both are counted independently of XLA's cost analysis.
"""

import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO

import eejax
from eejax.models.msdnet import msdnet_plan

REFERENCE = json.loads((REPO / "tests" / "data" / "msdnet_reference_counts.json").read_text())

CONFIGS = {
    "cifar100_boostnet": dict(num_classes=100, input_shape=(32, 32, 3)),  # BoostNet's recipe
    "imagenet_5x4": dict(num_classes=1000, input_shape=(224, 224, 3), num_blocks=5, step=4,
                         channels=32, growth_rate=16, gr_factor=(1, 2, 4, 4),
                         bn_factor=(1, 2, 4, 4)),
    "cifar10_lin_grow_prune_min": dict(num_classes=10, input_shape=(32, 32, 3), num_blocks=5,
                                       step_mode="lin_grow", step=1, base=1, prune="min",
                                       channels=8, growth_rate=4),
}


def conv_dense_macs(jaxpr) -> int:
    """Multiply-adds of every convolution and matrix product in a jaxpr (recursively)."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            rhs = eqn.invars[1].aval.shape
            spec = eqn.params["dimension_numbers"].rhs_spec  # (out, in, *spatial) positions
            taps = math.prod(rhs[d] for d in spec[2:]) * rhs[spec[1]]
            total += math.prod(eqn.outvars[0].aval.shape) * taps
        elif eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            depth = math.prod(eqn.invars[0].aval.shape[d] for d in contract)
            total += math.prod(eqn.outvars[0].aval.shape) * depth
        for param in eqn.params.values():  # calls into nested jaxprs (pjit, custom_vjp, ...)
            inner = getattr(param, "jaxpr", None)
            if inner is not None:
                total += conv_dense_macs(getattr(inner, "jaxpr", inner))
    return total


@functools.cache
def built(name):
    net = eejax.models.get("msdnet", **CONFIGS[name])
    x = jax.ShapeDtypeStruct((1, *net.input_shape), jnp.float32)
    return net, jax.eval_shape(net.init, jax.random.key(0), x)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_parameters_per_exit_equal_the_reference(name):
    net, variables = built(name)
    params = variables["params"]
    per_exit = np.cumsum([sum(leaf.size for part in (f"stage_{k}", f"head_{k}")
                              for leaf in jax.tree.leaves(params[part]))
                          for k in range(net.num_exits)])
    assert per_exit.tolist() == REFERENCE[name]["exit_params"]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_multiply_adds_per_exit_equal_the_reference(name):
    net, variables = built(name)
    macs, h = [], jax.ShapeDtypeStruct((1, *net.input_shape), jnp.float32)
    for k in range(net.num_exits):
        stage = jax.make_jaxpr(functools.partial(net.apply_stage, k))(variables, h)
        h = net.feature_specs[k]
        head = jax.make_jaxpr(functools.partial(net.apply_head, k))(variables, h)
        macs.append(conv_dense_macs(stage.jaxpr) + conv_dense_macs(head.jaxpr))
    assert np.cumsum(macs).tolist() == REFERENCE[name]["exit_conv_dense_macs"]


def test_plan_of_the_boostnet_recipe():
    """10 blocks: 4 layers, then 2 each; with prune "max" (interval ceil(22 / 3) = 8), a scale
    is dropped at layers 9 and 17 of 22, each followed by a transition halving the channels."""
    plan = msdnet_plan(10, "even", 2, 4, 16, 6, 3, "max", 0.5)
    assert [sum(layer[0] == "dense" for layer in block) for block in plan] == [4] + [2] * 9
    transitions = [layer[1] for block in plan for layer in block if layer[0] == "transition"]
    first = math.floor(0.5 * (16 + 9 * 6))
    assert transitions == [first, math.floor(0.5 * (first + 8 * 6))]


def test_stage_outputs_are_lists_of_scales(tiny_msdnet):
    """channels 4, growth 2, factors (1, 2, 4): the stem gives 4/8/16 channels and one layer
    adds 2/4/8. Block 1 drops the finest scale (12 + 4 and 24 + 8 channels), then a transition
    keeps floor(0.5 * (4 + 2 * 2)) = 4 units: 8 and 16. Block 2 keeps the coarsest scale only:
    16 + 8 = 24, transition to floor(0.5 * (4 + 2)) = 3 units: 12."""
    net, variables = tiny_msdnet
    assert net.feature_shapes == [[(12, 12, 6), (6, 6, 12), (3, 3, 24)],
                                  [(6, 6, 8), (3, 3, 16)], [(3, 3, 12)]]
    assert net.apply_all(variables, np.zeros((2, 12, 12, 1), np.float32)).shape == (3, 2, 5)


@pytest.mark.parametrize("options, message", [
    ({"step_mode": "odd"}, "step_mode must be"),
    ({"prune": "all"}, "prune must be"),
    ({"gr_factor": (1, 2)}, "one entry per scale"),
    ({"layout": "mnist"}, "layout must be"),
    ({"num_blocks": 0}, "must be >= 1"),
])
def test_bad_msdnet_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        eejax.models.get("msdnet", **options)
