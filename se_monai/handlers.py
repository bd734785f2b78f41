"""Ignite handlers for the bundle's workflows, so that no training run loses its weights.

- :class:`CheckpointSaver`: MONAI's, with every file written to a temporary name and renamed into place (readable like
  any other file), so a killed run never leaves a truncated ``model.pt``, and with its best score in its state.
- :class:`ValidationHandler`: MONAI's, which also validates once when training ends on an epoch its interval skipped:
  every run ends validated, so the best-by-validation checkpoint always exists.
- :class:`TrainingState`: model, optimizer, scheduler, best-checkpoint record and trainer saved after every epoch and
  loaded when a run starts, so the same command continues a killed run; removed when the run completes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from ignite.handlers.checkpoint import BaseSaveHandler
from monai.handlers import CheckpointSaver as MonaiCheckpointSaver
from monai.handlers import ValidationHandler as MonaiValidationHandler

from se_monai.ops.atomic import atomic_write

__all__ = ["CheckpointSaver", "ValidationHandler", "TrainingState"]

logger = logging.getLogger(__name__)


class _AtomicSave(BaseSaveHandler):
    """Writes what a ``DiskSaver`` would (same folder, same fixed or generated name) through
    :func:`se_monai.ops.atomic.atomic_write`, on the first process only."""

    def __init__(self, disk: DiskSaver) -> None:
        self.disk = disk

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        if idist.get_rank() != 0:
            return
        path = Path(self.disk.dirname) / (getattr(self.disk, "filename", None) or filename)
        with atomic_write(path) as partial:
            torch.save(checkpoint, partial)

    def remove(self, filename: str) -> None:
        if getattr(self.disk, "filename", None) is None:
            self.disk.remove(filename)
        # a fixed file name is replaced by the save that follows, atomically: removing it first would leave a moment
        # without any checkpoint


class CheckpointSaver(MonaiCheckpointSaver):
    """``monai.handlers.CheckpointSaver`` (same arguments) whose checkpoints are written atomically, and whose best
    key metric so far is part of :meth:`state_dict`, so that a resumed run keeps its best checkpoint."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for value in vars(self).values():
            if isinstance(value, Checkpoint) and isinstance(value.save_handler, DiskSaver):
                value.save_handler = _AtomicSave(value.save_handler)

    def state_dict(self) -> dict[str, Any]:
        """The key-metric checkpoint's record of what it saved (ignite's ``Checkpoint.state_dict``), or ``{}``;
        ``load_state_dict`` (MONAI's) restores it."""
        for value in vars(self).values():
            if isinstance(value, Checkpoint) and value.score_name == "key_metric":
                return value.state_dict()
        return {}


class ValidationHandler(MonaiValidationHandler):
    """``monai.handlers.ValidationHandler`` (same arguments) that also runs the validator when training completes on
    an epoch that ``interval`` skipped (e.g. fewer epochs than the interval)."""

    def attach(self, engine: Engine) -> None:
        super().attach(engine)
        engine.add_event_handler(Events.COMPLETED, self._at_the_end)

    def _at_the_end(self, engine: Engine) -> None:
        if self.epoch_level and engine.state.epoch % self.interval:
            self(engine)


class TrainingState:
    """Makes a training run resumable: after every epoch, ``objects`` (e.g. model, optimizer, lr_scheduler, each with
    ``state_dict``) and the trainer's progress are saved to ``path`` (atomically, first process only); when a run
    starts and ``path`` exists, they are loaded and training continues after the last finished epoch, with the
    current ``max_epochs``; when the run completes, ``path`` is removed.

    Args:
        path: the state file, e.g. ``<bundle>/models/training_state.pt``.
        objects: ``{name: object with state_dict/load_state_dict}``.
        map_location: where loaded tensors go, as in ``torch.load``.

    Raises:
        ValueError: at start, a state whose epoch is past the current ``max_epochs``.
    """

    def __init__(self, path: str | os.PathLike, objects: Mapping[str, Any], map_location: Any = "cpu") -> None:
        self.path = Path(path)
        self.objects = dict(objects)
        self.map_location = map_location

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)
        engine.add_event_handler(Events.COMPLETED, self.remove)

    def load(self, engine: Engine) -> None:
        if not self.path.is_file():
            return
        state = torch.load(self.path, map_location=self.map_location, weights_only=True)
        max_epochs = engine.state.max_epochs
        Checkpoint.load_objects(to_load={**self.objects, "trainer": engine}, checkpoint=state)
        if max_epochs is not None and engine.state.epoch > max_epochs:
            raise ValueError(f"{self.path}: a run at epoch {engine.state.epoch}, more than max_epochs {max_epochs}")
        engine.state.max_epochs = max_epochs
        logger.info(f"resuming the training run of {self.path} after epoch {engine.state.epoch}")

    def save(self, engine: Engine) -> None:
        if idist.get_rank() != 0:
            return
        state = {name: obj.state_dict() for name, obj in self.objects.items()}
        state["trainer"] = engine.state_dict()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path) as partial:
            torch.save(state, partial)

    def remove(self, engine: Engine) -> None:
        if idist.get_rank() == 0:
            self.path.unlink(missing_ok=True)
