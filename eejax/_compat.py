"""The one place where eejax bridges differences between the jax/flax versions it supports.

Supported range: Colab TPU's runtime (jax 0.7.2, flax 0.11.2) up to the newest releases.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import jax


def shard_map(fn: Callable, *, mesh: Any, in_specs: Any, out_specs: Any) -> Callable:
    """`jax.shard_map` without the replication check (each shard computes independently).

    jax >= 0.7 has `jax.shard_map(..., check_vma=)`; older releases had
    `jax.experimental.shard_map.shard_map(..., check_rep=)`.
    """
    if hasattr(jax, "shard_map"):
        return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                             check_vma=False)
    from jax.experimental.shard_map import shard_map as experimental_shard_map  # pragma: no cover

    return experimental_shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                                  check_rep=False)


def compiled_flops(compiled: Any) -> float:
    """FLOPs of a compiled XLA executable, from XLA's own cost analysis.

    `cost_analysis()` returned a list with one dict per device program on older jax releases and
    a single dict on newer ones.
    """
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    if not analysis or "flops" not in analysis:
        raise RuntimeError("XLA's cost analysis reported no 'flops' for this backend")
    return float(analysis["flops"])


BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def count_compilations() -> Iterator[list[str]]:
    """Collects one entry per XLA compilation inside the `with` block.

        with count_compilations() as compiled:
            f(x)
        assert not compiled

    jax >= 0.8 has `jax.monitoring.unregister_event_duration_listener`; jax 0.7 only the private
    `_unregister_event_duration_listener_by_callback`.
    """
    compiled: list[str] = []

    def listener(event: str, *args: Any, **kwargs: Any) -> None:
        if event == BACKEND_COMPILE_EVENT:
            compiled.append(kwargs.get("fun_name", event))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield compiled
    finally:
        unregister = getattr(jax.monitoring, "unregister_event_duration_listener", None)
        if unregister is None:  # pragma: no cover - jax 0.7
            from jax._src import monitoring

            unregister = monitoring._unregister_event_duration_listener_by_callback
        unregister(listener)
