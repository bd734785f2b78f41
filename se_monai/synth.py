"""Deprecated home of the SynthSeg-style generator, now :mod:`se_monai.data.synth`: kept so that the bundle configs and
scripts made before the move still run. Importing it warns (DeprecationWarning); every name is looked up in
:mod:`se_monai.data.synth`."""

import warnings
from typing import Any

from se_monai.data import synth as _moved

warnings.warn("se_monai.synth is deprecated: use se_monai.data.synth", DeprecationWarning, stacklevel=2)


def __getattr__(name: str) -> Any:
    return getattr(_moved, name)
