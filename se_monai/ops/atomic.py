"""Atomic file writing: every file se-monai writes (outputs, checkpoints, bases, results) goes to a temporary file in
the target's folder and is renamed onto the target only when complete, so an interrupted or failed write never leaves
a partial file and never destroys the previous content."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_write", "TEMPORARY_PREFIX"]

#: Name prefix of temporary files and folders (hidden; they never outlive the write).
TEMPORARY_PREFIX = ".se-monai-"
#: Permissions of a written file (``tempfile`` creates them readable by the owner only).
FILE_MODE = 0o644


@contextlib.contextmanager
def atomic_write(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``, renamed onto it when the block finishes without an error.

    The temporary name ends with ``target``'s name, so writers that choose a format by suffix (``.nii.gz``, ``.npz``,
    ``.onnx``) see the right one. On an error the temporary file is removed and ``target`` is left as it was.

    Args:
        target: the file to write; its folder must exist.

    Raises:
        OSError: the folder does not exist or cannot be written; whatever the block raises.
    """
    target = Path(target)
    handle, name = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, suffix=f"-{target.name}", dir=target.parent)
    os.close(handle)
    partial = Path(name)
    try:
        yield partial
        os.chmod(partial, FILE_MODE)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
