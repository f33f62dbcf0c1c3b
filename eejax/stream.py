"""The `stream` engine: every stage runs on full batches of survivors drawn from a stream.

Each stage k >= 1 owns a device-side buffer of capacity 2B holding the samples that survived
stage k-1 (activations, original index, policy state), packed at the front. One jitted step:

    rows [0, B) of its buffer -> stage k, head k, policy -> emit the samples that exit
    -> gather the survivors (skipped when nobody exited) and append them to stage k+1's buffer
       with one contiguous `dynamic_update_slice` (buffers are donated, updated in place)
    -> move its own leftover rows [B, count) to the front (only when there are some)

Contiguous copies, not row scatters: XLA's CPU scatter moves one row at a time and cost more than
the stage it fed. The host drains a buffer whenever it holds B rows, so it never holds more than
2B - 1 and an append of B rows always fits.

The host only keeps counts: after each step it reads how many survived (one scalar), and runs
stage k+1 whenever its buffer holds a full batch. At the end of the stream the partial buffers are
flushed with a validity mask. Samples finish out of order; the result is put back in stream order
(`InferenceResult` rows follow the order samples arrived in).

Compiled shapes: per later stage two steps at batch B (with and without moving leftover rows),
plus stage 0 at B and at the size of a short last batch.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from eejax.engines import InferenceResult, exit_step, init_exit_state
from eejax.network import EarlyExitNet, Variables
from eejax.policies import Policy
from eejax.readout import Readout, independent


class _Buffer:
    """Host-side bookkeeping of one stage's device buffer."""

    def __init__(self, arrays: dict):
        # {"h": [2B, ...], "index": [2B], "state": (policy state, readout carry), [2B, ...]}
        self.arrays = arrays
        self.count = 0  # rows held, packed at the front


def stream_infer(
    net: EarlyExitNet,
    variables: Variables,
    batches: Iterable[jax.Array],
    policy: Policy,
    batch_size: int,
    readout: Readout | None = None,
) -> InferenceResult:
    """Early-exit inference over a stream of input batches.

    Args:
      net, variables, policy, readout: as for `eejax.infer`.
      batches: arrays [b, *input_shape] with b <= batch_size; sample i of the stream (counting
        across batches) gets dataset index i, which an oracle policy uses.
      batch_size: B, the batch every stage runs at.

    Returns:
      An `InferenceResult` over all samples, in stream order.
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    policy.check(net.num_exits, net.num_classes)
    readout = independent() if readout is None else readout
    readout.check(net.num_exits)
    steps = _steps(net, int(batch_size))
    capacity = 2 * batch_size
    buffers: list[_Buffer | None] = [None] * net.num_exits
    emitted: list[tuple[jax.Array, jax.Array, jax.Array, int]] = []
    seen = 0

    def push(k: int, out: dict | None, survivors: jax.Array | None) -> None:
        """Records what step k-1 appended to stage k's buffer, then drains full batches."""
        if k >= net.num_exits or out is None:
            return
        buffers[k].arrays = out
        buffers[k].count += int(survivors)  # the one device-to-host read per step
        while buffers[k].count >= batch_size:
            run(k)

    def run(k: int) -> None:
        buffer, target = buffers[k], buffers[k + 1] if k + 1 < net.num_exits else None
        # The host knows the counts, so it picks the variant that moves leftover rows only when
        # there are some (a device-side cond would copy the whole buffer either way).
        step = steps.later[k, buffer.count > batch_size]
        buffer.arrays, out, survivors, logits, leave, index = step(
            variables, policy, readout, buffer.arrays, buffer.count,
            None if target is None else target.arrays, 0 if target is None else target.count)
        buffer.count = max(buffer.count - batch_size, 0)
        emitted.append((logits, leave, index, k))
        push(k + 1, out, survivors)

    for x in batches:
        net.check_input(x, name="a batch of the stream")
        size = x.shape[0]
        if size > batch_size:
            raise ValueError(f"a batch of the stream holds {size} samples, more than "
                             f"batch_size={batch_size}")
        index = jnp.arange(seen, seen + size, dtype=jnp.int32)
        if net.num_exits > 1 and buffers[1] is None:
            _allocate(net, policy, readout, buffers, x, capacity)
        out, survivors, logits, leave = steps.first(
            variables, policy, readout, jnp.asarray(x), index,
            None if net.num_exits == 1 else buffers[1].arrays,
            0 if net.num_exits == 1 else buffers[1].count)
        emitted.append((logits, leave, index, 0))
        seen += size
        push(1, out, survivors)
    for k in range(1, net.num_exits):  # flush partial buffers, shallow to deep
        while buffers[k] is not None and buffers[k].count > 0:
            run(k)
    return _assemble(net, emitted, seen)


def _assemble(net: EarlyExitNet, emitted: list, total: int) -> InferenceResult:
    """Puts emitted samples back in stream order (one transfer at the end)."""
    if total == 0:
        raise ValueError("the stream held no batches")
    emitted = jax.device_get(emitted)
    num_classes = emitted[0][0].shape[-1]
    logits = np.zeros((total, num_classes), np.float32)
    exit_index = np.full(total, -1, np.int32)
    for chunk_logits, leave, index, k in emitted:
        logits[index[leave]] = chunk_logits[leave]
        exit_index[index[leave]] = k
    if np.any(exit_index < 0):  # an engine bug, never a user error
        raise RuntimeError("stream engine lost samples")
    cost = np.asarray(net.costs.to_exit, np.float32)[exit_index]
    return InferenceResult(jnp.asarray(logits), jnp.asarray(exit_index), jnp.asarray(cost))


def _allocate(net, policy, readout, buffers, x, capacity) -> None:
    """Creates an empty buffer of `capacity` rows for every stage after the first."""
    state = jax.eval_shape(lambda index: init_exit_state(policy, readout, index, net.num_classes),
                           jnp.zeros(capacity, jnp.int32))
    for k in range(1, net.num_exits):
        arrays = {
            "h": net.empty_features(k - 1, capacity, x.dtype),
            "index": jnp.zeros(capacity, jnp.int32),
            "state": jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), state),
        }
        buffers[k] = _Buffer(arrays)


class _Steps:
    def __init__(self, first, later):
        self.first = first
        self.later = later


@functools.lru_cache(maxsize=16)
def _steps(net: EarlyExitNet, batch_size: int) -> _Steps:
    """The jitted per-stage steps for one net and batch size."""

    def append(out, count, rows, keep):
        """Writes the rows where `keep` (packed, in order) to `out` from row `count` on."""
        everyone = jnp.all(keep)
        rows = jax.lax.cond(everyone, lambda r: r, _gather_kept(keep), rows)
        out = jax.tree.map(
            lambda buf, new: jax.lax.dynamic_update_slice_in_dim(buf, new.astype(buf.dtype),
                                                                 count, axis=0), out, rows)
        return out, jnp.sum(keep)

    def first(variables, policy, readout, x, index, out, count):
        h = net.apply_stage(0, variables, x)
        state = init_exit_state(policy, readout, index, net.num_classes)
        logits, leave, state = exit_step(net, variables, policy, readout, 0, h, state)
        if out is None:
            return None, None, logits, leave
        rows = {"h": h, "index": index, "state": state}
        out, survivors = append(out, count, rows, ~leave)
        return out, survivors, logits, leave

    def later_step(k, shift, variables, policy, readout, buffer, count, out, out_count):
        rows = jax.tree.map(lambda a: a[:batch_size], buffer)
        valid = jnp.arange(batch_size) < count
        h = net.apply_stage(k, variables, rows["h"])
        logits, fire, state = exit_step(net, variables, policy, readout, k, h, rows["state"])
        leave = fire & valid
        if shift:
            buffer = jax.tree.map(
                lambda a: jax.lax.dynamic_update_slice_in_dim(a, a[batch_size:], 0, axis=0),
                buffer)
        if out is None:
            return buffer, None, None, logits, leave, rows["index"]
        kept = {"h": h, "index": rows["index"], "state": state}
        out, survivors = append(out, out_count, kept, valid & ~leave)
        return buffer, out, survivors, logits, leave, rows["index"]

    later = {(k, shift): jax.jit(functools.partial(later_step, k, shift), donate_argnums=(3, 5))
             for k in range(1, net.num_exits) for shift in (False, True)}
    return _Steps(jax.jit(first, donate_argnums=(5,)), later)


def _gather_kept(keep: jax.Array):
    """rows -> the rows where `keep`, packed at the front, in order (padding after them)."""

    def gather(rows):
        (order,) = jnp.nonzero(keep, size=keep.shape[0], fill_value=0)
        return jax.tree.map(lambda a: jnp.take(a, order, axis=0), rows)

    return gather
