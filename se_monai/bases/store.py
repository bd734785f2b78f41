"""Where computed bases are kept: files shipped inside the package and a cache for bases computed on first use.

A basis is stored as ``.npz`` with one float32 array ``basis`` of shape ``(F, S, k, k, k)``. Shipped files live in
``se_monai/bases/data``; bases computed on a user's machine go to ``$SE_MONAI_CACHE`` (default
``$XDG_CACHE_HOME/se-monai/bases`` or ``~/.cache/se-monai/bases``). Files are written atomically; an unreadable or
misshapen file, or a cache folder that cannot be written, is a warning (the basis is computed again), never an error.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from se_monai.ops.atomic import atomic_write

__all__ = ["CACHE_ENV", "PACKAGED_DIR", "cache_dir", "find_basis", "load_basis", "write_basis", "save_basis"]

#: Environment variable naming the folder for bases computed on first use.
CACHE_ENV = "SE_MONAI_CACHE"
#: Folder of the bases shipped with se-monai.
PACKAGED_DIR = Path(__file__).resolve().parent / "data"


def cache_dir() -> Path:
    """Folder for computed bases: ``$SE_MONAI_CACHE``, else ``$XDG_CACHE_HOME/se-monai/bases`` or
    ``~/.cache/se-monai/bases``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "se-monai" / "bases"


def load_basis(path: Path, shape: tuple[int, ...]) -> torch.Tensor | None:
    """The float32 basis stored in ``path``, or None (with a warning) when it is unreadable or not of ``shape``."""
    try:
        with np.load(path) as data:
            basis = torch.from_numpy(data["basis"].astype(np.float32))
    except (OSError, KeyError, ValueError) as err:
        warnings.warn(f"{path}: unreadable basis file ({err}); computing it again", stacklevel=3)
        return None
    if tuple(basis.shape) != shape:
        warnings.warn(
            f"{path}: basis of shape {tuple(basis.shape)}, expected {shape}; computing it again", stacklevel=3
        )
        return None
    return basis


def find_basis(name: str, shape: tuple[int, ...]) -> torch.Tensor | None:
    """The basis file ``name`` from the shipped bases, else from the cache; None when neither has a usable one."""
    for folder in (PACKAGED_DIR, cache_dir()):
        if (folder / name).is_file():
            basis = load_basis(folder / name, shape)
            if basis is not None:
                return basis
    return None


def write_basis(basis: torch.Tensor, path: Path) -> None:
    """Write ``basis`` to ``path`` atomically, creating its folder.

    Raises:
        OSError: the folder cannot be created or written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as partial:
        np.savez_compressed(partial, basis=basis.numpy())


def save_basis(basis: torch.Tensor, path: Path) -> None:
    """:func:`write_basis` for the cache: warn instead of failing when the folder cannot be written."""
    try:
        write_basis(basis, path)
    except OSError as err:
        warnings.warn(f"could not cache the basis in {path.parent} ({err}); it will be computed again", stacklevel=3)
