"""Deprecated home of the plausibility check of class volumes, now :mod:`se_monai.transforms.plausibility`: kept so
that the bundle configs and scripts made before the move still run. Importing it warns (DeprecationWarning); every
name is looked up in :mod:`se_monai.transforms.plausibility`."""

import warnings
from typing import Any

from se_monai.transforms import plausibility as _moved

warnings.warn(
    "se_monai.plausibility is deprecated: use se_monai.transforms.plausibility", DeprecationWarning, stacklevel=2
)


def __getattr__(name: str) -> Any:
    return getattr(_moved, name)
