"""Channel dropout on the scale-translation group (tensor convention: :mod:`se_monai.layers`)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from se_monai.layers.common import check_dim

__all__ = ["SEDropout"]


class SEDropout(nn.Dropout3d):
    """Channel dropout on ``(B, C, S, D, H, W)``: a dropped channel is zero at every scale and position.

    Args:
        p: probability of dropping a channel. inplace: as ``torch.nn.Dropout3d``.

    Raises:
        ValueError: on an input that is not 6-D.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_dim(x, 6, "SEDropout")
        if not self.training or self.p == 0.0:
            return x
        # one Bernoulli draw per (sample, channel), scaled by 1 / (1 - p) as torch's dropout3d; a broadcast product
        # keeps the input's memory order
        mask = F.dropout(x.new_ones(x.shape[0], x.shape[1], 1, 1, 1, 1), self.p, True)
        return x.mul_(mask) if self.inplace else x * mask
