"""The common part of the lifting and group convolutions: steerable basis buffer, weights, and one (transposed)
grouped convolution of all scales, with the expanded kernel cached in inference."""

from __future__ import annotations

import abc

import torch
import torch.nn as nn
import torch.nn.functional as F

from se_monai.bases import BasisSpec
from se_monai.layers.common import IntOr3, tracing, triple
from se_monai.ops import channels_last, onednn, space_to_depth

__all__ = ["SteerableConv"]


def _same_values(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and a.device == b.device and bool(torch.equal(a, b))


class SteerableConv(nn.Module, metaclass=abc.ABCMeta):
    """Abstract base of :class:`~se_monai.layers.SESConv_Z3_H` and :class:`~se_monai.layers.SESConv_H_H`.

    Holds the buffer ``basis`` ``(F, S, k, k, k)`` of ``spec``, the parameter ``weight`` ``(*weight_shape, F)`` and an
    optional ``bias`` ``(C',)`` shared across scales. Subclasses define :meth:`expanded_kernel`, the kernels of all
    scales as one convolution weight with ``groups`` groups.

    Args:
        in_channels, out_channels: channels (per scale) of input and output.
        weight_shape: leading shape of ``weight``, e.g. ``(C', C)``.
        spec: the steerable basis.
        groups: groups of the convolution (1 for lifting, S for group convolutions).
        stride, padding, output_padding, transposed, bias: as in ``torch.nn.Conv3d`` / ``ConvTranspose3d``.

    Raises:
        ValueError: the basis errors of :func:`se_monai.bases.steerable_basis`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        weight_shape: tuple[int, ...],
        spec: BasisSpec,
        groups: int,
        stride: IntOr3,
        padding: IntOr3,
        output_padding: IntOr3,
        transposed: bool,
        bias: bool,
    ) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = spec.kernel_size
        self.effective_size = spec.effective_size
        self.scales = list(spec.scales)
        self.num_scales = spec.num_scales
        self.basis_type = spec.basis_type
        self.groups = int(groups)
        self.stride = triple(stride)
        self.padding = triple(padding)
        self.output_padding = triple(output_padding)
        self.transposed = bool(transposed)
        basis = spec.build()
        self.register_buffer("basis", basis)
        self.num_funcs = int(basis.shape[0])
        self.weight = nn.Parameter(torch.empty(*weight_shape, self.num_funcs))
        # inference cache of the prepared kernel: (key of weight and basis versions, kernel, output scale folded into
        # it or None); see _kernel
        self._kernel_cache: (
            tuple[tuple[int, int, int, int, torch.dtype, torch.device, str], torch.Tensor, torch.Tensor | None] | None
        )
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

    @abc.abstractmethod
    def expanded_kernel(self, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Kernels of all scales as one (grouped) Conv3d weight, output channels of scale i in block i, from
        ``weight`` (default the layer's)."""

    def _kernel(self, form: str = "direct", scale: torch.Tensor | None = None) -> torch.Tensor:
        """The expanded kernel, channels-last, in ``form`` "direct", "blocked" (space-to-depth form of a stride-1
        convolution; "blocked_hw" with H and W blocked only) or "sub_pixel" (of a stride-2 transposed one;
        :mod:`se_monai.ops.space_to_depth`), its output channels multiplied by ``scale`` ``(C',)`` when given; in
        inference (no autograd) cached until the weights or ``scale`` change.

        The cache is keyed on the version counters and storage of ``weight`` and ``basis`` and on the values of
        ``scale``, so an optimiser step, ``load_state_dict``, ``.to()`` or new batch-norm statistics invalidate it.
        TorchScript, tracing and export recompute it on every call.
        """
        if torch.jit.is_scripting():
            return self.expanded_kernel().contiguous(memory_format=torch.channels_last_3d)
        if torch.is_grad_enabled() or tracing():
            return self._prepared_kernel(form, scale)
        key = (
            self.weight._version,
            self.weight.data_ptr(),
            self.basis._version,
            self.basis.data_ptr(),
            self.weight.dtype,
            self.weight.device,
            form,
        )
        cache = self._kernel_cache
        if cache is None or cache[0] != key or not _same_values(cache[2], scale):
            kept = None if scale is None else scale.detach().clone()
            self._kernel_cache = (key, self._prepared_kernel(form, scale), kept)
        return self._kernel_cache[1]

    @torch.jit.unused
    def _prepared_kernel(self, form: str, scale: torch.Tensor | None = None) -> torch.Tensor:
        device = self.weight.device.type
        if torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):
            # in the weight's dtype: autocast would round weight and basis to bfloat16 (float16) before their
            # product and the batch-norm scale after it, and the cache would keep that for float32 calls; autocast
            # casts the finished kernel once, at the convolution
            with torch.autocast(device, enabled=False):
                return self._prepared_kernel(form, scale)
        weight = self.weight
        if scale is not None:  # output channel c' of every scale times scale[c']: on the weight, before the basis
            weight = weight * scale.view(-1, *([1] * (weight.dim() - 1)))
        kernel = self.expanded_kernel(weight)
        if form in ("blocked", "blocked_hw"):
            kernel = space_to_depth.blocked_kernel(kernel, self.groups, depth=form == "blocked")
        elif form == "sub_pixel":
            kernel = space_to_depth.sub_pixel_kernel(kernel, self.groups)
        return kernel.contiguous(memory_format=torch.channels_last_3d)

    def _scale_kernels(self, weight: torch.Tensor) -> torch.Tensor:
        """The kernels of all scales, ``sum_f weight[c', g, f] * basis[f, i]``, as one ``(S * C', G', k, k, k)``
        channels-last convolution weight, output channel ``i * C' + c'`` for scale i, with G' the weight's inputs per
        output channel (C, or C * scale_size): one matrix product and one copy (Wimmer et al. 2023, Eq. 5-6).

        Args:
            weight: ``(C', ..., F)``, the layer's weight or a rescaled copy of it.
        """
        k, s, f = self.kernel_size, self.num_scales, self.num_funcs
        flat = weight.reshape(-1, f)  # (C' G', F)
        product = self.basis.reshape(f, -1).t() @ flat.t()  # (S k^3, C' G')
        rows = product.view(s, k * k * k, self.out_channels, -1).permute(0, 2, 1, 3).contiguous()  # (S, C', k^3, G')
        return rows.view(s * self.out_channels, k, k, k, -1).permute(0, 4, 1, 2, 3)

    @abc.abstractmethod
    def _grouped_input(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's input checked and arranged as the ``(B, G * C_in, D, H, W)`` input of :meth:`_conv`."""

    @torch.jit.unused
    def forward_affine(self, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """``forward(x) * scale + shift`` per output channel (``(C',)`` each, shared across scales), with the affine
        map folded into the kernel and bias (and cached with the kernel in inference): how
        :class:`~se_monai.networks.SEConvolution` evaluates a convolution followed by batch norm with running
        statistics in one pass. Same shapes and errors as ``forward``."""
        return self._conv(self._grouped_input(x), (scale, shift))

    @torch.jit.unused
    def blocked_parameters(
        self, affine: tuple[torch.Tensor, torch.Tensor] | None = None, depth: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Kernel and bias of this layer for feature maps kept in blocked layout (:func:`se_monai.ops.space_to_depth.
        to_blocks` of the ``(B, S * C, D, H, W)`` input of the convolution), for a caller that chains layers
        without rearranging between them (:class:`~se_monai.networks.blocks.SEOutputBlock`): a stride-1 "same"
        convolution in blocked form (``blocked_kernel``), a stride-2 transposed one in sub-pixel form
        (``sub_pixel_kernel``: blocked output at the input's resolution). ``affine`` as in :meth:`forward_affine`;
        ``depth=False`` (stride 1 only) blocks H and W only (``blocked_kernel(..., depth=False)``). Cached as
        :meth:`_kernel` is.

        Raises:
            ValueError: any other geometry (see :meth:`blocks_without_copies`).
        """
        if not self.blocks_without_copies():
            raise ValueError(f"{type(self).__name__} {self.extra_repr()} has no blocked form")
        bias = self._folded_bias(affine)
        form = "sub_pixel" if self.transposed else ("blocked" if depth else "blocked_hw")
        stacked = (
            None if bias is None else bias.repeat(self.num_scales).repeat_interleave(4 if form == "blocked_hw" else 8)
        )
        return self._kernel(form, None if affine is None else affine[0]), stacked

    def _folded_bias(self, affine: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor | None:
        """The bias ``(C',)`` of ``forward(x) * scale + shift`` for ``affine`` = (scale, shift), else the layer's."""
        if affine is None:
            return self.bias
        scale, shift = affine
        return shift if self.bias is None else self.bias * scale + shift

    def blocks_without_copies(self) -> bool:
        """Whether :meth:`blocked_parameters` applies: odd kernel, padding (k - 1) / 2, and stride 1 or, transposed,
        stride 2 with output padding 1."""
        k = self.kernel_size
        if k % 2 == 0 or self.padding != ((k - 1) // 2,) * 3:
            return False
        if self.transposed:
            return self.stride == (2, 2, 2) and self.output_padding == (1, 1, 1)
        return self.stride == (1, 1, 1)

    def _blocked(self, x: torch.Tensor) -> bool:
        """Whether this call runs in space-to-depth form (:mod:`se_monai.ops.space_to_depth`)."""
        if self.transposed or not self.blocks_without_copies():
            return False
        per_group_out = self.num_scales * self.out_channels // self.groups
        return space_to_depth.worth_blocking(x, self.kernel_size, x.shape[1] // self.groups, per_group_out)

    def _sub_pixel(self, x: torch.Tensor) -> bool:
        """Whether this call runs a stride-2 transposed convolution in sub-pixel form: in inference on CPU, where
        oneDNN's convolution at the input's resolution and the depth-to-space copy beat its transposed convolution
        (docs/performance.md); not under autograd, whose backward of that form is slower."""
        return (
            self.transposed
            and x.device.type == "cpu"
            and not torch.is_grad_enabled()
            and not tracing()
            and self.blocks_without_copies()
        )

    def _conv(self, x: torch.Tensor, affine: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """One (transposed) 3-D convolution of all scales, returning ``(B, C', S, D', H', W')``.

        ``x`` is ``(B, G * C_in, D, H, W)`` with scale-major channel blocks, convolved with :meth:`expanded_kernel`
        (``(S * C', G', k, k, k)``, the output channels of scale i in block i; G = 1 group for the lifting
        convolution, S for group convolutions). Input and kernel go channels-last, which oneDNN convolves fastest on
        CPU, and stride-1 convolutions with few channels per group run in space-to-depth form (measurements:
        docs/performance.md). ``affine`` = (scale, shift), each ``(C',)``, multiplies the output channels and adds
        to them through the kernel and the bias. The result is a view whose memory order is ``(B, D', H', W', S,
        C')``; the next layer takes it without a copy.
        """
        bias = self._folded_bias(affine)
        scale = None if affine is None else affine[0]
        if torch.jit.is_scripting():
            return self._direct_conv(x, self._kernel(), bias)
        stacked = bias.repeat(self.num_scales) if bias is not None else None  # shared across scales
        if self._blocked(x):
            return self._to_group(
                space_to_depth.blocked_conv3d(x, self._kernel("blocked", scale), stacked, self.groups)
            )
        if self._sub_pixel(x):
            kernel = self._kernel("sub_pixel", scale)
            blocked_bias = None if stacked is None else stacked.repeat_interleave(8)
            return self._to_group(space_to_depth.from_blocks(onednn.conv3d(x, kernel, blocked_bias, self.groups)))
        return self._direct_conv(x, self._kernel("direct", scale), bias)

    def _direct_conv(self, x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last_3d)
        if self.transposed:
            # the bias of a transposed convolution is added after it, outside oneDNN (docs/performance.md)
            y = F.conv_transpose3d(x, kernel, None, self.stride, self.padding, self.output_padding, self.groups)
            return self._to_group(y, bias)
        stacked = bias.repeat(self.num_scales) if bias is not None else None  # shared across scales
        return self._to_group(F.conv3d(x, kernel, stacked, self.stride, self.padding, 1, self.groups))

    def _to_group(self, y: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """Channels-last convolution output ``(B, S * C', D, H, W)`` as ``(B, C', S, D, H, W)`` (a view), plus
        ``bias`` ``(C',)`` when given (a transposed convolution's)."""
        b, _, d, h, w = y.shape
        rows = y.permute(0, 2, 3, 4, 1).reshape(-1, self.out_channels)  # (B D H W S, C'), a view when channels-last
        if bias is not None:
            if torch.jit.is_scripting():
                rows = rows + bias
            else:
                rows = channels_last.add_bias(rows, bias)
        return rows.view(b, d, h, w, self.num_scales, self.out_channels).permute(0, 5, 4, 1, 2, 3)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}->{self.out_channels}, scales={[round(s, 3) for s in self.scales]}, "
            f"kernel_size={self.kernel_size}, effective_size={self.effective_size}, basis={self.basis_type}, "
            f"stride={self.stride}, padding={self.padding}, transposed={self.transposed}"
        )
