"""Bundle workflows that go on past a failed case.

A batch run of a bundle (inference over a folder or an MSD ``imagesTs/``, evaluation over a test set) skips a case
that cannot be read or fails in the transforms, names it in one log line with the reason, writes the other cases and
ends with exit status 1 when any case failed: the contract of ``se-monai segment IN_DIR OUT_DIR``, for
``python -m monai.bundle run``. In a bundle config (the shipped inference.json)::

    "failures": {"_target_": "se_monai.engines.CaseFailures", "output_dir": "@output_dir"},
    "dataset": {"_target_": "se_monai.engines.SkipFailedDataset", "data": "...", "transform": "@preprocessing"},
    "dataloader": {"_target_": "se_monai.engines.SkipFailedLoader", "dataset": "@dataset", "failures": "@failures"},
    "evaluator": {"_target_": "SupervisedEvaluator", "iteration_update": "$@failures.iteration", "...": "..."},
    "run": ["$@evaluator.run()", "$@failures.raise_if_any()"]

Where each failure is caught:

- **Loading and preprocessing** (a truncated file, a transform that raises): :class:`SkipFailedDataset` yields a
  :class:`FailedCase` in place of the case (from a DataLoader worker too), and :class:`SkipFailedLoader` drops it and
  records it before the engine sees a batch. The dataset is iterable, so MONAI's workflows (1.5 and later) take the
  epoch's length from the data: an epoch has one iteration per readable batch, and metrics never see a failed case.
- **The iteration** (the network, the postprocessing, writing): :meth:`CaseFailures.iteration`, MONAI's
  ``iteration_update`` hook around the evaluator's own iteration, records the failure, removes what the case wrote
  to ``output_dir`` and hands the engine an empty output. Use it where no metric reads the output (inference).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from monai.data import DataLoader, IterableDataset, list_data_collate
from monai.transforms import apply_transform
from monai.utils import ensure_tuple
from torch.utils.data import get_worker_info

from se_monai.io import InputError

__all__ = ["FailedCase", "describe_failure", "CasesFailed", "CaseFailures", "SkipFailedDataset", "SkipFailedLoader"]

LOGGER = logging.getLogger(__name__)
#: Longest reason kept from an exception's message (characters).
_REASON_CHARS = 200


def describe_failure(err: BaseException) -> tuple[str, InputError | None]:
    """Why a case failed, in one line, and the :class:`se_monai.io.InputError` behind it if there is one.

    MONAI's ``Compose`` and the engines wrap what a transform raises (``RuntimeError: applying transform ...``); the
    reason is that of the innermost exception of the chain (``__cause__``, else ``__context__``) with a message, e.g.
    ``"EOFError: Compressed file ended before the end-of-stream marker was reached"``, or the message of an
    InputError in the chain (it names the file and the problem already).

    Returns:
        ``(reason, input_error)``.
    """
    chain = [err]
    while (chain[-1].__cause__ or chain[-1].__context__) is not None and len(chain) < 32:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    user = next((e for e in chain if isinstance(e, InputError)), None)
    if user is not None:
        return str(user).strip().splitlines()[0], user
    inner = next((e for e in reversed(chain) if str(e).strip()), chain[-1])
    detail = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    return f"{type(inner).__name__}: {detail[:_REASON_CHARS]}".rstrip(": "), None


@dataclass(frozen=True)
class FailedCase:
    """A case that failed: its ``source`` (the image file, or files), the one-line ``reason``, and the InputError
    behind it if any (kept so that callers can raise it as it was)."""

    source: str
    reason: str
    error: InputError | None = None

    @classmethod
    def of(cls, source: Any, err: BaseException) -> FailedCase:
        """The failure ``err`` of the case whose image is ``source`` (a path, or a list of paths)."""
        reason, user = describe_failure(err)
        return cls(", ".join(str(s) for s in ensure_tuple(source)), reason, user)

    def line(self) -> str:
        """``"<source>: skipped (<reason>)"``, the source named once (an InputError's reason names it already)."""
        reason = self.reason.removeprefix(f"{self.source}: ")
        return f"{self.source}: skipped ({reason})"


class CasesFailed(SystemExit):
    """Raised at the end of a run in which cases failed. A SystemExit, so that ``python -m monai.bundle run`` ends
    with exit status 1 and this one-line summary on stderr (the cases were named as they failed) instead of a
    traceback; ``failed`` holds the :class:`FailedCase` list."""

    def __init__(self, failed: Sequence[FailedCase]):
        self.failed = list(failed)
        self.workflow: Any = None  # the run's workflow, where the caller has it (se_monai.workflows.run_bundle)
        names = ", ".join(case.source for case in self.failed[:3]) + (", ..." if len(self.failed) > 3 else "")
        count = "1 case" if len(self.failed) == 1 else f"{len(self.failed)} cases"
        super().__init__(f"{count} failed and {'was' if len(self.failed) == 1 else 'were'} skipped: {names}")


class CaseFailures:
    """The failed cases of one run: each recorded with one ERROR log line, and :meth:`raise_if_any` at the end.

    Args:
        output_dir: the folder the run writes each case's outputs to; what a case that fails in its iteration wrote
            there is removed. None: nothing is removed.
    """

    def __init__(self, output_dir: str | os.PathLike | None = None):
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.failed: list[FailedCase] = []

    def record(self, case: FailedCase) -> None:
        """Log the case's line and keep it."""
        LOGGER.error(case.line())
        self.failed.append(case)

    def iteration(self, engine: Any, batchdata: Any) -> Any:
        """MONAI's ``iteration_update`` of a workflow: the engine's own ``_iteration``, with a failure recorded for
        the batch's cases (their ``image`` meta ``filename_or_obj``), their new files in ``output_dir`` removed, and
        an empty output (``[]``) in place of the engine's."""
        before = self._outputs()
        try:
            return engine._iteration(engine, batchdata)
        except Exception as err:  # any failure of one case is that case's; the run goes on
            image = batchdata.get("image") if isinstance(batchdata, dict) else None
            sources = getattr(image, "meta", {}).get("filename_or_obj") or ["a case"]
            for source in ensure_tuple(sources):
                self.record(FailedCase.of(source, err))
            for name in self._outputs() - before:
                (self.output_dir / name).unlink(missing_ok=True)  # type: ignore[operator]
            return []

    def _outputs(self) -> set[str]:
        if self.output_dir is None or not self.output_dir.is_dir():
            return set()
        return set(os.listdir(self.output_dir))

    def raise_if_any(self) -> None:
        """End of a run.

        Raises:
            CasesFailed: some case failed (exit status 1 when it ends ``python -m monai.bundle run``).
        """
        if self.failed:
            raise CasesFailed(self.failed)


class SkipFailedDataset(IterableDataset):
    """MONAI's :class:`monai.data.IterableDataset` over a datalist, with a :class:`FailedCase` in place of each item
    whose transform raises (loading included), for :class:`SkipFailedLoader` to drop. Items are split between
    DataLoader workers as MONAI's IterableDataset splits them, and with ``shard_by_rank`` also between the processes
    of a ``torch.distributed`` run (as ``DistributedSampler(even_divisible=False)`` would: an iterable dataset takes
    no sampler).

    Args:
        data: the datalist, e.g. ``[{"image": path}, ...]``.
        transform: the preprocessing.
        source_key: the item key that names the case in a failure line.
        shard_by_rank: each process of an initialised process group takes every world-size-th item.
    """

    def __init__(
        self,
        data: Sequence[Any],
        transform: Callable | None = None,
        source_key: str = "image",
        shard_by_rank: bool = False,
    ):
        super().__init__(data=data, transform=transform)
        self.source_key = source_key
        self.shard_by_rank = shard_by_rank

    def _shard(self) -> tuple[int, int]:
        """``(number of shards, this one)`` over ranks and DataLoader workers."""
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        ranks, rank = 1, 0
        if self.shard_by_rank and torch.distributed.is_available() and torch.distributed.is_initialized():
            ranks, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
        return ranks * workers, rank * workers + worker

    def __iter__(self) -> Iterator[Any]:
        shards, shard = self._shard()
        for index, item in enumerate(self.data):
            if index % shards != shard:
                continue
            try:
                result = item if self.transform is None else apply_transform(self.transform, item)
            except Exception as err:  # a case that cannot be read or transformed is skipped, not the run
                source = item.get(self.source_key, item) if isinstance(item, dict) else item
                result = FailedCase.of(source, err)
            yield result


@dataclass(frozen=True)
class _WithFailures:
    batch: Any
    failed: list[FailedCase]


def _collate(items: list[Any], collate: Callable) -> Any:
    failed = [item for item in items if isinstance(item, FailedCase)]
    kept = [item for item in items if not isinstance(item, FailedCase)]
    if not failed:
        return collate(kept)
    return _WithFailures(collate(kept) if kept else None, failed)


class SkipFailedLoader(DataLoader):
    """MONAI's :class:`monai.data.DataLoader` that drops the :class:`FailedCase` items of a
    :class:`SkipFailedDataset`, records them in ``failures`` and yields only batches of cases that loaded.

    Args:
        dataset: a :class:`SkipFailedDataset`.
        failures: the run's record (a new one if None; then ``loader.failures``).
        kwargs: of :class:`monai.data.DataLoader` (``collate_fn`` collates the cases that loaded).
    """

    def __init__(self, dataset: SkipFailedDataset, failures: CaseFailures | None = None, **kwargs: Any):
        kwargs["collate_fn"] = functools.partial(_collate, collate=kwargs.get("collate_fn") or list_data_collate)
        super().__init__(dataset, **kwargs)
        self.failures = CaseFailures() if failures is None else failures

    def __iter__(self) -> Iterator[Any]:
        for batch in super().__iter__():
            if isinstance(batch, _WithFailures):
                for case in batch.failed:
                    self.failures.record(case)
                if batch.batch is None:
                    continue
                batch = batch.batch
            yield batch
