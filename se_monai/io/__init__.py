"""Reading and writing users' files: one home for every image that comes in or goes out.

- :mod:`se_monai.io.files` (its names are this package's): checks of users' files and paths (one-line
  :class:`InputError`), image names, and a folder's images listed as real archives hold them (:func:`list_images`);
- :mod:`se_monai.io.sitk`: NRRD, MetaImage, NIfTI and DICOM series through SimpleITK with their geometry; MONAI's
  ``SimpleITKReader`` / ``SimpleITKWriter``, the bundle's reader and its atomic writers; label statistics;
- :mod:`se_monai.io.dicom_seg`: a DICOM SEG of a DICOM series' labels (highdicom, the optional ``dicom`` extra).

Only :mod:`se_monai.io.files` is imported with the package, so that the command line answers ``--help`` without
loading torch and MONAI.
"""

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

__all__ = [
    "InputError",
    "NIFTI_SUFFIXES",
    "IMAGE_SUFFIXES",
    "is_nifti",
    "nifti_stem",
    "is_hidden",
    "list_images",
    "check_nifti",
    "check_output_path",
]
