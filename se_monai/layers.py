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
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from se_monai import channels_last, space_to_depth
from se_monai.basis import DEFAULT_MAX_ORDER, DEFAULT_MULT, steerable_basis

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

IntOr3 = int | Sequence[int]


def _triple(value: IntOr3) -> tuple[int, int, int]:
    if isinstance(value, int):
        return (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(f"expected an int or 3 ints, got {value}")
    return value  # type: ignore[return-value]


def _check_dim(x: torch.Tensor, dim: int, layer: str) -> None:
    if x.dim() != dim:
        what = "(B, C, S, D, H, W) on the scale-translation group" if dim == 6 else "(B, C, D, H, W) volume"
        raise ValueError(f"{layer} expects a {dim}-D {what}, got shape {list(x.shape)}")



@torch.jit.ignore
def _tracing() -> bool:
    """True under torch.jit.trace, torch.compile and torch.export (the ONNX exporter), where no kernel is cached."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


class _SteerableConv(nn.Module):
    """Common part of the lifting and group convolutions: basis buffer, weights, geometry."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        weight_shape: tuple[int, ...],
        kernel_size: int,
        effective_size: int,
        scales: Sequence[float] | None,
        stride: IntOr3,
        padding: IntOr3,
        bias: bool,
        basis_type: str,
        transposed: bool,
        kernel_padding: bool,
        output_padding: IntOr3,
        max_order: int,
        mult: float,
    ) -> None:
        super().__init__()
        scales = [1.0] if scales is None else [float(s) for s in scales]
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = int(kernel_size)
        self.effective_size = int(effective_size)
        self.scales = scales
        self.num_scales = len(scales)
        self.stride = _triple(stride)
        self.padding = _triple(padding)
        self.output_padding = _triple(output_padding)
        self.transposed = bool(transposed)
        self.basis_type = basis_type
        basis = steerable_basis(
            self.kernel_size, scales, self.effective_size, basis_type, kernel_padding, max_order=max_order, mult=mult
        )
        self.register_buffer("basis", basis)
        self.num_funcs = int(basis.shape[0])
        self.weight = nn.Parameter(torch.empty(*weight_shape, self.num_funcs))
        # inference cache of the prepared kernel: (key of weight and basis versions, kernel); see _kernel
        self._kernel_cache: tuple[tuple[int, int, int, int, torch.dtype, torch.device, bool], torch.Tensor] | None
        self._kernel_cache = None
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform weights (as the paper's code and torch's convolutions), zero bias."""
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def expanded_kernel(self) -> torch.Tensor:
        """Kernels of all scales as one (grouped) Conv3d weight; defined by the lifting and group convolutions."""
        raise NotImplementedError

    def _kernel(self, blocked: bool) -> torch.Tensor:
        """The expanded kernel, channels-last (``blocked``: in space-to-depth form); in inference (no autograd)
        cached until the weights change.

        The cache is keyed on the version counters and storage of ``weight`` and ``basis``, so an optimiser step,
        ``load_state_dict`` or ``.to()`` invalidates it. TorchScript, tracing and export recompute it on every call.
        """
        if torch.jit.is_scripting():
            return self.expanded_kernel().contiguous(memory_format=torch.channels_last_3d)
        if torch.is_grad_enabled() or _tracing():
            return self._prepared_kernel(blocked)
        key = (self.weight._version, self.weight.data_ptr(), self.basis._version, self.basis.data_ptr(),
               self.weight.dtype, self.weight.device, blocked)  # fmt: skip
        if self._kernel_cache is None or self._kernel_cache[0] != key:
            self._kernel_cache = (key, self._prepared_kernel(blocked))
        return self._kernel_cache[1]

    def _prepared_kernel(self, blocked: bool) -> torch.Tensor:
        kernel = self.expanded_kernel()
        if blocked:
            kernel = space_to_depth.blocked_kernel(kernel, self._groups)
        return kernel.contiguous(memory_format=torch.channels_last_3d)

    def _blocked(self, x: torch.Tensor) -> bool:
        """Whether this call runs in space-to-depth form (:mod:`se_monai.space_to_depth`)."""
        k = self.kernel_size
        if self.transposed or self.stride != (1, 1, 1) or self.padding != ((k - 1) // 2,) * 3:
            return False
        per_group_out = self.num_scales * self.out_channels // self._groups
        return space_to_depth.worth_blocking(x, k, x.shape[1] // self._groups, per_group_out)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        """One (transposed) 3-D convolution of all scales, returning ``(B, C', S, D', H', W')``.

        ``x`` is ``(B, G * C_in, D, H, W)`` with scale-major channel blocks, convolved with :meth:`expanded_kernel`
        (``(S * C', G', k, k, k)``, the output channels of scale i in block i; G = 1 group for the lifting
        convolution, S for group convolutions). Input and kernel go channels-last: on CPU (oneDNN) one grouped
        channels-last convolution is about twice as fast, forward and backward, as per-scale calls on contiguous
        tensors, and stride-1 convolutions with at most 4 channels per group run in space-to-depth form
        (docs/performance.md). The result is a view whose memory order is ``(B, D', H', W', S, C')``; the next
        layer takes it without a copy.
        """
        bias = self.bias.repeat(self.num_scales) if self.bias is not None else None  # shared across scales
        if torch.jit.is_scripting():
            return self._direct_conv(x, self._kernel(False), bias)
        if self._blocked(x):
            return self._to_group(space_to_depth.blocked_conv3d(x, self._kernel(True), bias, self._groups))
        return self._direct_conv(x, self._kernel(False), bias)

    def _direct_conv(self, x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last_3d)
        if self.transposed:
            # oneDNN's transposed convolution with a fused bias is ~1.7x slower on CPU: the bias is added after
            y = F.conv_transpose3d(x, kernel, None, self.stride, self.padding, self.output_padding, self._groups)
        else:
            y = F.conv3d(x, kernel, bias, self.stride, self.padding, 1, self._groups)
        return self._to_group(y)

    def _to_group(self, y: torch.Tensor) -> torch.Tensor:
        """Channels-last convolution output ``(B, S * C', D, H, W)`` as ``(B, C', S, D, H, W)`` (a view), plus the
        bias of a transposed convolution."""
        b, _, d, h, w = y.shape
        rows = y.permute(0, 2, 3, 4, 1).reshape(-1, self.out_channels)  # (B D H W S, C'), a view when channels-last
        if self.transposed and self.bias is not None:
            if torch.jit.is_scripting():
                rows = rows + self.bias
            else:
                rows = channels_last.add_bias(rows, self.bias)
        return rows.view(b, d, h, w, self.num_scales, self.out_channels).permute(0, 5, 4, 1, 2, 3)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}->{self.out_channels}, scales={[round(s, 3) for s in self.scales]}, "
            f"kernel_size={self.kernel_size}, effective_size={self.effective_size}, basis={self.basis_type}, "
            f"stride={self.stride}, padding={self.padding}, transposed={self.transposed}"
        )


class SESConv_Z3_H(_SteerableConv):
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
        basis_type: "single" or "multi" (see :func:`se_monai.basis.steerable_basis`).
        transposed: use a transposed convolution (upsampling by ``stride``).
        kernel_padding: smaller scales get a smaller, zero-padded support.
        output_padding: as in ``torch.nn.ConvTranspose3d``; only used when ``transposed``.
        max_order, mult: parameters of the "multi" basis.

    Parameters: ``weight`` ``(C', C, F)``, ``bias`` ``(C',)``; buffer ``basis`` ``(F, S, k, k, k)``.

    Raises:
        ValueError: on a non-5-D input, and the basis errors of :func:`se_monai.basis.steerable_basis`.

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
        super().__init__(
            in_channels, out_channels, (out_channels, in_channels), kernel_size, effective_size, scales, stride,
            padding, bias, basis_type, transposed, kernel_padding, output_padding, max_order, mult,
        )  # fmt: skip
        self._groups = 1  # one dense convolution for all scales

    def expanded_kernel(self) -> torch.Tensor:
        """Kernels of all scales as one Conv3d weight ``(S * C', C, k, k, k)``, output channel ``i * C' + c'``
        (transposed: ``(C, S * C', k, k, k)``)."""
        k = self.kernel_size
        kernel = self.weight @ self.basis.reshape(self.num_funcs, -1)  # (C', C, S * k^3)
        kernel = kernel.reshape(self.out_channels, self.in_channels, self.num_scales, k, k, k).permute(2, 0, 1, 3, 4, 5)
        kernel = kernel.reshape(self.num_scales * self.out_channels, self.in_channels, k, k, k)
        return kernel.transpose(0, 1) if self.transposed else kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_dim(x, 5, "SESConv_Z3_H")
        return self._conv(x)


class SESConv_H_H(_SteerableConv):
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
        super().__init__(
            in_channels, out_channels, (out_channels, in_channels, scale_size), kernel_size, effective_size, scales,
            stride, padding, bias, basis_type, transposed, kernel_padding, output_padding, max_order, mult,
        )  # fmt: skip
        self._groups = self.num_scales  # one group per output scale

    def expanded_kernel(self) -> torch.Tensor:
        """Kernels of all scales as one grouped Conv3d weight ``(S * C', C * scale_size, k, k, k)``: group i holds
        output scale i, input channel ``c * scale_size + j`` is input scale i + j (transposed:
        ``(S * C * scale_size, C', k, k, k)``)."""
        k = self.kernel_size
        kernel = self.weight @ self.basis.reshape(self.num_funcs, -1)  # (C', C, scale_size, S * k^3)
        kernel = kernel.reshape(self.out_channels, self.in_channels * self.scale_size, self.num_scales, k, k, k)
        kernel = kernel.permute(2, 0, 1, 3, 4, 5)  # (S, C', C * scale_size, k, k, k)
        if self.transposed:
            kernel = kernel.transpose(1, 2)
        return kernel.reshape(-1, kernel.shape[2], k, k, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_dim(x, 6, "SESConv_H_H")
        if x.shape[2] != self.num_scales:
            raise ValueError(f"SESConv_H_H has {self.num_scales} scales, the input has {x.shape[2]} (shape {list(x.shape)})")
        b, c, s, d, h, w = x.shape
        if self.scale_size == 1:  # a view of the SE convolutions' (B, D, H, W, S, C) layout, copied otherwise
            x = x.permute(0, 3, 4, 5, 2, 1).reshape(b, d, h, w, s * c)
        else:
            last = x[:, :, -1:].expand(-1, -1, self.scale_size - 1, -1, -1, -1)
            windows = torch.cat([x, last], dim=2).unfold(2, self.scale_size, 1)  # scale i + j at [..., j]
            x = windows.permute(0, 3, 4, 5, 2, 1, 6).reshape(b, d, h, w, s * c * self.scale_size)
        return self._conv(x.permute(0, 4, 1, 2, 3))


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
        self.spatial_stride = _triple(stride)
        self.num_scales = int(num_scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_dim(x, 6, "SESConv_H_H_1x1")
        sd, sh, sw = self.spatial_stride
        if sd != 1 or sh != 1 or sw != 1:
            x = x[:, :, :, ::sd, ::sh, ::sw]
        # a matrix product over the channel axis, in the (B, D, H, W, S, C) memory order the SE convolutions emit
        y = F.linear(x.permute(0, 3, 4, 5, 2, 1), self.weight.flatten(1), self.bias)
        return y.permute(0, 5, 4, 1, 2, 3)


class SEBatchNorm(nn.BatchNorm3d):
    """Batch norm on ``(B, C, S, D, H, W)``: one mean and variance per channel over batch, scales and space.

    Sharing the statistics across scales keeps the layer scale-equivariant (Wimmer et al. 2023, Sec. 3.3).
    Arguments, parameters, buffers and the update of the running estimates are those of ``torch.nn.BatchNorm3d``
    (``num_features`` = C). On the ``(B, D, H, W, S, C)`` memory order that the SE convolutions emit, the layer
    computes in place of torch's kernels, without copying the feature map (:mod:`se_monai.channels_last`); on other
    layouts and under TorchScript it calls ``torch.nn.functional.batch_norm``.

    Raises:
        ValueError: on an input that is not 6-D.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        _check_dim(input, 6, "SEBatchNorm")

    def _update_factor(self) -> float:
        """Count the batch (training with running estimates) and return the running-average factor."""
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        batch_statistics = self.training or self.running_mean is None or self.running_var is None
        if torch.jit.is_scripting():
            return self._functional(x, batch_statistics)
        matrix = channels_last.channel_matrix(x)
        if matrix is None or (batch_statistics and x.device.type != "cpu"):  # measured on CPU only
            return self._functional(x, batch_statistics)
        if batch_statistics:
            y, mean, var = channels_last.batch_norm(matrix, self.weight, self.bias, self.eps)
            factor = self._update_factor()
            if self.training and self.running_mean is not None and self.running_var is not None:
                n = matrix.shape[0]
                with torch.no_grad():
                    self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                    self.running_var.lerp_((var * (n / max(n - 1, 1))).to(self.running_var.dtype), factor)
        else:
            scale, shift = self._inference_affine()
            y = channels_last.affine(matrix, scale, shift)
        b, c, s, d, h, w = x.shape
        return y.view(b, d, h, w, s, c).permute(0, 5, 4, 1, 2, 3)

    def _inference_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Running statistics as ``x * scale + shift`` per channel."""
        assert self.running_mean is not None and self.running_var is not None
        scale = torch.rsqrt(self.running_var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        shift = -self.running_mean * scale
        if self.bias is not None:
            shift = shift + self.bias
        return scale, shift

    def _functional(self, x: torch.Tensor, batch_statistics: bool) -> torch.Tensor:
        factor = self._update_factor()
        track = not self.training or self.track_running_stats
        return F.batch_norm(
            x, self.running_mean if track else None, self.running_var if track else None, self.weight, self.bias,
            batch_statistics, factor, self.eps,
        )  # fmt: skip


class SEInstanceNorm(nn.InstanceNorm3d):
    """Instance norm on ``(B, C, S, D, H, W)``: statistics per sample and channel over scales and space.

    Arguments as ``torch.nn.InstanceNorm3d``; defaults as in the paper's code (``affine=True``,
    ``track_running_stats=True``).

    Raises:
        ValueError: on an input that is not 6-D.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)

    def _get_no_batch_dim(self) -> int:
        return 5

    def _check_input_dim(self, input: torch.Tensor) -> None:
        _check_dim(input, 6, "SEInstanceNorm")


class SEDropout(nn.Dropout3d):
    """Channel dropout on ``(B, C, S, D, H, W)``: a dropped channel is zero at every scale and position.

    Args:
        p: probability of dropping a channel. inplace: as ``torch.nn.Dropout3d``.

    Raises:
        ValueError: on an input that is not 6-D.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_dim(x, 6, "SEDropout")
        if not self.training or self.p == 0.0:
            return x
        # one Bernoulli draw per (sample, channel), scaled by 1 / (1 - p) as torch's dropout3d; a broadcast product
        # keeps the input's memory order
        mask = F.dropout(x.new_ones(x.shape[0], x.shape[1], 1, 1, 1, 1), self.p, True)
        return x.mul_(mask) if self.inplace else x * mask


class SESpatialMaxPool(nn.MaxPool3d):
    """Spatial max pooling of every scale: ``(B, C, S, D, H, W) -> (B, C, S, D', H', W')``.

    Arguments as ``torch.nn.MaxPool3d`` (voxels); ``return_indices`` is not supported.

    Raises:
        ValueError: on an input that is not 6-D.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_dim(x, 6, "SESpatialMaxPool")
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
        _check_dim(x, 6, "SESProjection_H_Z3")
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


# Friendlier names for the same classes.
LiftingConv3d = SESConv_Z3_H
GroupConv3d = SESConv_H_H
GroupConv3d1x1 = SESConv_H_H_1x1
ScaleProjection = SESProjection_H_Z3
