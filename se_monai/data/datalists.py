"""Datalists of MSD-layout datasets and folders: the images to segment in a folder or an MSD ``imagesTs/`` (listed as
real archives hold them: :func:`se_monai.io.files.list_images`), labelled test pairs, the validation split, the
skull-stripped training cases, ``dataset.json`` checked, and the voxels an input acquired."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from se_monai.io.files import READ_SUFFIXES, InputError, list_images

__all__ = [
    "images_to_segment",
    "list_nifti",
    "labelled_test_datalist",
    "STRIPPED_ZERO_FRACTION",
    "is_skull_stripped",
    "acquired_voxels",
    "split_datalist",
    "skull_stripped_indices",
    "read_dataset",
]

LOGGER = logging.getLogger(__name__)


def images_to_segment(folder: str | os.PathLike) -> list[str]:
    """The images to segment in ``folder``: its ``imagesTs/`` when it is an MSD dataset, else the folder itself, as
    :func:`se_monai.io.list_images` lists them (hidden and macOS ``._*`` files ignored; the other files that are
    not images named in one INFO log line each).

    Returns:
        Sorted paths (str) of ``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``, ``.mha`` and ``.mhd`` files.

    Raises:
        FileNotFoundError: the folder does not exist or holds no image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    source = folder / "imagesTs" if (folder / "imagesTs").is_dir() else folder
    files, ignored = list_images(source)
    for path, reason in ignored.items():
        LOGGER.info(f"{path}: ignored ({reason})")
    if not files:
        raise FileNotFoundError(f"{source}: no image files ({', '.join(READ_SUFFIXES)})")
    return files


def list_nifti(folder: str | os.PathLike) -> list[str]:
    """Deprecated name of :func:`images_to_segment`, kept for the configs of bundles made before it.

    Raises:
        FileNotFoundError: as :func:`images_to_segment`.
    """
    warnings.warn("se_monai.data.list_nifti is deprecated: use images_to_segment", DeprecationWarning, stacklevel=2)
    return images_to_segment(folder)


def labelled_test_datalist(dataset_dir: str | os.PathLike) -> list[dict[str, str]]:
    """``[{"image", "label"}]`` pairs of an MSD dataset's ``imagesTs/`` with same-named files in ``labelsTs/``.

    Raises:
        FileNotFoundError: no test image has a label.
    """
    root = Path(dataset_dir)
    pairs = [
        {"image": image, "label": str(root / "labelsTs" / Path(image).name)}
        for image in images_to_segment(root / "imagesTs")
        if (root / "labelsTs" / Path(image).name).is_file()
    ]
    if not pairs:
        raise FileNotFoundError(f"{root}: no imagesTs/ file has a label of the same name in labelsTs/")
    return pairs


#: Fraction of voxels exactly 0 above which a brain image counts as skull-stripped (a head fills its field of view
#: with noise; brain-extraction tools write zeros outside the brain: 0.66-0.95 in the shipped model's data).
STRIPPED_ZERO_FRACTION = 0.3


def is_skull_stripped(path: str | os.PathLike) -> bool:
    """Whether the image file is a skull-stripped brain: more than :data:`STRIPPED_ZERO_FRACTION` of its voxels
    are exactly 0.

    Raises:
        InputError: the file cannot be read as an image.
    """
    try:
        data = np.asanyarray(nib.load(str(path)).dataobj)
    except Exception as err:  # nibabel raises many types for unreadable files
        raise InputError(f"{path}: not a readable image ({type(err).__name__})") from err
    return float(np.count_nonzero(data == 0)) / max(1, data.size) > STRIPPED_ZERO_FRACTION


def voxel_ml(affine: Any) -> float:
    """The volume of one voxel (mL) of a ``(4, 4)`` voxel-to-world affine in mm: ``|det(affine[:3, :3])| / 1000``."""
    return abs(float(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0


def acquired_voxels(image: Any) -> Any:
    """``select_fn`` of ``MaskIntensityd`` for predictions: ``(1, D, H, W)``, True where any of the ``(C, D, H, W)``
    input channels is non-zero, so that voxels exactly 0 in every channel (outside a skull-stripped brain, as
    extraction tools write it) are labelled background, whatever the channel count."""
    return (image != 0).any(0, keepdim=True)


def split_datalist(datalist: list[dict[str, Any]], num_val: int) -> tuple[list, list]:
    """``(training, validation)`` items of a bundle's datalist: the last ``num_val`` items validate, at most all but
    one of them; ``num_val`` 0 or a single item validates on the last training item.

    Raises:
        ValueError: an empty datalist or a negative ``num_val``.
    """
    if not datalist or num_val < 0:
        raise ValueError(f"split_datalist: needs items and num_val >= 0, got {len(datalist)} items, num_val {num_val}")
    held_out = min(int(num_val), len(datalist) - 1)
    if held_out == 0:
        return list(datalist), list(datalist[-1:])
    return list(datalist[:-held_out]), list(datalist[-held_out:])


def skull_stripped_indices(datalist: list[dict[str, Any]]) -> list[int]:
    """Indices of the ``datalist`` items (``{"image": path, ...}``) whose image is skull-stripped
    (:func:`is_skull_stripped`), or of all items when none is: the data the shipped training recipe estimates its
    batch-norm statistics on (:class:`se_monai.handlers.BatchNormRecalibration`)."""
    stripped = [i for i, item in enumerate(datalist) if is_skull_stripped(item["image"])]
    return stripped or list(range(len(datalist)))


def read_dataset(dataset_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``dataset.json`` of an MSD-layout dataset, checked for what a bundle needs.

    Returns:
        The parsed file, with "modality" ``{"0": name, ...}`` and "labels" ``{"0": name, ...}``.

    Raises:
        InputError: no ``dataset.json``, not JSON, or "modality"/"labels" missing or not numbered from "0".
    """
    path = Path(dataset_dir) / "dataset.json"
    if not path.is_file():
        raise InputError(f"{dataset_dir}: no dataset.json (expected the MSD layout)")
    try:
        dataset = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not a readable JSON file ({err})".splitlines()[0]) from err
    for key in ("modality", "labels"):
        entries = dataset.get(key)
        if not isinstance(entries, dict) or not entries:
            raise InputError(f'{path}: no "{key}" (expected e.g. {{"0": "..."}})')
        if sorted(entries, key=lambda k: int(k) if str(k).isdigit() else -1) != [str(i) for i in range(len(entries))]:
            raise InputError(f'{path}: "{key}" must be numbered 0..{len(entries) - 1}, got {sorted(entries)}')
    return dataset
