"""se-monai: scale-equivariant 3-D convolutional networks as MONAI components.

Packages, each importing only from those before it (docs/architecture.md):

- :mod:`se_monai.ops`: tensor and file primitives (resampling, space-to-depth, channels-last, atomic writes);
- :mod:`se_monai.bases`: steerable bases (Hermite-Gaussian, optimised "disco") and their files;
- :mod:`se_monai.layers`: layers on the scale-translation group; the 6-D tensor convention ``(B, C, S, D, H, W)`` is
  stated there;
- :mod:`se_monai.networks`: SEUNet, its blocks and factories, the paper's baseline UNet;
- library modules, grouped as MONAI's: :mod:`se_monai.io` (users' files: checks, SimpleITK readers and writers,
  DICOM SEG), :mod:`se_monai.data` (the offline ICBM152 data, the SynthSeg-style generator, datalists, a dataset's
  plan), :mod:`se_monai.transforms`, :mod:`se_monai.inferers`, :mod:`se_monai.handlers`, :mod:`se_monai.engines`
  (runs that go on past a failed case), :mod:`se_monai.workflows` (running bundles), :mod:`se_monai.bundles`
  (bundles of one's own), :mod:`se_monai.segmentation` (images and folders through the bundle),
  :mod:`se_monai.metrics` (Dice, equivariance errors), :mod:`se_monai.reference` (the straightforward oracle of the
  SE layers);
- :mod:`se_monai.apps`: benchmark, equivariance report, experiment, plots, export, demo;
- :mod:`se_monai.cli`: the ``se-monai`` command.
"""

__version__ = "0.1.0"
