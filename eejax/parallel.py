"""Data-parallel training over a device mesh, on one process or many.

One mesh axis, "data". The global batch is split over it (`NamedSharding(mesh, P("data"))`);
parameters and optimizer state are replicated, or sharded over the same axis for larger models
(`shard_params`: each array along its largest dimension that the device count divides). Under
`jax.jit` the gradient all-reduce and the batch-norm statistics over the global batch follow
from these shardings, so the train step itself is the single-device one.

Several processes (multi-host TPU pods, multi-node GPUs): each process builds its own part of
the global batch (`process_rows`) and `global_batch` stitches the parts into one array; no
process reads another's rows.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"

# Variables whose presence means a multi-process job asks for `jax.distributed.initialize()`
# (which itself reads the cluster's settings: TPU pod metadata, SLURM, Open MPI, or these).
_DISTRIBUTED_ENV = ("JAX_COORDINATOR_ADDRESS", "EEJAX_DISTRIBUTED")


def initialize_distributed() -> bool:
    """Calls `jax.distributed.initialize()` once when the environment asks for it.

    Either EEJAX_DISTRIBUTED=1, and JAX detects the cluster (TPU pods, SLURM, Open MPI, ...), or
    JAX_COORDINATOR_ADDRESS=host:port with JAX_NUM_PROCESSES and JAX_PROCESS_ID, passed on
    explicitly (JAX does not read the last two itself). Returns whether it ran.
    """
    if not any(os.environ.get(name) for name in _DISTRIBUTED_ENV):
        return False
    if jax.distributed.is_initialized():
        return True
    address = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if not address:
        jax.distributed.initialize()
        return True
    try:
        count, index = int(os.environ["JAX_NUM_PROCESSES"]), int(os.environ["JAX_PROCESS_ID"])
    except (KeyError, ValueError):
        raise ValueError("JAX_COORDINATOR_ADDRESS is set: JAX_NUM_PROCESSES and JAX_PROCESS_ID "
                         "must be set too, as integers") from None
    jax.distributed.initialize(coordinator_address=address, num_processes=count,
                               process_id=index)
    return True


def make_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D mesh over the first `num_devices` devices (0: all of them, across processes)."""
    devices = jax.devices()
    if not isinstance(num_devices, (int, np.integer)) or num_devices < 0:
        raise ValueError(f"num_devices must be an integer >= 0 (0 = all), got {num_devices!r}")
    if num_devices > len(devices):
        raise ValueError(f"num_devices={num_devices} but only {len(devices)} "
                         f"{jax.default_backend()} device(s) are visible")
    if num_devices and jax.process_count() > 1 and num_devices != len(devices):
        raise ValueError("with several processes the mesh must span every device (num_devices=0)")
    return Mesh(np.asarray(devices[: num_devices or None]), (DATA_AXIS,))


def batch_sizes(global_batch: int, per_device_batch: int, mesh: Mesh) -> tuple[int, int]:
    """(global batch, per-device batch) from the config, checked against the mesh.

    Give either (the other may be 0); when both are given they must agree.
    """
    devices = mesh.devices.size
    if per_device_batch and global_batch and per_device_batch * devices != global_batch:
        raise ValueError(f"train.batch_size={global_batch} and train.per_device_batch_size="
                         f"{per_device_batch} disagree on {devices} device(s); set one to 0")
    if per_device_batch:
        global_batch = per_device_batch * devices
    if global_batch < 1 or global_batch % devices:
        raise ValueError(f"train.batch_size={global_batch} must be a positive multiple of the "
                         f"{devices} device(s) of the mesh")
    return global_batch, global_batch // devices


def state_shardings(state: Any, mesh: Mesh, shard_params: bool = False) -> Any:
    """A `NamedSharding` per leaf of the train state: replicated, or (shard_params) split over
    the data axis along each array's largest dimension the device count divides."""
    replicated = NamedSharding(mesh, PartitionSpec())
    devices = mesh.devices.size

    def choose(leaf) -> NamedSharding:
        shape = np.shape(leaf)
        if not shard_params or devices == 1:
            return replicated
        fits = [d for d in np.argsort(shape)[::-1] if shape[d] % devices == 0 and shape[d] > 1]
        if not fits:
            return replicated  # scalars, biases of odd widths: small, kept whole
        spec = [None] * len(shape)
        spec[int(fits[0])] = DATA_AXIS
        return NamedSharding(mesh, PartitionSpec(*spec))

    return jax.tree.map(choose, state)


def process_rows(global_batch: int) -> slice:
    """The rows of each global batch this process provides (process i: the i-th equal part)."""
    count = jax.process_count()
    if global_batch % count:
        raise ValueError(f"train.batch_size={global_batch} must divide evenly over "
                         f"{count} processes")
    rows = global_batch // count
    return slice(jax.process_index() * rows, (jax.process_index() + 1) * rows)


def global_batch(mesh: Mesh, *local_arrays: np.ndarray) -> tuple[jax.Array, ...]:
    """This process's rows -> arrays of the global batch, split over the data axis."""
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    return tuple(jax.make_array_from_process_local_data(sharding, a) for a in local_arrays)


def is_main_process() -> bool:
    """Whether this process logs and writes reports (process 0)."""
    return jax.process_index() == 0
