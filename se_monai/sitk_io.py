"""Deprecated home of NRRD, MetaImage, NIfTI and DICOM series through SimpleITK, now :mod:`se_monai.io.sitk`: kept so
that the bundle configs and scripts made before the move still run. Importing it warns (DeprecationWarning); every
name is looked up in :mod:`se_monai.io.sitk`."""

import warnings
from typing import Any

from se_monai.io import sitk as _moved

warnings.warn("se_monai.sitk_io is deprecated: use se_monai.io.sitk", DeprecationWarning, stacklevel=2)


def __getattr__(name: str) -> Any:
    return getattr(_moved, name)
