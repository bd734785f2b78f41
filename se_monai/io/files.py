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

__all__ = [
    "InputError",
    "NIFTI_SUFFIXES",
    "IMAGE_SUFFIXES",
    "READ_SUFFIXES",
    "is_nifti",
    "nifti_stem",
    "is_hidden",
    "list_images",
    "check_nifti",
    "check_output_path",
    "no_images_error",
    "unknown_format",
]

#: File-name endings of NIfTI images.
NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: File-name endings of images read through SimpleITK (:mod:`se_monai.io.sitk`), besides DICOM series folders.
IMAGE_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
#: File-name endings of every image file se-monai reads (lower case; names are matched in any case).
READ_SUFFIXES = (*NIFTI_SUFFIXES, *IMAGE_SUFFIXES)
#: First bytes of macOS AppleSingle and AppleDouble files (resource forks and Finder metadata that macOS writes
#: beside every file on foreign file systems and into archives, e.g. the Medical Segmentation Decathlon's): named
#: like the image they describe, with no image in them.
_APPLE_MAGIC = (b"\x00\x05\x16\x00", b"\x00\x05\x16\x07")
#: First bytes of a gzip stream.
_GZIP_MAGIC = b"\x1f\x8b"


class InputError(ValueError):
    """A user-supplied file or path cannot be used; the message is one line naming the file and the problem."""


def is_nifti(path: str | os.PathLike) -> bool:
    """Whether the file name ends in one of :data:`NIFTI_SUFFIXES`, in any case (``T1.NII.GZ`` from Windows tools)."""
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | os.PathLike) -> str:
    """The file name without its NIfTI ending, in any case (``case_001.nii.gz`` -> ``case_001``); other names are
    returned whole."""
    name = Path(path).name
    for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_hidden(path: str | os.PathLike) -> bool:
    """Whether the file or folder name starts with "." (Unix hidden files, macOS ``.DS_Store`` and ``._*``
    AppleDouble files, se-monai's own temporary files) or is macOS's ``__MACOSX`` archive folder."""
    name = Path(path).name
    return name.startswith(".") or name == "__MACOSX"


def list_images(
    folder: str | os.PathLike, suffixes: tuple[str, ...] = READ_SUFFIXES
) -> tuple[list[str], dict[str, str]]:
    """The image files directly inside ``folder``, as real archives hold them.

    A file is an image when its name ends in one of ``suffixes`` (case-insensitive), it is not hidden
    (:func:`is_hidden`: macOS's ``._*`` AppleDouble files beside every image of an archive made on a Mac), and its
    first bytes are not those of an AppleSingle/AppleDouble file (the name says image, the header says otherwise).
    Files named as images are listed whatever else their header holds: a truncated or corrupt image is the caller's
    to report, with its reason, when it fails to read.

    Args:
        folder: the folder to list (not recursive).
        suffixes: the file-name endings of images.

    Returns:
        ``(images, ignored)``: the images' paths (str), sorted; ``{path: why it is not listed}`` for the other
        visible files (e.g. "a macOS AppleDouble file, not an image").

    Raises:
        InputError: ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    images, ignored = [], {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not is_hidden(p)):
        if not path.name.lower().endswith(suffixes):
            ignored[str(path)] = f"not an image of {', '.join(suffixes)}"
        elif _first_bytes(path) in _APPLE_MAGIC:
            ignored[str(path)] = "a macOS AppleDouble file, not an image"
        else:
            images.append(str(path))
    return images, ignored


def no_images_error(folder: str | os.PathLike) -> InputError:
    """The error for a folder with no image and no DICOM series for ``se-monai segment``; it names an image in a
    subfolder if there is one (a BIDS dataset keeps its scans in ``sub-*/anat/``), since only DICOM series are looked
    for below the folder."""
    folder = Path(folder)
    below = (p for p in sorted(folder.rglob("*")) if p.name.lower().endswith(READ_SUFFIXES) and not is_hidden(p))
    first = next(below, None)
    hint = "" if first is None else f"; subfolders are searched for DICOM only (found {first.relative_to(folder)})"
    return InputError(f"{folder}: no image ({', '.join(READ_SUFFIXES)}) or DICOM series{hint}")


def _first_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(4)
    except OSError:
        return b""  # unreadable: listed, and reported when it fails to read


def unknown_format(path: str | os.PathLike) -> InputError:
    """The error for a file whose name is none of the image formats se-monai reads."""
    return InputError(f"{path}: unknown image format (expected {', '.join(READ_SUFFIXES)} or a DICOM folder)")


def check_nifti(path: str | os.PathLike, channels: int = 1) -> tuple[int, int, int]:
    """Check that ``path`` is a readable NIfTI volume with ``channels`` channel(s).

    Accepted: 3-D ``(X, Y, Z)`` when ``channels == 1``, or 4-D ``(X, Y, Z, channels)``.

    Args:
        path: the file to check.
        channels: number of image channels the model takes.

    Returns:
        The spatial shape ``(X, Y, Z)`` in voxels.

    Raises:
        InputError: missing file, a folder, an empty file, not a NIfTI (:func:`unknown_format`), corrupt or
            truncated data, wrong dimensionality, wrong channel count, a volume with no voxels or a single slice.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    if not is_nifti(path):
        raise unknown_format(path)
    try:
        image = nib.load(str(path))
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as err:
        if path.name.lower().endswith(".nii") and _first_bytes(path)[:2] == _GZIP_MAGIC:
            raise InputError(f"{path}: gzip-compressed, named .nii: rename it to end in .nii.gz") from err
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
