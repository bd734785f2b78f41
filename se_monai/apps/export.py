"""ONNX export of the bundle's network (TorchScript goes through MONAI's own ``python -m monai.bundle ckpt_export``).

The exported graph takes ``image`` of shape ``(B, C_in, D, H, W)`` and returns ``logits`` of shape
``(B, C_out, D, H, W)``, the output of the network before softmax, as ``SEUNet.forward`` does. With ``dynamic=True``
the batch size and every spatial size are free, spatial sizes restricted to multiples of the U-Net's total stride
(8 for strides (2, 2, 2)), so sliding-window inference with any window runs on one file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.export import Dim

from se_monai.ops.atomic import atomic_write
from se_monai.workflows import load_bundle_network

__all__ = ["export_onnx", "check_onnx"]


def _total_stride(network: torch.nn.Module) -> int:
    strides = getattr(network, "strides", None) or (1,)
    return int(math.prod(int(s) if not isinstance(s, (tuple, list)) else int(max(s)) for s in strides))


def export_onnx(
    output: str | os.PathLike,
    network: torch.nn.Module | None = None,
    input_shape: tuple[int, ...] = (1, 1, 96, 96, 96),
    dynamic: bool = True,
    **bundle: Any,
) -> Path:
    """Export a network (default: the bundle's, see :func:`load_bundle_network`) to ONNX with the torch.export-based
    exporter, writing ``output`` only when the export succeeded.

    Args:
        output: the ``.onnx`` file to write.
        network: the module; default the bundle's network with its trained weights (``load_bundle_network``).
        input_shape: ``(B, C_in, D, H, W)`` of the example input; spatial sizes multiples of the total stride.
        dynamic: free batch and spatial sizes (else the graph accepts only ``input_shape``).
        bundle: ``bundle_dir``/``ckpt_file`` for :func:`se_monai.workflows.load_bundle_network`.

    Returns:
        The path written.

    Raises:
        ValueError: ``output`` does not end in .onnx, or ``input_shape`` is not 5-D with spatial sizes divisible by
            the total stride.
    """
    output = Path(output)
    if output.suffix != ".onnx":
        raise ValueError(f"{output}: output must end in .onnx")
    network = (network if network is not None else load_bundle_network(**bundle)).eval()
    stride = _total_stride(network)
    if len(input_shape) != 5 or any(int(s) % stride for s in input_shape[2:]):
        raise ValueError(
            f"input_shape {tuple(input_shape)}: expected (B, C, D, H, W) with D, H, W multiples of {stride}"
        )
    example = torch.randn(*(int(s) for s in input_shape))
    shapes = None
    if dynamic:
        spatial = [stride * Dim(name, min=1, max=4096 // stride) for name in ("depth", "height", "width")]
        shapes = ({0: Dim("batch", min=1, max=1024), 2: spatial[0], 3: spatial[1], 4: spatial[2]},)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(output) as partial, torch.no_grad():
        torch.onnx.export(
            network,
            (example,),
            str(partial),
            dynamo=True,
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes=shapes,
            external_data=False,
        )
    return output


def check_onnx(path: str | os.PathLike, network: torch.nn.Module, input_shape: tuple[int, ...]) -> float:
    """Largest absolute difference between onnxruntime (CPU) on ``path`` and the eager ``network`` for one random
    input of ``input_shape``."""
    import onnxruntime  # optional: the "export" extra

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    image = torch.randn(*input_shape)
    with torch.no_grad():
        eager = network.eval()(image).numpy()
    (onnx_out,) = session.run(["logits"], {"image": image.numpy()})
    return float(np.abs(onnx_out - eager).max())
