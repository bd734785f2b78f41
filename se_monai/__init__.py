"""se-monai: scale-equivariant 3-D convolutional networks as MONAI components.

Modules: :mod:`se_monai.basis` (steerable Hermite-Gaussian bases), :mod:`se_monai.layers` (layers on the
scale-translation group; the 6-D tensor convention ``(B, C, S, D, H, W)`` is stated there),
:mod:`se_monai.networks` (SEUNet), :mod:`se_monai.data` (offline ICBM152 brain-tissue data in the MSD layout),
:mod:`se_monai.transforms` (NIfTI transforms), :mod:`se_monai.workflows` (bundle runs), :mod:`se_monai.cli`.
"""

__version__ = "0.1.0"
