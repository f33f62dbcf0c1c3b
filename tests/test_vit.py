"""vit_ee: exits after the chosen blocks, token shapes, engines, bad options."""

import jax
import numpy as np
import pytest
from conftest import images

import eejax
from eejax import policies


@pytest.fixture(scope="module")
def tiny_vit():
    net = eejax.models.get("vit_ee", num_classes=5, input_shape=(12, 12, 1), patch_size=3,
                           dim=8, num_heads=2, exit_blocks=(1, 3))
    return net, net.init(jax.random.key(0), images(1))


def test_stages_hold_the_blocks_between_exits(tiny_vit):
    net, variables = tiny_vit
    assert net.feature_shapes == [(16, 8), (16, 8)]  # (12 / 3)^2 tokens of width 8
    blocks = [sum(name.startswith("EncoderBlock") for name in variables["params"][f"stage_{k}"])
              for k in range(2)]
    assert blocks == [1, 2]
    assert net.apply_all(variables, images(3)).shape == (2, 3, 5)


@pytest.mark.parametrize("engine", ["masked", "compact", "stream"])
def test_engines_agree_with_dense_on_vit(tiny_vit, engine):
    net, variables = tiny_vit
    x = images(11, seed=4)
    policy = policies.oracle(np.random.default_rng(4).integers(0, 2, 11))
    dense = eejax.infer(net, variables, x, policy, engine="dense")
    result = eejax.infer(net, variables, x, policy, engine=engine)
    np.testing.assert_array_equal(result.exit, dense.exit)
    np.testing.assert_allclose(result.logits, dense.logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("options, message", [
    ({"patch_size": 5}, "multiples of patch_size=5"),
    ({"dim": 10, "num_heads": 4}, "multiple of num_heads"),
    ({"exit_blocks": (2, 2)}, "strictly increasing"),
])
def test_bad_vit_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        eejax.models.get("vit_ee", **options)
