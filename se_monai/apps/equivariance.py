"""The equivariance report (``se-monai equivariance``): how far the Hermite and optimised bases, a plain CNN, and the
bundle's trained SEUNet are from scale equivariance, in the measures of :mod:`se_monai.metrics`, for each resampling
of :mod:`se_monai.ops.resample`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from monai.transforms import CenterSpatialCrop, NormalizeIntensity

from se_monai.data import load_icbm152
from se_monai.layers import SESConv_H_H, SESConv_Z3_H
from se_monai.metrics import invariance_error, network_error, padded_forward, relative_error, scale_shift_error
from se_monai.networks import PAPER_SCALES
from se_monai.ops.resample import INTERPOLATIONS, rescale, smooth_field
from se_monai.workflows import load_bundle_network

__all__ = ["report", "format_table"]


def _se_stack(
    kernel_size: int,
    effective_size: int,
    scales: Sequence[float],
    basis_type: str,
    channels: int,
    activation: Callable[[], nn.Module],
) -> nn.Sequential:
    geometry = {
        "kernel_size": kernel_size,
        "effective_size": effective_size,
        "scales": list(scales),
        "padding": kernel_size // 2,
        "basis_type": basis_type,
        "kernel_padding": False,
    }
    return nn.Sequential(
        SESConv_Z3_H(1, channels, **geometry), activation(), SESConv_H_H(channels, channels, **geometry)
    )


def _cnn_stack(kernel_size: int, channels: int, activation: Callable[[], nn.Module]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(1, channels, kernel_size, padding=kernel_size // 2),
        activation(),
        nn.Conv3d(channels, channels, kernel_size, padding=kernel_size // 2),
    )


_ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU}
_BASES = {"Hermite single": "single", "Hermite multi": "multi", "DISCO (optimised)": "disco"}


def _layer_rows(
    kernel_size, effective_size, scales, size, factors, interpolations, seeds, channels, activation, crop
) -> dict[str, dict[str, dict[str, float]]]:
    """{row: {"<interpolation> <factor>": {"layer": e, "stack": e}}}, errors averaged over seeds."""
    ratio = scales[1] / scales[0]
    rows: dict[str, dict[str, dict[str, float]]] = {}
    act = _ACTIVATIONS[activation]
    for name in [*list(_BASES), "plain CNN"]:
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
    rows["activation alone"] = _activation_floor(
        kernel_size, effective_size, scales, size, factors, interpolations, seeds, channels, act, crop
    )
    return rows


@torch.no_grad()
def _activation_floor(
    kernel_size, effective_size, scales, size, factors, interpolations, seeds, channels, act, crop
) -> dict[str, dict[str, float]]:
    """How far the activation and the resampling fail to commute, ``act(R y)`` against ``R act(y)`` on the lifting
    convolution's output y (optimised basis): part of the stack's error that no basis can remove ("layer": 0)."""
    cells: dict[str, list[float]] = {}
    for seed in seeds:
        torch.manual_seed(1000 + seed)
        lifting = _se_stack(kernel_size, effective_size, scales, "disco", channels, act)[0]
        y = lifting(smooth_field(size, seed=seed))
        for interpolation in interpolations:
            for factor in factors:
                error = relative_error(
                    act()(rescale(y, factor, interpolation)), rescale(act()(y), factor, interpolation), crop
                )
                cells.setdefault(f"{interpolation} {factor:g}", []).append(error)
    return {k: {"layer": 0.0, "stack": float(np.mean(v))} for k, v in cells.items()}


class _Probabilities(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


def _bundle_rows(
    factors: Sequence[float], interpolations: Sequence[str], crop: float, size: int
) -> dict[str, dict[str, float]]:
    """The bundle's trained SEUNet on the central ``size^3`` of the real ICBM152 T1 (class probabilities), and the
    error of resampling its output alone (down and back up), the floor any network meets."""
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


def report(
    kernel_size: int = 9,
    effective_size: int = 3,
    scales: Sequence[float] | None = None,
    size: int = 64,
    factors: Sequence[float] = (0.9, 0.81),
    interpolations: Sequence[str] = ("cubic", "trilinear"),
    seeds: Sequence[int] = (0, 1),
    channels: int = 4,
    activation: str = "silu",
    crop: float = 0.5,
    integer: bool = True,
    network: bool = True,
    network_size: int = 100,
) -> dict[str, Any]:
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
    scales = list(PAPER_SCALES) if scales is None else [float(s) for s in scales]
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
    config = {
        "kernel_size": kernel_size,
        "effective_size": effective_size,
        "scales": scales,
        "size": size,
        "factors": list(factors),
        "interpolations": list(interpolations),
        "seeds": list(seeds),
        "channels": channels,
        "activation": activation,
        "crop": crop,
    }
    result: dict[str, Any] = {"config": config}
    result["layers"] = _layer_rows(
        kernel_size, effective_size, scales, size, factors, interpolations, seeds, channels, activation, crop
    )
    if integer:
        result["integer"] = _layer_rows(
            kernel_size, effective_size, [1.0, 2.0], size, [0.5], ["subsample"], seeds, channels, activation, crop
        )
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
        body = [
            f"{name:<20}" + "".join(f"{c[k]['layer']:>10.2g}{c[k]['stack']:>10.2g}" for k in keys)
            for name, c in rows.items()
        ]
        return [head, sub, *body]

    lines += block(result["layers"])
    if "integer" in result:
        lines += ["", "integer scale ratio: scales 1, 2; downscaling by 2x subsampling", *block(result["integer"])]
    if "network" in result:
        rows = result["network"]
        keys = list(next(iter(rows.values())))
        lines += [
            "",
            "end to end on the real T1 (class probabilities for the rescaled input, resampled back)",
            f"{'':<28}" + "".join(f"{k:>16}" for k in keys),
        ]
        lines += [f"{name:<28}" + "".join(f"{v[k]:>16.3g}" for k in keys) for name, v in rows.items()]
    return "\n".join(lines)
