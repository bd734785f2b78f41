"""Timing and memory measurement on CPU and CUDA, for the benchmarks of :mod:`se_monai.apps`: wall time with the
device synchronised, and peak memory (on CUDA torch's peak allocated memory, on CPU the process's peak resident set,
the kernel's high-water mark in /proc/self/status, reset through /proc/self/clear_refs; Linux only, None
elsewhere)."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["sync", "reset_peak", "status_mb", "peak_mb", "timed"]

_STATUS = Path("/proc/self/status")


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    """Start a new peak-memory count (see :func:`peak_mb`)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    elif _STATUS.exists():
        with contextlib.suppress(OSError):  # resets the peak-RSS high-water mark (Linux)
            Path("/proc/self/clear_refs").write_text("5")


def status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (VmRSS: resident now, VmHWM: peak resident) in MiB; None off Linux."""
    if not _STATUS.exists():
        return None
    match = re.search(rf"{field}:\s+(\d+) kB", _STATUS.read_text())
    return int(match.group(1)) / 1024 if match else None


def peak_mb(device: torch.device) -> float | None:
    """Peak memory since the last reset: CUDA allocated memory, or the process's peak RSS (MiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return status_mb("VmHWM")


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall time of one call of ``fn`` (s), the device synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start
