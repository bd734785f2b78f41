"""Reading and writing users' files: one home for every image that comes in or goes out.

- :mod:`se_monai.io.files`: checks of users' files and paths (one-line :class:`InputError`), image names, and a
  folder's images listed as real archives hold them (:func:`list_images`);
- :mod:`se_monai.io.sitk`: NRRD, MetaImage, NIfTI and DICOM series through SimpleITK with their geometry; MONAI's
  ``SimpleITKReader`` / ``SimpleITKWriter`` and the bundle's reader and writers; label statistics;
- :mod:`se_monai.io.dicom_seg`: a DICOM SEG of a DICOM series' labels (highdicom, the optional ``dicom`` extra).
"""

from se_monai.io.dicom_seg import DICOM_SEG_SUFFIX, write_dicom_seg
from se_monai.io.files import (
    IMAGE_SUFFIXES,
    NIFTI_SUFFIXES,
    InputError,
    check_nifti,
    check_output_path,
    is_hidden,
    is_nifti,
    list_images,
    nifti_stem,
)
from se_monai.io.sitk import (
    LABEL_SUFFIXES,
    AtomicNibabelWriter,
    SimpleITKReader,
    SimpleITKWriter,
    bundle_readers,
    label_statistics,
    read_image,
    write_on_grid,
    writer_for,
)

__all__ = [
    "InputError",
    "NIFTI_SUFFIXES",
    "IMAGE_SUFFIXES",
    "LABEL_SUFFIXES",
    "DICOM_SEG_SUFFIX",
    "is_nifti",
    "nifti_stem",
    "is_hidden",
    "list_images",
    "check_nifti",
    "check_output_path",
    "read_image",
    "write_on_grid",
    "label_statistics",
    "SimpleITKReader",
    "SimpleITKWriter",
    "AtomicNibabelWriter",
    "bundle_readers",
    "writer_for",
    "write_dicom_seg",
]
