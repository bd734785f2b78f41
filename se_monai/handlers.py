"""Ignite handlers for the bundle's workflows, so that no training run loses its weights.

- :class:`CheckpointSaver`: MONAI's, with every file written to a temporary name and renamed into place (readable like
  any other file), so a killed run never leaves a truncated ``model.pt``, and with its best score in its state.
- :class:`ValidationHandler`: MONAI's, which also validates once when training ends on an epoch its interval skipped:
  every run ends validated, so the best-by-validation checkpoint always exists.
- :class:`TrainingState`: model, optimizer, scheduler, best-checkpoint record and trainer saved after every epoch and
  loaded when a run starts, so the same command continues a killed run; removed when the run completes.
- :class:`BatchNormRecalibration`: when training ends, the best checkpoint with its batch-norm statistics estimated
  afresh over chosen training data is validated, and kept as the best checkpoint only if it validates better.
- :class:`ProgressBar`: Ignite's tqdm progress bar as a bundle handler (``se-monai train`` and ``evaluate`` show it
  on a terminal).
- :class:`LabelStatisticsSaver`: per evaluated image, the volume and mean intensity of every predicted class on the
  image's own grid (evaluate.json's ``eval/statistics.json``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.contrib.handlers import ProgressBar as IgniteProgressBar  # (also in ignite.handlers from 0.5)
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from ignite.handlers.checkpoint import BaseSaveHandler
from monai.handlers import CheckpointSaver as MonaiCheckpointSaver
from monai.handlers import ValidationHandler as MonaiValidationHandler
from torch.optim.swa_utils import update_bn

from se_monai.io import InputError
from se_monai.io.sitk import label_statistics, labels_on_grid, read_image
from se_monai.ops.atomic import atomic_write
from se_monai.workflows import bundle_class_names

__all__ = [
    "CheckpointSaver",
    "ValidationHandler",
    "TrainingState",
    "recalibrate_batch_norm",
    "BatchNormRecalibration",
    "LabelStatisticsSaver",
    "ProgressBar",
]

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
        # a warning, so that a quiet command line shows it too: the run continues instead of starting afresh
        logger.warning(
            f"resuming the training run of {self.path} after epoch {engine.state.epoch} (delete it to start afresh)"
        )

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


def recalibrate_batch_norm(
    network: torch.nn.Module, batches: Iterable[Mapping[str, Any]], num_batches: int, device: Any = "cpu"
) -> int:
    """Replace the running mean and variance of every batch-norm layer of ``network`` by their plain average over
    ``num_batches`` batches (``batch["image"]``, cycled if the iterable is shorter), in training mode without
    gradients (torch.optim.swa_utils.update_bn); precise batch norm (Wu and Johnson, "Rethinking 'Batch' in
    BatchNorm", arXiv 2105.07576, 2021).
    The running estimates of the last training steps weigh the last few batches most (momentum 0.1): with training
    data of very different kinds (here skull-stripped brains and whole heads) they depend on which came last.

    Returns:
        The number of batches used. The network is left in eval mode, with its layers' momentum as before.

    Raises:
        ValueError: ``num_batches < 1`` or no batch.
    """
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}")
    seen = 0

    def images() -> Iterator[torch.Tensor]:
        nonlocal seen
        while seen < num_batches:
            before = seen
            for batch in batches:
                yield batch["image"]
                seen += 1
                if seen == num_batches:
                    return
            if seen == before:
                raise ValueError("recalibrate_batch_norm: no batches to run")

    with torch.no_grad():
        update_bn(images(), network, device)  # torch's: cumulative averages, momenta restored
    network.eval()
    return seen


class BatchNormRecalibration:
    """When training completes: load the best checkpoint (``checkpoint``, e.g. ``models/model.pt``) into
    ``network``, recalibrate its batch-norm statistics over ``num_batches`` batches of ``data_loader``
    (:func:`recalibrate_batch_norm`), and run ``validator``: its key-metric checkpoint saver replaces the best
    checkpoint only if the recalibrated network validates better, so validation decides, never this handler. Attach
    it after the handler that saves the final weights (they are saved as trained). With several processes (torchrun),
    every process waits for the checkpoint, recalibrates over its own batches, and the statistics are averaged over
    the processes, so their networks stay identical. The network ends holding the best checkpoint.

    Args:
        validator: the run's evaluator, whose handlers include the key-metric :class:`CheckpointSaver`.
        network: the trained network (the one the checkpoint holds).
        checkpoint: the best checkpoint's path; nothing is done when it does not exist.
        data_loader: training batches for the statistics, e.g. the skull-stripped training images only
            (:func:`se_monai.data.is_skull_stripped`).
        num_batches: batches to average over.
        key: the network's key in the checkpoint.
        map_location: as in ``torch.load``.
    """

    def __init__(
        self,
        validator: Engine,
        network: torch.nn.Module,
        checkpoint: str | os.PathLike,
        data_loader: Iterable[Mapping[str, Any]],
        num_batches: int = 150,
        key: str = "model",
        map_location: Any = "cpu",
    ) -> None:
        self.validator, self.network, self.checkpoint = validator, network, Path(checkpoint)
        self.data_loader, self.num_batches, self.key, self.map_location = data_loader, num_batches, key, map_location

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def _load_best(self, network: torch.nn.Module) -> bool:
        if idist.get_world_size() > 1:
            idist.barrier()  # the first process has written the best checkpoint before any process reads it
        if not self.checkpoint.is_file():
            return False
        state = torch.load(self.checkpoint, map_location=self.map_location, weights_only=True)
        network.load_state_dict(state.get(self.key, state))  # nested {"model": ...} or flat
        return True

    def __call__(self, engine: Engine) -> None:
        network = getattr(self.network, "module", self.network)  # under DistributedDataParallel, its module
        if not self._load_best(network):
            return
        device = next(network.parameters()).device
        used = recalibrate_batch_norm(network, self.data_loader, self.num_batches, device)
        if idist.get_world_size() > 1:  # every process averaged its own batches: the mean over processes is the
            for m in network.modules():  # average over all of them, and the processes stay identical
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    for buffer in (m.running_mean, m.running_var):
                        buffer.copy_(idist.all_reduce(buffer.clone()) / idist.get_world_size())
        logger.info(f"batch-norm statistics of {self.checkpoint} recalibrated over {used} batches; validating")
        self.validator.run(engine.state.epoch)
        self._load_best(network)  # the network ends as the best checkpoint, recalibrated or not


class LabelStatisticsSaver:
    """Per image an evaluator segments: voxels, volume (mL) and mean input intensity of every class
    (:func:`se_monai.io.sitk.label_statistics`, SimpleITK's label statistics), from the predicted labels on the
    image's own grid (``labels_key``: ``(1, X, Y, Z)`` class indices after ``Invertd``) and the image file they came
    from (its ``filename_or_obj``), written when the run completes to ``<output_dir>/<filename>`` as
    ``{image file: {class name: {"voxels", "volume_ml", "mean_intensity"}}}`` (atomically; with several processes,
    the first writes every process's images).

    Args:
        output_dir: the folder to write to (created if missing).
        class_names: class index (a string) -> name; default those of ``<bundle_root>/configs/inference.json``.
        bundle_root: the bundle, for the default class names.
        labels_key: the engine output's key of the labels on the input's grid.
        filename: the JSON file's name.

    Raises:
        ValueError: neither ``class_names`` nor ``bundle_root`` given.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: Mapping[str, str] | None = None,
        bundle_root: str | os.PathLike | None = None,
        labels_key: str = "pred_labels",
        filename: str = "statistics.json",
    ) -> None:
        if class_names is None:
            if bundle_root is None:
                raise ValueError("LabelStatisticsSaver: give class_names or bundle_root")
            class_names = bundle_class_names(bundle_root)
        self.class_names = {str(k): str(v) for k, v in dict(class_names).items()}
        self.path, self.labels_key = Path(output_dir) / filename, labels_key
        self.table: dict[str, dict] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda _: self.table.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def collect(self, engine: Engine) -> None:
        """The statistics of every image of the iteration's (decollated) output."""
        for item in engine.state.output:
            labels = item[self.labels_key]
            source = str(labels.meta["filename_or_obj"])
            try:
                image = read_image(source)
                array = labels.detach().cpu().numpy()[0]
                self.table[source] = label_statistics(labels_on_grid(array, image), image, self.class_names)
            except (InputError, ValueError) as err:  # e.g. a NIfTI whose sform SimpleITK refuses: Dice still counts
                logger.warning(f"{source}: no label statistics ({err})")

    def write(self, engine: Engine) -> None:
        """Write the table (gathered from every process) on the first process."""
        table = dict(self.table)
        if idist.get_world_size() > 1:
            for part in idist.all_gather(json.dumps(self.table)):
                table.update(json.loads(part))
        if idist.get_rank() == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.path) as partial:
                partial.write_text(json.dumps(dict(sorted(table.items())), indent=2) + "\n")
            logger.info(f"label statistics of {len(table)} image(s) written to {self.path}")


class ProgressBar(IgniteProgressBar):
    """Ignite's tqdm progress bar (on stderr) over the iterations of each epoch, attached as the bundle workflows
    attach handlers (``attach(engine)``).

    Args:
        output_transform: the engine's output to a value shown beside the bar, e.g.
            ``monai.handlers.from_engine(["loss"], first=True)``.
        kwargs: of Ignite's ``ProgressBar`` (``persist``, ``desc``, ...).
    """

    def __init__(self, output_transform: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.output_transform = output_transform

    def attach(self, engine: Engine, metric_names: Any = None, output_transform: Any = None, **kwargs: Any) -> None:
        """Attach to ``engine``, showing ``output_transform`` (default: the one given at construction)."""
        super().attach(engine, metric_names, output_transform or self.output_transform, **kwargs)
