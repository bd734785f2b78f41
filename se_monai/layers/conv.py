"""Convolutions on the scale-translation group (tensor convention: :mod:`se_monai.layers`): the lifting convolution
Z^3 -> H, the group convolution H -> H, and the 1x1x1 group convolution."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from se_monai.bases import DEFAULT_MAX_ORDER, DEFAULT_MULT, BasisSpec
from se_monai.layers.common import IntOr3, check_dim, triple
from se_monai.layers.steerable import SteerableConv

__all__ = ["SESConv_Z3_H", "SESConv_H_H", "SESConv_H_H_1x1"]


class SESConv_Z3_H(SteerableConv):
    """Lifting convolution Z^3 -> H: ``(B, C, D, H, W) -> (B, C', S, D', H', W')``.

    Output scale i is the input convolved with the kernel ``sum_f weight[:, :, f] * basis[f, i]``, i.e. the same
    learned filter expanded at width ``scales[i]`` (Wimmer et al. 2023, Eq. 5; SESN Eq. 7).

    Args:
        in_channels: C, channels of the input volume.
        out_channels: C', channels per scale of the output.
        kernel_size: edge k of the cubic kernel (voxels).
        effective_size: basis functions per axis; the basis has F = effective_size**3 functions.
        scales: Gaussian widths sigma (voxels) of the S scales; default ``[1.0]``.
        stride, padding: as in ``torch.nn.Conv3d`` (voxels).
        bias: add a learned bias per output channel (shared across scales).
        basis_type: "single", "multi" or "disco" (see :func:`se_monai.bases.steerable_basis`).
        transposed: use a transposed convolution (upsampling by ``stride``).
        kernel_padding: smaller scales get a smaller, zero-padded support.
        output_padding: as in ``torch.nn.ConvTranspose3d``; only used when ``transposed``.
        max_order, mult: parameters of the "multi" basis.

    Parameters: ``weight`` ``(C', C, F)``, ``bias`` ``(C',)``; buffer ``basis`` ``(F, S, k, k, k)``.

    Raises:
        ValueError: on a non-5-D input, and the basis errors of :func:`se_monai.bases.steerable_basis`.

    Example::

        >>> lift = SESConv_Z3_H(1, 8, kernel_size=5, effective_size=3, scales=[1.0, 0.9], padding=2)
        >>> lift(torch.randn(2, 1, 16, 16, 16)).shape
        torch.Size([2, 8, 2, 16, 16, 16])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        effective_size: int = 1,
        scales: Sequence[float] | None = None,
        stride: IntOr3 = 1,
        padding: IntOr3 = 0,
        bias: bool = False,
        basis_type: str = "single",
        transposed: bool = False,
        kernel_padding: bool = True,
        output_padding: IntOr3 = 0,
        max_order: int = DEFAULT_MAX_ORDER,
        mult: float = DEFAULT_MULT,
    ) -> None:
        scales = (1.0,) if scales is None else scales
        spec = BasisSpec(kernel_size, effective_size, scales, basis_type, kernel_padding, max_order, mult)
        super().__init__(
            in_channels,
            out_channels,
            weight_shape=(out_channels, in_channels),
            spec=spec,
            groups=1,  # one dense convolution for all scales
            stride=stride,
            padding=padding,
            output_padding=output_padding,
            transposed=transposed,
            bias=bias,
        )

    def expanded_kernel(self, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Kernels of all scales as one Conv3d weight ``(S * C', C, k, k, k)``, output channel ``i * C' + c'``
        (transposed: ``(C, S * C', k, k, k)``), from ``weight`` (default the layer's)."""
        kernel = self._scale_kernels(self.weight if weight is None else weight)
        return kernel.transpose(0, 1) if self.transposed else kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(self._grouped_input(x))

    def _grouped_input(self, x: torch.Tensor) -> torch.Tensor:
        check_dim(x, 5, "SESConv_Z3_H")
        return x


class SESConv_H_H(SteerableConv):
    """Group convolution H -> H: ``(B, C, S, D, H, W) -> (B, C', S, D', H', W')``.

    Output scale i sums the input scales i .. i + scale_size - 1, input scale i + j convolved with the kernel
    ``sum_f weight[:, :, j, f] * basis[f, i]``; scales past the end of the axis repeat the last one (replicate
    padding of the scale axis; Wimmer et al. 2023, Eq. 6; SESN Eq. 8).

    Args:
        in_channels: C, channels per scale of the input.
        out_channels: C', channels per scale of the output.
        scale_size: number of neighbouring input scales mixed into each output scale.
        kernel_size, effective_size, scales, stride, padding, bias, basis_type, transposed, kernel_padding,
            output_padding, max_order, mult: as in :class:`SESConv_Z3_H`.

    Parameters: ``weight`` ``(C', C, scale_size, F)``, ``bias`` ``(C',)``; buffer ``basis`` ``(F, S, k, k, k)``.

    Raises:
        ValueError: on an input that is not 6-D or whose scale axis does not have S entries.

    Example::

        >>> conv = SESConv_H_H(8, 8, scale_size=2, kernel_size=5, effective_size=3, scales=[1.0, 0.9], padding=2)
        >>> conv(torch.randn(2, 8, 2, 16, 16, 16)).shape
        torch.Size([2, 8, 2, 16, 16, 16])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        scale_size: int = 1,
        kernel_size: int = 3,
        effective_size: int = 1,
        scales: Sequence[float] | None = None,
        stride: IntOr3 = 1,
        padding: IntOr3 = 0,
        bias: bool = False,
        basis_type: str = "single",
        transposed: bool = False,
        kernel_padding: bool = True,
        output_padding: IntOr3 = 0,
        max_order: int = DEFAULT_MAX_ORDER,
        mult: float = DEFAULT_MULT,
    ) -> None:
        if scale_size < 1:
            raise ValueError(f"scale_size must be >= 1, got {scale_size}")
        self.scale_size = int(scale_size)
        scales = (1.0,) if scales is None else scales
        spec = BasisSpec(kernel_size, effective_size, scales, basis_type, kernel_padding, max_order, mult)
        super().__init__(
            in_channels,
            out_channels,
            weight_shape=(out_channels, in_channels, scale_size),
            spec=spec,
            groups=spec.num_scales,  # one group per output scale
            stride=stride,
            padding=padding,
            output_padding=output_padding,
            transposed=transposed,
            bias=bias,
        )

    def expanded_kernel(self, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Kernels of all scales as one grouped Conv3d weight ``(S * C', C * scale_size, k, k, k)``: group i holds
        output scale i, input channel ``c * scale_size + j`` is input scale i + j (transposed:
        ``(S * C * scale_size, C', k, k, k)``), from ``weight`` (default the layer's)."""
        kernel = self._scale_kernels(self.weight if weight is None else weight)
        if not self.transposed:
            return kernel
        k, c = self.kernel_size, self.out_channels
        per_scale = kernel.reshape(self.num_scales, c, -1, k, k, k).transpose(1, 2)  # (S, C * scale_size, C', ...)
        return per_scale.reshape(-1, c, k, k, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(self._grouped_input(x))

    def _grouped_input(self, x: torch.Tensor) -> torch.Tensor:
        check_dim(x, 6, "SESConv_H_H")
        if x.shape[2] != self.num_scales:
            raise ValueError(
                f"SESConv_H_H has {self.num_scales} scales, the input has {x.shape[2]} (shape {list(x.shape)})"
            )
        b, c, s, d, h, w = x.shape
        if self.scale_size == 1:  # a view of the SE convolutions' (B, D, H, W, S, C) layout, copied otherwise
            x = x.permute(0, 3, 4, 5, 2, 1).reshape(b, d, h, w, s * c)
        else:
            last = x[:, :, -1:].expand(-1, -1, self.scale_size - 1, -1, -1, -1)
            windows = torch.cat([x, last], dim=2).unfold(2, self.scale_size, 1)  # scale i + j at [..., j]
            x = windows.permute(0, 3, 4, 5, 2, 1, 6).reshape(b, d, h, w, s * c * self.scale_size)
        return x.permute(0, 4, 1, 2, 3)


class SESConv_H_H_1x1(nn.Conv3d):
    """1x1x1 group convolution H -> H: ``(B, C, S, D, H, W) -> (B, C', S, D', H', W')``.

    The same channel mixing at every scale and position (a 1x1x1 kernel is scale invariant). ``stride``
    subsamples the spatial axes.

    Args:
        in_channels: C. out_channels: C'.
        stride: spatial stride (voxels).
        num_scales: S; kept for the paper's constructor signature, any S is accepted.
        bias: learned bias per output channel.

    Parameters: as ``torch.nn.Conv3d`` with kernel 1: ``weight`` ``(C', C, 1, 1, 1)``, ``bias`` ``(C',)``.

    Raises:
        ValueError: on an input that is not 6-D.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: IntOr3 = 1, num_scales: int = 1, bias: bool = True
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1, stride=1, bias=bias)
        self.spatial_stride = triple(stride)
        self.num_scales = int(num_scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_dim(x, 6, "SESConv_H_H_1x1")
        sd, sh, sw = self.spatial_stride
        if sd != 1 or sh != 1 or sw != 1:
            x = x[:, :, :, ::sd, ::sh, ::sw]
        # a matrix product over the channel axis, in the (B, D, H, W, S, C) memory order the SE convolutions emit
        y = F.linear(x.permute(0, 3, 4, 5, 2, 1), self.weight.flatten(1), self.bias)
        return y.permute(0, 5, 4, 1, 2, 3)
