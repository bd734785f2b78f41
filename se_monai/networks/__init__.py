"""Networks built from the scale-equivariant layers: :class:`SEUNet` and its blocks."""

from se_monai.networks.blocks import SEConvolution, SENorm, SEResidualUnit
from se_monai.networks.seunet import PAPER_SCALES, SEUNet

__all__ = ["SEUNet", "SEConvolution", "SEResidualUnit", "SENorm", "PAPER_SCALES"]
