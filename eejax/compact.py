"""The `compact` engine: exited samples are dropped from later stages, on device.

Inside one jitted function with static shapes:

1. Stage 0 and head 0 run on the whole batch B; the policy decides who leaves.
2. Before each later stage k, the survivors (n of them, a traced count) are gathered into the
   smallest bucket size b >= n from a fixed table, and stage k and head k run on b rows only.
   `lax.switch` picks the bucket on device, so no count ever comes back to the host.
   Branch 0 skips the stage when nobody is left; the last branch (b = B) runs in place on the
   uncompacted buffer with a mask, so a batch where nobody exited pays no gather at all.
3. Results are scattered straight into the [B] outputs by each row's original index; per-sample
   policy state (patience counters, oracle targets) and the readout's running ensemble travel
   with the rows.

Compiled shapes: stage 0 once; each later stage once per bucket size (plus the in-place size B).
With the default table (two sizes per halving of B, multiples of 8, down to 8) that is
2*log2(B/8) + 1 variants per stage, e.g. 12 for B = 512 and 2 for B = 16; a second call with the
same batch size compiles nothing new.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from eejax.engines import ExitState, InferenceResult, cost_of_exit, exit_step, init_exit_state
from eejax.network import EarlyExitNet, Variables
from eejax.policies import Policy
from eejax.readout import Readout


def bucket_sizes(batch_size: int, per_halving: int = 2, multiple: int = 8) -> tuple[int, ...]:
    """Batch sizes below B that later stages may run at, ascending.

    Sizes are B * 2**(-i / per_halving) rounded up to a multiple of `multiple` (vector-friendly
    shapes), down to `multiple`. Finer tables waste less compute on padding but compile more.
    """
    if batch_size <= multiple:
        return ()
    sizes = set()
    i = 1
    while True:
        size = math.ceil(batch_size * 2 ** (-i / per_halving) / multiple) * multiple
        if size >= batch_size:
            i += 1
            continue
        sizes.add(size)
        if size <= multiple:
            break
        i += 1
    return tuple(sorted(sizes))


def check_buckets(buckets: Sequence[int], batch_size: int, mesh=None) -> tuple[int, ...]:
    """Validates user-given bucket sizes for a batch (or per-device shard) of `batch_size`."""
    if mesh is not None:
        batch_size //= mesh.devices.size
    values = tuple(sorted({int(b) for b in buckets}))
    if not values or values[0] < 1 or any(int(b) != b for b in buckets):
        raise ValueError(f"buckets must be positive integers, got {list(buckets)}")
    return tuple(b for b in values if b < batch_size)


class _Outputs(NamedTuple):
    logits: jax.Array  # [B, C]
    exit: jax.Array  # [B] int32


class _Rows(NamedTuple):
    """The samples still running, one per row of the activation buffer."""

    h: jax.Array  # [R, ...] activations (a pytree of them for multi-scale nets)
    index: jax.Array  # [R] int32, each row's position in the input batch
    alive: jax.Array  # [R] bool, row holds a sample that has not exited
    state: ExitState  # per-row policy state and readout carry, leading dim R


def compact_engine(
    net: EarlyExitNet,
    variables: Variables,
    x: jax.Array,
    policy: Policy,
    readout: Readout,
    index: jax.Array,
    buckets: tuple[int, ...] | None = None,
) -> InferenceResult:
    """Early-exit inference that computes later stages on survivors only (traceable)."""
    batch = x.shape[0]
    sizes = bucket_sizes(batch) if buckets is None else tuple(b for b in buckets if b < batch)
    num_exits = net.num_exits

    h = net.apply_stage(0, variables, x)
    state = init_exit_state(policy, readout, index, net.num_classes)
    logits, fire, state = exit_step(net, variables, policy, readout, 0, h, state)
    out = _Outputs(logits, jnp.where(fire, 0, num_exits - 1).astype(jnp.int32))
    rows = _Rows(h, jnp.arange(batch, dtype=jnp.int32), ~fire, state)

    for k in range(1, num_exits):
        last = k == num_exits - 1
        survivors = jnp.sum(rows.alive)
        # Branch 0: nobody left; 1..len(sizes): gather into that bucket; last: in place at B.
        branch = jnp.where(survivors == 0, 0,
                           1 + jnp.searchsorted(jnp.asarray(sizes, jnp.int32), survivors))
        branches = [_skip_branch(net, k, last, batch)]
        branches += [_bucket_branch(net, k, last, policy, readout, size, batch)
                     for size in sizes]
        branches += [_bucket_branch(net, k, last, policy, readout, None, batch)]
        if last:
            out = jax.lax.switch(branch, branches, variables, rows, out)
        else:
            rows, out = jax.lax.switch(branch, branches, variables, rows, out)
    return InferenceResult(out.logits, out.exit, cost_of_exit(net, out.exit))


def _skip_branch(net: EarlyExitNet, k: int, last: bool, batch: int):
    def skip(variables, rows: _Rows, out: _Outputs):
        if last:
            return out
        h = jax.eval_shape(lambda v, h: net.apply_stage(k, v, h), variables, rows.h)
        return rows._replace(h=jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), h)), out

    return skip


def _bucket_branch(net: EarlyExitNet, k: int, last: bool, policy: Policy, readout: Readout,
                   size: int | None, batch: int):
    """Stage k and head k on `size` gathered survivors (size None: in place on all rows)."""

    def run(variables, rows: _Rows, out: _Outputs):
        if size is None:
            selected, valid = rows, rows.alive
        else:
            (order,) = jnp.nonzero(rows.alive, size=size, fill_value=0)  # stable: keeps order
            selected = jax.tree.map(lambda a: jnp.take(a, order, axis=0), rows)
            # Rows past the survivor count are fill (copies of row 0), never valid.
            valid = jnp.arange(size) < jnp.sum(rows.alive)
        h = net.apply_stage(k, variables, selected.h)
        logits, fire, state = exit_step(net, variables, policy, readout, k, h, selected.state)
        leave = fire & valid
        # Rows that do not leave scatter to index `batch`, out of bounds, and are dropped.
        target = jnp.where(leave, selected.index, batch)
        out = _Outputs(out.logits.at[target].set(logits.astype(out.logits.dtype), mode="drop"),
                       out.exit.at[target].set(k, mode="drop"))
        if last:
            return out
        kept = _Rows(h, selected.index, valid & ~leave, state)
        if size is not None:  # back to a static [B] buffer; rows past `size` are dead padding
            kept = jax.tree.map(lambda a: _pad_rows(a, batch), kept)
        return kept, out

    return run


def _pad_rows(a: jax.Array, rows: int) -> jax.Array:
    return jnp.pad(a, [(0, rows - a.shape[0])] + [(0, 0)] * (a.ndim - 1))
