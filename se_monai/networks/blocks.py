"""Building blocks of scale-equivariant networks, the counterparts of MONAI's ``Convolution`` and
``ResidualUnit`` on the scale-translation group (tensor convention: :mod:`se_monai.layers`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
from monai.networks.layers.convutils import same_padding, stride_minus_kernel_padding
from monai.networks.layers.factories import Act, LayerFactory
from monai.networks.layers.utils import get_act_layer
from monai.networks.layers.utils import split_args

from se_monai.layers import SEBatchNorm, SEDropout, SEInstanceNorm, SESConv_H_H, SESConv_H_H_1x1, SESConv_Z3_H

__all__ = ["SENorm", "SEConvolution", "SEResidualUnit"]

#: Normalisation layers on the scale-translation group, by name, for ``norm="batch"`` or
#: ``norm=("instance", {"affine": True})`` as in MONAI's networks.
SENorm = LayerFactory(name="SE normalisation", description="normalisation layers on (B, C, S, D, H, W) tensors")
SENorm.add_factory_class("batch", SEBatchNorm)
SENorm.add_factory_class("instance", SEInstanceNorm)


# The paper's activation is SiLU; MONAI's Act factory has only its own Swish, so register torch's fused SiLU.
if "SILU" not in Act.names:
    Act.add_factory_class("silu", nn.SiLU)


def _se_norm(norm: str | tuple, channels: int) -> nn.Module:
    name, args = split_args(norm)
    return SENorm[name](num_features=channels, **args)


class SEConvolution(nn.Sequential):
    """Lifting or group convolution followed by normalisation, dropout and activation (MONAI's "NDA" order).

    ``lifting=True``: ``(B, C, D, H, W) -> (B, C', S, D', H', W')``; otherwise ``(B, C, S, ...) -> (B, C', S, ...)``.
    With ``padding=None`` the padding is "same" (``(k - 1) / 2``) and a transposed convolution gets
    ``output_padding = stride - 1``, so spatial sizes are divided (multiplied) exactly by the stride for every
    size divisible by it, as in ``monai.networks.blocks.Convolution``.

    Args:
        in_channels, out_channels: channels (per scale).
        lifting: use :class:`SESConv_Z3_H` (else :class:`SESConv_H_H`).
        scales, kernel_size, effective_size, scale_size, basis_type, kernel_padding: of the SE convolution.
        strides: spatial stride (voxels).
        padding: explicit padding (voxels), or None for "same".
        bias: learned bias.
        is_transposed: transposed (upsampling) convolution.
        conv_only: no normalisation, dropout or activation.
        act: MONAI activation name or (name, args).
        norm: "batch" or "instance", or (name, args); see :data:`SENorm`.
        dropout: channel-dropout probability (:class:`SEDropout`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        scales: Sequence[float],
        lifting: bool = False,
        kernel_size: int = 3,
        effective_size: int = 3,
        scale_size: int = 1,
        basis_type: str = "multi",
        kernel_padding: bool = False,
        strides: int = 1,
        padding: int | None = None,
        bias: bool = True,
        is_transposed: bool = False,
        conv_only: bool = False,
        act: str | tuple | None = "silu",
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if padding is None:
            padding = same_padding(kernel_size)
        output_padding = stride_minus_kernel_padding(1, strides) if is_transposed else 0
        geometry = dict(
            kernel_size=kernel_size,
            effective_size=effective_size,
            scales=scales,
            stride=strides,
            padding=padding,
            bias=bias,
            basis_type=basis_type,
            transposed=is_transposed,
            kernel_padding=kernel_padding,
            output_padding=output_padding,
        )
        if lifting:
            self.add_module("conv", SESConv_Z3_H(in_channels, out_channels, **geometry))
        else:
            self.add_module("conv", SESConv_H_H(in_channels, out_channels, scale_size=scale_size, **geometry))
        if conv_only:
            return
        if norm:
            self.add_module("norm", _se_norm(norm, out_channels))
        if dropout:
            self.add_module("dropout", SEDropout(float(dropout)))
        if act:
            self.add_module("act", get_act_layer(act))


class SEResidualUnit(nn.Module):
    """Residual unit of ``subunits`` SE convolutions plus a residual path (MONAI's ``ResidualUnit`` on H).

    The first subunit may lift (``lifting=True``: input ``(B, C, D, H, W)``) and carries the stride; the residual
    path is the identity when shapes agree, a :class:`SESConv_H_H_1x1` when only the channel count changes, and
    otherwise a convolution of the same kind as the first subunit (conv only).

    Args: as :class:`SEConvolution`, plus ``subunits`` (>= 1) and ``last_conv_only`` (no norm, dropout or
    activation after the last subunit).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        scales: Sequence[float],
        lifting: bool = False,
        kernel_size: int = 3,
        effective_size: int = 3,
        scale_size: int = 1,
        basis_type: str = "multi",
        kernel_padding: bool = False,
        strides: int = 1,
        subunits: int = 2,
        bias: bool = True,
        act: str | tuple | None = "silu",
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
        last_conv_only: bool = False,
    ) -> None:
        super().__init__()
        shared = dict(
            scales=scales,
            kernel_size=kernel_size,
            effective_size=effective_size,
            scale_size=scale_size,
            basis_type=basis_type,
            kernel_padding=kernel_padding,
            bias=bias,
        )
        self.conv = nn.Sequential()
        channels, stride, lift = in_channels, strides, lifting
        subunits = max(1, subunits)
        for su in range(subunits):
            unit = SEConvolution(
                channels,
                out_channels,
                lifting=lift,
                strides=stride,
                conv_only=last_conv_only and su == subunits - 1,
                act=act,
                norm=norm,
                dropout=dropout,
                **shared,
            )
            self.conv.add_module(f"unit{su:d}", unit)
            channels, stride, lift = out_channels, 1, False

        self.residual: nn.Module = nn.Identity()
        if lifting or np.prod(strides) != 1 or in_channels != out_channels:
            if not lifting and np.prod(strides) == 1:
                self.residual = SESConv_H_H_1x1(in_channels, out_channels, num_scales=len(scales), bias=bias)
            else:
                self.residual = SEConvolution(
                    in_channels, out_channels, lifting=lifting, strides=strides, conv_only=True, **shared
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.residual(x)
