"""Pooling on the scale-translation group (tensor convention: :mod:`se_monai.layers`): spatial max pooling of every
scale, and the projection over scales H -> Z^3."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from se_monai.layers.common import check_dim

__all__ = ["SESpatialMaxPool", "SESProjection_H_Z3", "PROJECTIONS"]


class SESpatialMaxPool(nn.MaxPool3d):
    """Spatial max pooling of every scale: ``(B, C, S, D, H, W) -> (B, C, S, D', H', W')``.

    Arguments as ``torch.nn.MaxPool3d`` (voxels); ``return_indices`` is not supported.

    Raises:
        ValueError: on an input that is not 6-D.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_dim(x, 6, "SESpatialMaxPool")
        b, c, s, d, h, w = x.shape
        y = F.max_pool3d(
            x.reshape(b, c * s, d, h, w), self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode
        )
        return y.reshape(b, c, s, y.shape[2], y.shape[3], y.shape[4])


#: Projection kinds of :class:`SESProjection_H_Z3` ("avg" is the paper's name for "mean").
PROJECTIONS = ("max", "mean", "avg")


class SESProjection_H_Z3(nn.Module):
    """Projection H -> Z^3 over the scale axis: ``(B, C, S, D, H, W) -> (B, C, D, H, W)``.

    Max or mean over scales; the result is invariant to a shift along the scale axis, so the network's output is
    equivariant to rescaling of its input (Wimmer et al. 2023, Sec. 3.4).

    Args:
        projection_type: "max", or "mean" (alias "avg", the paper's name).

    Raises:
        ValueError: unknown ``projection_type``; an input that is not 6-D.
    """

    def __init__(self, projection_type: str = "max") -> None:
        super().__init__()
        if projection_type not in PROJECTIONS:
            raise ValueError(f"projection_type must be one of {PROJECTIONS}, got {projection_type!r}")
        self.projection_type = "mean" if projection_type == "avg" else projection_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_dim(x, 6, "SESProjection_H_Z3")
        if self.projection_type == "max":
            return x.amax(dim=2)
        if torch.jit.is_scripting():
            return x.mean(dim=2)
        return _ScaleMean.apply(x.permute(0, 3, 4, 5, 2, 1)).permute(0, 4, 1, 2, 3)

    def extra_repr(self) -> str:
        return f"projection={self.projection_type}"


class _ScaleMean(torch.autograd.Function):
    """Mean over the scale axis of ``(B, D, H, W, S, C)`` rows whose gradient is laid out like the SE
    convolutions' outputs, whatever the layout of the incoming gradient (the loss usually returns a standard
    ``(B, C, D, H, W)`` one): the residual sum and activation before the projection then back-propagate without
    copies between layouts."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.num_scales = rows.shape[4]
        return rows.mean(dim=4)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        b, d, h, w, c = grad.shape
        return (grad / ctx.num_scales).unsqueeze(4).expand(b, d, h, w, ctx.num_scales, c).contiguous()
