"""Deprecated home of DICOM SEG output, now :mod:`se_monai.io.dicom_seg`: kept so that the bundle configs and scripts
made before the move still run. Importing it warns (DeprecationWarning); every name is looked up in
:mod:`se_monai.io.dicom_seg`."""

import warnings
from typing import Any

from se_monai.io import dicom_seg as _moved

warnings.warn("se_monai.dicom_seg is deprecated: use se_monai.io.dicom_seg", DeprecationWarning, stacklevel=2)


def __getattr__(name: str) -> Any:
    return getattr(_moved, name)
