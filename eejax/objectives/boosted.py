"""BoostNet's boosted objective (Yu et al., "Boosted Dynamic Neural Networks", AAAI 2023).

The exits form an additive model: with raw head outputs f_k, exit k predicts
G_k = f_k + r * G_{k-1} (G_0 = f_0). Each head is trained as a weak learner on top of the fixed
ensemble before it:

    loss = sum_k CE(f_k + r * stop_gradient(G_{k-1}), y)

as in the official code (`train_cifar100.py`), which also trains MSDNet with gradient rescaling
("msdnet_ge"); here that is the `gradient_rescale` option.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from eejax.objectives.base import Objective
from eejax.objectives.joint import exit_accuracy, per_exit_cross_entropy
from eejax.readout import boosted as boosted_readout


def boosted(reweight: float | Sequence[float] = 0.5, gradient_rescale: bool = True) -> Objective:
    """The boosted loss.

    Args:
      reweight: r, one number or K-1 numbers (r_k weighs G_k in G_{k+1}).
      gradient_rescale: scale the trunk's gradients by 1/(K-k) at head k and (K-k-1)/(K-k)
        toward later stages (see `EarlyExitNet.apply_train`).
    """
    boosted_readout(reweight, num_exits=2)  # validates the numbers now, not at the first step

    def loss(logits: jax.Array, labels: jax.Array):
        raw = logits.astype(jnp.float32)
        readout = boosted_readout(reweight, raw.shape[0])
        readout.check(raw.shape[0])
        predictions = readout.apply_all(raw)  # G_k, [K, B, C]
        previous = jax.lax.stop_gradient(predictions[:-1]) * readout.reweight[:, None, None]
        targets = jnp.concatenate([raw[:1], raw[1:] + previous])  # f_k + r * sg(G_{k-1})
        ce = per_exit_cross_entropy(targets, labels)
        return jnp.sum(ce), {"exit_loss": ce, "exit_accuracy": exit_accuracy(predictions, labels)}

    return Objective(loss, reweight=reweight, gradient_rescale=bool(gradient_rescale))
