"""Per-channel operations on feature maps whose channel axis is innermost in memory.

The SE convolutions return ``(B, C, S, D, H, W)`` tensors laid out as ``(B, D, H, W, S, C)`` in memory
(:mod:`se_monai.layers`): read as a matrix ``(N, C)`` with ``N = B S D H W`` rows, every per-channel operation is a
column operation. With the 3-8 channels of SEUNet's upper levels, torch's CPU kernels vectorise poorly along so
short a row (and its batch norm first copies such a tensor to the standard layout), so these functions view the
matrix ``r`` rows at a time, ``(N / r, r C)``, and repeat the per-channel vectors r times: the same arithmetic on
rows long enough to vectorise, with no copy of the feature map.

Batch normalisation (Ioffe and Szegedy, ICML 2015) is computed here with its usual backward pass
(``dx = w / sigma * (dy - mean(dy) - x_hat * mean(dy * x_hat))``) as a custom autograd function.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["channel_matrix", "add_bias", "affine", "batch_norm", "cat_channels"]

#: Rows read at a time (the largest power of two up to this that divides N).
_MAX_ROWS = 16


def channel_matrix(x: torch.Tensor) -> torch.Tensor | None:
    """``(B, C, S, D, H, W)`` with ``(B, D, H, W, S, C)`` memory order as an ``(N, C)`` view; None for another
    layout."""
    rows = x.permute(0, 3, 4, 5, 2, 1)
    if not rows.is_contiguous():
        return None
    return rows.reshape(-1, x.shape[1])


def _wide(matrix: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(N, C)`` contiguous as ``(N / r, r C)`` with the largest r <= 16 dividing N (a view), and r."""
    n, c = matrix.shape
    r = _MAX_ROWS
    while n % r:
        r //= 2
    return matrix.view(n // r, r * c), r


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Statistics of half-precision feature maps (autocast) accumulate in float32."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _column_sum(wide: torch.Tensor, channels: int) -> torch.Tensor:
    return wide.sum(0, dtype=_accumulation_dtype(wide.dtype)).view(-1, channels).sum(0)


def add_bias(matrix: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``matrix + bias`` per column of an ``(N, C)`` contiguous matrix; differentiable."""
    wide, r = _wide(matrix)
    return (wide + bias.to(matrix.dtype).repeat(r)).view(matrix.shape)


def affine(matrix: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``matrix * scale + shift`` per column of an ``(N, C)`` contiguous matrix; differentiable."""
    wide, r = _wide(matrix)
    scale, shift = scale.to(matrix.dtype), shift.to(matrix.dtype)
    return torch.addcmul(shift.repeat(r), wide, scale.repeat(r)).view(matrix.shape)


class _BatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, matrix, weight, bias, eps):  # type: ignore[override]
        n, c = matrix.shape
        wide, r = _wide(matrix)
        mean = _column_sum(wide, c) / n
        centred = wide - mean.to(wide.dtype).repeat(r)  # two passes: exact variance whatever the mean
        var = _column_sum(centred * centred, c) / n
        rstd = torch.rsqrt(var + eps)
        scale = rstd * weight if weight is not None else rstd
        shift = -mean * scale + (bias if bias is not None else 0.0)
        out = torch.addcmul(shift.to(wide.dtype).repeat(r), wide, scale.to(wide.dtype).repeat(r)).view(n, c)
        ctx.save_for_backward(matrix, weight, mean, rstd)
        ctx.bias_dtype = bias.dtype if bias is not None else mean.dtype
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx, grad, _grad_mean, _grad_var):  # type: ignore[override]
        matrix, weight, mean, rstd = ctx.saved_tensors
        n, c = matrix.shape
        grad = grad.contiguous()
        wide, r = _wide(matrix)
        grad_wide = grad.view(wide.shape)
        sum_grad = _column_sum(grad_wide, c)
        sum_grad_xhat = (_column_sum(grad_wide * wide, c) - mean * sum_grad) * rstd
        gain = rstd * weight if weight is not None else rstd
        slope = -gain * rstd * sum_grad_xhat / n
        offset = -gain * sum_grad / n - slope * mean
        grad_input = None
        if ctx.needs_input_grad[0]:
            dtype = wide.dtype
            grad_input = torch.addcmul(offset.to(dtype).repeat(r), wide, slope.to(dtype).repeat(r))
            grad_input = torch.addcmul(grad_input, grad_wide, gain.to(dtype).repeat(r)).view(n, c)
        grad_weight = sum_grad_xhat.to(weight.dtype) if weight is not None and ctx.needs_input_grad[1] else None
        grad_bias = sum_grad.to(ctx.bias_dtype) if ctx.needs_input_grad[2] else None
        return grad_input, grad_weight, grad_bias, None


def batch_norm(
    matrix: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch normalisation of the columns of an ``(N, C)`` contiguous matrix with its own statistics.

    Returns:
        The normalised ``(N, C)`` matrix (differentiable in ``matrix``, ``weight`` and ``bias``), and the batch mean
        and biased variance per column (for running estimates; not differentiable).
    """
    return _BatchNorm.apply(matrix, weight, bias, eps)


def cat_channels(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat(tensors, dim=1)`` of ``(B, C_i, S, D, H, W)`` feature maps, the result laid out as
    ``(B, D, H, W, S, C)`` in memory, the order the SE convolutions read without a copy (``torch.cat`` writes a 6-D
    result in the standard layout, which the next convolution then copies; docs/performance.md); differentiable.

    Raises:
        ValueError: the tensors are not 6-D or differ in any axis but 1.
    """
    if any(t.dim() != 6 or t.shape[:1] + t.shape[2:] != tensors[0].shape[:1] + tensors[0].shape[2:] for t in tensors):
        raise ValueError(
            f"cat_channels needs 6-D tensors equal in every axis but 1, got {[list(t.shape) for t in tensors]}"
        )
    b, _, s, d, h, w = tensors[0].shape
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
    total = sum(t.shape[1] for t in tensors)
    out = torch.empty(b, d, h, w, s, total, dtype=dtype, device=tensors[0].device).permute(0, 5, 4, 1, 2, 3)
    start = 0
    for t in tensors:
        out[:, start : start + t.shape[1]] = t
        start += t.shape[1]
    return out
