"""Training objectives by name: `eejax.objectives.get("joint", weights="linear")`.

An objective maps every exit's logits to a scalar loss and metrics:

    loss, aux = objective(logits, labels)      logits: [K, B, C], labels: [B] int
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eejax.objectives.joint import distill, joint
from eejax.registry import Registry

Objective = Callable[..., tuple[Any, dict[str, Any]]]

REGISTRY = Registry("objective")
REGISTRY.register("joint")(joint)
REGISTRY.register("distill")(distill)


def get(name: str, **options: Any) -> Objective:
    """Builds the objective registered as `name` with its options."""
    return REGISTRY.get(name, **options)


def names() -> list[str]:
    return REGISTRY.names()
