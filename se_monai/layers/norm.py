"""Normalisation on the scale-translation group (tensor convention: :mod:`se_monai.layers`): statistics per channel
shared across scales, which keeps the layers scale-equivariant."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from se_monai.layers.common import check_dim
from se_monai.ops import channels_last

__all__ = ["SEBatchNorm", "SEInstanceNorm"]


class SEBatchNorm(nn.BatchNorm3d):
    """Batch norm on ``(B, C, S, D, H, W)``: one mean and variance per channel over batch, scales and space.

    Sharing the statistics across scales keeps the layer scale-equivariant (Wimmer et al. 2023, Sec. 3.3).
    Arguments, parameters, buffers and the update of the running estimates are those of ``torch.nn.BatchNorm3d``
    (``num_features`` = C). On the ``(B, D, H, W, S, C)`` memory order that the SE convolutions emit, the layer
    computes in place of torch's kernels, without copying the feature map (:mod:`se_monai.ops.channels_last`); on other
    layouts and under TorchScript it calls ``torch.nn.functional.batch_norm``.

    Raises:
        ValueError: on an input that is not 6-D.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        check_dim(input, 6, "SEBatchNorm")

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
            x,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            batch_statistics,
            factor,
            self.eps,
        )


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
        check_dim(input, 6, "SEInstanceNorm")
