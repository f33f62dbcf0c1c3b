"""The `stream` engine: every stage runs on full batches of survivors drawn from a stream.

Each stage k >= 1 owns a device-side buffer of the samples that survived stage k-1 (activations,
original index, policy state): two halves of B rows, "front" (logical rows 0..B-1) and "back"
(rows B..2B-1), holding up to 2B - 1 rows packed from the front. The stream advances in
**ticks**, one jitted call each. A tick takes the next input batch through stage 0 and, in the
same call, runs every later stage whose buffer holds a full batch:

    for each stage k in the tick: the front half -> stage k, head k, policy
        -> emit the samples that exit; the back half (leftover rows) becomes the front
    then append each stage's survivors to the next stage's buffer: one gather puts them,
    packed, after the rows already there (`_append`)

Why one call for several stages: the stages of a tick are independent (each reads rows that were
in its buffer before the tick), and XLA runs independent work of one program side by side. On a
2-core CPU, stages 0 and 1 take 186 ms together in one program against 209 ms as two calls;
separate calls never overlap. Why two halves rather than one 2B-row array: a program that reads
rows of a donated array and writes others makes XLA copy the whole array, twice, on CPU; with
halves, a stage reads a whole half and the leftover rows move to the front by renaming.

The host keeps the counts: after each tick it reads how many samples each buffer received (one
[K] vector, the one device-to-host read per tick) and plans the next tick. Every buffer that
holds B rows or more runs in the next tick, so no buffer ever holds more than 2B - 1 rows. At the
end of the stream the partial buffers are flushed, shallow to deep, with a validity mask.
Samples finish out of order; the result is put back in stream order (`InferenceResult` rows
follow the order samples arrived in).

Compiled programs: one per tick **plan**, i.e. which later stages run, and whether an input batch
comes with it (per input size: B, or a short last batch). That bounds them by 2^(K-1) with input
per input size plus 2^(K-1) - 1 without, but a stream visits few, because exit patterns repeat
(`compiled_plans` lists the ones built so far: 7 for the benchmark's 4-exit resnet at
50/25/15/10 over 32 batches).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from eejax.engines import InferenceResult, cost_of_exit, exit_step, init_exit_state
from eejax.network import EarlyExitNet, Variables
from eejax.policies import Policy
from eejax.readout import Readout, independent

# The later stages that run in a tick, shallow to deep.
Plan = tuple[int, ...]


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
    batch_size = int(batch_size)
    ticks = _ticks(net, batch_size)
    counts = np.zeros(net.num_exits, np.int64)  # rows held by stage k's buffer (k >= 1)
    buffers = None
    emitted: list[tuple[jax.Array, jax.Array, jax.Array, int]] = []
    seen = 0

    def tick(plan: Plan, x=None, index=None) -> None:
        nonlocal buffers
        buffers, received, outputs = ticks.step(plan, x is not None)(
            variables, policy, readout, x, index, buffers, jnp.asarray(counts, jnp.int32))
        buffers = _swap_halves(buffers, plan)
        stages = ([0] if x is not None else []) + list(plan)
        emitted.extend((*out, k) for out, k in zip(outputs, stages, strict=True))
        for k in plan:
            counts[k] = max(counts[k] - batch_size, 0)
        counts[:] += np.asarray(received)  # the one device-to-host read per tick

    def full_stages(also: int | None = None) -> Plan:
        return tuple(k for k in range(1, net.num_exits) if counts[k] >= batch_size or k == also)

    for x in batches:
        net.check_input(x, name="a batch of the stream")
        size = x.shape[0]
        if size > batch_size:
            raise ValueError(f"a batch of the stream holds {size} samples, more than "
                             f"batch_size={batch_size}")
        if buffers is None:
            buffers = _allocate(net, policy, readout, x.dtype, batch_size)
        tick(full_stages(), jnp.asarray(x), jnp.arange(seen, seen + size, dtype=jnp.int32))
        seen += size
    for k in range(1, net.num_exits):  # flush partial buffers, shallow to deep
        while counts[k] > 0:
            tick(full_stages(also=k))
    return _assemble(net, emitted, seen)


def compiled_plans(net: EarlyExitNet, batch_size: int) -> list[tuple[Plan, bool]]:
    """The (plan, with an input batch) pairs compiled so far for `net` at `batch_size`."""
    return list(_ticks(net, batch_size).jitted)


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
    exit_index = jnp.asarray(exit_index)
    return InferenceResult(jnp.asarray(logits), exit_index, cost_of_exit(net, exit_index))


def _allocate(net, policy, readout, dtype, batch_size) -> tuple[dict, ...]:
    """Empty buffers for stages 1..K-1, each {"front": rows, "back": rows} with rows =
    {"h": [B, ...], "index": [B], "state": (policy state, readout carry) [B, ...]}."""
    state = jax.eval_shape(lambda index: init_exit_state(policy, readout, index, net.num_classes),
                           jnp.zeros(batch_size, jnp.int32))

    def empty(k):
        return {"h": net.empty_features(k - 1, batch_size, dtype),
                "index": jnp.zeros(batch_size, jnp.int32),
                "state": jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), state)}

    return tuple({"front": empty(k), "back": empty(k)} for k in range(1, net.num_exits))


class _Ticks:
    """The jitted tick programs of one net and batch size, built per plan on first use."""

    def __init__(self, net: EarlyExitNet, batch_size: int):
        self.net, self.batch_size = net, batch_size
        self.jitted: dict[tuple[Plan, bool], object] = {}

    def step(self, plan: Plan, with_input: bool):
        key = (plan, with_input)
        if key not in self.jitted:
            self.jitted[key] = jax.jit(functools.partial(self._tick, plan), donate_argnums=(5,))
        return self.jitted[key]

    def _tick(self, plan, variables, policy, readout, x, index, buffers, counts):
        """One tick: stage 0 on x (if given) and the plan's later stages on their buffers.

        Returns (buffers, received [K]: rows appended to each buffer, [(logits [b, C],
        leave [b], index [b])] for stage 0 then the plan's stages)."""
        net, batch = self.net, self.batch_size
        outputs, incoming = [], {}  # incoming[k]: (rows, keep) bound for stage k's buffer
        if x is not None:
            h = net.apply_stage(0, variables, x)
            state = init_exit_state(policy, readout, index, net.num_classes)
            logits, leave, state = exit_step(net, variables, policy, readout, 0, h, state)
            outputs.append((logits, leave, index))
            incoming[1] = ({"h": h, "index": index, "state": state}, ~leave)
        buffers = list(buffers)
        for k in plan:
            rows = buffers[k - 1]["front"]
            valid = jnp.arange(batch) < counts[k]
            h = net.apply_stage(k, variables, rows["h"])
            logits, fire, state = exit_step(net, variables, policy, readout, k, h, rows["state"])
            leave = fire & valid
            outputs.append((logits, leave, rows["index"]))
            # The leftover rows become the front by a change of names, not a copy.
            buffers[k - 1] = {"front": buffers[k - 1]["back"], "back": rows}
            incoming[k + 1] = ({"h": h, "index": rows["index"], "state": state}, valid & ~leave)
        received = jnp.zeros(net.num_exits, jnp.int32)
        for k, (rows, keep) in incoming.items():
            if k == net.num_exits:  # the last stage's samples all leave
                continue
            start = jnp.maximum(counts[k] - batch, 0) if k in plan else counts[k]
            buffers[k - 1] = _append(buffers[k - 1], start, rows, keep)
            received = received.at[k].set(jnp.sum(keep, dtype=jnp.int32))
        return _swap_halves(buffers, plan), received, outputs


def _swap_halves(buffers, plan: Plan) -> tuple[dict, ...]:
    """Exchanges the names "front" and "back" of the buffers of the stages in `plan`.

    A stage that ran promotes its back half to the front. The tick returns each half in the
    position it came in, because jax pairs donated inputs with outputs by position: returned
    under the swapped names, every half would be copied into the other's memory. So the tick
    swaps back before returning and the host swaps again after the call.
    """
    return tuple({"front": b["back"], "back": b["front"]} if k in plan else b
                 for k, b in enumerate(buffers, start=1))


@functools.lru_cache(maxsize=16)
def _ticks(net: EarlyExitNet, batch_size: int) -> _Ticks:
    return _Ticks(net, batch_size)


def _append(buffer: dict, start: jax.Array, rows, keep: jax.Array) -> dict:
    """Writes the rows where `keep` (packed, in order) into `buffer` from logical row `start`.

    buffer: {"front": rows 0..B-1, "back": rows B..2B-1}, each a pytree of [B, ...] arrays;
    start < B. One gather puts kept row j at position (start + j) mod B ("rolled"): positions
    >= start of the new front, and the overflow, positions < start, which is the new back.
    Reading and writing one donated array in the same program makes XLA copy it whole (twice,
    on CPU); here the front is only rewritten by an elementwise select, the back is replaced.
    """
    batch = jax.tree.leaves(buffer["front"])[0].shape[0]  # B; rows may be fewer (a short batch)
    (order,) = jnp.nonzero(keep, size=batch, fill_value=0)
    position = jnp.arange(batch)
    rolled = jax.tree.map(lambda a: jnp.take(a, order[(position - start) % batch], axis=0),
                          rows)

    def merge(old, new):
        after_start = (position >= start).reshape((batch,) + (1,) * (old.ndim - 1))
        return jnp.where(after_start, new.astype(old.dtype), old)

    front = jax.tree.map(merge, buffer["front"], rolled)
    back = jax.tree.map(lambda old, new: new.astype(old.dtype), buffer["back"], rolled)
    return {"front": front, "back": back}
