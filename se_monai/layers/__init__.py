"""Scale-equivariant layers on the scale-translation group H = S x Z^3.

Tensor convention (used by every module of se_monai)
-----------------------------------------------------
A volume is a 5-D tensor ``(B, C, D, H, W)``. A feature map on the scale-translation group is a 6-D tensor
``(B, C, S, D, H, W)``: batch, channels, S scales (one per entry of ``scales``, in that order), then the three
spatial axes in voxels. The lifting convolution maps 5-D to 6-D, group convolutions, norms, dropout and pooling
keep 6-D, and the projection over scales maps 6-D back to 5-D.

Equivariance (Wimmer et al., arXiv 2304.05864, Eq. 4-6; SESN, Sosnovik et al., ICLR 2020, Eq. 6-8): with a
constant ratio q = sigma_{i+1} / sigma_i between consecutive scales, rescaling the input by 1/q shifts the output
of the lifting and group convolutions by one step along the scale axis (up to discretisation and the borders of
the scale range).

The class names and parameter layouts are those of the paper's code (github.com/wimmerth/scale-equivariant-
3d-convnet), so its models and checkpoints port over; friendlier aliases are defined at the end of the module.

Modules: :mod:`~se_monai.layers.conv` (lifting, group and 1x1x1 convolutions, on the abstract
:mod:`~se_monai.layers.steerable` base), :mod:`~se_monai.layers.norm`, :mod:`~se_monai.layers.dropout`,
:mod:`~se_monai.layers.pooling` (spatial pooling and the projection over scales).
"""

from se_monai.layers.conv import SESConv_H_H, SESConv_H_H_1x1, SESConv_Z3_H
from se_monai.layers.dropout import SEDropout
from se_monai.layers.norm import SEBatchNorm, SEInstanceNorm
from se_monai.layers.pooling import PROJECTIONS, SESpatialMaxPool, SESProjection_H_Z3

__all__ = [
    "SESConv_Z3_H",
    "SESConv_H_H",
    "SESConv_H_H_1x1",
    "SEBatchNorm",
    "SEInstanceNorm",
    "SEDropout",
    "SESpatialMaxPool",
    "SESProjection_H_Z3",
    "LiftingConv3d",
    "GroupConv3d",
    "GroupConv3d1x1",
    "ScaleProjection",
    "PROJECTIONS",
]

# Friendlier names for the same classes.
LiftingConv3d = SESConv_Z3_H
GroupConv3d = SESConv_H_H
GroupConv3d1x1 = SESConv_H_H_1x1
ScaleProjection = SESProjection_H_Z3
