"""orbax-checkpoint save/restore of the training state, with clear errors when it fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be restored (corrupt, or from another config)."""


class Checkpointer:
    """Saves every `save` call; keeps the last `max_to_keep`; restores the latest.

    Orbax writes each step to a temporary directory and renames it when complete, so a crash
    during a save leaves the previous checkpoint as the latest one.
    """

    def __init__(self, directory: str | Path, max_to_keep: int = 3):
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, meta: dict) -> None:
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

    def restore(self, step: int, like: Any, meta: dict) -> Any:
        """Restores step `step` into the structure of `like`; `meta` must match what was saved."""
        path = self.directory / str(step)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        except Exception as error:
            raise CheckpointError(
                f"the checkpoint at {path} could not be restored ({type(error).__name__}: "
                f"{str(error)[:300]}); it is corrupt or was written by an incompatible config. "
                f"Delete it to resume from an earlier step, or use a new --workdir") from error
        saved = dict(restored["meta"])
        if saved != meta:
            changed = sorted(k for k in set(saved) | set(meta) if saved.get(k) != meta.get(k))
            raise CheckpointError(
                f"the checkpoint at {path} was written by a different config (fields {changed} "
                f"differ); use a new --workdir or restore the original config")
        return restored["state"]

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
