"""Inference engines: run an `EarlyExitNet` with a `Policy` on a batch.

Every engine returns the same `InferenceResult` for the same input (predictions and exit indices
equal up to float tolerance); they differ in the work they do:

  dense    every stage and head on every sample, then the policy over all K exits; also returns
           the [K, B, C] logits of every exit (anytime evaluation in the same pass).
  masked   stage by stage with an "exited" mask: every stage runs on the whole batch and each
           sample keeps the logits of the first exit that fires.
  compact  drops exited samples from later stages on device, in one jitted function with static
           shapes (see `eejax.compact`): the work done follows the exit pattern.
  stream   over a stream of batches, every stage runs only on full batches of survivors
           (see `eejax.stream`).

`cost` is the same accounting in every engine: the FLOPs of the stages and heads a sample needs to
reach its exit (what `compact` and `stream` spend on it), from XLA's cost analysis.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec

from eejax import _compat
from eejax.network import EarlyExitNet, Variables
from eejax.policies import Policy, PolicyState
from eejax.readout import Readout, independent

ENGINES = ("dense", "masked", "compact", "stream")


class InferenceResult(NamedTuple):
    """Per-sample outcome of early-exit inference.

    Attributes:
      logits: [B, C] prediction (logits) of the exit each sample left at, after the readout
        (BoostNet's ensemble G_k for a boosted readout).
      exit: [B] int32, the exit index (0-based).
      cost: [B] float32, FLOPs the sample needs to reach its exit.
      exit_logits: [K, B, C] every exit's prediction (only `dense`, else None).
    """

    logits: jax.Array
    exit: jax.Array
    cost: jax.Array
    exit_logits: jax.Array | None = None

    @property
    def prediction(self) -> jax.Array:
        """[B] the predicted class."""
        return jnp.argmax(self.logits, axis=-1)


def infer(
    net: EarlyExitNet,
    variables: Variables,
    x: jax.Array,
    policy: Policy,
    engine: str = "masked",
    *,
    buckets: Sequence[int] | None = None,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
    readout: Readout | None = None,
) -> InferenceResult:
    """Runs early-exit inference on a batch.

    Args:
      net: the network.
      variables: its variables (from `net.init` or training).
      x: [B, *net.input_shape] floating-point inputs.
      policy: an exit policy from `eejax.policies`.
      engine: "dense" | "masked" | "compact" | "stream".
      buckets: `compact` only: the batch sizes a later stage may run at (default: two per halving
        of B, see `eejax.compact.bucket_sizes`).
      batch_size: `stream` only: the batch every stage runs at (default min(B, 256)).
      mesh: data-parallel over this mesh's first axis (dense, masked, compact): each device runs
        the engine on its own shard of the batch, so early exit adds no cross-device traffic.
      readout: how exits predict from the heads' raw outputs (`eejax.readout`; default
        independent; `objective.readout(K)` gives the one a net was trained for). A boosted
        readout's running ensemble travels with the surviving samples in compact and stream.

    Returns:
      An `InferenceResult` with [B] rows in the order of `x`.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {list(ENGINES)}, got {engine!r}")
    net.check_input(x)
    policy.check(net.num_exits, net.num_classes)
    readout = independent() if readout is None else readout
    readout.check(net.num_exits)
    if policy.needs_gates and not net.gates:
        raise ValueError(f"the 'gates' policy needs a net with exit gates; {net.name} has none "
                         f"(add them with eejax.gates.with_gates and train them with the "
                         f"'jei' objective)")
    if policy.rule == "oracle" and len(policy.exit_index) < x.shape[0]:
        raise ValueError(f"an oracle policy needs an exit_index per sample: got "
                         f"{len(policy.exit_index)} for a batch of {x.shape[0]}")
    if engine != "compact" and buckets is not None:
        raise ValueError(f"buckets only applies to engine='compact', not {engine!r}")
    if engine != "stream" and batch_size is not None:
        raise ValueError(f"batch_size only applies to engine='stream', not {engine!r}")
    if engine == "stream":
        if mesh is not None:
            raise ValueError("engine='stream' runs on one device; pass mesh=None")
        from eejax.stream import stream_infer

        size = batch_size if batch_size is not None else min(x.shape[0], 256)
        batches = (x[i : i + size] for i in range(0, x.shape[0], size))
        return stream_infer(net, variables, batches, policy, batch_size=size, readout=readout)

    from eejax.compact import check_buckets

    bucket_key = None if buckets is None else check_buckets(buckets, x.shape[0], mesh)
    index = jnp.arange(x.shape[0], dtype=jnp.int32)
    run = _jitted(net, engine, bucket_key, mesh)
    return run(variables, jnp.asarray(x), policy, readout, index)


@functools.lru_cache(maxsize=64)
def _jitted(net: EarlyExitNet, engine: str, buckets: tuple[int, ...] | None, mesh: Mesh | None):
    """One jitted function per (net, engine, buckets, mesh); jax caches traces per shape."""
    if engine == "compact":
        from eejax.compact import compact_engine

        fn = functools.partial(compact_engine, net, buckets=buckets)
    else:
        fn = functools.partial(_ENGINE_FNS[engine], net)
    if mesh is not None:
        fn = _shard_over_batch(fn, mesh)
    return jax.jit(fn)


def _shard_over_batch(fn: Callable, mesh: Mesh) -> Callable:
    """Runs `fn(variables, x, policy, readout, index)` on each device's shard of the batch."""
    axis = mesh.axis_names[0]
    batch, replicated = PartitionSpec(axis), PartitionSpec()

    def sharded(variables, x, policy, readout, index):
        if x.shape[0] % mesh.shape[axis]:
            raise ValueError(f"x's batch ({x.shape[0]}) must divide evenly over the "
                             f"{mesh.shape[axis]} devices of mesh axis {axis!r}")
        exit_logits = PartitionSpec(None, axis) if fn.func is _dense else None
        return _compat.shard_map(
            fn, mesh=mesh, in_specs=(replicated, batch, replicated, replicated, batch),
            out_specs=InferenceResult(batch, batch, batch, exit_logits),
        )(variables, x, policy, readout, index)

    return sharded


def exit_fires(policy: Policy, logits: jax.Array, k: int, num_exits: int,
               state: PolicyState, gate: jax.Array | None = None) -> tuple[jax.Array, PolicyState]:
    """The policy's decision at exit k, except that the last exit takes every sample."""
    if k == num_exits - 1:
        return jnp.ones(logits.shape[:1], bool), state
    return policy.decide(logits, k, state, gate)


ExitState = tuple  # (policy state, readout carry), each with a leading [B] dimension


def init_exit_state(policy: Policy, readout: Readout, index: jax.Array,
                    num_classes: int) -> ExitState:
    """Per-sample state before exit 0 for the samples with dataset indices `index` [B]."""
    return policy.init_state(index), readout.init(index.shape[0], num_classes)


def exit_step(net: EarlyExitNet, variables: Variables, policy: Policy, readout: Readout, k: int,
              h, state: ExitState) -> tuple[jax.Array, jax.Array, ExitState]:
    """Head k on stage k's output h [B, ...]: (prediction [B, C], fire [B], new state)."""
    policy_state, carry = state
    raw = net.apply_head(k, variables, h)
    logits, carry = readout.step(raw, k, carry)
    gate = None
    if policy.needs_gates and k < net.num_exits - 1:
        gate = net.apply_gate(k, variables, raw, h)
    fire, policy_state = exit_fires(policy, logits, k, net.num_exits, policy_state, gate)
    return logits, fire, (policy_state, carry)


def cost_of_exit(net: EarlyExitNet, exit_index: jax.Array) -> jax.Array:
    """[B] FLOPs needed to reach each sample's exit."""
    return jnp.asarray(net.costs.to_exit, jnp.float32)[exit_index]


def select_exits(net: EarlyExitNet, policy: Policy, exit_logits: jax.Array,
                 index: jax.Array, gate_logits: jax.Array | None = None) -> InferenceResult:
    """The policy applied to precomputed predictions of every exit (traceable).

    exit_logits: [K, B, C] predictions (after the readout); index: [B] dataset indices;
    gate_logits: [K-1, B] the gates' exit logits (for the "gates" policy).
    """
    if policy.needs_gates and gate_logits is None:
        raise ValueError("the 'gates' policy needs gate_logits [K-1, B] (see "
                         "EarlyExitNet.apply_all(..., with_gates=True))")
    state = policy.init_state(index)
    fires = []
    for k in range(net.num_exits):
        gate = gate_logits[k] if policy.needs_gates and k < net.num_exits - 1 else None
        fire, state = exit_fires(policy, exit_logits[k], k, net.num_exits, state, gate)
        fires.append(fire)
    exit_index = jnp.argmax(jnp.stack(fires), axis=0).astype(jnp.int32)  # first exit that fires
    logits = jnp.take_along_axis(exit_logits, exit_index[None, :, None], axis=0)[0]
    return InferenceResult(logits, exit_index, cost_of_exit(net, exit_index), exit_logits)


def _dense(net, variables, x, policy, readout, index) -> InferenceResult:
    if policy.needs_gates:
        raw, gate_logits = net.apply_all(variables, x, with_gates=True)
        return select_exits(net, policy, readout.apply_all(raw), index, gate_logits)
    return select_exits(net, policy, readout.apply_all(net.apply_all(variables, x)), index)


def _masked(net, variables, x, policy, readout, index) -> InferenceResult:
    state = init_exit_state(policy, readout, index, net.num_classes)
    done = jnp.zeros(x.shape[:1], bool)
    logits_out = exit_out = None
    h = x
    for k in range(net.num_exits):
        h = net.apply_stage(k, variables, h)
        logits, fire, state = exit_step(net, variables, policy, readout, k, h, state)
        leave = fire & ~done
        if logits_out is None:
            logits_out, exit_out = logits, jnp.zeros(x.shape[:1], jnp.int32)
        logits_out = jnp.where(leave[:, None], logits, logits_out)
        exit_out = jnp.where(leave, k, exit_out)
        done = done | leave
    return InferenceResult(logits_out, exit_out, cost_of_exit(net, exit_out))


_ENGINE_FNS = {"dense": _dense, "masked": _masked}
