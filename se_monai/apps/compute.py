"""Compute of a network: multiply-adds of its convolutions, counted from the layers' shapes (for ``se-monai bench``)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from se_monai import layers as se_layers

__all__ = ["multiply_adds"]


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
