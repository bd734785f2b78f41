"""se-monai: scale-equivariant 3-D convolutional networks as MONAI components.

Packages, each importing only from those before it (docs/architecture.md):

- :mod:`se_monai.ops`: tensor and file primitives (resampling, space-to-depth, channels-last, atomic writes);
- :mod:`se_monai.bases`: steerable bases (Hermite-Gaussian, optimised "disco") and their files;
- :mod:`se_monai.layers`: layers on the scale-translation group; the 6-D tensor convention ``(B, C, S, D, H, W)`` is
  stated there;
- :mod:`se_monai.networks`: SEUNet, its blocks and factories, the paper's baseline UNet;
- library modules: :mod:`se_monai.data` (offline ICBM152 data in the MSD layout), :mod:`se_monai.io` (input checks),
  :mod:`se_monai.sitk_io` (SimpleITK readers and writers, DICOM series), :mod:`se_monai.metrics` (Dice,
  equivariance errors), :mod:`se_monai.workflows` (bundle runs), :mod:`se_monai.segmentation` (images and folders
  through the bundle), :mod:`se_monai.reference` (the straightforward oracle of the SE layers);
- :mod:`se_monai.apps`: benchmark, equivariance report, experiment, plots, export, demo;
- :mod:`se_monai.cli`: the ``se-monai`` command.
"""

__version__ = "0.1.0"
