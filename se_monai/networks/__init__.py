"""Networks built from the scale-equivariant layers: :class:`SEUNet`, its blocks, and the paper's baseline."""

from se_monai.networks.baselines import paper_baseline_unet
from se_monai.networks.blocks import SEConvolution, SEResidualUnit
from se_monai.networks.factories import SENorm
from se_monai.networks.seunet import PAPER_SCALES, SEUNet

__all__ = ["SEUNet", "SEConvolution", "SEResidualUnit", "SENorm", "PAPER_SCALES", "paper_baseline_unet"]
