"""Straightforward reference implementation of the SE layers: the numerical oracle for se_monai's optimised paths.

Written for clarity, not speed, directly from the formulas (Wimmer et al. 2023, Eq. 4-6; SESN Eq. 6-8) in the
formulation of the paper's code: the basis evaluated point by point, grouped ``conv3d`` over the scales on
permuted ``(B, S*C, D, H, W)`` copies, the basis product recomputed on every call, and batch-norm statistics
computed by hand over 6-D tensors (tensor convention: :mod:`se_monai.layers`). The tests compare every layer of
:mod:`se_monai.layers` with it, and ``se-monai bench`` times :func:`reference_model` (a network with its SE layers
swapped for these) beside the optimised one. It shares no code with the layers' computation: the basis, the kernel
expansion and the statistics are written out again here.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.simplelayers import SkipConnection

from se_monai import layers

__all__ = ["reference_basis", "lifting_conv", "group_conv", "conv_1x1", "batch_norm", "reference_model"]


def hermite_e(n: int, x: float) -> float:
    """Probabilists' Hermite polynomial by its recurrence He_{n+1} = x He_n - n He_{n-1}."""
    h0, h1 = 1.0, x
    if n == 0:
        return h0
    for k in range(1, n):
        h0, h1 = h1, x * h1 - k * h0
    return h1


def basis_function(orders: tuple[int, int, int], sigma: float, size: int, support: int) -> np.ndarray:
    """psi_{sigma,(a,b,c)} on a ``size``^3 grid, nonzero on the central ``support``^3 voxels (order c on axis 0)."""
    a, b, c = orders
    out = np.zeros((size,) * 3)
    offset = (size - support) // 2
    coords = np.linspace(-(support // 2), support // 2, support)
    for i, x in enumerate(coords):
        for j, y in enumerate(coords):
            for k, z in enumerate(coords):
                value = hermite_e(c, x / sigma) * hermite_e(b, y / sigma) * hermite_e(a, z / sigma)
                value *= math.exp(-(x * x + y * y + z * z) / (2 * sigma * sigma)) / sigma**3
                out[offset + i, offset + j, offset + k] = value
    return out


def reference_basis(
    kernel_size, scales, effective_size, basis_type="single", kernel_padding=True, max_order=4, mult=1.2
) -> torch.Tensor:
    """The basis ``(F, S, k, k, k)`` from the formula, enumerated and normalised as in the paper's code."""
    num_funcs = effective_size**3
    if basis_type == "single":
        specs = [
            ((a, b, c), 1.0)
            for a in range(effective_size)
            for b in range(effective_size)
            for c in range(effective_size)
        ]
    else:
        specs, j = [], 0
        while len(specs) < num_funcs:
            for a in range(max_order + 1):
                for b in range(max_order + 1):
                    for c in range(max_order + 1):
                        if a + b + c <= max_order:
                            specs.append(((a, b, c), mult**j))
            j += 1
        specs = specs[:num_funcs]
    basis = np.zeros((num_funcs, len(scales)) + (kernel_size,) * 3)
    for s, sigma in enumerate(scales):
        support = int(kernel_size * sigma / max(scales)) // 2 * 2 + 1 if kernel_padding else kernel_size
        for f, (orders, divisor) in enumerate(specs):
            basis[f, s] = basis_function(orders, sigma / divisor, kernel_size, support)
    norms = np.sqrt((basis[:, 0] ** 2).sum(axis=(1, 2, 3)))
    return torch.from_numpy(basis / norms[:, None, None, None, None]).float()


def lifting_conv(x, weight, basis, bias=None, stride=1, padding=0, transposed=False, output_padding=0):
    """Z3 -> H with one conv3d over all scales: ``(B, C, D, H, W) -> (B, C', S, D', H', W')``."""
    cout, cin, nf = weight.shape
    _, s, k, _, _ = basis.shape
    kernel = (weight @ basis.reshape(nf, -1)).reshape(cout, cin, s, k, k, k)
    kernel = kernel.permute(0, 2, 1, 3, 4, 5).contiguous().reshape(cout * s, cin, k, k, k)
    if transposed:
        y = F.conv_transpose3d(
            x, kernel.permute(1, 0, 2, 3, 4), stride=stride, padding=padding, output_padding=output_padding
        )
    else:
        y = F.conv3d(x, kernel, stride=stride, padding=padding)
    y = y.reshape(y.shape[0], cout, s, *y.shape[2:])
    return y if bias is None else y + bias.reshape(1, -1, 1, 1, 1, 1)


def group_conv(x, weight, basis, bias=None, stride=1, padding=0, transposed=False, output_padding=0):
    """H -> H as in the paper's code: per scale offset j a grouped conv3d (groups = S) on permuted copies."""
    cout, cin, scale_size, nf = weight.shape
    _, s, k, _, _ = basis.shape
    kernel = (weight @ basis.reshape(nf, -1)).reshape(cout, cin, scale_size, s, k, k, k)
    kernel = kernel.permute(3, 0, 1, 2, 4, 5, 6).contiguous().reshape(s * cout, cin, scale_size, k, k, k)
    if scale_size > 1:
        x = torch.cat([x] + [x[:, :, -1:]] * (scale_size - 1), dim=2)
    out = 0.0
    for j in range(scale_size):
        xj = x[:, :, j : j + s]
        b, c = xj.shape[:2]
        xj = xj.permute(0, 2, 1, 3, 4, 5).contiguous().reshape(b, s * c, *xj.shape[3:])
        if transposed:
            kj = kernel.reshape(s, cout, cin, scale_size, k, k, k).permute(0, 2, 1, 3, 4, 5, 6).contiguous()
            kj = kj.reshape(s * cin, cout, scale_size, k, k, k)[:, :, j]
            out = out + F.conv_transpose3d(
                xj, kj, stride=stride, padding=padding, output_padding=output_padding, groups=s
            )
        else:
            out = out + F.conv3d(xj, kernel[:, :, j], stride=stride, padding=padding, groups=s)
    b = out.shape[0]
    out = out.reshape(b, s, cout, *out.shape[2:]).permute(0, 2, 1, 3, 4, 5).contiguous()
    return out if bias is None else out + bias.reshape(1, -1, 1, 1, 1, 1)


def conv_1x1(x, weight, bias=None, stride=1):
    """1x1x1 convolution applied to every scale separately."""
    outs = [F.conv3d(x[:, :, i], weight, bias, stride=stride) for i in range(x.shape[2])]
    return torch.stack(outs, dim=2)


def batch_norm(x, weight, bias, eps=1e-5, mean=None, var=None):
    """Per-channel statistics over batch, scales and space, computed by hand (biased variance)."""
    dims = [0, 2, 3, 4, 5]
    if mean is None:
        mean = x.mean(dim=dims)
        var = x.var(dim=dims, unbiased=False)
    shape = (1, -1, 1, 1, 1, 1)
    return (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + eps) * weight.reshape(shape) + bias.reshape(
        shape
    )


class _ReferenceLifting(layers.SESConv_Z3_H):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lifting_conv(
            x, self.weight, self.basis, self.bias, self.stride, self.padding, self.transposed, self.output_padding
        )


class _ReferenceGroup(layers.SESConv_H_H):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return group_conv(
            x, self.weight, self.basis, self.bias, self.stride, self.padding, self.transposed, self.output_padding
        )


class _Reference1x1(layers.SESConv_H_H_1x1):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_1x1(x, self.weight, self.bias, self.spatial_stride)


class _ReferenceBatchNorm(layers.SEBatchNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.running_mean is None:
            if self.training and self.running_mean is not None:
                with torch.no_grad():
                    n = x.numel() / x.shape[1]
                    mean = x.mean(dim=[0, 2, 3, 4, 5])
                    var = x.var(dim=[0, 2, 3, 4, 5], unbiased=False) * n / (n - 1)
                    self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                    self.running_var.mul_(1 - self.momentum).add_(self.momentum * var)
                    self.num_batches_tracked.add_(1)
            return batch_norm(x, self.weight, self.bias, self.eps)
        return batch_norm(x, self.weight, self.bias, self.eps, self.running_mean, self.running_var)


_SWAPS = {
    layers.SESConv_Z3_H: _ReferenceLifting,
    layers.SESConv_H_H: _ReferenceGroup,
    layers.SESConv_H_H_1x1: _Reference1x1,
    layers.SEBatchNorm: _ReferenceBatchNorm,
}


def reference_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose SE convolutions and batch norms compute with the reference formulation, and
    whose skip connections are MONAI's own (``torch.cat``, where SEUNet's write the convolutions' layout).

    Parameters and buffers are copied, so the copy computes the same function (to float tolerance).
    """
    reference = copy.deepcopy(model)
    for module in reference.modules():
        swap = _SWAPS.get(type(module))
        if swap is not None:
            module.__class__ = swap
        elif isinstance(module, SkipConnection):
            module.__class__ = SkipConnection
    return reference
