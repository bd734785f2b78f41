"""Argument and shape checks shared by the layers on the scale-translation group."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["IntOr3", "triple", "check_dim", "tracing"]

IntOr3 = int | Sequence[int]


def triple(value: IntOr3) -> tuple[int, int, int]:
    """An int or three ints as a tuple of three ints.

    Raises:
        ValueError: a sequence that does not have three entries.
    """
    if isinstance(value, int):
        return (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(f"expected an int or 3 ints, got {value}")
    return value  # type: ignore[return-value]


def check_dim(x: torch.Tensor, dim: int, layer: str) -> None:
    """Raise ValueError naming ``layer`` unless ``x`` is 6-D ``(B, C, S, D, H, W)`` (``dim=6``) or a 5-D volume."""
    if x.dim() != dim:
        what = "(B, C, S, D, H, W) on the scale-translation group" if dim == 6 else "(B, C, D, H, W) volume"
        raise ValueError(f"{layer} expects a {dim}-D {what}, got shape {list(x.shape)}")


@torch.jit.ignore
def tracing() -> bool:
    """True under torch.jit.trace, torch.compile and torch.export (the ONNX exporter), where no kernel is cached."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()
