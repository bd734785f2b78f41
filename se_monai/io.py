"""Checks of users' files: every problem with an input or output path becomes one :class:`InputError` whose message
names the file and the problem, before any work starts (outputs are then written with
:func:`se_monai.ops.atomic.atomic_write`, so a failure never leaves a partial output and an input is never
overwritten)."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["InputError", "NIFTI_SUFFIXES", "is_nifti", "nifti_stem", "check_nifti", "check_output_path"]

#: File-name endings of NIfTI images.
NIFTI_SUFFIXES = (".nii", ".nii.gz")


class InputError(ValueError):
    """A user-supplied file or path cannot be used; the message is one line naming the file and the problem."""


def is_nifti(path: str | os.PathLike) -> bool:
    """Whether the file name ends in one of :data:`NIFTI_SUFFIXES`."""
    return Path(path).name.endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | os.PathLike) -> str:
    """The file name without its NIfTI ending (``case_001.nii.gz`` -> ``case_001``); other names are returned whole."""
    name = Path(path).name
    for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_nifti(path: str | os.PathLike, channels: int = 1) -> tuple[int, int, int]:
    """Check that ``path`` is a readable NIfTI volume with ``channels`` channel(s).

    Accepted: 3-D ``(X, Y, Z)`` when ``channels == 1``, or 4-D ``(X, Y, Z, channels)``.

    Args:
        path: the file to check.
        channels: number of image channels the model takes.

    Returns:
        The spatial shape ``(X, Y, Z)`` in voxels.

    Raises:
        InputError: missing file, a folder, an empty file, not a NIfTI, corrupt or truncated data, wrong
            dimensionality, wrong channel count, a volume with no voxels or a single slice.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    if not is_nifti(path):
        raise InputError(f"{path}: not a NIfTI file (expected .nii or .nii.gz)")
    try:
        image = nib.load(str(path))
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as err:
        raise InputError(f"{path}: not a readable NIfTI image ({type(err).__name__}: {err})".splitlines()[0]) from err
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path}: not a NIfTI image ({type(image).__name__})")
    shape = tuple(int(s) for s in image.shape)
    if len(shape) == 3 and channels != 1:
        raise InputError(f"{path}: has 1 channel, the model expects {channels}")
    if len(shape) == 4 and shape[3] != channels:
        raise InputError(f"{path}: has {shape[3]} channels (shape {shape}), the model expects {channels}")
    if len(shape) not in (3, 4):
        raise InputError(f"{path}: expected a 3-D volume (or 4-D with channels last), got {len(shape)}-D shape {shape}")
    if min(shape) < 1:
        raise InputError(f"{path}: empty volume (shape {shape})")
    if min(shape[:3]) < 2:
        raise InputError(f"{path}: shape {shape} is a single slice (a 2-D image), not a volume")
    try:
        data = np.asanyarray(image.dataobj)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as err:
        raise InputError(
            f"{path}: corrupt or truncated NIfTI data ({type(err).__name__}: {err})".splitlines()[0]
        ) from err
    if not np.isfinite(data).all():
        raise InputError(f"{path}: contains NaN or infinite values")
    return shape[:3]  # type: ignore[return-value]


def check_output_path(output: str | os.PathLike, *inputs: str | os.PathLike, others: tuple[str, ...] = ()) -> Path:
    """Check that ``output`` is a NIfTI path (or ends in one of ``others``) in an existing folder and is none of
    ``inputs``.

    Raises:
        InputError: wrong suffix, missing parent folder, output is a folder, or it would overwrite an input.
    """
    output = Path(output)
    if not (is_nifti(output) or output.name.lower().endswith(others)):
        raise InputError(f"{output}: output must end in {', '.join(('.nii', '.nii.gz', *others))}")
    if output.is_dir():
        raise InputError(f"{output}: is a folder, expected a file name")
    if not output.parent.resolve().is_dir():
        raise InputError(f"{output}: folder {output.parent} does not exist")
    for source in inputs:
        if Path(source).resolve() == output.resolve():
            raise InputError(f"{output}: would overwrite the input; choose another output name")
    return output
