"""Deprecated home of the dataset fingerprint and plan, now :mod:`se_monai.data.fingerprint`: kept so that the bundle
configs and scripts made before the move still run. Importing it warns (DeprecationWarning); every name is looked up
in :mod:`se_monai.data.fingerprint`."""

import warnings
from typing import Any

from se_monai.data import fingerprint as _moved

warnings.warn("se_monai.fingerprint is deprecated: use se_monai.data.fingerprint", DeprecationWarning, stacklevel=2)


def __getattr__(name: str) -> Any:
    return getattr(_moved, name)
