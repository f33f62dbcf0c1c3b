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


def gate_name(k: int) -> str:
    return f"gate_{k}"


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
      head_leaf: when a stage's output is a pytree of which the heads read one leaf (MSDNet's
        coarsest scale), that leaf's position in `jax.tree.leaves`; None when they read it all.
        Gradient rescaling scales only what the heads read.
      gates: () or K-1 learned exit gates (JEI-DNN, see `eejax.gates`): gate k maps exit k's
        logits [B, C] and stage k's output to an exit logit [B].
    """

    stages: tuple[nn.Module, ...]
    heads: tuple[nn.Module, ...]
    input_shape: tuple[int, ...]
    num_classes: int
    name: str = "early_exit_net"
    head_leaf: int | None = None
    gates: tuple[nn.Module, ...] = ()

    def __post_init__(self):
        if len(self.stages) < 1 or len(self.stages) != len(self.heads):
            raise ValueError(
                f"an EarlyExitNet needs as many heads as stages (at least one), got "
                f"{len(self.stages)} stages and {len(self.heads)} heads"
            )
        if self.gates and len(self.gates) != len(self.stages) - 1:
            raise ValueError(f"an EarlyExitNet needs one gate per exit but the last: "
                             f"{len(self.stages) - 1}, got {len(self.gates)}")

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
            parts = [(stage_name(k), stage_vars), (head_name(k), head_vars)]
            if self.gates and k < len(self.gates):
                # Own key stream: adding gates leaves the stage and head initialisation alone.
                logits = head.apply(head_vars, h, train=False)
                gate_rng = jax.random.fold_in(jax.random.fold_in(head_rng, 0x6A7E), k)
                parts.append((gate_name(k), self.gates[k].init(gate_rng, logits, h)))
            for name, part in parts:
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

    def apply_gate(self, k: int, variables: Variables, logits: jax.Array, h) -> jax.Array:
        """Gate k's exit logit [B] from exit k's logits [B, C] and stage k's output, both taken
        without gradient (the gate loss trains the gates only)."""
        if not self.gates:
            raise ValueError(f"{self.name} has no exit gates; add them with "
                             f"eejax.gates.with_gates(net)")
        logits, h = jax.lax.stop_gradient((logits, h))
        return self.gates[k].apply(_part(variables, gate_name(k)), logits, h)

    def apply_all(self, variables: Variables, x: jax.Array, with_gates: bool = False):
        """Every exit on every sample, eval mode: x [B, *input_shape] -> logits [K, B, C]
        (and, with_gates, the gates' exit logits [K-1, B])."""
        h = x
        logits, gates = [], []
        for k in range(self.num_exits):
            h = self.apply_stage(k, variables, h)
            logits.append(self.apply_head(k, variables, h))
            if with_gates and k < self.num_exits - 1:
                gates.append(self.apply_gate(k, variables, logits[-1], h))
        if with_gates:
            return jnp.stack(logits), _stack_or_empty(gates, x.shape[0])
        return jnp.stack(logits)

    # ----------------------------------------------------------------------------- train mode
    def apply_train(
        self, variables: Variables, x: jax.Array, rng: jax.Array | None = None,
        gradient_rescale: bool = False, with_gates: bool = False,
    ):
        """Every exit in train mode (batch statistics from the batch, dropout on).

        Args:
          variables, x: as for `apply_all`.
          rng: dropout key, or None.
          gradient_rescale: BoostNet's / IMTA's gradient equilibrium: the forward pass is
            unchanged; backward, the gradient entering stage k's output from head k is scaled by
            1/(K-k) and the one from the later stages by (K-k-1)/(K-k) (0-based k), so the trunk
            does not receive K times the gradient of its last exit. Only the leaf the heads read
            is scaled (see `head_leaf`).

        Returns:
          logits: [K, B, C].
          gate_logits: [K-1, B], only with `with_gates` (see `apply_gate`).
          new_state: the updated non-parameter collections (e.g. {"batch_stats": ...}).
        """
        h = x
        logits, gates = [], []
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
                    if gradient_rescale:
                        h, h_next = self._rescale_for_head(h, k)
                else:
                    logits.append(out)
                    if with_gates and k < self.num_exits - 1:
                        gates.append(self.apply_gate(k, variables, out, h))
                    if gradient_rescale:
                        h = h_next
        if with_gates:
            return jnp.stack(logits), _stack_or_empty(gates, x.shape[0]), new_state
        return jnp.stack(logits), new_state

    def _rescale_for_head(self, h, k: int):
        """(h for head k, h for stage k+1): the same values, gradients scaled 1/(K-k) and
        (K-k-1)/(K-k) on the leaf the heads read."""
        remaining = self.num_exits - k
        leaves, treedef = jax.tree.flatten(h)
        position = range(len(leaves))[self.head_leaf] if self.head_leaf is not None else None

        def scaled(factor):
            return treedef.unflatten([
                scale_gradient(leaf, factor) if position in (None, i) else leaf
                for i, leaf in enumerate(leaves)])

        return scaled(1.0 / remaining), scaled((remaining - 1) / remaining)

    # ----------------------------------------------------------------------------- costs
    @functools.cached_property
    def costs(self) -> ExitCosts:
        """Per-sample FLOPs of each stage and head, from XLA's cost analysis of the compiled
        eval-mode functions at batch size 1 (computed once per net, then cached)."""
        variables = self._abstract_variables
        outputs = self.feature_specs
        inputs = [jax.ShapeDtypeStruct((1, *self.input_shape), jnp.float32), *outputs[:-1]]
        stage_flops, head_flops = [], []
        for k in range(self.num_exits):
            stage_fn = jax.jit(functools.partial(self.apply_stage, k))
            head_fn = jax.jit(functools.partial(self.apply_head, k))
            stage_flops.append(
                _compat.compiled_flops(stage_fn.lower(variables, inputs[k]).compile()))
            head_flops.append(
                _compat.compiled_flops(head_fn.lower(variables, outputs[k]).compile()))
        return ExitCosts(stage=np.asarray(stage_flops), head=np.asarray(head_flops))

    @functools.cached_property
    def feature_specs(self) -> list[Any]:
        """Each stage's output for a batch of one: pytrees of `jax.ShapeDtypeStruct` [1, ...]
        (traced once per net, then cached)."""
        h = jax.ShapeDtypeStruct((1, *self.input_shape), jnp.float32)
        specs = []
        for k in range(self.num_exits):
            h = jax.eval_shape(functools.partial(self.apply_stage, k), self._abstract_variables, h)
            specs.append(h)
        return specs

    @property
    def feature_shapes(self) -> list[Any]:
        """One sample's shape after each stage, e.g. [(28, 28, 16), (14, 14, 32), ...]; a
        pytree of shapes where a stage outputs a pytree (MSDNet: a list, one per scale)."""
        return [jax.tree.map(lambda s: tuple(s.shape[1:]), spec) for spec in self.feature_specs]

    def empty_features(self, k: int, rows: int, dtype=jnp.float32) -> Any:
        """Zeros shaped like stage k's output for `rows` samples (a buffer to fill)."""
        return jax.tree.map(lambda s: jnp.zeros((rows, *s.shape[1:]), dtype),
                            self.feature_specs[k])

    @functools.cached_property
    def _abstract_variables(self) -> Variables:
        """The shapes and dtypes of the variables (no arrays allocated)."""
        x = jax.ShapeDtypeStruct((1, *self.input_shape), jnp.float32)
        return jax.eval_shape(self.init, jax.random.key(0), x)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def scale_gradient(x: jax.Array, factor: float) -> jax.Array:
    """Identity forward; backward multiplies the gradient by `factor` (a Python float)."""
    return x


def _scale_gradient_fwd(x, factor):
    return x, None


def _scale_gradient_bwd(factor, _, g):
    return (g * factor,)


scale_gradient.defvjp(_scale_gradient_fwd, _scale_gradient_bwd)


def _stack_or_empty(gates: list[jax.Array], batch: int) -> jax.Array:
    return jnp.stack(gates) if gates else jnp.zeros((0, batch), jnp.float32)


def _part(variables: Variables, name: str) -> Variables:
    """The collections of one stage or head: {"params": variables["params"][name], ...}."""
    return {c: tree[name] for c, tree in variables.items() if name in tree}
