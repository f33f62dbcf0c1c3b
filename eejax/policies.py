"""Exit policies: per sample, does it leave at exit k?

A `Policy` is a pytree: its thresholds are array leaves, so a jitted engine takes new thresholds
without recompiling, and its rule is static. Policies may carry per-sample state (patience
counters, an oracle's target exit); engines that drop exited samples (`compact`, `stream`) carry
that state along with the surviving samples.

    fire, state = policy.decide(logits_k, k, state)     logits_k: [B, C]  ->  fire: [B] bool

The "gates" policy (JEI-DNN) reads the net's learned gate instead of the logits: engines pass
`gate=` (gate k's exit logits [B]) when `policy.needs_gates`.

The last exit takes every sample still running; engines apply that rule, not the policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from eejax.registry import Registry

PolicyState = Any

# Rules that compare one confidence score per exit with a threshold: (score, fires when).
_THRESHOLD_RULES = ("max_prob", "entropy", "margin")
_PER_EXIT_THRESHOLDS = (*_THRESHOLD_RULES, "gates")


@struct.dataclass
class Policy:
    """An exit rule and its parameters. Build one with the functions of this module.

    Attributes:
      rule: "max_prob" | "entropy" | "margin" | "patience" | "oracle" | "gates".
      thresholds: [K-1] one threshold per exit except the last (threshold rules; for "gates",
        the gate probability at or above which a sample leaves).
      patience: exits in a row with an unchanged prediction before leaving ("patience").
      exit_index: [N] target exit of every sample of the dataset, by index ("oracle").
    """

    rule: str = struct.field(pytree_node=False)
    thresholds: Any = None
    patience: int = struct.field(pytree_node=False, default=0)
    exit_index: Any = None

    @property
    def needs_gates(self) -> bool:
        """Whether `decide` needs the net's gate logits (JEI-DNN)."""
        return self.rule == "gates"

    def check(self, num_exits: int, num_classes: int) -> None:
        """Raises ValueError if this policy does not fit a net with these exits and classes."""
        if self.rule in _PER_EXIT_THRESHOLDS:
            if len(self.thresholds) != num_exits - 1:
                raise ValueError(
                    f"thresholds must hold one value per exit except the last: "
                    f"{num_exits - 1} for a {num_exits}-exit net, got {len(self.thresholds)}"
                )
        elif self.rule == "oracle":
            high = int(np.max(self.exit_index)) if np.size(self.exit_index) else 0
            if high >= num_exits:
                raise ValueError(
                    f"exit_index must lie in [0, {num_exits}) for a {num_exits}-exit net, "
                    f"got a maximum of {high}"
                )

    def init_state(self, index: jax.Array) -> PolicyState:
        """Per-sample state for the samples with dataset indices `index` [B]."""
        if self.rule == "patience":
            return {"prediction": jnp.full(index.shape, -1, jnp.int32),
                    "count": jnp.zeros(index.shape, jnp.int32)}
        if self.rule == "oracle":
            return {"target": jnp.asarray(self.exit_index, jnp.int32)[index]}
        return {}

    def decide(self, logits: jax.Array, k: int, state: PolicyState,
               gate: jax.Array | None = None) -> tuple[jax.Array, PolicyState]:
        """Whether each sample leaves at exit k (a Python int). logits: [B, C] -> fire: [B].

        gate: gate k's exit logits [B] ("gates" only).
        """
        if self.rule == "gates":
            return jax.nn.sigmoid(gate.astype(jnp.float32)) >= self.thresholds[k], state
        if self.rule == "max_prob":
            return _max_prob(logits) >= self.thresholds[k], state
        if self.rule == "entropy":
            return _entropy(logits) <= self.thresholds[k], state
        if self.rule == "margin":
            return _margin(logits) >= self.thresholds[k], state
        if self.rule == "patience":
            prediction = jnp.argmax(logits, axis=-1).astype(jnp.int32)
            same = prediction == state["prediction"]
            count = jnp.where(same, state["count"] + 1, 0)
            return count >= self.patience, {"prediction": prediction, "count": count}
        if self.rule == "oracle":
            return state["target"] <= k, state
        raise ValueError(f"unknown policy rule {self.rule!r}")


def _max_prob(logits: jax.Array) -> jax.Array:
    return jnp.max(jax.nn.softmax(logits.astype(jnp.float32), axis=-1), axis=-1)


def _entropy(logits: jax.Array) -> jax.Array:
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


def _margin(logits: jax.Array) -> jax.Array:
    top2 = jax.lax.top_k(jax.nn.softmax(logits.astype(jnp.float32), axis=-1), 2)[0]
    return top2[..., 0] - top2[..., 1]


def confidence(rule: str, logits: jax.Array) -> jax.Array:
    """The score a threshold rule compares, oriented so that higher means "exit sooner".

    logits: [..., C] -> [...]; for "entropy" it is minus the entropy.
    """
    if rule == "max_prob":
        return _max_prob(logits)
    if rule == "entropy":
        return -_entropy(logits)
    if rule == "margin":
        return _margin(logits)
    raise ValueError(f"rule must be one of {list(_THRESHOLD_RULES)}, got {rule!r}")


def _thresholds(values: Sequence[float], low: float, high: float | None, what: str,
                never: bool = False) -> np.ndarray:
    """Validated float32 thresholds; with `never`, +inf is allowed and means nobody leaves."""
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 1:
        raise ValueError(f"thresholds must be a 1-D sequence (one per exit but the last), "
                         f"got shape {array.shape}")
    allowed = np.isfinite(array) | (never & (array == np.inf))
    if not np.all(allowed):
        also = " or +inf (nobody leaves there)" if never else ""
        raise ValueError(f"thresholds must be finite{also}, got {array.tolist()}")
    finite = array[np.isfinite(array)]
    if np.any(finite < low) or (high is not None and np.any(finite > high)):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"thresholds for {what} must lie in {bound}, got {array.tolist()}")
    return array


def max_prob(thresholds: Sequence[float]) -> Policy:
    """Exit when the largest softmax probability >= threshold (thresholds in [0, 1], or +inf
    for an exit nobody should take)."""
    return Policy("max_prob", _thresholds(thresholds, 0.0, 1.0, "max_prob", never=True))


def entropy(thresholds: Sequence[float]) -> Policy:
    """Exit when the softmax entropy (nats) <= threshold (BranchyNet); thresholds >= 0."""
    return Policy("entropy", _thresholds(thresholds, 0.0, None, "entropy"))


def margin(thresholds: Sequence[float]) -> Policy:
    """Exit when top-1 minus top-2 softmax probability >= threshold (thresholds in [0, 1], or
    +inf for an exit nobody should take)."""
    return Policy("margin", _thresholds(thresholds, 0.0, 1.0, "margin", never=True))


def patience(count: int) -> Policy:
    """PABEE: exit once the prediction has stayed the same for `count` consecutive exits."""
    if not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"patience count must be an integer >= 1, got {count!r}")
    return Policy("patience", patience=int(count))


def gates(thresholds: float | Sequence[float] = 0.5, num_exits: int | None = None) -> Policy:
    """JEI-DNN: exit when the learned gate's probability >= threshold (the net needs gates,
    see `eejax.gates.with_gates`). One threshold for every gate (with num_exits) or K-1."""
    values = np.asarray(thresholds, np.float32)
    if values.ndim == 0:
        if num_exits is None:
            raise ValueError("gates(<one threshold>) needs num_exits to build K-1 thresholds")
        values = np.full(num_exits - 1, values, np.float32)
    return Policy("gates", _thresholds(values, 0.0, 1.0, "gates", never=True))


def oracle(exit_index: Sequence[int]) -> Policy:
    """Sample i leaves at exit `exit_index[i]` (i = its index in the dataset or batch).

    For benchmarks with a controlled exit distribution, and for tests.
    """
    array = np.asarray(exit_index)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer) or np.any(array < 0):
        raise ValueError(f"exit_index must be a 1-D array of non-negative integers, "
                         f"got dtype {array.dtype} and shape {array.shape}")
    return Policy("oracle", exit_index=array.astype(np.int32))


REGISTRY = Registry("policy")
for _builder in (max_prob, entropy, margin, patience, gates):
    REGISTRY.register(_builder.__name__)(_builder)


def from_config(name: str, **options: Any) -> Policy:
    """A policy by name, e.g. from_config("max_prob", thresholds=[0.9, 0.9])."""
    return REGISTRY.get(name, **options)
