"""Images through SimpleITK: NRRD and MetaImage files and DICOM series folders (and NIfTI) in, the same formats out.

:class:`SimpleITKReader` and :class:`SimpleITKWriter` are MONAI ``ImageReader`` / ``ImageWriter`` classes, usable as
``reader`` of ``LoadImaged`` and ``writer`` of ``SaveImaged`` in any bundle config; the bundle's inference.json reads
with ``bundle_readers(@dicom_series)`` (nibabel first for NIfTI, as MONAI's default, then SimpleITK) and writes with
``writer_for(@output_ext)``. ``se-monai segment`` also copies the input's size, spacing, origin and direction exactly
onto the written labels (:func:`write_on_grid`). DICOM series are found with GDCM
(``ImageSeriesReader.GetGDCMSeriesIDs``); a folder with several series needs the series instance UID chosen, and a
series with missing or unevenly spaced slices is refused.

Geometry: SimpleITK's spacing (mm), origin (mm) and direction are in LPS; the MetaTensor's affine is in RAS, as
MONAI's NibabelReader and ITKReader give it (``affine = diag(-1, -1, 1, 1) @ [[direction @ diag(spacing), origin],
[0, 1]]``), so the bundle's Orientationd/Spacingd/Invertd treat both readers alike.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from monai.data import ImageReader, ImageWriter, NibabelReader, NibabelWriter
from monai.utils import ensure_tuple

from se_monai.io.files import IMAGE_SUFFIXES, READ_SUFFIXES, InputError, is_nifti, unknown_format
from se_monai.ops.atomic import atomic_write

__all__ = [
    "LABEL_SUFFIXES",
    "needs_sitk",
    "dicom_series",
    "series_files",
    "read_image",
    "write_on_grid",
    "labels_on_grid",
    "label_statistics",
    "SimpleITKReader",
    "SimpleITKWriter",
    "AtomicNibabelWriter",
    "bundle_readers",
    "writer_for",
]

#: Label outputs written through SimpleITK: single-file formats only (a detached header names its data file, which
#: would not survive the rename of an atomic write).
LABEL_SUFFIXES = (".nrrd", ".mha")
#: Relative spread of the slice spacing above which a DICOM series counts as having missing or uneven slices.
SLICE_TOLERANCE = 0.01


def needs_sitk(path: str | os.PathLike) -> bool:
    """Whether ``path`` is read or written through SimpleITK: a folder (a DICOM series) or a non-NIfTI image suffix."""
    path = Path(path)
    return path.is_dir() or path.name.lower().endswith(IMAGE_SUFFIXES)  # (LABEL_SUFFIXES are among them)


@contextlib.contextmanager
def _native_stderr_muted() -> Iterator[None]:
    """Mute what ITK's C++ readers print straight to the process's stderr (MetaIO's "Cannot open data file", GDCM's
    notes) while a file is read; the failure itself comes back as an exception, made one line by the caller."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def dicom_series(folder: str | os.PathLike) -> list[str]:
    """The series instance UIDs of the DICOM files directly in ``folder`` (GDCM; none: an empty list, without
    ITK's warning on stderr)."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def series_files(folder: str | os.PathLike, series: str | None = None) -> list[str]:
    """The files of the DICOM series in ``folder`` (the only one, or ``series``), in the order SimpleITK's series
    reader stacks them (GDCM's sorting by slice position).

    Raises:
        InputError: no series, several and no ``series``, or no series ``series``.
    """
    folder = Path(folder)
    uids = dicom_series(folder)
    if not uids:
        raise InputError(f"{folder}: no DICOM series in the folder")
    if series is None and len(uids) > 1:
        described = []
        for uid in uids:
            reader = _header(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)[0])
            description = reader.GetMetaData("0008|103e").strip() if reader.HasMetaDataKey("0008|103e") else ""
            described.append(f"{uid} ({description})" if description else uid)
        raise InputError(f"{folder}: {len(uids)} DICOM series, choose one with --series: {'; '.join(described)}")
    uid = series if series is not None else uids[0]
    if uid not in uids:
        raise InputError(f"{folder}: no DICOM series {uid} (found: {', '.join(uids)})")
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))


def _header(name: str) -> sitk.ImageFileReader:
    """A reader holding one DICOM file's header (tags, geometry), its pixels not read."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(name)
    reader.ReadImageInformation()
    return reader


def _check_slices(folder: Path, files: list[str]) -> None:
    """Missing or unevenly spaced slices: positions along the slice normal must be evenly spaced."""
    positions = []
    normal = None
    for name in files:
        reader = _header(name)
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
        with _native_stderr_muted():
            return _read(path, series)
    except RuntimeError as err:  # SimpleITK reports every reading failure so, with a multi-line message
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if "rror" in line or "ead" in line), lines[-1] if lines else "")
        reason = re.sub(r"\(0x[0-9a-fA-F]+\)", "", reason)  # ITK's object addresses
        raise InputError(f"{path}: not a readable image ({reason[:200]})") from err


def _read(path: Path, series: str | None) -> sitk.Image:
    if path.is_dir():
        files = series_files(path, series)
        _check_slices(path, files)
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        return reader.Execute()
    if not (path.name.lower().endswith(IMAGE_SUFFIXES) or is_nifti(path)):
        raise unknown_format(path)
    return sitk.ReadImage(str(path))


def write_on_grid(written: str | os.PathLike, reference: sitk.Image, output: str | os.PathLike) -> Path:
    """Rewrite the image file ``written`` (labels or probabilities the bundle wrote on the reference's grid) to
    ``output`` (the format from its suffix, compressed, the pixel type kept) with size, spacing, origin and direction
    exactly those of ``reference`` (the bundle's own writer derives them from the affine, to float rounding). The
    caller makes the write atomic (:func:`se_monai.ops.atomic.atomic_write` keeps the suffix).

    Raises:
        ValueError: the written image's spatial size differs from the reference's.
    """
    image = sitk.ReadImage(str(written))
    if image.GetSize() != reference.GetSize():
        raise ValueError(f"an output of size {image.GetSize()} for an input of size {reference.GetSize()}")
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(output), useCompression=True)
    return Path(output)


def labels_on_grid(labels: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """An unsigned 8-bit label image from an ``(X, Y, Z)`` array (MONAI's axis order) with the spacing, origin and
    direction of the first three axes of ``reference`` (3-D, vector or 4-D).

    Raises:
        ValueError: the array's shape is not the reference's spatial size.
    """
    size = reference.GetSize()[:3]
    if tuple(labels.shape) != tuple(size):
        raise ValueError(f"labels of shape {tuple(labels.shape)} for an image of size {size}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(labels, dtype=np.uint8).T))
    dimension = reference.GetDimension()
    image.SetSpacing(reference.GetSpacing()[:3])
    image.SetOrigin(reference.GetOrigin()[:3])
    image.SetDirection(np.array(reference.GetDirection()).reshape(dimension, dimension)[:3, :3].ravel().tolist())
    return image


def label_statistics(
    labels: str | os.PathLike | sitk.Image, image: sitk.Image, class_names: Mapping[str, str]
) -> dict[str, dict]:
    """Per class of ``class_names`` (index as a string -> name): voxel count, volume in mL (voxels x the voxel
    volume of ``labels``, 1 mL = 1000 mm^3) and the mean input intensity, from SimpleITK's
    ``LabelStatisticsImageFilter`` on the label image (a file or a SimpleITK image) and the input ``image`` on its
    grid (a multi-channel image gives one mean per channel, a list). A class with no voxel has mean intensity None.

    Raises:
        ValueError: ``image`` and ``labels`` differ in size.
    """
    label_image = sitk.Cast(labels if isinstance(labels, sitk.Image) else sitk.ReadImage(str(labels)), sitk.sitkUInt8)
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


#: LPS <-> RAS: SimpleITK's physical space is LPS, MONAI's affines are RAS.
_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _affine(image: sitk.Image) -> np.ndarray:
    """The 4x4 RAS affine of an image's first three axes (voxel index -> mm)."""
    dimension = image.GetDimension()
    direction = np.array(image.GetDirection()).reshape(dimension, dimension)[:3, :3]
    affine = np.eye(4)
    affine[:3, :3] = direction @ np.diag(image.GetSpacing()[:3])
    affine[:3, 3] = image.GetOrigin()[:3]
    return _LPS_RAS @ affine


class SimpleITKReader(ImageReader):
    """MONAI image reader backed by SimpleITK: NIfTI, NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) and DICOM series
    folders (:func:`read_image`, with its one-line errors). Use it as ``LoadImaged(keys, reader=SimpleITKReader())``
    or, in a config, ``"reader": {"_target_": "se_monai.io.sitk.SimpleITKReader", "series": null}``.

    ``get_data`` returns the array with spatial axes first, ``(X, Y, Z)`` or ``(X, Y, Z, C)`` for vector or 4-D
    images (channel last, ``original_channel_dim`` -1), and the metadata ``affine`` / ``original_affine`` (RAS, mm),
    ``spatial_shape`` (voxels), ``spacing`` (mm) and ``space`` "RAS". Several files given together are stacked as
    channels (``original_channel_dim`` 0) and must share one grid.

    Args:
        series: the DICOM series instance UID to read from a folder with several series.
    """

    def __init__(self, series: str | None = None):
        super().__init__()
        self.series = series

    def verify_suffix(self, filename: Sequence[os.PathLike] | os.PathLike) -> bool:
        """Whether every name is a folder or a NIfTI, NRRD or MetaImage file."""
        return all(Path(f).is_dir() or str(f).lower().endswith(READ_SUFFIXES) for f in ensure_tuple(filename))

    def read(self, data: Sequence[os.PathLike] | os.PathLike, **kwargs: Any) -> sitk.Image | list[sitk.Image]:
        """The SimpleITK image(s) of a file, a DICOM folder or a list of them.

        Raises:
            InputError: see :func:`read_image`.
        """
        images = [read_image(name, kwargs.get("series", self.series)) for name in ensure_tuple(data)]
        return images if len(images) > 1 else images[0]

    def get_data(self, img: sitk.Image | Sequence[sitk.Image]) -> tuple[np.ndarray, dict]:
        """The array (spatial axes first) and MONAI metadata of the image(s) read.

        Raises:
            ValueError: images stacked as channels differ in size or geometry.
        """
        images = [img] if isinstance(img, sitk.Image) else list(img)  # (an Image iterates over its pixels)
        arrays = []
        for image in images:
            array = sitk.GetArrayFromImage(image)  # (Z, Y, X) or (Z, Y, X, C) / (T, Z, Y, X)
            if image.GetNumberOfComponentsPerPixel() > 1:
                array = np.moveaxis(array, -1, 0)
            arrays.append(np.ascontiguousarray(array.T))  # (X, Y, Z) or (X, Y, Z, C)
        first = images[0]
        affine = _affine(first)
        meta: dict[str, Any] = {
            "affine": affine,
            "original_affine": affine.copy(),
            "spatial_shape": np.asarray(first.GetSize()[:3]),
            "spacing": np.asarray(first.GetSpacing()[:3]),
            "space": "RAS",
            "original_channel_dim": -1 if arrays[0].ndim > 3 else float("nan"),
        }
        if len(images) == 1:
            return arrays[0], meta
        for image, array in zip(images[1:], arrays[1:], strict=True):
            if array.shape != arrays[0].shape or not np.allclose(_affine(image), meta["affine"], atol=1e-4):
                raise ValueError(f"images of size {image.GetSize()} and {first.GetSize()} on different grids")
        meta["original_channel_dim"] = 0
        return np.stack(arrays), meta


class SimpleITKWriter(ImageWriter):
    """MONAI image writer backed by SimpleITK, the format from the file's suffix (.nrrd, .mha, .nii, .nii.gz, ...),
    compressed and written atomically (a temporary file renamed). Use it as ``SaveImaged(keys, writer=SimpleITKWriter,
    output_ext=".nrrd")``. Channel-first data ``(C, X, Y, Z)`` with C > 1 becomes a vector image; the RAS ``affine``
    of the metadata becomes SimpleITK's LPS spacing, origin and direction.

    Args:
        output_dtype: the data type written (e.g. ``numpy.uint8`` for labels, ``numpy.float16`` for probabilities).
    """

    def __init__(self, output_dtype: Any = np.float32, **kwargs: Any):
        super().__init__(output_dtype=output_dtype, affine=None, channel_dim=0, **kwargs)

    def set_data_array(self, data_array: Any, channel_dim: int | None = 0, squeeze_end_dims: bool = True, **kwargs):
        """Keep ``data_array`` as a channel-last array; one channel (or ``channel_dim`` None) gives a scalar image."""
        self.data_obj = self.convert_to_channel_last(
            data=data_array, channel_dim=channel_dim, squeeze_end_dims=squeeze_end_dims, spatial_ndim=3
        )
        channels = data_array.shape[channel_dim] if channel_dim is not None else 1
        self.channel_dim = -1 if channels > 1 else None
        if self.channel_dim is None and self.data_obj.ndim > 3:
            self.data_obj = self.data_obj[..., 0]

    def set_metadata(self, meta_dict: Mapping | None = None, resample: bool = True, **options: Any):
        """Take ``affine`` (and, with ``resample``, resample to ``original_affine`` / ``spatial_shape``) from the
        metadata, as MONAI's writers do."""
        if not resample:
            return _keep_grid(self, meta_dict)
        original_affine, affine, spatial_shape = self.get_meta_info(meta_dict)
        self.data_obj, self.affine = self.resample_if_needed(
            data_array=self.data_obj,
            affine=affine,
            target_affine=original_affine if resample else None,
            output_spatial_shape=spatial_shape if resample else None,
            mode=options.pop("mode", "bilinear"),
            padding_mode=options.pop("padding_mode", "border"),
            align_corners=options.pop("align_corners", False),
            dtype=options.pop("dtype", np.float64),
        )

    def write(self, filename: os.PathLike, verbose: bool = False, **kwargs: Any):
        """Write the image to ``filename`` (its folder is created), atomically."""
        super().write(filename, verbose=verbose)
        array = np.asarray(self.data_obj.detach().cpu() if hasattr(self.data_obj, "detach") else self.data_obj)
        vector = self.channel_dim is not None
        array = np.moveaxis(array, -1, 0).T if vector else array.T  # (Z, Y, X) or (Z, Y, X, C)
        image = sitk.GetImageFromArray(np.ascontiguousarray(array.astype(self.output_dtype)), isVector=vector)
        affine = _LPS_RAS @ (np.eye(4) if self.affine is None else np.asarray(self.affine, dtype=np.float64))
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        image.SetSpacing(spacing.tolist())
        image.SetOrigin(affine[:3, 3].tolist())
        image.SetDirection((affine[:3, :3] / spacing).ravel().tolist())
        Path(filename).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(filename) as partial:
            sitk.WriteImage(image, str(partial), useCompression=True)


class _ByFormat(ImageReader):
    """NIfTI through MONAI's NibabelReader, everything else through :class:`SimpleITKReader`."""

    def __init__(self, series: str | None = None):
        super().__init__()
        self.nibabel, self.sitk = NibabelReader(), SimpleITKReader(series=series)

    def verify_suffix(self, filename: Sequence[os.PathLike] | os.PathLike) -> bool:
        return self.nibabel.verify_suffix(filename) or self.sitk.verify_suffix(filename)

    def read(self, data: Sequence[os.PathLike] | os.PathLike, **kwargs: Any) -> Any:
        nifti = all(is_nifti(name) for name in ensure_tuple(data))
        return (self.nibabel if nifti else self.sitk).read(data, **kwargs)

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        first = img[0] if isinstance(img, (list, tuple)) else img  # several files: a list of one reader's images
        return (self.sitk if isinstance(first, sitk.Image) else self.nibabel).get_data(img)


def bundle_readers(series: str | None = None) -> ImageReader:
    """The ``reader`` of the bundle's LoadImaged: NIfTI files through nibabel (MONAI's default reader, so results
    are unchanged), NRRD, MetaImage and DICOM folders through :class:`SimpleITKReader` with the DICOM ``series``
    choice."""
    return _ByFormat(series)


def _keep_grid(writer: ImageWriter, meta_dict: Mapping | None) -> None:
    """``set_metadata`` without ``resample``: the data keep their grid and take the metadata's ``affine`` (MONAI's
    writers resample onto the same grid, which MONAI 1.6 gets wrong for one channel of a channel-last input, e.g. a
    4-D NIfTI: it takes the data for 2-D and fails on a rotated or permuted affine)."""
    if writer.output_dtype is None and hasattr(writer.data_obj, "dtype"):
        writer.output_dtype = writer.data_obj.dtype
    writer.affine = writer.get_meta_info(meta_dict)[1]


class AtomicNibabelWriter(NibabelWriter):
    """MONAI's NIfTI writer (nibabel), writing to a temporary file beside the target and renaming it, so that an
    interrupted or failed write leaves no partial file (:func:`se_monai.ops.atomic.atomic_write`)."""

    def set_metadata(self, meta_dict: Mapping | None = None, resample: bool = True, **options: Any):
        """As MONAI's NibabelWriter; without ``resample``, the data are written as they are, with their ``affine``."""
        if not resample:
            return _keep_grid(self, meta_dict)
        super().set_metadata(meta_dict, resample=True, **options)

    def write(self, filename: os.PathLike, verbose: bool = False, **obj_kwargs: Any):
        """Write the image to ``filename`` (its folder is created), atomically."""
        Path(filename).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(filename) as partial:
            super().write(partial, verbose=verbose, **obj_kwargs)


def writer_for(output_ext: str) -> type[ImageWriter]:
    """The ``writer`` of a SaveImaged writing ``output_ext``: :class:`SimpleITKWriter` for .nrrd and .mha,
    :class:`AtomicNibabelWriter` for NIfTI (what MONAI chooses by the suffix, written atomically)."""
    return SimpleITKWriter if output_ext.lower() in LABEL_SUFFIXES else AtomicNibabelWriter
