"""Rescaling of volumes and smooth random fields: the resampling operators that the optimised bases are fitted for and
that equivariance is measured with.

Discrete rescaling is itself approximate: trilinear interpolation blurs by an amount that changes from voxel to voxel,
which no convolution kernel can undo, so every caller names its ``interpolation``: "cubic" (cubic B-spline, close to
the continuous rescaling of a smooth field), "trilinear", "nearest", or "subsample" (keep every k-th voxel, exact for
``factor = 1/k``).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.layers import GaussianFilter
from scipy import ndimage

__all__ = ["INTERPOLATIONS", "rescale", "smooth_field"]

INTERPOLATIONS = ("cubic", "trilinear", "nearest", "subsample")


def _output_size(size: int, factor: float) -> int:
    return math.floor(size * factor + 1e-6)


@functools.lru_cache(maxsize=64)
def _spline_matrix(size: int, factor: float) -> torch.Tensor:
    """``(m, n)`` matrix of cubic B-spline resampling of one axis by ``factor`` (input voxel centres at
    ``(p + 0.5) / factor - 0.5``), from scipy.ndimage applied to the unit vectors."""
    out = _output_size(size, factor)
    columns = [
        ndimage.affine_transform(
            np.eye(size)[k], [1.0 / factor], offset=0.5 / factor - 0.5, output_shape=(out,), order=3, mode="nearest"
        )
        for k in range(size)
    ]
    return torch.from_numpy(np.stack(columns, axis=1))


def rescale(x: torch.Tensor, factor: float, interpolation: str = "cubic") -> torch.Tensor:
    """Rescale the last three (spatial) axes of ``x`` by ``factor`` (``< 1`` shrinks).

    Output sizes are ``floor(n * factor)``; the voxel grid maps as in ``align_corners=False`` (voxel p of the output
    samples the input at ``(p + 0.5) / factor - 0.5``), exactly, for every interpolation.

    Args:
        x: ``(..., D, H, W)`` tensor (5-D volumes or 6-D feature maps on the scale-translation group).
        factor: scale factor; for "subsample", ``1 / factor`` must be an integer.
        interpolation: one of :data:`INTERPOLATIONS`.

    Raises:
        ValueError: unknown interpolation, or a "subsample" factor that is not ``1 / k``.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if interpolation == "subsample":
        step = round(1.0 / factor)
        if step < 1 or abs(step * factor - 1.0) > 1e-9:
            raise ValueError(f"subsampling needs a factor 1/k, got {factor}")
        return x[..., ::step, ::step, ::step]
    lead = x.shape[:-3]
    volume = x.reshape(-1, 1, *x.shape[-3:])
    if interpolation == "cubic":
        out = volume[:, 0]
        for axis in (1, 2, 3):
            matrix = _spline_matrix(out.shape[axis], float(factor)).to(x)
            out = torch.movedim(torch.tensordot(matrix, torch.movedim(out, axis, 0), dims=1), 0, axis)
    else:
        align = None if interpolation == "nearest" else False
        out = F.interpolate(
            volume, scale_factor=factor, mode=interpolation, align_corners=align, recompute_scale_factor=False
        )[:, 0]
    return out.reshape(*lead, *out.shape[-3:])


def smooth_field(size: int, sigma: float = 2.5, seed: int = 0, batch: int = 1, dtype=torch.float32) -> torch.Tensor:
    """White noise smoothed by a Gaussian of ``sigma`` voxels, zero mean and unit variance: ``(batch, 1, n, n, n)``.

    Smoothed on a volume padded by ``3 sigma`` on every side and cropped, so the field has no border effects.
    """
    generator = torch.Generator().manual_seed(seed)
    pad = math.ceil(3 * sigma)
    noise = torch.randn(batch, 1, *(size + 2 * pad,) * 3, generator=generator, dtype=torch.float64)
    field = GaussianFilter(3, sigma).double()(noise)[..., pad : pad + size, pad : pad + size, pad : pad + size]
    return ((field - field.mean()) / field.std()).to(dtype)
