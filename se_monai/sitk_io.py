"""Images other than NIfTI through SimpleITK: NRRD and MetaImage files and DICOM series folders in, NRRD and
MetaImage label files out (issue 15, item 1, first part).

``se-monai segment`` converts such an input to a NIfTI in its staging folder with SimpleITK (which writes the
image's spacing, origin and direction into the NIfTI's affine), segments that with the bundle, and writes the labels
with the input's size, spacing, origin and direction copied from the input image (:func:`write_on_grid`). DICOM
series are found with GDCM (``ImageSeriesReader.GetGDCMSeriesIDs``); a folder with several series needs the series
instance UID chosen, and a series with missing or unevenly spaced slices is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from se_monai.io import InputError, is_nifti

__all__ = ["IMAGE_SUFFIXES", "LABEL_SUFFIXES", "needs_sitk", "read_image", "write_on_grid", "label_statistics"]

#: Input files read through SimpleITK (besides DICOM series folders); NIfTI goes through the bundle's own reader.
IMAGE_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
#: Label outputs written through SimpleITK: single-file formats only (a detached header names its data file, which
#: would not survive the rename of an atomic write).
LABEL_SUFFIXES = (".nrrd", ".mha")
#: Relative spread of the slice spacing above which a DICOM series counts as having missing or uneven slices.
SLICE_TOLERANCE = 0.01


def needs_sitk(path: str | os.PathLike) -> bool:
    """Whether ``path`` is read or written through SimpleITK: a folder (a DICOM series) or a non-NIfTI image suffix."""
    path = Path(path)
    return path.is_dir() or path.name.lower().endswith(IMAGE_SUFFIXES + LABEL_SUFFIXES)


def _series_files(folder: Path, series: str | None) -> list[str]:
    uids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    if not uids:
        raise InputError(f"{folder}: no DICOM series in the folder")
    if series is None and len(uids) > 1:
        described = []
        for uid in uids:
            first = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)[0]
            reader = sitk.ImageFileReader()
            reader.SetFileName(first)
            reader.ReadImageInformation()
            description = reader.GetMetaData("0008|103e").strip() if reader.HasMetaDataKey("0008|103e") else ""
            described.append(f"{uid} ({description})" if description else uid)
        raise InputError(f"{folder}: {len(uids)} DICOM series, choose one with --series: {'; '.join(described)}")
    uid = series if series is not None else uids[0]
    if uid not in uids:
        raise InputError(f"{folder}: no DICOM series {uid} (found: {', '.join(uids)})")
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))


def _check_slices(folder: Path, files: list[str]) -> None:
    """Missing or unevenly spaced slices: positions along the slice normal must be evenly spaced."""
    positions = []
    normal = None
    for name in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(name)
        reader.ReadImageInformation()
        if not reader.HasMetaDataKey("0020|0032"):
            return  # no positions to check (e.g. a single multi-frame file)
        position = np.array([float(v) for v in reader.GetMetaData("0020|0032").split("\\")])
        if normal is None:
            direction = np.array(reader.GetDirection()).reshape(3, 3)
            normal = direction[:, 2]
        positions.append(float(position @ normal))
    if len(positions) < 3:
        return
    gaps = np.diff(np.sort(positions))
    if gaps.min() <= 0 or (gaps.max() - gaps.min()) > SLICE_TOLERANCE * np.median(gaps):
        raise InputError(
            f"{folder}: DICOM slices are missing or unevenly spaced (gaps {gaps.min():.3g} to {gaps.max():.3g} mm)"
        )


def read_image(path: str | os.PathLike, series: str | None = None) -> sitk.Image:
    """Read an image file (NRRD, MetaImage, NIfTI, ...) or a DICOM series folder.

    Args:
        path: the file, or a folder holding one DICOM series (or several, with ``series``).
        series: the series instance UID to read from a folder with several.

    Returns:
        The SimpleITK image, its geometry (spacing in mm, origin, direction) as stored.

    Raises:
        InputError: a missing path, an unknown suffix, an unreadable or truncated file, a folder without DICOM, one
            with several series and no ``series``, or a series with missing or unevenly spaced slices.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    try:
        if path.is_dir():
            files = _series_files(path, series)
            _check_slices(path, files)
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(files)
            return reader.Execute()
        if not (path.name.lower().endswith(IMAGE_SUFFIXES) or is_nifti(path)):
            expected = ", ".join((*IMAGE_SUFFIXES, ".nii", ".nii.gz"))
            raise InputError(f"{path}: unknown image format (expected {expected} or a DICOM folder)")
        return sitk.ReadImage(str(path))
    except RuntimeError as err:  # SimpleITK reports every reading failure so, with a multi-line message
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if "rror" in line or "ead" in line), lines[-1] if lines else "")
        raise InputError(f"{path}: not a readable image ({reason[:200]})") from err


def write_on_grid(labels: str | os.PathLike, reference: sitk.Image | None, output: str | os.PathLike) -> Path:
    """Write the label image ``labels`` (a NIfTI on the reference's grid) to ``output`` (.nrrd or .mha; the format
    from the suffix, compressed, unsigned 8-bit), with size, spacing, origin and direction exactly those of
    ``reference`` (None: those of the NIfTI itself). The caller makes the write atomic
    (:func:`se_monai.ops.atomic.atomic_write` keeps the suffix).

    Raises:
        ValueError: the labels' size differs from the reference's.
    """
    image = sitk.ReadImage(str(labels))
    if reference is not None:
        if image.GetSize() != reference.GetSize():
            raise ValueError(f"labels of size {image.GetSize()} for an input of size {reference.GetSize()}")
        image.CopyInformation(reference)
    sitk.WriteImage(sitk.Cast(image, sitk.sitkUInt8), str(output), useCompression=True)
    return Path(output)


def label_statistics(labels: str | os.PathLike, image: sitk.Image, class_names: dict[str, str]) -> dict[str, dict]:
    """Per class of ``class_names`` (index as a string -> name): voxel count, volume in mL (voxels x the voxel
    volume of ``labels``, 1 mL = 1000 mm^3) and the mean input intensity, from SimpleITK's
    ``LabelStatisticsImageFilter`` on the label image file ``labels`` and the input ``image`` on its grid (a
    multi-channel image gives one mean per channel, a list). A class with no voxel has mean intensity None.

    Raises:
        ValueError: ``image`` and ``labels`` differ in size.
    """
    label_image = sitk.Cast(sitk.ReadImage(str(labels)), sitk.sitkUInt8)
    if image.GetDimension() == 4:  # channels last, as a 4-D NIfTI reads
        size = list(image.GetSize())
        channels = [sitk.Extract(image, [*size[:3], 0], [0, 0, 0, c]) for c in range(size[3])]
    elif image.GetNumberOfComponentsPerPixel() > 1:
        channels = [sitk.VectorIndexSelectionCast(image, c) for c in range(image.GetNumberOfComponentsPerPixel())]
    else:
        channels = [image]
    filters = []
    for channel in channels:
        if channel.GetSize() != label_image.GetSize():
            raise ValueError(f"labels of size {label_image.GetSize()} for an input of size {channel.GetSize()}")
        channel = sitk.Cast(channel, sitk.sitkFloat64)
        channel.CopyInformation(label_image)
        statistics = sitk.LabelStatisticsImageFilter()
        statistics.Execute(channel, label_image)
        filters.append(statistics)
    voxel_ml = float(np.prod(label_image.GetSpacing())) / 1000.0
    result = {}
    for index, name in class_names.items():
        value = int(index)
        present = filters[0].HasLabel(value)
        voxels = int(filters[0].GetCount(value)) if present else 0
        means = [f.GetMean(value) if present else None for f in filters]
        result[name] = {
            "voxels": voxels,
            "volume_ml": voxels * voxel_ml,
            "mean_intensity": means[0] if len(means) == 1 else means,
        }
    return result
