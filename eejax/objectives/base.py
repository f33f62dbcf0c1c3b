"""`Objective`: a training loss over every exit, plus what training and evaluation must know
about how the exits were trained (their readout, gradient rescaling)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax

from eejax.readout import Readout, boosted, independent

LossFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Objective:
    """Call it as `loss, aux = objective(logits [K, B, C], labels [B])` on raw head outputs.

    Attributes:
      loss: the loss function itself.
      reweight: BoostNet's ensemble weights when the exits form an additive model (predictions
        are G_k = f_k + r * G_{k-1}); None when each exit predicts on its own.
      gradient_rescale: train with `EarlyExitNet.apply_train(..., gradient_rescale=True)`.
      uses_gates: the loss also takes `gate_logits` [K-1, B], `exit_costs` [K] (normalised
        cumulative FLOPs, 1 at the last exit) and `step` (JEI-DNN); the net needs gates.
    """

    loss: LossFn
    reweight: float | Sequence[float] | None = None
    gradient_rescale: bool = False
    uses_gates: bool = False

    def __call__(self, logits: jax.Array, labels: jax.Array,
                 **context: Any) -> tuple[jax.Array, dict[str, Any]]:
        return self.loss(logits, labels, **context)

    def readout(self, num_exits: int) -> Readout:
        """How the trained exits make predictions, for `eejax.infer(..., readout=...)`."""
        if self.reweight is None:
            return independent()
        readout = boosted(self.reweight, num_exits)
        readout.check(num_exits)
        return readout
