"""Building blocks of scale-equivariant networks, the counterparts of MONAI's ``Convolution`` and
``ResidualUnit`` on the scale-translation group (tensor convention: :mod:`se_monai.layers`)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.convutils import same_padding, stride_minus_kernel_padding

from se_monai.bases import BasisSpec
from se_monai.layers import SEBatchNorm, SEDropout, SESConv_H_H, SESConv_H_H_1x1, SESConv_Z3_H
from se_monai.layers.common import tracing
from se_monai.networks.factories import activation, se_norm

__all__ = ["SEConvolution", "SEResidualUnit"]


class SEConvolution(nn.Sequential):
    """Lifting or group convolution followed by normalisation, dropout and activation (MONAI's "NDA" order).

    ``lifting=True``: ``(B, C, D, H, W) -> (B, C', S, D', H', W')``; otherwise ``(B, C, S, ...) -> (B, C', S, ...)``.
    With ``padding=None`` the padding is "same" (``(k - 1) / 2``) and a transposed convolution gets
    ``output_padding = stride - 1``, so spatial sizes are divided (multiplied) exactly by the stride for every
    size divisible by it, as in ``monai.networks.blocks.Convolution``.

    Args:
        in_channels, out_channels: channels (per scale).
        spec: the steerable basis of the SE convolution (kernel size, scales, ...).
        lifting: use :class:`SESConv_Z3_H` (else :class:`SESConv_H_H`).
        scale_size: neighbouring scales mixed by a group convolution.
        strides: spatial stride (voxels).
        padding: explicit padding (voxels), or None for "same".
        bias: learned bias.
        is_transposed: transposed (upsampling) convolution.
        conv_only: no normalisation, dropout or activation.
        act: activation name or (name, args); see :func:`se_monai.networks.factories.activation`.
        norm: "batch" or "instance", or (name, args); see :data:`se_monai.networks.factories.SENorm`.
        dropout: channel-dropout probability (:class:`SEDropout`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spec: BasisSpec,
        lifting: bool = False,
        scale_size: int = 1,
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
        geometry = {
            "stride": strides,
            "padding": same_padding(spec.kernel_size) if padding is None else padding,
            "bias": bias,
            "transposed": is_transposed,
            "output_padding": stride_minus_kernel_padding(1, strides) if is_transposed else 0,
            **spec.layer_arguments(),
        }
        if lifting:
            self.add_module("conv", SESConv_Z3_H(in_channels, out_channels, **geometry))
        else:
            self.add_module("conv", SESConv_H_H(in_channels, out_channels, scale_size=scale_size, **geometry))
        if conv_only:
            return
        if norm:
            self.add_module("norm", se_norm(norm, out_channels))
        if dropout:
            self.add_module("dropout", SEDropout(float(dropout)))
        if act:
            self.add_module("act", activation(act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            return self._eager_forward(x)
        for module in self:
            x = module(x)
        return x

    @torch.jit.unused
    def _eager_forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._folds_norm():
            return self._folded_forward(x)
        for module in self:
            x = module(x)
        return x

    def _folds_norm(self) -> bool:
        """Inference (eval mode, no autograd, not traced) with batch norm on running statistics after the conv."""
        norm = self._modules.get("norm")
        return (
            isinstance(norm, SEBatchNorm)
            and not norm.training
            and norm.running_mean is not None
            and norm.running_var is not None
            and not torch.is_grad_enabled()
            and not tracing()
        )

    def _folded_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The batch norm's running statistics folded into the convolution's kernel and bias (cached with the kernel,
        :meth:`se_monai.layers.steerable.SteerableConv.forward_affine`), then dropout (the identity in eval mode) and
        the activation, SiLU in place: equal to the layers one by one to float rounding, one pass over the output
        fewer (docs/performance.md)."""
        y = self.conv.forward_affine(x, *self.norm._inference_affine())
        for name, module in self._modules.items():
            if name in ("conv", "norm"):
                continue
            y = F.silu(y, inplace=True) if type(module) is nn.SiLU else module(y)
        return y


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
        spec: BasisSpec,
        lifting: bool = False,
        scale_size: int = 1,
        strides: int = 1,
        subunits: int = 2,
        bias: bool = True,
        act: str | tuple | None = "silu",
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
        last_conv_only: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Sequential()
        channels, stride, lift = in_channels, strides, lifting
        subunits = max(1, subunits)
        for su in range(subunits):
            unit = SEConvolution(
                channels,
                out_channels,
                spec,
                lifting=lift,
                scale_size=scale_size,
                strides=stride,
                bias=bias,
                conv_only=last_conv_only and su == subunits - 1,
                act=act,
                norm=norm,
                dropout=dropout,
            )
            self.conv.add_module(f"unit{su:d}", unit)
            channels, stride, lift = out_channels, 1, False

        self.residual: nn.Module = nn.Identity()
        if lifting or np.prod(strides) != 1 or in_channels != out_channels:
            if not lifting and np.prod(strides) == 1:
                self.residual = SESConv_H_H_1x1(in_channels, out_channels, num_scales=spec.num_scales, bias=bias)
            else:
                self.residual = SEConvolution(
                    in_channels,
                    out_channels,
                    spec,
                    lifting=lifting,
                    scale_size=scale_size,
                    strides=strides,
                    bias=bias,
                    conv_only=True,
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.residual(x)
