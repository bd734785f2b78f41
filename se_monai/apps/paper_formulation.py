"""The paper's formulation of the SE layers: this project's re-implementation of the computation of the paper's code
(not that code, and slower than it), for ``se-monai bench`` to compare against.

Computes as the layers of the paper's code do (Wimmer et al. 2023; github.com/wimmerth/scale-equivariant-3d-convnet,
``layers/conv.py`` and ``layers/normalization.py``), written here from their description, tensor convention of
:mod:`se_monai.layers`:

- lifting and group convolutions: the kernel expanded on every call (``weight @ basis``), one ``conv3d`` over all
  scales for the lifting convolution, and for the group convolution one grouped ``conv3d`` (groups = S) per scale
  offset over a permuted contiguous ``(B, S*C, D, H, W)`` copy, permuted back (with replicate padding of the scale
  axis when ``scale_size > 1``). :mod:`se_monai.reference` computes these two exactly so; they are reused.
- the 1x1x1 group convolution: the weight repeated S times and one grouped ``conv3d`` over the permuted copy.
- batch norm: per-channel mean and biased variance over ``(B, S, D, H, W)`` by tensor reductions, the running
  estimates updated with the unbiased variance, and ``(x - mean) / sqrt(var + eps) * weight + bias`` written out.

:func:`paper_model` swaps these into a copy of a network; ``tests/test_bench.py`` checks it against SEUNet and the
reference to float tolerance, in training and evaluation.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from se_monai import layers
from se_monai.reference import reference_model

__all__ = ["paper_conv_1x1", "paper_batch_norm", "paper_model"]


def paper_conv_1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride) -> torch.Tensor:
    """``(B, C, S, D, H, W) -> (B, C', S, D', H', W')``: one grouped conv3d of the S-times repeated weight."""
    b, c, s = x.shape[:3]
    kernel = weight.unsqueeze(0).expand(s, -1, -1, -1, -1, -1).reshape(-1, c, 1, 1, 1)
    folded = x.permute(0, 2, 1, 3, 4, 5).contiguous().reshape(b, s * c, *x.shape[3:])
    y = F.conv3d(folded, kernel, stride=stride, groups=s)
    y = y.reshape(b, s, -1, *y.shape[2:]).permute(0, 2, 1, 3, 4, 5).contiguous()
    return y if bias is None else y + bias.reshape(1, -1, 1, 1, 1, 1)


def paper_batch_norm(module: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """Batch norm of ``module``'s parameters and buffers over a 6-D ``x``, as the paper's ``SEBatchNorm``."""
    factor = 0.0 if module.momentum is None else module.momentum
    if module.training and module.track_running_stats and module.num_batches_tracked is not None:
        module.num_batches_tracked.add_(1)
        factor = 1.0 / float(module.num_batches_tracked) if module.momentum is None else module.momentum
    if module.training or module.running_mean is None:
        mean = x.mean([0, 2, 3, 4, 5])
        var = x.var([0, 2, 3, 4, 5], unbiased=False)
        if module.training and module.running_mean is not None:
            n = x.numel() / x.shape[1]
            with torch.no_grad():
                module.running_mean.mul_(1 - factor).add_(factor * mean)
                module.running_var.mul_(1 - factor).add_(factor * var * n / max(n - 1, 1))
    else:
        mean, var = module.running_mean, module.running_var
    shape = (1, -1, 1, 1, 1, 1)
    y = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + module.eps)
    return y * module.weight.reshape(shape) + module.bias.reshape(shape) if module.affine else y


class _Paper1x1(layers.SESConv_H_H_1x1):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return paper_conv_1x1(x, self.weight, self.bias, self.spatial_stride)


class _PaperBatchNorm(layers.SEBatchNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return paper_batch_norm(self, x)


def paper_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose SE layers compute in the paper's formulation (module docstring); parameters
    and buffers are copied, so it computes the same function to float tolerance."""
    paper = reference_model(model)  # lifting and group convolutions: the paper's formulation
    for module in paper.modules():
        if isinstance(module, layers.SESConv_H_H_1x1):
            module.__class__ = _Paper1x1
        elif isinstance(module, layers.SEBatchNorm):
            module.__class__ = _PaperBatchNorm
    return paper
