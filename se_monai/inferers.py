"""Inference-time pieces of the bundle's inference.json (issue 15): mirroring test-time augmentation around MONAI's
sliding-window inferer, and probability maps that sum to one everywhere on the input's grid.

Tensors here are MONAI's channel-first images ``(B, C, D, H, W)`` (``C`` classes for network outputs).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from monai.inferers import Inferer

__all__ = ["FlipInferer", "complete_background"]


class FlipInferer(Inferer):
    """Test-time augmentation by mirroring, as nnU-Net does it: ``inferer`` runs on the input and on its mirror
    images over every subset of ``spatial_axes`` (all 2^3 = 8 combinations for three axes, so 8 times the cost of
    one pass), each softmax is mirrored back, and the probabilities are averaged.

    Returns ``log(mean probabilities)``, so that the bundle's ``Activationsd(softmax=True)`` afterwards gives back
    exactly the averaged probabilities (softmax(log p) = p when p sums to one) and argmax labels them.

    Args:
        inferer: the inferer of one pass (the bundle's SlidingWindowInferer).
        spatial_axes: spatial axes (0, 1, 2 for D, H, W) to mirror.

    Raises:
        ValueError: an axis outside 0..2 or given twice.
    """

    def __init__(self, inferer: Inferer, spatial_axes: tuple[int, ...] = (0, 1, 2)) -> None:
        super().__init__()
        axes = tuple(int(a) for a in spatial_axes)
        if len(set(axes)) != len(axes) or not all(0 <= a <= 2 for a in axes):
            raise ValueError(f"FlipInferer: spatial_axes must be distinct values of 0, 1, 2, got {spatial_axes}")
        self.inferer = inferer
        self.flips = [
            tuple(a + 2 for a in subset) for k in range(len(axes) + 1) for subset in itertools.combinations(axes, k)
        ]

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``(B, C_in, D, H, W)`` image -> ``(B, C, D, H, W)`` log of the mirror-averaged class probabilities."""
        total = None
        for dims in self.flips:
            image = torch.flip(inputs, dims) if dims else inputs
            probabilities = torch.softmax(self.inferer(image, network, *args, **kwargs).float(), dim=1)
            probabilities = torch.flip(probabilities, dims) if dims else probabilities
            total = probabilities if total is None else total + probabilities
        mean = total / len(self.flips)
        return torch.log(mean.clamp_min(torch.finfo(mean.dtype).tiny))


def complete_background(probabilities: torch.Tensor) -> torch.Tensor:
    """Class-0 ("other") probability set to one minus the others', for a ``(C, D, H, W)`` probability map.

    Where the bundle's prediction is masked (voxels outside the acquired image) or padded back onto the input's grid
    (outside the foreground crop), every class has probability 0; there this gives "other" probability 1, and it
    leaves voxels whose probabilities already sum to one unchanged (to float rounding).
    """
    result = probabilities.clone()
    result[0] = (1.0 - probabilities[1:].sum(0)).clamp(0.0, 1.0)
    return result
