"""Stride-1 "same" 3-D convolutions run by oneDNN on CPU whatever their size.

For a batch of one, a 3 x 3 x 3 kernel and few input channels (``C * D * H <= 20480``), torch's CPU dispatch sends
``conv3d`` to its im2col-and-GEMM path, several times slower than oneDNN's direct convolution on channels-last
inputs: the per-scale convolutions of :class:`~se_monai.networks.SEOutputBlock` (8 channels in, 3 x 3 x 3 kernel,
32^3-48^3 voxels) are such convolutions (docs/performance.md). :func:`conv3d` calls oneDNN's convolution directly
on CPU and follows CPU autocast as ``torch.nn.functional.conv3d`` would.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["conv3d"]

#: dtypes oneDNN convolves on CPU.
_DTYPES = (torch.float32, torch.bfloat16)


def conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, groups: int = 1) -> torch.Tensor:
    """``torch.nn.functional.conv3d(x, weight, bias, stride=1, padding=(kd // 2, kh // 2, kw // 2), groups=groups)``
    for an odd kernel ``(kd, kh, kw)``.

    On CPU, for float32 and bfloat16 (also under CPU autocast, which casts the arguments to its dtype as it does for
    ``conv3d``), oneDNN's convolution with channels-last input and weight; elsewhere ``conv3d`` itself.

    Args:
        x: ``(B, G * Ci, D, H, W)``.
        weight: ``(G * Co, Ci, kd, kh, kw)``, odd sizes.
        bias: ``(G * Co,)`` or None.
        groups: G.

    Returns:
        ``(B, G * Co, D, H, W)``, channels-last on CPU.
    """
    padding = [size // 2 for size in weight.shape[2:]]
    if x.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return F.conv3d(x, weight, bias, 1, padding, 1, groups)
    if torch.is_autocast_enabled("cpu"):
        dtype = torch.get_autocast_dtype("cpu")
        x, weight = x.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    if x.dtype not in _DTYPES or weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        return F.conv3d(x, weight, bias, 1, padding, 1, groups)
    layout = torch.channels_last_3d
    return torch.ops.aten.mkldnn_convolution(
        x.contiguous(memory_format=layout),
        weight.contiguous(memory_format=layout),
        bias,
        padding,
        [1] * 3,
        [1] * 3,
        groups,
    )
