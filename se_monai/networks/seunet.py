"""SE-U-Net: MONAI's residual U-Net on the scale-translation group (Wimmer et al., arXiv 2304.05864, Sec. 3.5)."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import torch
import torch.nn as nn

from se_monai.bases import DEFAULT_MAX_ORDER, DEFAULT_MULT, BasisSpec
from se_monai.layers import PROJECTIONS, SESProjection_H_Z3
from se_monai.networks.blocks import SEConvolution, SEOutputBlock, SEResidualUnit, SESkipConnection

__all__ = ["SEUNet", "PAPER_SCALES"]

#: The paper's scales: 0.9**i for i = 0..3 (Gaussian widths relative to the largest, which is 1 voxel).
PAPER_SCALES = tuple(0.9**i for i in range(4))


def _check_topology(spatial_dims: int, channels: Sequence[int], strides: Sequence[int], projection: str) -> None:
    """MONAI UNet's checks (with its messages), plus the SE-specific ones."""
    if spatial_dims != 3:
        raise ValueError(f"SEUNet is 3-D only, got spatial_dims={spatial_dims}")
    if len(channels) < 2:
        raise ValueError("the length of `channels` should be no less than 2.")
    delta = len(strides) - (len(channels) - 1)
    if delta < 0:
        raise ValueError("the length of `strides` should equal to `len(channels) - 1`.")
    if delta > 0:
        warnings.warn(
            f"`len(strides) > len(channels) - 1`, the last {delta} values of strides will not be used.", stacklevel=3
        )
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")


class SEUNet(nn.Module):
    """Scale-equivariant residual U-Net: ``(B, in_channels, D, H, W) -> (B, out_channels, D, H, W)``.

    The topology of ``monai.networks.nets.UNet`` with residual units, built from scale-equivariant layers: a
    lifting convolution in the first down block, group convolutions inside, transposed group convolutions on the
    way up, and the projection over scales (max or mean) before the output. Internal feature maps are
    ``(B, C, S, D, H, W)`` (:mod:`se_monai.layers`). As with MONAI's UNet, every spatial size divisible by
    ``prod(strides)`` works, so ``monai.inferers.SlidingWindowInferer`` can run it.

    The defaults are the paper's configuration: channels (4, 8, 16, 32), strides (2, 2, 2), kernel 5, effective
    size 3, scales 0.9**i (i = 0..3), "multi" Hermite basis, 2 residual units, SiLU, batch norm (about 75 k
    parameters for one input channel), so the paper's models and checkpoints port over unchanged. :meth:`equivariant`
    builds the same network with the basis optimised for equivariance ("disco", same weight layout), whose layers are
    far more scale-equivariant at kernel 5 than the sampled Hermite basis (docs/equivariance.md); the shipped bundle's
    model is that preset (docs/results.md, "The shipped model"). The default stays the paper's, so that a checkpoint
    of the paper's code is never loaded into another basis without notice.

    Args:
        spatial_dims: must be 3.
        in_channels, out_channels: channels of the input volume and of the output logits.
        channels: channels per level, top first (``len(channels) >= 2``).
        strides: spatial stride between levels (``len(channels) - 1`` entries).
        kernel_size, up_kernel_size: kernel edge (voxels) of the down/inner and of the transposed convolutions.
        num_res_units: residual subunits per down block (0: plain convolution blocks).
        act, norm, dropout, bias: as in MONAI's UNet; ``norm`` is "batch" or "instance" (or (name, args)),
            ``dropout`` drops whole channels at all scales.
        scales: Gaussian widths (voxels) of the S scales of the steerable basis.
        effective_size: basis functions per axis (F = effective_size**3).
        scale_size: neighbouring scales mixed by each group convolution.
        basis_type: "single" or "multi" Hermite-Gaussian basis, or "disco", the basis optimised for equivariance
            (:func:`se_monai.bases.steerable_basis`).
        projection: "max" or "mean" ("avg") over scales before the output.
        kernel_padding: zero-pad the support of smaller scales (the paper's U-Net: False).
        max_order, mult: highest total order and ratio of widths of the "multi" basis.

    Raises:
        ValueError: ``spatial_dims != 3``, fewer than two levels, too few strides, unknown ``projection`` or basis.

    Example::

        >>> net = SEUNet(in_channels=1, out_channels=3)
        >>> net(torch.randn(1, 1, 32, 32, 32)).shape
        torch.Size([1, 3, 32, 32, 32])
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: Sequence[int] = (4, 8, 16, 32),
        strides: Sequence[int] = (2, 2, 2),
        kernel_size: int = 5,
        up_kernel_size: int = 5,
        num_res_units: int = 2,
        act: str | tuple = "silu",
        norm: str | tuple = "batch",
        dropout: float = 0.0,
        bias: bool = True,
        scales: Sequence[float] = PAPER_SCALES,
        effective_size: int = 3,
        scale_size: int = 1,
        basis_type: str = "multi",
        projection: str = "mean",
        kernel_padding: bool = False,
        max_order: int = DEFAULT_MAX_ORDER,
        mult: float = DEFAULT_MULT,
    ) -> None:
        super().__init__()
        _check_topology(spatial_dims, channels, strides, projection)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.channels = tuple(channels)
        self.strides = tuple(strides)
        self.num_res_units = num_res_units
        self.scales = tuple(float(s) for s in scales)
        self.projection = projection
        spec = BasisSpec(kernel_size, effective_size, self.scales, basis_type, kernel_padding, max_order, mult)
        self._down_spec, self._up_spec = spec, dataclasses.replace(spec, kernel_size=up_kernel_size)
        self._block_args = {"scale_size": scale_size, "bias": bias, "act": act, "norm": norm, "dropout": dropout}
        self.model = self._create_block(in_channels, out_channels, self.channels, self.strides, True)

    @classmethod
    def equivariant(cls, in_channels: int = 1, out_channels: int = 1, **overrides) -> SEUNet:
        """The paper's SE-U-Net with the basis optimised for scale equivariance (``basis_type="disco"``;
        docs/equivariance.md: stack error about 0.03 where the "multi" basis has 0.11-0.20 at kernel 5), the network
        of the shipped bundle; ``overrides`` are any other arguments of :class:`SEUNet`."""
        return cls(in_channels=in_channels, out_channels=out_channels, **{"basis_type": "disco", **overrides})

    def _create_block(
        self, inc: int, outc: int, chans: Sequence[int], strs: Sequence[int], is_top: bool
    ) -> nn.Sequential:
        """One level: down layer, the levels below (or the bottom layer) as a skip connection, up layer."""
        c, s = chans[0], strs[0]
        if len(chans) > 2:
            subblock = self._create_block(c, c, chans[1:], strs[1:], False)
            upc = c * 2
        else:
            subblock = self._down_layer(c, chans[1], 1, False)
            upc = c + chans[1]
        down = self._down_layer(inc, c, s, is_top)
        up = self._up_layer(upc, outc, s, is_top)
        if is_top:
            up = SEOutputBlock(up, SESProjection_H_Z3(self.projection))
        return nn.Sequential(down, SESkipConnection(subblock), up)

    def _down_layer(self, inc: int, outc: int, strides: int, is_top: bool) -> nn.Module:
        spec = self._down_spec
        if self.num_res_units > 0:
            return SEResidualUnit(
                inc, outc, spec, lifting=is_top, strides=strides, subunits=self.num_res_units, **self._block_args
            )
        return SEConvolution(inc, outc, spec, lifting=is_top, strides=strides, **self._block_args)

    def _up_layer(self, inc: int, outc: int, strides: int, is_top: bool) -> nn.Module:
        conv: nn.Module = SEConvolution(
            inc,
            outc,
            self._up_spec,
            strides=strides,
            is_transposed=True,
            conv_only=is_top and self.num_res_units == 0,
            **self._block_args,
        )
        if self.num_res_units > 0:
            ru = SEResidualUnit(
                outc, outc, self._down_spec, strides=1, subunits=1, last_conv_only=is_top, **self._block_args
            )
            conv = nn.Sequential(conv, ru)
        return conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, in_channels, D, H, W)``, each of D, H, W divisible by ``prod(strides)``."""
        return self.model(x)
