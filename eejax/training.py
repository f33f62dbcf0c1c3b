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

    def loss_fn(params, model_state, images, labels, rng):
        logits, new_model_state = net.apply_train({"params": params, **model_state}, images, rng,
                                                  gradient_rescale=objective.gradient_rescale)
        loss, aux = objective(logits, labels)
        return loss, (aux, new_model_state)

    def train_step(state: TrainState, images: jax.Array, labels: jax.Array):
        step_rng = jax.random.fold_in(state.rng, state.step)
        augment_rng, dropout_rng = jax.random.split(step_rng)
        images = augment_batch(augment_rng, images, augment)
        (loss, (aux, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.model_state, images, labels, dropout_rng)
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
                  batch_size: int = 500, readout: Readout | None = None) -> np.ndarray:
    """[K, N, C] every exit's prediction on every image, in eval mode, batch by batch: the raw
    head outputs, or what `readout` makes of them (BoostNet's ensemble).

    The last batch is padded to `batch_size` so only one shape is ever compiled.
    """
    apply_all = _jitted_apply_all(net)
    outputs = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        padded = np.pad(chunk, [(0, batch_size - len(chunk))] + [(0, 0)] * (chunk.ndim - 1))
        outputs.append(np.asarray(apply_all(variables, padded))[:, : len(chunk)])
    raw = np.concatenate(outputs, axis=1)
    return raw if readout is None else np.asarray(readout.apply_all(jnp.asarray(raw)))


@functools.lru_cache(maxsize=16)
def _jitted_apply_all(net: EarlyExitNet) -> Callable:
    return jax.jit(net.apply_all)
