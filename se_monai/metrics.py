"""Measures of a segmentation and of scale equivariance.

Dice of label volumes goes through MONAI's ``compute_dice``. Equivariance: with scales ``sigma_i`` and a spatial
rescaling ``R_a`` by ``a = sigma_{i+k} / sigma_i`` (``a < 1`` shrinks), a scale-equivariant layer ``Phi`` satisfies
``Phi[R_a f](., i + k) = R_a Phi[f](., i)`` (Wimmer et al. 2023, Eq. 4-6; SESN, Sosnovik et al. 2020, Eq. 6-8):
rescaling the input shifts the output along the scale axis by k. After the projection over scales a network is
invariant in this sense, ``N[R_a f] = R_a N[f]``. A plain CNN has no scale axis, so for it the identity is
``C[R_a f] = R_a C[f]``. The relative L2 error of these identities on the central part of the volume (away from
borders) is the equivariance error, as in DISCO (Sosnovik, Moskalev, Smeulders, BMVC 2021, Sec. 5). Every error names
its resampling (:mod:`se_monai.ops.resample`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn
from monai.metrics import compute_dice
from monai.transforms import DivisiblePad

from se_monai.ops.resample import rescale

__all__ = [
    "label_dice",
    "relative_error",
    "scale_shift_error",
    "invariance_error",
    "network_error",
    "padded_forward",
]


def label_dice(prediction: Any, reference: Any, labels: dict[str, int]) -> dict[str, float]:
    """Dice of each label value between two label arrays of the same shape (MONAI's ``compute_dice``).

    Args:
        prediction, reference: integer label arrays or tensors of any dimension (volumes, slices), same shape.
        labels: ``{name: label value}``.

    Returns:
        ``{name: Dice}``; 1.0 where both arrays lack the label.

    Raises:
        ValueError: the shapes differ.
    """
    pred = torch.as_tensor(np.ascontiguousarray(prediction)).round().long()
    ref = torch.as_tensor(np.ascontiguousarray(reference)).round().long()
    if pred.shape != ref.shape:
        raise ValueError(f"label volumes differ in shape: {tuple(pred.shape)} vs {tuple(ref.shape)}")
    scores = {}
    for name, value in labels.items():
        p, r = (pred == value)[None, None].float(), (ref == value)[None, None].float()
        scores[name] = float(compute_dice(p, r, include_background=True, ignore_empty=False).item())
    return scores


def _central(x: torch.Tensor, crop: float) -> torch.Tensor:
    slices = []
    for n in x.shape[-3:]:
        margin = round(n * (1.0 - crop) / 2)
        slices.append(slice(margin, n - margin))
    return x[(..., *slices)]


def relative_error(estimate: torch.Tensor, target: torch.Tensor, crop: float = 0.5) -> float:
    """``|| estimate - target || / || target ||`` (L2) over the central ``crop`` fraction of each spatial axis."""
    diff, ref = _central(estimate - target, crop), _central(target, crop)
    return float(diff.norm() / ref.norm().clamp_min(1e-30))


@torch.no_grad()
def scale_shift_error(
    model: nn.Module, x: torch.Tensor, factor: float, shift: int, interpolation: str = "cubic", crop: float = 0.5
) -> float:
    """Error of ``model[R x](., i + shift) = R model[x](., i)`` for a model returning ``(B, C, S, D, H, W)``.

    Args:
        model: a lifting convolution, or a stack of SE layers.
        x: ``(B, C, D, H, W)`` input.
        factor: rescale factor a, equal to ``sigma_{i + shift} / sigma_i``.
        shift: scale-axis shift k, nonzero (negative when the scales increase along the axis).
        interpolation, crop: see :func:`se_monai.ops.resample.rescale` and :func:`relative_error`.

    Raises:
        ValueError: ``shift`` is 0 or not smaller than the number of scales.
    """
    out, out_small = model(x), model(rescale(x, factor, interpolation))
    if shift == 0 or abs(shift) >= out.shape[2]:
        raise ValueError(f"shift must be nonzero and smaller than the {out.shape[2]} scales, got {shift}")
    if shift > 0:
        return relative_error(out_small[:, :, shift:], rescale(out[:, :, :-shift], factor, interpolation), crop)
    return relative_error(out_small[:, :, :shift], rescale(out[:, :, -shift:], factor, interpolation), crop)


@torch.no_grad()
def invariance_error(
    model: nn.Module, x: torch.Tensor, factor: float, interpolation: str = "cubic", crop: float = 0.5
) -> float:
    """Error of ``model[R x] = R model[x]`` for a model returning ``(B, C, D, H, W)`` (a plain CNN)."""
    return relative_error(model(rescale(x, factor, interpolation)), rescale(model(x), factor, interpolation), crop)


@torch.no_grad()
def padded_forward(net: nn.Module, x: torch.Tensor, divisor: int = 8) -> torch.Tensor:
    """``net(x)`` for any spatial size: x ``(B, C, D, H, W)`` zero-padded at the far end to a multiple of ``divisor``
    (MONAI's ``DivisiblePad``) and the output cropped back."""
    pad = DivisiblePad(k=divisor, method="end")
    padded = torch.stack([torch.as_tensor(pad(sample)) for sample in x])
    d, h, w = x.shape[-3:]
    return net(padded)[..., :d, :h, :w]


@torch.no_grad()
def network_error(
    net: nn.Module, x: torch.Tensor, factor: float, interpolation: str = "cubic", crop: float = 0.5, divisor: int = 8
) -> float:
    """End-to-end change of a segmentation network's output when its input is rescaled: the output for
    ``R_a x``, resampled back to the grid of x, against the output for x.

    Inputs are zero-padded at the far end to a multiple of ``divisor`` (U-Net strides) and the padding cropped off.
    """
    small = rescale(x, factor, interpolation)
    back = rescale(padded_forward(net, small, divisor), 1.0 / factor, interpolation)  # x's grid if factor * n is whole
    reference = padded_forward(net, x, divisor)
    d, h, w = (min(a, b) for a, b in zip(back.shape[-3:], reference.shape[-3:], strict=True))
    return relative_error(back[..., :d, :h, :w], reference[..., :d, :h, :w], crop)
