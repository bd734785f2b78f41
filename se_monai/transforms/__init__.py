"""se-monai's MONAI transforms, for bundle configs (``_target_``) and scripts:

- :class:`SizeAdaptiveSpacingd` and :func:`anti_aliased` (:mod:`se_monai.transforms.spacing`): objects smaller than
  the training data resampled finer, images made coarser low-pass filtered first;
- :class:`BrainExtractiond` (:mod:`se_monai.transforms.brain_extraction`): the brain of a T1-weighted head found by
  deepbet, everything else set to 0, before a model trained on skull-stripped brains;
- :class:`MixtureRefinementd` and :func:`refine_by_mixture` (:mod:`se_monai.transforms.mixture`): the network's
  tissue probabilities refined by a Gaussian mixture of the image's own intensities (EM, the probabilities as priors);
- :class:`CheckPlausibilityd` and the class volumes it checks (:mod:`se_monai.transforms.plausibility`);
- :func:`acquired_voxels`: ``MaskIntensityd``'s ``select_fn`` for the voxels an input acquired.

The SynthSeg-style generator's transforms are with the generator (:mod:`se_monai.data.synth`).
"""

from se_monai.data.datalists import acquired_voxels
from se_monai.transforms.brain_extraction import BRAIN_EXTRACTION_MODES, BrainExtractiond
from se_monai.transforms.mixture import MixtureRefinementd, refine_by_mixture
from se_monai.transforms.plausibility import (
    ACTIONS,
    CheckPlausibilityd,
    ImplausibleSegmentation,
    check_volumes,
    class_volumes,
)
from se_monai.transforms.spacing import MAX_FACE_FRACTION, SizeAdaptiveSpacingd, anti_aliased

__all__ = [
    "SizeAdaptiveSpacingd",
    "anti_aliased",
    "MAX_FACE_FRACTION",
    "BrainExtractiond",
    "BRAIN_EXTRACTION_MODES",
    "MixtureRefinementd",
    "refine_by_mixture",
    "CheckPlausibilityd",
    "ImplausibleSegmentation",
    "ACTIONS",
    "class_volumes",
    "check_volumes",
    "acquired_voxels",
]
