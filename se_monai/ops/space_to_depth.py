"""Space-to-depth form of a stride-1 "same" 3-D convolution, for SE convolutions with few channels per scale.

On CPU, oneDNN pads every convolution group to 16 channels, so a group convolution with 3 or 4 channels per
scale (the top of SEUNet, at full resolution) wastes most of its arithmetic. Rearranging each 2 x 2 x 2 block of
voxels into channels turns a ``k``-kernel convolution with C channels on ``(D, H, W)`` into an exactly equal
``k'``-kernel convolution with 8 C channels on ``(D/2, H/2, W/2)``, with ``k' = 2 ceil(p / 2) + 1`` for the padding
``p = (k - 1) / 2``: for k = 5 a 3 x 3 x 3 kernel with 8 x 8 times the channels and more multiply-adds, done
faster (measurements: docs/performance.md).

Per axis, with output voxel ``n = 2Q + b`` and input voxel ``n + t - p = 2(Q + d) + a`` (``b, a`` in {0, 1}, tap
``t``), the blocked kernel is ``K'[b, a, d] = K[t]`` for ``t = 2d + a - b + p`` when ``0 <= t < k``, else 0; in 3-D
the three axes combine as a product (:func:`blocked_kernel`).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

__all__ = [
    "blocked_size",
    "axis_map",
    "blocked_kernel",
    "sub_pixel_map",
    "sub_pixel_kernel",
    "to_blocks",
    "from_blocks",
    "blocked_conv3d",
    "worth_blocking",
    "depth_major",
    "unblock_depth",
    "from_hw_blocks",
]


#: Largest channel count per group for which the blocked form is used (docs/performance.md: where it pays on CPU).
MAX_GROUP_CHANNELS = 4
#: Largest ratio of multiply-adds, blocked over direct (k = 5: 1.73; k = 3 and 7, at 8 and 2.9, are not blocked).
MAX_WORK_RATIO = 2.0


def worth_blocking(x: torch.Tensor, kernel_size: int, in_per_group: int, out_per_group: int) -> bool:
    """Whether a stride-1 "same" convolution of ``x`` ``(B, C, D, H, W)`` runs faster in blocked form.

    True on CPU for even D, H, W, odd k, at most :data:`MAX_GROUP_CHANNELS` channels per group in and out, and a
    blocked kernel costing at most :data:`MAX_WORK_RATIO` times the direct multiply-adds (k = 5, 9, 13, ...).
    """
    if x.device.type != "cpu" or kernel_size % 2 == 0 or max(in_per_group, out_per_group) > MAX_GROUP_CHANNELS:
        return False
    if x.shape[2] % 2 or x.shape[3] % 2 or x.shape[4] % 2:
        return False
    return 8 * blocked_size(kernel_size) ** 3 <= MAX_WORK_RATIO * kernel_size**3


def blocked_size(kernel_size: int) -> int:
    """Kernel edge ``k'`` of the blocked form of a stride-1 convolution with odd kernel ``k`` and padding (k-1)/2."""
    return 2 * math.ceil((kernel_size - 1) / 4) + 1


@functools.lru_cache(maxsize=16)
def axis_map(kernel_size: int) -> torch.Tensor:
    """0/1 tensor ``M[b, a, d, t]`` ``(2, 2, k', k)``: output sub-voxel b reads input sub-voxel a of the block at
    offset ``d - k' // 2`` through tap t (one axis, padding (k - 1) / 2)."""
    pad, size = (kernel_size - 1) // 2, blocked_size(kernel_size)
    reach = size // 2
    table = torch.zeros(2, 2, size, kernel_size)
    for b in range(2):
        for t in range(kernel_size):
            offset = b + t - pad  # input voxel relative to 2Q
            table[b, offset % 2, offset // 2 + reach, t] = 1.0
    return table


def blocked_kernel(kernel: torch.Tensor, groups: int, depth: bool = True) -> torch.Tensor:
    """Weight of the blocked convolution equal to ``conv3d(x, kernel, padding=(k - 1) // 2, groups=groups)``.

    Args:
        kernel: ``(G * Co, Ci, k, k, k)`` convolution weight, k odd.
        groups: G.
        depth: block all three axes (2 x 2 x 2 blocks); False: only H and W (1 x 2 x 2 blocks, the depth axis at
            full resolution), 4 times the channels with a ``(k, k', k')`` kernel.

    Returns:
        ``(G * Co * 8, Ci * 8, k', k', k')``: output channel ``(g, o, b1, b2, b3)``, input channel
        ``(i, a1, a2, a3)`` within group g, as :func:`to_blocks` and :func:`from_blocks` order them; with
        ``depth=False`` ``(G * Co * 4, Ci * 4, k, k', k')``, channels ``(g, o, b2, b3)`` and ``(i, a2, a3)``.
    """
    form = "blocked" if depth else "blocked_hw"
    return _rearranged(kernel, _index(form, tuple(kernel.shape), groups, kernel.device))


def _blocked_einsum(kernel: torch.Tensor, groups: int, depth: bool = True) -> torch.Tensor:
    out_channels, in_channels, k = kernel.shape[0], kernel.shape[1], kernel.shape[2]
    m = axis_map(k).to(device=kernel.device, dtype=kernel.dtype)
    # an axis left at full resolution: one sub-voxel, tap t read at offset t
    full = torch.eye(k, dtype=kernel.dtype, device=kernel.device).reshape(1, 1, k, k)
    per_group = kernel.reshape(groups, out_channels // groups, in_channels, k, k, k)
    blocked = torch.einsum("goixyz,pAux,qBvy,rCwz->gopqriABCuvw", per_group, m if depth else full, m, m)
    factor = 8 if depth else 4
    return blocked.reshape(out_channels * factor, in_channels * factor, *blocked.shape[-3:])


@functools.lru_cache(maxsize=16)
def sub_pixel_map(kernel_size: int) -> torch.Tensor:
    """0/1 tensor ``M[b, d, t]`` ``(2, k', k)`` of a stride-2 transposed convolution with odd kernel k, padding
    ``p = (k - 1) / 2`` and output padding 1 (output size exactly twice the input's), one axis: output voxel
    ``2Q + b`` reads input voxel ``Q + d - k' // 2`` through tap ``t = b + p - 2 (d - k' // 2)``, with ``k'`` as
    :func:`blocked_size` gives it (3 for k = 5)."""
    pad, size = (kernel_size - 1) // 2, blocked_size(kernel_size)
    reach = size // 2
    table = torch.zeros(2, size, kernel_size)
    for b in range(2):
        for d in range(size):
            t = b + pad - 2 * (d - reach)
            if 0 <= t < kernel_size:
                table[b, d, t] = 1.0
    return table


def sub_pixel_kernel(kernel: torch.Tensor, groups: int) -> torch.Tensor:
    """Weight of the stride-1 convolution (padding ``k' // 2``) whose output is :func:`to_blocks` of
    ``conv_transpose3d(x, kernel, stride=2, padding=(k - 1) // 2, output_padding=1, groups=groups)``: the sub-pixel
    form of the transposed convolution (Shi et al., CVPR 2016), its output left in blocked layout.

    Args:
        kernel: ``(G * Ci, Co, k, k, k)`` transposed-convolution weight, k odd.
        groups: G.

    Returns:
        ``(G * Co * 8, Ci, k', k', k')``: output channel ``(g, o, b1, b2, b3)``, the order of :func:`to_blocks`.
    """
    return _rearranged(kernel, _index("sub_pixel", tuple(kernel.shape), groups, kernel.device))


def _sub_pixel_einsum(kernel: torch.Tensor, groups: int) -> torch.Tensor:
    in_channels, out_channels, k = kernel.shape[0], kernel.shape[1], kernel.shape[2]
    m = sub_pixel_map(k).to(device=kernel.device, dtype=kernel.dtype)
    per_group = kernel.reshape(groups, in_channels // groups, out_channels, k, k, k)
    blocked = torch.einsum("giotuv,pxt,qyu,rzv->gopqrixyz", per_group, m, m, m)
    size = m.shape[1]
    return blocked.reshape(groups * out_channels * 8, in_channels // groups, size, size, size)


@functools.lru_cache(maxsize=64)
def _index(form: str, shape: tuple[int, ...], groups: int, device: torch.device) -> torch.Tensor:
    """Where each entry of the rearranged kernel (``form`` "blocked", "blocked_hw" or "sub_pixel", memory order
    ``(O, k', k', k', I)``) comes from in the flattened kernel of ``shape``, or ``prod(shape)`` (a zero) for taps
    outside it: the rearrangement applied once, in float64, to the kernel whose entries count 1, 2, 3, ... Every
    entry of the rearranged kernel is one tap of the kernel or zero (the 0/1 maps above have one 1 per row), so
    gathering by this index equals the einsum, at a fraction of its cost for the cached inference kernels
    (docs/performance.md)."""
    count = torch.arange(1, math.prod(shape) + 1, dtype=torch.float64).reshape(shape)
    if form == "sub_pixel":
        rearranged = _sub_pixel_einsum(count, groups)
    else:
        rearranged = _blocked_einsum(count, groups, depth=form == "blocked")
    index = rearranged.permute(0, 2, 3, 4, 1).round().long() - 1
    return torch.where(index < 0, math.prod(shape), index).contiguous().to(device)


def _rearranged(kernel: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``kernel`` gathered by :func:`_index`, as ``(O, I, k', k', k')`` channels-last; differentiable."""
    flat = torch.cat([kernel.reshape(-1), kernel.new_zeros(1)])
    return flat[index].permute(0, 4, 1, 2, 3)


def _sub_voxel_kernel(channels: int, like: torch.Tensor) -> torch.Tensor:
    """Depthwise one-hot weight ``(8 C, 1, 2, 2, 2)``: output channel ``8 c + a`` picks sub-voxel a of channel c."""
    eye = torch.eye(8, dtype=like.dtype, device=like.device).reshape(8, 1, 2, 2, 2)
    return eye.repeat(channels, 1, 1, 1, 1).contiguous(memory_format=torch.channels_last_3d)


def _gather_blocks(x: torch.Tensor) -> torch.Tensor:
    # a depthwise stride-2 convolution, faster on CPU than the equivalent 9-D permute-copy (docs/performance.md)
    channels = x.shape[1]
    x = x.contiguous(memory_format=torch.channels_last_3d)
    return F.conv3d(x, _sub_voxel_kernel(channels, x), None, 2, 0, 1, channels)


def _scatter_blocks(y: torch.Tensor) -> torch.Tensor:
    b, channels, d, h, w = y.shape
    voxels = y.permute(0, 2, 3, 4, 1).reshape(b, d, h, w, channels // 8, 2, 2, 2)
    voxels = voxels.permute(0, 1, 5, 2, 6, 3, 7, 4).contiguous()  # (B, d, b1, h, b2, w, b3, C)
    return voxels.reshape(b, 2 * d, 2 * h, 2 * w, channels // 8).permute(0, 4, 1, 2, 3)


class _ToBlocks(torch.autograd.Function):
    """Space-to-depth; each direction uses the faster of the two implementations (the gradient is the inverse)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _gather_blocks(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _scatter_blocks(grad)


class _FromBlocks(torch.autograd.Function):
    """Depth-to-space, the inverse of :class:`_ToBlocks`."""

    @staticmethod
    def forward(ctx, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _scatter_blocks(y)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _gather_blocks(grad)


def to_blocks(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, D, H, W) -> (B, 8 C, D/2, H/2, W/2)`` channels-last, channel ``8 c + 4 a1 + 2 a2 + a3`` holding
    voxel ``(2 i + a1, 2 j + a2, 2 k + a3)`` of channel c; differentiable.

    Raises:
        ValueError: a spatial size is odd.
    """
    if x.shape[2] % 2 or x.shape[3] % 2 or x.shape[4] % 2:
        raise ValueError(f"space-to-depth needs even spatial sizes, got {tuple(x.shape[2:])}")
    return _ToBlocks.apply(x)


def from_blocks(y: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_blocks`: ``(B, 8 C, D', H', W') -> (B, C, 2D', 2H', 2W')`` channels-last; differentiable."""
    return _FromBlocks.apply(y)


def depth_major(rows: torch.Tensor) -> torch.Tensor:
    """Rows (output channels, dim 0) of a kernel or bias in blocked order ``(c, b1, b2, b3)`` reordered to
    ``(b1, c, b2, b3)``, so that a convolution's blocked output holds the two depth sub-voxels as two channel
    halves, as :func:`unblock_depth` reads them."""
    return rows.reshape(-1, 2, 4, *rows.shape[1:]).transpose(0, 1).reshape(rows.shape)


def unblock_depth(y: torch.Tensor) -> torch.Tensor:
    """``(B, 8 C, d, h, w)`` channels-last with channels ``(b1, c, b2, b3)`` (:func:`depth_major`) ->
    ``(B, 4 C, 2 d, h, w)`` channels-last with channels ``(c, b2, b3)``: the depth axis back at full resolution, H
    and W still in 2 x 2 blocks (the layout of ``blocked_kernel(..., depth=False)``); one copy."""
    b, channels, d, h, w = y.shape
    halves = y.permute(0, 2, 3, 4, 1).reshape(b, d, h, w, 2, channels // 2).permute(0, 1, 4, 2, 3, 5)
    return halves.reshape(b, 2 * d, h, w, channels // 2).permute(0, 4, 1, 2, 3)


def from_hw_blocks(y: torch.Tensor) -> torch.Tensor:
    """``(B, 4 C, D, h, w)`` with channels ``(c, b2, b3)`` (H and W in 2 x 2 blocks) -> ``(B, C, D, 2 h, 2 w)`` in
    the standard layout; one copy."""
    b, channels, d, h, w = y.shape
    voxels = y.permute(0, 2, 3, 4, 1).reshape(b, d, h, w, channels // 4, 2, 2)
    return voxels.permute(0, 4, 1, 2, 5, 3, 6).reshape(b, channels // 4, d, 2 * h, 2 * w)


def blocked_conv3d(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None, groups: int) -> torch.Tensor:
    """``conv3d(x, kernel, bias, padding=(k - 1) // 2, groups=groups)`` computed in blocked form.

    Args:
        x: ``(B, G * Ci, D, H, W)``, even D, H, W.
        kernel: the blocked weight from :func:`blocked_kernel`.
        bias: ``(G * Co,)`` or None.
        groups: G.

    Returns:
        ``(B, G * Co, D, H, W)``, channels-last (memory order ``(B, D, H, W, G * Co)``).
    """
    blocked_bias = bias.repeat_interleave(8) if bias is not None else None
    y = F.conv3d(to_blocks(x), kernel, blocked_bias, 1, kernel.shape[-1] // 2, 1, groups)
    return from_blocks(y)
