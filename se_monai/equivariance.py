"""Measuring scale equivariance: of single layers (a shift along the scale axis) and of whole networks.

With scales ``sigma_i`` and a spatial rescaling ``R_a`` by ``a = sigma_{i+k} / sigma_i`` (``a < 1`` shrinks), a
scale-equivariant layer ``Phi`` satisfies ``Phi[R_a f](., i + k) = R_a Phi[f](., i)`` (Wimmer et al. 2023, Eq. 4-6;
SESN, Sosnovik et al. 2020, Eq. 6-8): rescaling the input shifts the output along the scale axis by k. After the
projection over scales a network is invariant in this sense, ``N[R_a f] = R_a N[f]``. A plain CNN has no scale
axis, so for it the identity is ``C[R_a f] = R_a C[f]``. The relative L2 error of these identities on the central
part of the volume (away from borders) is the equivariance error measured here, as in DISCO (Sosnovik, Moskalev,
Smeulders, BMVC 2021, Sec. 5).

Discrete rescaling is itself approximate: trilinear interpolation blurs by an amount that changes from voxel to
voxel, which no convolution kernel can undo, so measurements name their ``interpolation``: "cubic" (cubic B-spline,
close to the continuous rescaling of a smooth field), "trilinear", "nearest", or "subsample" (keep every k-th voxel,
exact for ``a = 1/k``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import ndimage

__all__ = [
    "INTERPOLATIONS",
    "rescale",
    "smooth_field",
    "relative_error",
    "scale_shift_error",
    "invariance_error",
    "network_error",
    "padded_forward",
    "report",
    "format_table",
]

INTERPOLATIONS = ("cubic", "trilinear", "nearest", "subsample")


def _output_size(size: int, factor: float) -> int:
    return int(math.floor(size * factor + 1e-6))


@functools.lru_cache(maxsize=64)
def _spline_matrix(size: int, factor: float) -> torch.Tensor:
    """``(m, n)`` matrix of cubic B-spline resampling of one axis by ``factor`` (input voxel centres at
    ``(p + 0.5) / factor - 0.5``), from scipy.ndimage applied to the unit vectors."""
    out = _output_size(size, factor)
    columns = [
        ndimage.affine_transform(np.eye(size)[k], [1.0 / factor], offset=0.5 / factor - 0.5, output_shape=(out,),
                                 order=3, mode="nearest")
        for k in range(size)
    ]  # fmt: skip
    return torch.from_numpy(np.stack(columns, axis=1))


def rescale(x: torch.Tensor, factor: float, interpolation: str = "cubic") -> torch.Tensor:
    """Rescale the last three (spatial) axes of ``x`` by ``factor`` (``< 1`` shrinks).

    Output sizes are ``floor(n * factor)``; the voxel grid maps as in ``align_corners=False`` (voxel p of the output
    samples the input at ``(p + 0.5) / factor - 0.5``), exactly, for every interpolation.

    Args:
        x: ``(..., D, H, W)`` tensor (5-D volumes or 6-D feature maps on the scale-translation group).
        factor: scale factor; for "subsample", ``1 / factor`` must be an integer.
        interpolation: one of :data:`INTERPOLATIONS`.

    Raises:
        ValueError: unknown interpolation, or a "subsample" factor that is not ``1 / k``.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if interpolation == "subsample":
        step = round(1.0 / factor)
        if step < 1 or abs(step * factor - 1.0) > 1e-9:
            raise ValueError(f"subsampling needs a factor 1/k, got {factor}")
        return x[..., ::step, ::step, ::step]
    lead = x.shape[:-3]
    volume = x.reshape(-1, 1, *x.shape[-3:])
    if interpolation == "cubic":
        out = volume[:, 0]
        for axis in (1, 2, 3):
            matrix = _spline_matrix(out.shape[axis], float(factor)).to(x)
            out = torch.movedim(torch.tensordot(matrix, torch.movedim(out, axis, 0), dims=1), 0, axis)
    else:
        align = None if interpolation == "nearest" else False
        out = F.interpolate(volume, scale_factor=factor, mode=interpolation, align_corners=align,
                            recompute_scale_factor=False)[:, 0]  # fmt: skip
    return out.reshape(*lead, *out.shape[-3:])


def smooth_field(size: int, sigma: float = 2.5, seed: int = 0, batch: int = 1, dtype=torch.float32) -> torch.Tensor:
    """White noise smoothed by a Gaussian of ``sigma`` voxels, zero mean and unit variance: ``(batch, 1, n, n, n)``.

    Smoothed on a volume padded by ``3 sigma`` on every side and cropped, so the field has no border effects.
    """
    from monai.networks.layers import GaussianFilter

    generator = torch.Generator().manual_seed(seed)
    pad = int(math.ceil(3 * sigma))
    noise = torch.randn(batch, 1, *(size + 2 * pad,) * 3, generator=generator, dtype=torch.float64)
    field = GaussianFilter(3, sigma).double()(noise)[..., pad : pad + size, pad : pad + size, pad : pad + size]
    return ((field - field.mean()) / field.std()).to(dtype)


def _central(x: torch.Tensor, crop: float) -> torch.Tensor:
    slices = []
    for n in x.shape[-3:]:
        margin = int(round(n * (1.0 - crop) / 2))
        slices.append(slice(margin, n - margin))
    return x[(..., *slices)]


def relative_error(estimate: torch.Tensor, target: torch.Tensor, crop: float = 0.5) -> float:
    """``|| estimate - target || / || target ||`` (L2) over the central ``crop`` fraction of each spatial axis."""
    diff, ref = _central(estimate - target, crop), _central(target, crop)
    return float(diff.norm() / ref.norm().clamp_min(1e-30))


@torch.no_grad()
def scale_shift_error(model: nn.Module, x: torch.Tensor, factor: float, shift: int, interpolation: str = "cubic",
                      crop: float = 0.5) -> float:  # fmt: skip
    """Error of ``model[R x](., i + shift) = R model[x](., i)`` for a model returning ``(B, C, S, D, H, W)``.

    Args:
        model: a lifting convolution, or a stack of SE layers.
        x: ``(B, C, D, H, W)`` input.
        factor: rescale factor a, equal to ``sigma_{i + shift} / sigma_i``.
        shift: scale-axis shift k, nonzero (negative when the scales increase along the axis).
        interpolation, crop: see :func:`rescale` and :func:`relative_error`.

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
def invariance_error(model: nn.Module, x: torch.Tensor, factor: float, interpolation: str = "cubic",
                     crop: float = 0.5) -> float:  # fmt: skip
    """Error of ``model[R x] = R model[x]`` for a model returning ``(B, C, D, H, W)`` (a plain CNN)."""
    return relative_error(model(rescale(x, factor, interpolation)), rescale(model(x), factor, interpolation), crop)


@torch.no_grad()
def padded_forward(net: nn.Module, x: torch.Tensor, divisor: int = 8) -> torch.Tensor:
    """``net(x)`` for any spatial size: x ``(B, C, D, H, W)`` zero-padded at the far end to a multiple of ``divisor``
    (MONAI's ``DivisiblePad``) and the output cropped back."""
    from monai.transforms import DivisiblePad

    pad = DivisiblePad(k=divisor, method="end")
    padded = torch.stack([torch.as_tensor(pad(sample)) for sample in x])
    d, h, w = x.shape[-3:]
    return net(padded)[..., :d, :h, :w]


@torch.no_grad()
def network_error(net: nn.Module, x: torch.Tensor, factor: float, interpolation: str = "cubic", crop: float = 0.5,
                  divisor: int = 8) -> float:  # fmt: skip
    """End-to-end change of a segmentation network's output when its input is rescaled: the output for
    ``R_a x``, resampled back to the grid of x, against the output for x.

    Inputs are zero-padded at the far end to a multiple of ``divisor`` (U-Net strides) and the padding cropped off.
    """
    small = rescale(x, factor, interpolation)
    back = rescale(padded_forward(net, small, divisor), 1.0 / factor, interpolation)  # x's grid if factor * n is whole
    reference = padded_forward(net, x, divisor)
    d, h, w = (min(a, b) for a, b in zip(back.shape[-3:], reference.shape[-3:]))
    return relative_error(back[..., :d, :h, :w], reference[..., :d, :h, :w], crop)


def _se_stack(kernel_size: int, effective_size: int, scales: Sequence[float], basis_type: str, channels: int,
              activation: Callable[[], nn.Module]) -> nn.Sequential:  # fmt: skip
    from se_monai.layers import SESConv_H_H, SESConv_Z3_H

    geometry = dict(kernel_size=kernel_size, effective_size=effective_size, scales=list(scales),
                    padding=kernel_size // 2, basis_type=basis_type, kernel_padding=False)  # fmt: skip
    return nn.Sequential(SESConv_Z3_H(1, channels, **geometry), activation(),
                         SESConv_H_H(channels, channels, **geometry))  # fmt: skip


def _cnn_stack(kernel_size: int, channels: int, activation: Callable[[], nn.Module]) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(1, channels, kernel_size, padding=kernel_size // 2), activation(),
                         nn.Conv3d(channels, channels, kernel_size, padding=kernel_size // 2))  # fmt: skip


_ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU}
_BASES = {"Hermite single": "single", "Hermite multi": "multi", "DISCO (optimised)": "disco"}


def _layer_rows(kernel_size, effective_size, scales, size, factors, interpolations, seeds, channels, activation,
                crop) -> dict[str, dict[str, dict[str, float]]]:  # fmt: skip
    """{row: {"<interpolation> <factor>": {"layer": e, "stack": e}}}, errors averaged over seeds."""
    ratio = scales[1] / scales[0]
    rows: dict[str, dict[str, dict[str, float]]] = {}
    act = _ACTIVATIONS[activation]
    for name in list(_BASES) + ["plain CNN"]:
        cells: dict[str, dict[str, list[float]]] = {}
        for seed in seeds:
            x = smooth_field(size, seed=seed)
            torch.manual_seed(1000 + seed)  # the same random weights for every basis
            if name == "plain CNN":
                model = _cnn_stack(kernel_size, channels, act)
            else:
                model = _se_stack(kernel_size, effective_size, scales, _BASES[name], channels, act)
            for interpolation in interpolations:
                for factor in factors:
                    shift = round(math.log(factor) / math.log(ratio))
                    key = f"{interpolation} {factor:g}"
                    cell = cells.setdefault(key, {"layer": [], "stack": []})
                    if name == "plain CNN":
                        cell["layer"].append(invariance_error(model[0], x, factor, interpolation, crop))
                        cell["stack"].append(invariance_error(model, x, factor, interpolation, crop))
                    else:
                        cell["layer"].append(scale_shift_error(model[0], x, factor, shift, interpolation, crop))
                        cell["stack"].append(scale_shift_error(model, x, factor, shift, interpolation, crop))
        rows[name] = {k: {m: float(np.mean(v)) for m, v in cell.items()} for k, cell in cells.items()}
    rows["activation alone"] = _activation_floor(kernel_size, effective_size, scales, size, factors, interpolations,
                                                 seeds, channels, act, crop)  # fmt: skip
    return rows


@torch.no_grad()
def _activation_floor(kernel_size, effective_size, scales, size, factors, interpolations, seeds, channels, act,
                      crop) -> dict[str, dict[str, float]]:  # fmt: skip
    """How far the activation and the resampling fail to commute, ``act(R y)`` against ``R act(y)`` on the lifting
    convolution's output y (optimised basis): part of the stack's error that no basis can remove ("layer": 0)."""
    cells: dict[str, list[float]] = {}
    for seed in seeds:
        torch.manual_seed(1000 + seed)
        lifting = _se_stack(kernel_size, effective_size, scales, "disco", channels, act)[0]
        y = lifting(smooth_field(size, seed=seed))
        for interpolation in interpolations:
            for factor in factors:
                error = relative_error(act()(rescale(y, factor, interpolation)), rescale(act()(y), factor, interpolation),
                                       crop)  # fmt: skip
                cells.setdefault(f"{interpolation} {factor:g}", []).append(error)
    return {k: {"layer": 0.0, "stack": float(np.mean(v))} for k, v in cells.items()}


class _Probabilities(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


def _bundle_rows(factors: Sequence[float], interpolations: Sequence[str], crop: float,
                 size: int) -> dict[str, dict[str, float]]:  # fmt: skip
    """The bundle's trained SEUNet on the central ``size^3`` of the real ICBM152 T1 (class probabilities), and the
    error of resampling its output alone (down and back up), the floor any network meets."""
    from monai.transforms import CenterSpatialCrop, NormalizeIntensity

    from se_monai.data import load_icbm152
    from se_monai.workflows import load_bundle_network

    model = _Probabilities(load_bundle_network())
    t1 = torch.from_numpy(load_icbm152()[0])[None]
    x = NormalizeIntensity(nonzero=True)(CenterSpatialCrop(size)(t1))
    x = torch.as_tensor(x)[None].float()
    reference = padded_forward(model, x)
    rows: dict[str, dict[str, float]] = {"SEUNet (bundle model)": {}, "resampling alone": {}}
    for interpolation in interpolations:
        for factor in factors:
            key = f"{interpolation} {factor:g}"
            rows["SEUNet (bundle model)"][key] = network_error(model, x, factor, interpolation, crop)
            round_trip = rescale(rescale(reference, factor, interpolation), 1.0 / factor, interpolation)
            d, h, w = round_trip.shape[-3:]
            rows["resampling alone"][key] = relative_error(round_trip, reference[..., :d, :h, :w], crop)
    return rows


def report(kernel_size: int = 9, effective_size: int = 3, scales: Sequence[float] | None = None, size: int = 64,
           factors: Sequence[float] = (0.9, 0.81), interpolations: Sequence[str] = ("cubic", "trilinear"),
           seeds: Sequence[int] = (0, 1), channels: int = 4, activation: str = "silu", crop: float = 0.5,
           integer: bool = True, network: bool = True, network_size: int = 100) -> dict[str, Any]:  # fmt: skip
    """Everything ``se-monai equivariance`` prints, as one dictionary (see :func:`format_table`).

    - ``layers``: a lifting convolution alone ("layer") and lifting convolution, activation, group convolution
      ("stack") with random weights, for each basis, against a plain Conv3d stack of the same size, on smooth random
      fields (:func:`smooth_field`), for each interpolation and rescale factor (each factor must be a power of the
      scale ratio);
    - ``integer``: scales (1, 2), downscaling by 2x subsampling (exact for a dilated basis);
    - ``network``: the bundle's trained SEUNet end to end (:func:`network_error`, class probabilities) on the
      central ``network_size^3`` of the real ICBM152 T1, beside the error of resampling its output alone.

    Raises:
        ValueError: a factor that is not a power of the scale ratio, an unknown activation or interpolation.
    """
    scales = [0.9**i for i in range(4)] if scales is None else [float(s) for s in scales]
    ratio = scales[1] / scales[0]
    for factor in factors:
        shift = math.log(factor) / math.log(ratio)
        if abs(shift - round(shift)) > 1e-6 or round(shift) == 0 or abs(round(shift)) >= len(scales):
            raise ValueError(f"rescale factor {factor} is not ratio**k (ratio {ratio:g}, 0 < |k| < {len(scales)})")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(_ACTIVATIONS)}, got {activation!r}")
    for interpolation in interpolations:
        if interpolation not in INTERPOLATIONS or interpolation == "subsample":
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS[:3]}, got {interpolation!r}")
    config = dict(kernel_size=kernel_size, effective_size=effective_size, scales=scales, size=size,
                  factors=list(factors), interpolations=list(interpolations), seeds=list(seeds), channels=channels,
                  activation=activation, crop=crop)  # fmt: skip
    result: dict[str, Any] = {"config": config}
    result["layers"] = _layer_rows(kernel_size, effective_size, scales, size, factors, interpolations, seeds, channels,
                                   activation, crop)  # fmt: skip
    if integer:
        result["integer"] = _layer_rows(kernel_size, effective_size, [1.0, 2.0], size, [0.5], ["subsample"], seeds,
                                        channels, activation, crop)  # fmt: skip
    if network:
        result["network"] = _bundle_rows(factors, interpolations, crop, network_size)
    return result


def format_table(result: dict[str, Any]) -> str:
    """The report as plain-text tables."""
    cfg = result["config"]
    lines = [
        f"relative equivariance error (L2, central {cfg['crop']:g} of each axis), mean of seeds {cfg['seeds']}",
        f"kernel {cfg['kernel_size']}, effective size {cfg['effective_size']}, scales "
        f"{', '.join(f'{s:.3g}' for s in cfg['scales'])}, smooth random {cfg['size']}^3 fields, {cfg['channels']} "
        f"channels, {cfg['activation']} in the stack",
        "",
    ]

    def block(rows: dict[str, dict[str, dict[str, float]]]) -> list[str]:
        keys = list(next(iter(rows.values())))
        head = f"{'':<20}" + "".join(f"{k:>20}" for k in keys)
        sub = f"{'':<20}" + "".join(f"{'layer':>10}{'stack':>10}" for _ in keys)
        body = [f"{name:<20}" + "".join(f"{c[k]['layer']:>10.2g}{c[k]['stack']:>10.2g}" for k in keys)
                for name, c in rows.items()]  # fmt: skip
        return [head, sub] + body

    lines += block(result["layers"])
    if "integer" in result:
        lines += ["", "integer scale ratio: scales 1, 2; downscaling by 2x subsampling"] + block(result["integer"])
    if "network" in result:
        rows = result["network"]
        keys = list(next(iter(rows.values())))
        lines += ["", "end to end on the real T1 (class probabilities for the rescaled input, resampled back)",
                  f"{'':<28}" + "".join(f"{k:>16}" for k in keys)]  # fmt: skip
        lines += [f"{name:<28}" + "".join(f"{v[k]:>16.3g}" for k in keys) for name, v in rows.items()]
    return "\n".join(lines)
