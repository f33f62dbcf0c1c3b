"""Backbones with exits, by name: `eejax.models.get("resnet_ee", num_classes=10)`."""

from __future__ import annotations

from typing import Any

from eejax.models.msdnet import msdnet
from eejax.models.resnet import resnet_ee
from eejax.models.vit import vit_ee
from eejax.network import EarlyExitNet
from eejax.registry import Registry

REGISTRY = Registry("model")
REGISTRY.register("resnet_ee")(resnet_ee)
REGISTRY.register("msdnet")(msdnet)
REGISTRY.register("vit_ee")(vit_ee)


def get(name: str, **options: Any) -> EarlyExitNet:
    """Builds the model registered as `name`; options go to its factory."""
    return REGISTRY.get(name, **options)


def names() -> list[str]:
    return REGISTRY.names()
