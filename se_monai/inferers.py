"""Inferers of the bundle's inference.json: mirroring test-time augmentation around MONAI's sliding-window inferer,
probability maps that sum to one everywhere on the input's grid, and bfloat16 autocast on CPUs with AMX. (The
resampling that enlarges small objects is a transform: :class:`se_monai.transforms.SizeAdaptiveSpacingd`.)

Tensors here are MONAI's channel-first images ``(B, C, D, H, W)`` (``C`` classes for network outputs).
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import torch
from monai.inferers import Inferer

from se_monai.transforms import spacing as _spacing

__all__ = [
    "FlipInferer",
    "AutocastInferer",
    "AutocastNetwork",
    "cpu_bf16_preferred",
    "complete_background",
]


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


def cpu_bf16_preferred(device: torch.device | str) -> bool:
    """Whether the bundle's inference runs under bfloat16 autocast by default on ``device``: a CPU with AMX tiles and
    AVX-512 BF16 (Intel Xeon from the 4th generation, Sapphire Rapids, on). There the shipped model's whole-volume
    inference of the ICBM152 T1 was 1.55x faster than in float32 with labels agreeing to Dice 0.9991 / 0.9992
    (grey / white matter; docs/performance.md, 2026-12-03). False on other CPUs and devices (CUDA has the bundle's
    ``amp``). On an AMD EPYC with AVX-512 BF16 but no AMX, bfloat16 changes about 1900 voxels of the T1 (Dice 0.9991),
    while float32 there runs the bundle's sliding-window inference of it in 2.8-3.1 s with labels identical to before
    (docs/performance.md, 2026-12-04), so float32 stays.
    """
    if torch.device(device).type != "cpu":
        return False
    probes = (getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return all(probe is not None and bool(probe()) for probe in probes)


class AutocastNetwork(torch.nn.Module):
    """``net`` run under ``torch.autocast`` (convolutions and matrix products in ``dtype``, reductions and softmax in
    float32), its output returned in float32.

    Args:
        net: the network, e.g. SEUNet: ``(B, C_in, D, H, W)`` -> ``(B, C, D, H, W)`` logits.
        device_type: the autocast device type, ``"cpu"`` or ``"cuda"``.
        dtype: the autocast dtype; default bfloat16 on CPU, float16 on CUDA.
    """

    def __init__(self, net: torch.nn.Module, device_type: str, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.net, self.device_type = net, device_type
        self.dtype = dtype or (torch.float16 if device_type == "cuda" else torch.bfloat16)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype):
            out = self.net(x, *args, **kwargs)
        return out.float()


class AutocastInferer(Inferer):
    """``inferer`` given the network under autocast (:class:`AutocastNetwork`, bfloat16 by default): only the
    network's calls run in reduced precision; the inferer's own arithmetic (sliding-window blending, the mirror
    average) stays in float32, as do its outputs.

    Args:
        inferer: the inferer to wrap (the bundle's SlidingWindowInferer, or a FlipInferer around it).
        enabled: False runs ``inferer`` unchanged (bit-identical to calling it).
        dtype: the autocast dtype.
    """

    def __init__(self, inferer: Inferer, enabled: bool = True, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.inferer, self.enabled, self.dtype = inferer, bool(enabled), dtype

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``(B, C_in, D, H, W)`` image -> ``inferer``'s ``(B, C, D, H, W)`` output (float32 when enabled)."""
        if self.enabled:
            network = AutocastNetwork(network, inputs.device.type, self.dtype)
        return self.inferer(inputs, network, *args, **kwargs)


def complete_background(probabilities: torch.Tensor) -> torch.Tensor:
    """Class-0 ("other") probability set to one minus the others', for a ``(C, D, H, W)`` probability map.

    Where the bundle's prediction is masked (voxels outside the acquired image) or padded back onto the input's grid
    (outside the foreground crop), every class has probability 0; there this gives "other" probability 1. Voxels
    whose probabilities already sum to one (within 1e-4) are left exactly as they are, so that a tie between "other"
    and a tissue (frequent with bfloat16 logits) keeps the label argmax gave it.
    """
    result = probabilities.clone()
    rest = probabilities[1:].sum(0)
    missing = (probabilities[0] + rest - 1.0).abs() > 1e-4
    result[0] = torch.where(missing, (1.0 - rest).clamp(0.0, 1.0), probabilities[0])
    return result


def __getattr__(name: str) -> Any:
    """``SizeAdaptiveSpacingd`` and ``anti_aliased`` under their former home, for the configs of bundles made before
    they moved to :mod:`se_monai.transforms` (with a DeprecationWarning)."""
    if name in ("SizeAdaptiveSpacingd", "anti_aliased"):
        warnings.warn(f"se_monai.inferers.{name} is deprecated: use se_monai.transforms.{name}", DeprecationWarning, 2)
        return getattr(_spacing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
