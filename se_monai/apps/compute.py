"""Compute of a network, for ``se-monai bench``: multiply-adds of its convolutions, counted from the layers' shapes,
and the time its convolution calls take on their own."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from se_monai import layers as se_layers
from se_monai.apps.measure import timed

__all__ = ["multiply_adds", "convolution_calls", "replay_seconds", "convolution_share"]


def _layer_macs(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Multiply-adds of one convolution for one batch item, from its input ``x`` and output ``y``."""
    if isinstance(module, se_layers.SESConv_H_H_1x1):
        return y[0].numel() * module.in_channels
    if isinstance(module, (se_layers.SESConv_Z3_H, se_layers.SESConv_H_H)):
        taps = module.kernel_size**3 * (module.weight.shape[2] if module.weight.dim() == 4 else 1)
        if module.transposed:  # every input element reaches C' output channels at its scale through every tap
            return x[0].numel() * module.out_channels * taps
        return y[0].numel() * module.in_channels * taps
    if isinstance(module, nn.ConvTranspose3d):
        return x[0].numel() * module.out_channels // module.groups * math.prod(module.kernel_size)
    if isinstance(module, nn.Conv3d):
        return y[0].numel() * module.in_channels // module.groups * math.prod(module.kernel_size)
    return 0


def multiply_adds(model: nn.Module, x: torch.Tensor) -> float:
    """Multiply-adds of ``model``'s convolutions (SE lifting, group and 1x1x1 convolutions, ``Conv3d``,
    ``ConvTranspose3d``) per input voxel of ``x`` ``(B, C, D, H, W)``, counted from the shapes of one forward pass:
    a convolution costs output elements x input channels per group x kernel taps (transposed: input elements x
    output channels x taps). Normalisation, activations and additions are left out."""
    total = 0

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += _layer_macs(module, inputs[0], output)

    handles = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d, se_layers.SESConv_Z3_H, se_layers.SESConv_H_H))
    ]
    try:
        with torch.enable_grad():  # the layers one by one (inference without autograd folds and fuses some)
            model.eval()(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    return total / math.prod(x.shape[2:])


class _Convolutions(TorchDispatchMode):
    """Records every convolution operator call (aten's and oneDNN's, forward only) with copies of its arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, list[Any], dict[str, Any]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if "convolution" in func.__name__ and "backward" not in func.__name__:
            copies = [a.clone(memory_format=torch.preserve_format) if isinstance(a, torch.Tensor) else a for a in args]
            self.calls.append((func, copies, dict(kwargs)))
        return out


def convolution_calls(model: nn.Module, x: torch.Tensor) -> list[tuple[Any, list[Any], dict[str, Any]]]:
    """The convolution operators that one forward pass of ``model`` (eval, no autograd) on ``x`` calls, in order,
    each with copies of its arguments (the exact tensors, layouts included), for :func:`replay_seconds`."""
    model.eval()
    with torch.no_grad():
        model(x)  # kernel caches filled, as in the forward passes this stands beside
        with _Convolutions() as recorder:
            model(x)
    return recorder.calls


def replay_seconds(calls: list[tuple[Any, list[Any], dict[str, Any]]], device: torch.device) -> float:
    """Wall time (s) of running ``calls`` (from :func:`convolution_calls`) once, one after another: the forward
    pass's convolutions with nothing between them, a lower bound on its time with these convolution kernels."""

    def run() -> None:
        for func, args, kwargs in calls:
            func(*args, **kwargs)

    with torch.no_grad():
        return timed(run, device)


def convolution_share(models: dict[str, nn.Module], x: torch.Tensor, repeats: int = 5) -> dict[str, dict[str, float]]:
    """Each model's forward pass on ``x`` (eval, no autograd, weights unchanged between calls) beside the same pass's
    convolution calls run on their own (:func:`replay_seconds`), all interleaved, medians of ``repeats`` after one
    warm-up round: how much of each forward pass its convolution kernels take, and so how much the rest (layout
    copies, activations, additions, Python) could still save.

    Returns:
        ``{name: {"forward_s", "convolutions_s"}}`` in seconds.
    """
    calls = {name: convolution_calls(model, x) for name, model in models.items()}
    times: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in models}
    with torch.no_grad():
        for _ in range(repeats + 1):
            for name, model in models.items():
                times[name]["forward_s"].append(timed(lambda model=model: model(x), x.device))
                times[name]["convolutions_s"].append(replay_seconds(calls[name], x.device))
    return {name: {key: statistics.median(v[1:]) for key, v in t.items()} for name, t in times.items()}
