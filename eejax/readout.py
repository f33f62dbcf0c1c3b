"""Readouts: how an exit's prediction is formed from the raw outputs of the heads so far.

    independent()      prediction_k = f_k                                (most early-exit nets)
    boosted(r)         prediction_k = G_k = f_k + r_{k-1} * G_{k-1},  G_0 = f_0     (BoostNet)

A `Readout` is a pytree (its weights are leaves, so new weights never recompile) with a
per-sample carry that engines keep with each surviving sample, like a policy's state:

    carry = readout.init(batch, num_classes)
    prediction_k, carry = readout.step(f_k, k, carry)          f_k: [B, C]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class Readout:
    """Attributes:
      reweight: None for independent exits; else [K-1] weights r_k of G_k in G_{k+1}.
    """

    reweight: Any = None

    @property
    def is_boosted(self) -> bool:
        return self.reweight is not None

    def check(self, num_exits: int) -> None:
        """Raises ValueError if this readout does not fit a net with `num_exits` exits."""
        if self.is_boosted and np.shape(self.reweight) != (num_exits - 1,):
            raise ValueError(f"a boosted readout needs one reweight per exit but the last: "
                             f"{num_exits - 1} for a {num_exits}-exit net, got "
                             f"{np.shape(self.reweight)[0] if np.ndim(self.reweight) else 1}")

    def init(self, batch: int, num_classes: int) -> Any:
        """The carry before exit 0: G_{-1} = 0 [B, C] when boosted, else nothing."""
        if self.is_boosted:
            return jnp.zeros((batch, num_classes), jnp.float32)
        return ()

    def step(self, raw: jax.Array, k: int, carry: Any) -> tuple[jax.Array, Any]:
        """Exit k's prediction from its raw output [B, C] and the carry (k a Python int)."""
        if not self.is_boosted:
            return raw, carry
        prediction = raw.astype(jnp.float32)
        if k > 0:
            prediction = prediction + self.reweight[k - 1] * carry
        return prediction, prediction

    def apply_all(self, raw: jax.Array) -> jax.Array:
        """Every exit's prediction from every raw output: [K, B, C] -> [K, B, C]."""
        if not self.is_boosted:
            return raw
        carry = self.init(raw.shape[1], raw.shape[2])
        predictions = []
        for k in range(raw.shape[0]):
            prediction, carry = self.step(raw[k], k, carry)
            predictions.append(prediction)
        return jnp.stack(predictions)


def independent() -> Readout:
    """Each exit predicts with its own head's output."""
    return Readout()


def boosted(reweight: float | Sequence[float], num_exits: int | None = None) -> Readout:
    """BoostNet's additive ensemble G_k = f_k + r * G_{k-1}.

    Args:
      reweight: r, one number for every link, or K-1 numbers (r_k multiplies G_k in G_{k+1}).
      num_exits: K; needed when `reweight` is one number.
    """
    values = np.asarray(reweight, dtype=np.float32)
    if not np.all(np.isfinite(values)) or values.ndim > 1:
        raise ValueError(f"reweight must be a finite number or a 1-D sequence, got {reweight!r}")
    if values.ndim == 0:
        if num_exits is None:
            raise ValueError("boosted(reweight=<number>) needs num_exits to build K-1 weights")
        values = np.full(num_exits - 1, values, np.float32)
    return Readout(jnp.asarray(values))
