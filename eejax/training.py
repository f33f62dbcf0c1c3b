"""Training state and the jitted train step, shared by train.py, notebooks and tests."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from eejax import parallel
from eejax.data import batch_indices
from eejax.data.augment import augment_batch
from eejax.network import EarlyExitNet, Variables
from eejax.objectives import Objective
from eejax.parallel import DATA_AXIS
from eejax.readout import Readout


@struct.dataclass
class TrainState:
    """Everything a training run carries from step to step (a pytree orbax can save).

    Attributes:
      step: scalar int32.
      params: the "params" collection.
      model_state: the other collections (batch_stats).
      opt_state: the optax state.
      rng: PRNG key data [2] uint32 (raw, so orbax stores it as an array).
    """

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    rng: jax.Array

    @property
    def variables(self) -> Variables:
        return {"params": self.params, **self.model_state}


def create_train_state(net: EarlyExitNet, optimizer: optax.GradientTransformation,
                       seed: int) -> TrainState:
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(seed))
    example = jnp.zeros((1, *net.input_shape), jnp.float32)
    variables = net.init(init_rng, example)
    params = variables.pop("params")
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=variables,
                      opt_state=optimizer.init(params), rng=train_rng)


def make_train_step(net: EarlyExitNet, objective: Objective,
                    optimizer: optax.GradientTransformation, augment: str = "none",
                    mesh: Mesh | None = None, state_sharding: Any = None) -> Callable:
    """Returns jitted `train_step(state, images [B, ...], labels [B]) -> (state, metrics)`.

    With a `mesh` (see `eejax.parallel`), the batch is split over its data axis and the state
    keeps `state_sharding` (default: replicated); metrics come back replicated.
    """

    if objective.uses_gates and not net.gates:
        raise ValueError(f"this objective trains exit gates, but {net.name} has none: add them "
                         f"with eejax.gates.with_gates (config: model.gates='uncertainty')")
    exit_costs = (jnp.asarray(net.costs.to_exit / net.costs.total, jnp.float32)
                  if objective.uses_gates else None)

    def loss_fn(params, model_state, images, labels, rng, step):
        variables = {"params": params, **model_state}
        if objective.uses_gates:
            logits, gate_logits, new_model_state = net.apply_train(
                variables, images, rng, objective.gradient_rescale, with_gates=True)
            loss, aux = objective(logits, labels, gate_logits=gate_logits,
                                  exit_costs=exit_costs, step=step)
        else:
            logits, new_model_state = net.apply_train(variables, images, rng,
                                                      objective.gradient_rescale)
            loss, aux = objective(logits, labels)
        return loss, (aux, new_model_state)

    def train_step(state: TrainState, images: jax.Array, labels: jax.Array):
        step_rng = jax.random.fold_in(state.rng, state.step)
        augment_rng, dropout_rng = jax.random.split(step_rng)
        images = augment_batch(augment_rng, images, augment)
        (loss, (aux, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.model_state, images, labels, dropout_rng, state.step)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(step=state.step + 1, params=params,
                                  model_state={**state.model_state, **new_model_state},
                                  opt_state=opt_state)
        return new_state, {"loss": loss, **aux}

    if mesh is None:
        return jax.jit(train_step, donate_argnums=(0,))
    replicated = NamedSharding(mesh, PartitionSpec())
    batch = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    state_sharding = replicated if state_sharding is None else state_sharding
    return jax.jit(train_step, donate_argnums=(0,), in_shardings=(state_sharding, batch, batch),
                   out_shardings=(state_sharding, replicated))


def predict_exits(net: EarlyExitNet, variables: Variables, images: np.ndarray,
                  batch_size: int = 500, readout: Readout | None = None,
                  with_gates: bool = False):
    """[K, N, C] every exit's prediction on every image, in eval mode, batch by batch: the raw
    head outputs, or what `readout` makes of them (BoostNet's ensemble). With `with_gates`,
    also the gates' exit logits [K-1, N].

    The last batch is padded to `batch_size` so only one shape is ever compiled.
    """
    apply_all = _jitted_apply_all(net, with_gates)
    logits, gates = [], []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        padded = np.pad(chunk, [(0, batch_size - len(chunk))] + [(0, 0)] * (chunk.ndim - 1))
        out = jax.device_get(apply_all(variables, padded))
        logits.append(out[0][:, : len(chunk)] if with_gates else out[:, : len(chunk)])
        if with_gates:
            gates.append(out[1][:, : len(chunk)])
    raw = np.concatenate(logits, axis=1)
    predictions = raw if readout is None else np.asarray(readout.apply_all(jnp.asarray(raw)))
    return (predictions, np.concatenate(gates, axis=1)) if with_gates else predictions


@functools.lru_cache(maxsize=16)
def _jitted_apply_all(net: EarlyExitNet, with_gates: bool) -> Callable:
    return jax.jit(functools.partial(net.apply_all, with_gates=with_gates))


def fit(net: EarlyExitNet, objective: Objective, optimizer: optax.GradientTransformation,
        images: np.ndarray, labels: np.ndarray, steps: int, batch_size: int, seed: int = 0,
        augment: str = "none", mesh: Mesh | None = None, log_every: int = 0) -> TrainState:
    """Trains from scratch for `steps` steps (for notebooks and scripts; `train.py` adds
    checkpoints, resumption and evaluation around the same pieces).

    images: [N, *net.input_shape]; labels: [N]. With a `mesh`, data-parallel over its devices
    (parameters replicated). Prints progress every `log_every` steps (0: never).
    """
    state = create_train_state(net, optimizer, seed)
    shardings = None
    if mesh is not None:
        parallel.batch_sizes(batch_size, 0, mesh)  # validates the split over devices
        shardings = parallel.state_shardings(state, mesh)
        state = jax.device_put(state, shardings)
    train_step = make_train_step(net, objective, optimizer, augment, mesh, shardings)
    for step in range(steps):
        index = batch_indices(len(images), batch_size, seed, step)
        batch = (images[index], labels[index])
        if mesh is not None:
            batch = parallel.global_batch(mesh, *batch)
        state, metrics = train_step(state, *batch)
        if log_every and ((step + 1) % log_every == 0 or step + 1 == steps):
            accuracy = [round(float(a), 3) for a in jax.device_get(metrics["exit_accuracy"])]
            print(f"step {step + 1}/{steps}  loss {float(metrics['loss']):.4f}  "
                  f"train acc/exit {accuracy}", flush=True)
    return state
