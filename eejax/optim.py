"""optax optimizers and learning-rate schedules from a config section."""

from __future__ import annotations

import jax
import ml_collections
import optax


def learning_rate_schedule(config: ml_collections.ConfigDict, total_steps: int,
                           steps_per_epoch: int) -> optax.Schedule:
    """config.schedule: "constant" | "cosine" (with config.warmup_steps) | "piecewise"
    (learning rate times config.decay_factor at each epoch in config.decay_epochs)."""
    base = config.learning_rate
    if config.schedule == "constant":
        return optax.constant_schedule(base)
    if config.schedule == "cosine":
        warmup = min(config.get("warmup_steps", 0), total_steps - 1)
        return optax.warmup_cosine_decay_schedule(0.0, base, warmup, total_steps)
    if config.schedule == "piecewise":
        boundaries = {int(e * steps_per_epoch): config.decay_factor for e in config.decay_epochs}
        return optax.piecewise_constant_schedule(base, boundaries)
    raise ValueError(f"config.optimizer.schedule must be 'constant', 'cosine' or 'piecewise', "
                     f"got {config.schedule!r}")


def make_optimizer(config: ml_collections.ConfigDict, total_steps: int,
                   steps_per_epoch: int) -> optax.GradientTransformation:
    """config.name: "sgd" (momentum, nesterov, weight_decay as L2 added to the gradient, as in
    the ResNet/MSDNet recipes) | "adamw" (decoupled weight_decay).

    config.gate_learning_rate_scale (default 1): multiplies the updates of exit gates
    (parameters under "gate_k"). JEI-DNN's gates are tiny linear layers trained after a
    warm-up; at the backbone's rate their bias moves too little in a short run.
    """
    schedule = learning_rate_schedule(config, total_steps, steps_per_epoch)
    if config.name == "sgd":
        base = optax.chain(
            optax.add_decayed_weights(config.weight_decay),
            optax.sgd(schedule, momentum=config.momentum, nesterov=config.get("nesterov", False)),
        )
    elif config.name == "adamw":
        base = optax.adamw(schedule, weight_decay=config.weight_decay)
    else:
        raise ValueError(f"config.optimizer.name must be 'sgd' or 'adamw', got {config.name!r}")
    gate_scale = config.get("gate_learning_rate_scale", 1.0)
    if gate_scale == 1.0:
        return base
    return optax.chain(base, optax.multi_transform(
        {"gate": optax.scale(gate_scale), "rest": optax.identity()}, _gate_labels))


def _gate_labels(params):
    """"gate" for every leaf under a top-level "gate_k" entry, else "rest"."""
    return {name: jax.tree.map(lambda _, n=name: "gate" if n.startswith("gate_") else "rest",
                               subtree)
            for name, subtree in params.items()}
