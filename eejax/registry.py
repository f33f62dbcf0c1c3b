"""Name -> factory tables for what configs refer to by string (models, objectives, datasets).

A lookup validates the name and the options against the factory's signature, so a typo in a
config fails with a message naming the field and the choices instead of a TypeError deep inside.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


class Registry:
    """A table of named factories of one kind (e.g. "model")."""

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(self._factories)

    def get(self, name: str, **options: Any) -> Any:
        """Builds the factory registered as `name` with `options`, after checking both."""
        if name not in self._factories:
            raise ValueError(f"unknown {self.kind} {name!r}; expected one of {self.names()}")
        factory = self._factories[name]
        parameters = inspect.signature(factory).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        unknown = sorted(set(options) - set(parameters))
        if unknown and not takes_any:
            accepted = sorted(p for p in parameters if not p.startswith("_"))
            raise ValueError(
                f"{self.kind} {name!r} got unknown option(s) {unknown}; it accepts {accepted}"
            )
        return factory(**options)
