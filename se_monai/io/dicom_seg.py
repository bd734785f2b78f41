"""DICOM SEG output: the labels of a DICOM series written as a DICOM Segmentation object that
references the source images, with highdicom (the optional ``dicom`` extra: ``pip install 'se-monai[dicom]'``).

Every class but 0 ("other", the background) becomes one segment, its number the class index and its label the
class name from the bundle; the segmented property category is SNOMED CT 85756007 "Tissue" and the property type a
code of the private scheme ``99SEMONAI`` (the class index and name), since a bundle's classes are its own. The SEG
is BINARY, one frame per source slice and segment, in the source series' frame of reference.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from se_monai import __version__
from se_monai.io.files import InputError

__all__ = ["DICOM_SEG_SUFFIX", "PRIVATE_SCHEME", "write_dicom_seg"]

#: Suffix of DICOM SEG outputs.
DICOM_SEG_SUFFIX = ".dcm"
#: Coding scheme designator of the bundle's classes (private schemes begin with "99").
PRIVATE_SCHEME = "99SEMONAI"


def write_dicom_seg(
    labels: str | os.PathLike,
    series_files: Sequence[str],
    class_names: Mapping[str, str],
    output: str | os.PathLike,
    model_name: str = "se-monai SE-U-Net",
) -> Path:
    """Write the label image ``labels`` (a file on the series' grid, as segmented) as a DICOM SEG to ``output``.

    Args:
        labels: label image whose voxel ``(i, j, k)`` is column ``i``, row ``j`` of ``series_files[k]``, as
            SimpleITK's series reader orders them.
        series_files: the DICOM files of the source series, in that order.
        class_names: class index (a string) -> name; class 0 is not a segment.
        output: the .dcm file to write (the caller makes the write atomic).
        model_name: the algorithm's name in the SEG.

    Returns:
        ``output``.

    Raises:
        InputError: highdicom is not installed, or the source series lacks what a SEG needs (e.g. a frame of
            reference UID), named in one line.
    """
    try:
        import highdicom as hd
        import pydicom
        from pydicom.sr.codedict import codes
    except ImportError as err:
        raise InputError(f"{output}: DICOM SEG output needs highdicom: pip install 'se-monai[dicom]'") from err
    sources = [pydicom.dcmread(name) for name in series_files]
    pixels = sitk.GetArrayFromImage(sitk.ReadImage(str(labels))).astype(np.uint8)  # (slices, rows, columns)
    if pixels.shape[0] != len(sources):
        raise InputError(f"{output}: {pixels.shape[0]} label slices for a series of {len(sources)} images")
    algorithm = hd.AlgorithmIdentificationSequence(
        name=model_name, version=__version__, family=codes.cid7162.ArtificialIntelligence
    )
    segments = [
        hd.seg.SegmentDescription(
            segment_number=int(index),
            segment_label=name,
            segmented_property_category=hd.sr.CodedConcept("85756007", "SCT", "Tissue"),
            segmented_property_type=hd.sr.CodedConcept(str(index), PRIVATE_SCHEME, name),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for index, name in sorted(class_names.items(), key=lambda item: int(item[0]))
        if int(index) > 0
    ]
    try:
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=segments,
            series_instance_uid=hd.UID(),
            series_number=int(getattr(sources[0], "SeriesNumber", 0) or 0) + 1000,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="se-monai",
            manufacturer_model_name=model_name,
            software_versions=__version__,
            device_serial_number="0",
            series_description=f"{model_name} segmentation",
        )
    except (ValueError, AttributeError, TypeError) as err:
        raise InputError(f"{series_files[0]}: cannot reference this series in a DICOM SEG ({err})") from err
    seg.save_as(str(output))
    return Path(output)
