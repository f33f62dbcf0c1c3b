"""Training objectives by name: `eejax.objectives.get("joint", weights="linear")`.

An objective maps every exit's raw logits to a scalar loss and metrics:

    loss, aux = objective(logits, labels)      logits: [K, B, C], labels: [B] int

and says how the exits predict once trained: `objective.readout(K)` (independent, or BoostNet's
additive ensemble), to pass to `eejax.infer` and the evaluation functions.
"""

from __future__ import annotations

from typing import Any

from eejax.objectives.base import Objective
from eejax.objectives.boosted import boosted
from eejax.objectives.jei import jei
from eejax.objectives.joint import distill, joint
from eejax.registry import Registry

__all__ = ["Objective", "boosted", "distill", "get", "jei", "joint", "names"]

REGISTRY = Registry("objective")
REGISTRY.register("joint")(joint)
REGISTRY.register("distill")(distill)
REGISTRY.register("boosted")(boosted)
REGISTRY.register("jei")(jei)


def get(name: str, **options: Any) -> Objective:
    """Builds the objective registered as `name` with its options."""
    return REGISTRY.get(name, **options)


def names() -> list[str]:
    return REGISTRY.names()
