"""`EarlyExitNet`: an early-exit network as data.

A network is K stages and K exit heads, each a Flax Linen module whose `apply` is a pure function:

    h_k      = stage_k(variables_k, h_{k-1})        h_{-1} = x            x: [B, *input_shape]
    logits_k = head_k(variables_k, h_k)             logits_k: [B, C]

Variables are one pytree, `{"params": {"stage_0": ..., "head_0": ..., ...}, "batch_stats": {...}}`,
so optax, orbax and `jax.grad` see the whole network while each stage reads only its own part.
Modules take `(h, train: bool)`; batch-norm statistics are the `batch_stats` collection, read in
eval mode and returned updated in train mode, never mutated in place.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from eejax import _compat
from eejax.validation import check_images

Variables = dict[str, Any]


def stage_name(k: int) -> str:
    return f"stage_{k}"


def head_name(k: int) -> str:
    return f"head_{k}"


@dataclasses.dataclass(frozen=True)
class ExitCosts:
    """Per-sample FLOPs of each stage and each head, from XLA's cost analysis.

    Attributes:
      stage: [K] FLOPs of stage k for one sample.
      head: [K] FLOPs of exit head k for one sample.
    """

    stage: np.ndarray
    head: np.ndarray

    @property
    def to_exit(self) -> np.ndarray:
        """[K] FLOPs a sample spends to leave at exit k: stages 0..k and heads 0..k."""
        return np.cumsum(self.stage) + np.cumsum(self.head)

    @property
    def total(self) -> float:
        """FLOPs of the whole network: every stage and every head."""
        return float(self.to_exit[-1])


@dataclasses.dataclass(frozen=True, eq=False)
class EarlyExitNet:
    """K stages and K exit heads (Linen modules called as `module(h, train)`).

    Attributes:
      stages: the backbone cut into K pieces.
      heads: one classifier per stage; head k reads stage k's output.
      input_shape: one sample's shape, e.g. (32, 32, 3).
      num_classes: C, the width of every head's logits.
      name: a label for reports.
    """

    stages: tuple[nn.Module, ...]
    heads: tuple[nn.Module, ...]
    input_shape: tuple[int, ...]
    num_classes: int
    name: str = "early_exit_net"

    def __post_init__(self):
        if len(self.stages) < 1 or len(self.stages) != len(self.heads):
            raise ValueError(
                f"an EarlyExitNet needs as many heads as stages (at least one), got "
                f"{len(self.stages)} stages and {len(self.heads)} heads"
            )

    @property
    def num_exits(self) -> int:
        return len(self.stages)

    def check_input(self, x, name: str = "x") -> None:
        check_images(x, self.input_shape, name=name)

    # ----------------------------------------------------------------------------- variables
    def init(self, rng: jax.Array, x: jax.Array) -> Variables:
        """Initialises every stage and head; returns the variables pytree.

        Args:
          rng: a PRNG key.
          x: [B, *input_shape] example input (only its shape and dtype matter).
        """
        self.check_input(x)
        variables: Variables = {}
        h = x
        for k, (stage, head) in enumerate(zip(self.stages, self.heads, strict=True)):
            rng, stage_rng, head_rng = jax.random.split(rng, 3)
            stage_vars = stage.init(stage_rng, h, train=False)
            h = stage.apply(stage_vars, h, train=False)
            head_vars = head.init(head_rng, h, train=False)
            for name, part in ((stage_name(k), stage_vars), (head_name(k), head_vars)):
                for collection, value in part.items():
                    variables.setdefault(collection, {})[name] = value
        return variables

    # ----------------------------------------------------------------------------- eval mode
    def apply_stage(self, k: int, variables: Variables, h: jax.Array) -> jax.Array:
        """Stage k in eval mode: [B, ...] -> [B, ...]."""
        return self.stages[k].apply(_part(variables, stage_name(k)), h, train=False)

    def apply_head(self, k: int, variables: Variables, h: jax.Array) -> jax.Array:
        """Exit head k in eval mode: stage k's output [B, ...] -> logits [B, C]."""
        return self.heads[k].apply(_part(variables, head_name(k)), h, train=False)

    def apply_all(self, variables: Variables, x: jax.Array) -> jax.Array:
        """Every exit on every sample, eval mode: x [B, *input_shape] -> logits [K, B, C]."""
        h = x
        logits = []
        for k in range(self.num_exits):
            h = self.apply_stage(k, variables, h)
            logits.append(self.apply_head(k, variables, h))
        return jnp.stack(logits)

    # ----------------------------------------------------------------------------- train mode
    def apply_train(
        self, variables: Variables, x: jax.Array, rng: jax.Array | None = None
    ) -> tuple[jax.Array, Variables]:
        """Every exit in train mode (batch statistics from the batch, dropout on).

        Returns:
          logits: [K, B, C].
          new_state: the updated non-parameter collections (e.g. {"batch_stats": ...}).
        """
        h = x
        logits = []
        new_state: Variables = {}
        for k in range(self.num_exits):
            for name, module, is_stage in ((stage_name(k), self.stages[k], True),
                                           (head_name(k), self.heads[k], False)):
                rngs = None
                if rng is not None:
                    rngs = {"dropout": jax.random.fold_in(rng, 2 * k + int(not is_stage))}
                out, updates = module.apply(
                    _part(variables, name), h, train=True, mutable=["batch_stats"], rngs=rngs
                )
                for collection, value in updates.items():
                    new_state.setdefault(collection, {})[name] = value
                if is_stage:
                    h = out
                else:
                    logits.append(out)
        return jnp.stack(logits), new_state

    # ----------------------------------------------------------------------------- costs
    @functools.cached_property
    def costs(self) -> ExitCosts:
        """Per-sample FLOPs of each stage and head, from XLA's cost analysis of the compiled
        eval-mode functions at batch size 1 (computed once per net, then cached)."""
        variables = self._abstract_variables
        outputs = self.feature_shapes
        inputs = [self.input_shape, *outputs[:-1]]
        stage_flops, head_flops = [], []
        for k in range(self.num_exits):
            stage_fn = jax.jit(functools.partial(self.apply_stage, k))
            head_fn = jax.jit(functools.partial(self.apply_head, k))
            stage_in = jax.ShapeDtypeStruct((1, *inputs[k]), jnp.float32)
            head_in = jax.ShapeDtypeStruct((1, *outputs[k]), jnp.float32)
            stage_flops.append(
                _compat.compiled_flops(stage_fn.lower(variables, stage_in).compile()))
            head_flops.append(_compat.compiled_flops(head_fn.lower(variables, head_in).compile()))
        return ExitCosts(stage=np.asarray(stage_flops), head=np.asarray(head_flops))

    @functools.cached_property
    def feature_shapes(self) -> list[tuple[int, ...]]:
        """One sample's shape after each stage, e.g. [(28, 28, 16), (14, 14, 32), ...]
        (traced once per net, then cached)."""
        h = jax.ShapeDtypeStruct((1, *self.input_shape), jnp.float32)
        shapes = []
        for k in range(self.num_exits):
            h = jax.eval_shape(functools.partial(self.apply_stage, k), self._abstract_variables, h)
            shapes.append(tuple(h.shape[1:]))
        return shapes

    @functools.cached_property
    def _abstract_variables(self) -> Variables:
        """The shapes and dtypes of the variables (no arrays allocated)."""
        x = jax.ShapeDtypeStruct((1, *self.input_shape), jnp.float32)
        return jax.eval_shape(self.init, jax.random.key(0), x)


def _part(variables: Variables, name: str) -> Variables:
    """The collections of one stage or head: {"params": variables["params"][name], ...}."""
    return {c: tree[name] for c, tree in variables.items() if name in tree}
