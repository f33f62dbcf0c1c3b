"""Readouts: the boosted ensemble against a loop-based NumPy reference."""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import np_boosted

from eejax import readout


def test_independent_readout_is_the_identity():
    raw = np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(readout.independent().apply_all(jnp.asarray(raw)), raw)


@pytest.mark.parametrize("reweight", [0.5, [1.0, 0.25, 0.0]])
def test_boosted_matches_numpy_in_one_pass_and_step_by_step(reweight):
    raw = np.random.default_rng(1).normal(size=(4, 6, 3)).astype(np.float32)
    boosted = readout.boosted(reweight, num_exits=4)
    expected = np_boosted(raw, reweight)
    np.testing.assert_allclose(boosted.apply_all(jnp.asarray(raw)), expected, rtol=1e-6)
    carry = boosted.init(6, 3)
    for k in range(4):
        prediction, carry = boosted.step(jnp.asarray(raw[k]), k, carry)
        np.testing.assert_allclose(prediction, expected[k], rtol=1e-6)


@pytest.mark.parametrize("reweight, num_exits, message", [
    (0.5, None, "needs num_exits"),
    ([[0.5]], 2, "1-D sequence"),
    (float("nan"), 3, "finite"),
])
def test_bad_reweight_is_named(reweight, num_exits, message):
    with pytest.raises(ValueError, match=message):
        readout.boosted(reweight, num_exits)


def test_reweight_length_is_checked_against_the_net():
    with pytest.raises(ValueError, match="one reweight per exit but the last: 3"):
        readout.boosted([0.5, 0.5], num_exits=None).check(4)
