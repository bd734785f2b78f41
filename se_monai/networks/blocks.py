"""Building blocks of scale-equivariant networks, the counterparts of MONAI's ``Convolution`` and
``ResidualUnit`` on the scale-translation group (tensor convention: :mod:`se_monai.layers`)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.convutils import same_padding, stride_minus_kernel_padding
from monai.networks.layers.simplelayers import SkipConnection

from se_monai.bases import BasisSpec
from se_monai.layers import SEBatchNorm, SEDropout, SESConv_H_H, SESConv_H_H_1x1, SESConv_Z3_H, SESProjection_H_Z3
from se_monai.layers.common import tracing
from se_monai.networks.factories import activation, se_norm
from se_monai.ops import channels_last, onednn, space_to_depth

__all__ = ["SEConvolution", "SEResidualUnit", "SEOutputBlock", "SESkipConnection"]


class _InferencePath(nn.Sequential):
    """A sequence of layers with an exact fast path for inference: ``_fast(x)`` says whether it applies,
    ``_fast_forward(x)`` computes it; otherwise (and under TorchScript) the layers run one by one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            return self._eager_forward(x)
        for module in self:
            x = module(x)
        return x

    @torch.jit.unused
    def _eager_forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fast(x):
            return self._fast_forward(x)
        for module in self:
            x = module(x)
        return x

    def _fast(self, x: torch.Tensor) -> bool:
        return False

    def _fast_forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class SEConvolution(_InferencePath):
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

    def _fast(self, x: torch.Tensor) -> bool:
        return self._folds_norm()

    def _fast_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._folded_forward(x)

    def _folds_norm(self) -> bool:
        """Inference (eval mode, no autograd, not traced) with batch norm on running statistics after the conv."""
        norm = self._modules.get("norm")
        # exact types: a subclass (e.g. se_monai.reference's) computes its own way and is never bypassed
        return (
            type(norm) is SEBatchNorm
            and type(self.conv) in (SESConv_Z3_H, SESConv_H_H)
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
        if not torch.jit.is_scripting():
            return self._eager_forward(x)
        return self.conv(x) + self.residual(x)

    @torch.jit.unused
    def _eager_forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fuses_residual(x):
            return self._fused_forward(x)
        return self.conv(x) + self.residual(x)

    @torch.jit.unused
    def _fuses_residual(self, x: torch.Tensor) -> bool:
        """Inference on CPU (no autograd, not traced) with a strided group convolution as residual, of the first
        subunit's geometry, which then run as one convolution with both kernels (:meth:`_fused_forward`)."""
        return x.device.type == "cpu" and not torch.is_grad_enabled() and not tracing() and self._fusable()

    @torch.jit.unused
    def _fusable(self) -> bool:
        """The structural part of :meth:`_fuses_residual`: a strided group-convolution residual (conv only) of the
        first subunit's geometry, the first subunit with batch norm on running statistics (or none) and a
        pointwise activation."""
        first, residual = self.conv[0], self.residual
        if (
            type(first) is not SEConvolution
            or type(residual) is not SEConvolution
            or list(residual._modules) != ["conv"]
        ):
            return False
        a, b = first.conv, residual.conv
        # group convolutions only: after a lifting convolution the unit's next, blocked, convolution would copy the
        # first subunit's channels out of the pair, which cost what the fusion saved (docs/performance.md)
        if type(a) is not SESConv_H_H or type(b) is not SESConv_H_H or a.transposed or a.stride == (1, 1, 1):
            return False
        geometry = ("stride", "padding", "groups", "kernel_size", "num_scales", "out_channels", "scale_size")
        if any(getattr(a, name, None) != getattr(b, name, None) for name in geometry) or a.basis.shape != b.basis.shape:
            return False
        if "norm" in first._modules and not first._folds_norm():
            return False
        if "dropout" in first._modules and first.dropout.training:
            return False
        return all(type(m) in _POINTWISE for n, m in first._modules.items() if n not in ("conv", "norm", "dropout"))

    @torch.jit.unused
    def _fused_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The first subunit's convolution (batch norm folded in) and the residual convolution, which read the same
        input with the same geometry, as one convolution whose output channels alternate between the two per
        scale: one pass over the input, and 2 C' channels per group, which oneDNN fills better than C'
        (docs/performance.md). Equal to the layers one by one to float rounding."""
        first, residual = self.conv[0], self.residual
        a, b = first.conv, residual.conv
        affine = first.norm._inference_affine() if "norm" in first._modules else None
        ours, theirs = a._kernel("direct", None if affine is None else affine[0]), b._kernel("direct")
        s, c = a.num_scales, a.out_channels
        taps = ours.shape[1:]
        kernel = torch.stack([ours.view(s, c, *taps), theirs.view(s, c, *taps)], dim=1).reshape(2 * s * c, *taps)
        biases = [a._folded_bias(affine), b.bias]
        bias = None
        if any(v is not None for v in biases):
            pair = torch.stack([v if v is not None else kernel.new_zeros(c) for v in biases])  # (2, C')
            bias = pair.repeat(s, 1).reshape(-1)  # channels (S, 2, C')
        grouped = a._grouped_input(x).contiguous(memory_format=torch.channels_last_3d)
        kernel = kernel.contiguous(memory_format=torch.channels_last_3d)
        y = F.conv3d(grouped, kernel, bias, a.stride, a.padding, 1, a.groups)
        n, _, d, h, w = y.shape
        both = y.permute(0, 2, 3, 4, 1).reshape(n, d, h, w, s, 2, c)  # a view when channels-last
        out, skip = both[..., 0, :].permute(0, 5, 4, 1, 2, 3), both[..., 1, :].permute(0, 5, 4, 1, 2, 3)
        for name, module in first._modules.items():
            if name not in ("conv", "norm", "dropout"):  # dropout is the identity in eval mode
                out = F.silu(out, inplace=True) if type(module) is nn.SiLU else module(out)
        for unit in list(self.conv)[1:]:
            out = unit(out)
        return out + skip


class SESkipConnection(SkipConnection):
    """MONAI's ``SkipConnection`` in "cat" mode over dim 1 (the channels of ``(B, C, S, D, H, W)`` feature maps,
    :mod:`se_monai.layers`), writing the concatenation in the ``(B, D, H, W, S, C)`` memory order that the next SE
    convolution reads without a copy (:func:`se_monai.ops.channels_last.cat_channels`); the same children and
    state-dict keys as ``SkipConnection(submodule)``.
    """

    def __init__(self, submodule: nn.Module) -> None:
        super().__init__(submodule, dim=1, mode="cat")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.submodule(x)
        if torch.jit.is_scripting() or x.dim() != 6:
            return torch.cat([x, y], dim=1)
        return self._cat(x, y)

    @torch.jit.unused
    def _cat(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if tracing():  # tracing, export and torch.compile see torch's own operation
            return torch.cat([x, y], dim=1)
        return channels_last.cat_channels([x, y])


#: Activations applied voxel by voxel and channel by channel alike, which may run on a blocked feature map.
_POINTWISE = (nn.SiLU, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.Identity)


class SEOutputBlock(_InferencePath):
    """SEUNet's output block, ``(B, C, S, D, H, W) -> (B, C', 2D, 2H, 2W)``: the top up layer (a transposed
    :class:`SEConvolution`, then a one-subunit, conv-only :class:`SEResidualUnit` with an identity residual) and
    the :class:`~se_monai.layers.SESProjection_H_Z3` over scales; children and state-dict keys as the plain
    ``nn.Sequential(up_layer, projection)`` of MONAI's UNet topology.

    In inference on CPU the block runs one scale at a time and keeps that scale's full-resolution maps in blocked
    layout (:mod:`se_monai.ops.space_to_depth`): the transposed convolution in sub-pixel form with its batch norm
    folded in (2 x 2 x 2 blocks), the activation, one copy to 1 x 2 x 2 blocks (depth at full resolution), the
    residual unit's convolution in that form and the residual sum, added into the projection; only the C'-channel
    result is rearranged to the standard layout. The same numbers to float rounding, with one scale's maps in
    cache instead of all S, and no rearrangement of the 8 x S times larger maps (docs/performance.md). Elsewhere,
    and for blocks of another shape, the layers run one by one.
    """

    def _fast(self, x: torch.Tensor) -> bool:
        return self._runs_blocked(x)

    def _fast_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._blocked_forward(x)

    def _runs_blocked(self, x: torch.Tensor) -> bool:
        if x.device.type != "cpu" or torch.is_grad_enabled() or tracing() or self.training or len(self) != 2:
            return False
        layer, projection = self[0], self[1]
        if not isinstance(layer, nn.Sequential) or len(layer) != 2 or type(projection) is not SESProjection_H_Z3:
            return False
        up, unit = layer[0], layer[1]
        if not (
            type(up) is SEConvolution
            and type(up.conv) is SESConv_H_H
            and up.conv.transposed
            and up.conv.blocks_without_copies()
        ):
            return False
        if ("norm" in up._modules and not up._folds_norm()) or ("dropout" in up._modules and up.dropout.training):
            return False
        if not all(type(m) in _POINTWISE for n, m in up._modules.items() if n not in ("conv", "norm", "dropout")):
            return False
        if not (type(unit) is SEResidualUnit and type(unit.residual) is nn.Identity and len(unit.conv) == 1):
            return False
        inner = unit.conv[0]
        return (
            len(inner) == 1
            and type(inner) is SEConvolution
            and type(inner.conv) is SESConv_H_H
            and inner.conv.scale_size == 1
            and inner.conv.blocks_without_copies()
        )

    def _blocked_forward(self, x: torch.Tensor) -> torch.Tensor:
        up, unit = self[0][0], self[0][1]
        affine = up.norm._inference_affine() if "norm" in up._modules else None
        up_kernel, up_bias = up.conv.blocked_parameters(affine)  # sub-pixel form: (S * 8 C', C), blocked output
        kernel, bias = unit.conv[0].conv.blocked_parameters(depth=False)  # (S * 4 C', 4 C', k, k', k')
        acts = [m for name, m in up._modules.items() if name not in ("conv", "norm", "dropout")]
        grouped = up.conv._grouped_input(x)  # (B, S * C, D, H, W); dropout is the identity in eval mode
        scales = up.conv.groups
        inputs, outputs = grouped.shape[1] // scales, kernel.shape[0] // scales
        result = None
        # scale by scale, so that each scale's maps stay in cache (all scales at once did not), and the residual
        # unit's convolution with only H and W in 2 x 2 blocks (1.44 times the direct multiply-adds where 2 x 2 x 2
        # blocks need 1.73; docs/performance.md)
        for s in range(scales):
            rows, part = slice(2 * s * outputs, 2 * (s + 1) * outputs), slice(s * outputs, (s + 1) * outputs)
            up_rows = space_to_depth.depth_major(up_kernel[rows])
            y = onednn.conv3d(grouped[:, s * inputs : (s + 1) * inputs], up_rows, _depth_major(up_bias, rows))
            for module in acts:
                y = F.silu(y, inplace=True) if type(module) is nn.SiLU else module(y)
            h = space_to_depth.unblock_depth(y)  # (B, 4 C', D, H / 2, W / 2)
            y = onednn.conv3d(h, kernel[part], None if bias is None else bias[part]).add_(h)  # the residual unit
            if result is None:
                result = y.float() if y.dtype in (torch.bfloat16, torch.float16) else y
            elif self[1].projection_type == "max":
                torch.maximum(result, y, out=result)
            else:
                result.add_(y)
        if self[1].projection_type != "max":
            result.div_(scales)
        return space_to_depth.from_hw_blocks(result)


def _depth_major(bias: torch.Tensor | None, rows: slice) -> torch.Tensor | None:
    return None if bias is None else space_to_depth.depth_major(bias[rows])
