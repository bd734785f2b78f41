"""Inference-time pieces of the bundle's inference.json: mirroring test-time augmentation around MONAI's
sliding-window inferer and probability maps that sum to one everywhere on the input's grid (issue 15), a
resampling that enlarges objects smaller than the training data's sizes (issue 13, item 2) and low-pass filters
images it makes coarser, and bfloat16 autocast on CPUs with AMX (issue 14).

Tensors here are MONAI's channel-first images ``(B, C, D, H, W)`` (``C`` classes for network outputs).
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.ndimage as ndi
import torch
from monai.inferers import Inferer
from monai.networks.layers.convutils import gaussian_1d
from monai.transforms import Spacingd

from se_monai.data import acquired_voxels

__all__ = [
    "FlipInferer",
    "AutocastInferer",
    "AutocastNetwork",
    "cpu_bf16_preferred",
    "complete_background",
    "SizeAdaptiveSpacingd",
    "anti_aliased",
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


#: Largest share of an object's largest cross-section on an image face for it to count as whole (INIA19's brainstem
#: on its lower face: 1.3 %; a crop or slab through a brain: tens of per cent).
MAX_FACE_FRACTION = 0.2


class SizeAdaptiveSpacingd(Spacingd):
    """MONAI's ``Spacingd`` whose target spacing shrinks for objects smaller than those the network was trained on.

    The object's volume is that of the image's non-zero voxels (any channel; a skull-stripped brain), from the
    affine (mm^3), when they lie inside the image (a whole object, not a crop or a slab; a brainstem cut by the
    field of view's lower face still counts as whole). Its
    linear size relative to the training data is ``s = (volume / reference_ml)^(1/3)``; when ``s < min_size`` the
    image is resampled to ``pixdim * s`` instead of ``pixdim``, so the network sees the object at the reference
    size (a macaque brain, 0.39 times the ICBM152 template, enlarged 2.6 times), and ``Invertd`` brings the
    prediction back onto the input's grid as for any ``Spacingd``. The range of sizes a scale-equivariant network
    covers is finite (Wimmer et al., arXiv 2304.05864, Sec. 3: the scales of its group); this moves an object from
    below it to its centre. Other objects are resampled to ``pixdim`` unchanged.

    With ``anti_aliasing``, an image made coarser along an axis by a factor ``f > 1`` (target over input voxel
    size) is first smoothed along it by a Gaussian of ``sigma = (f - 1) / 2`` input voxels (:func:`anti_aliased`;
    the rule of MONAI's ``Resize(anti_aliasing=True)`` and scikit-image's ``resize``). Without it a 0.5 mm scan
    resampled to 1 mm (whose grid starts at the input's first voxel) keeps every eighth voxel with all of its
    noise, and edges alias. Keys interpolated with ``mode="nearest"`` (labels) are never smoothed. Nothing is
    recorded for ``Invertd`` (a prediction is resampled back only).

    Args:
        keys, pixdim, kwargs: as ``Spacingd`` (``pixdim`` in mm).
        reference_ml: the training objects' volume (mL), e.g. the ICBM152 template's brain mask, 1886.5 mL.
        min_size: linear size (relative to the reference) below which objects are enlarged; 0 turns it off.
        anti_aliasing: low-pass filter images before making them coarser.

    Raises:
        ValueError: ``reference_ml`` not positive.
    """

    def __init__(
        self,
        keys: Any,
        pixdim: Sequence[float],
        reference_ml: float = 1.0,
        min_size: float = 0.0,
        anti_aliasing: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, pixdim, **kwargs)
        if reference_ml <= 0:
            raise ValueError(f"SizeAdaptiveSpacingd: reference_ml must be positive, got {reference_ml}")
        self.base = np.asarray(pixdim, dtype=np.float64)
        self.reference_ml, self.min_size = float(reference_ml), float(min_size)
        self.anti_aliasing = bool(anti_aliasing)

    def relative_size(self, image: Any) -> float | None:
        """``s`` of the ``(C, X, Y, Z)`` MetaTensor ``image``: the linear size of its non-zero region against the
        reference; None when that region is cut by the image's border (a face holding over
        :data:`MAX_FACE_FRACTION` of its largest cross-section: a partial field of view, a crop or a slab, whose
        size says nothing of the object's) or is empty."""
        inside = acquired_voxels(image)[0]
        if not bool(inside.any()):
            return None
        for axis in range(3):
            sections = inside.sum(dim=tuple(a for a in range(3) if a != axis))
            if max(int(sections[0]), int(sections[-1])) > MAX_FACE_FRACTION * int(sections.max()):
                return None
        voxel_ml = abs(float(np.linalg.det(np.asarray(image.affine, dtype=np.float64)[:3, :3]))) / 1000.0
        return (float(inside.sum()) * voxel_ml / self.reference_ml) ** (1.0 / 3.0)

    def __call__(self, data: Mapping[Hashable, Any], lazy: bool | None = None) -> dict[Hashable, Any]:
        size = self.relative_size(data[self.keys[0]])
        factor = size if size is not None and size < self.min_size else 1.0
        self.spacing_transform.pixdim = self.base * factor
        if self.anti_aliasing:
            data = dict(data)
            for key, mode in zip(self.keys, self.mode, strict=True):
                if key in data and mode != "nearest":
                    data[key] = anti_aliased(data[key], self.base * factor)
        return super().__call__(data, lazy)


def anti_aliased(image: Any, pixdim: Sequence[float]) -> Any:
    """The ``(C, X, Y, Z)`` MetaTensor ``image`` low-pass filtered for resampling to ``pixdim`` (mm): a Gaussian of
    ``sigma = max(0, (pixdim / spacing - 1) / 2)`` input voxels per axis, discretised as MONAI's ``GaussianSmooth``
    does it (the Gaussian integrated over each voxel, ``gaussian_1d(approx="erf")``, truncated at 4 sigma) and
    applied with scipy's ``correlate1d`` (20x faster here on CPU), zeros beyond the field of view; a normalised
    convolution inside the non-zero voxels (zeros stay zero). ``image`` itself when no axis gets coarser (by more
    than 0.1 %)."""
    spacing = np.asarray(image.pixdim, dtype=np.float64)[:3]
    sigma = np.maximum(0.0, (np.asarray(pixdim, dtype=np.float64) / spacing - 1.0) / 2.0)
    kernels = {
        axis: gaussian_1d(torch.tensor(width), truncated=4.0, approx="erf", normalize=True).numpy()
        for axis, width in enumerate(sigma, start=1)
        if width > 5e-4
    }
    if not kernels:
        return image
    values = image.detach().cpu().numpy().astype(np.float32)
    inside = acquired_voxels(image).cpu().numpy().astype(np.float32)

    def smooth(array: np.ndarray) -> np.ndarray:
        for axis, kernel in kernels.items():
            array = ndi.correlate1d(array, kernel, axis=axis, mode="constant")
        return array

    out = smooth(values * inside)
    out /= np.maximum(smooth(inside), 1e-6)
    out *= inside  # the zeros outside stay exactly zero
    result = image.clone()
    result.set_array(torch.as_tensor(out, dtype=image.dtype, device=image.device))
    return result
