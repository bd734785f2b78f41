"""Steerable bases optimised for scale equivariance (3-D DISCO), ``basis_type="disco"``.

DISCO (Sosnovik, Moskalev, Smeulders, "DISCO: accurate Discrete Scale Convolutions", BMVC 2021; "How to Transform
Kernels for Scale-Convolutions", ICCV-W 2021) replaces the sampled Hermite-Gaussian functions at the scales other
than the smallest by kernels chosen to minimise the equivariance loss directly: for every pair of scales
``sigma_i < sigma_j`` and rescaling ``R`` by ``a = sigma_i / sigma_j``,

    L = sum_{i<j} E_f || R(f * psi_j) - (R f) * psi_i ||^2        (resize after vs. before the convolution)

over the central part of random inputs f. Here, in 3-D:

- the smallest scale keeps the "single" Hermite-Gaussian functions (orders < effective_size) at its width, on the
  support ``int(k * sigma_min / sigma_max) // 2 * 2 + 1`` that kernel padding gives it;
- a scale that is an integer multiple m of the smallest gets the exact dilation (the same values every m voxels),
  which makes ``(f * psi_j)`` subsampled by m equal ``(f subsampled by m) * psi_min`` up to the borders;
- every other scale is free on the whole ``k^3`` grid. L is quadratic in the free kernels, so the optimum is the
  solution of one linear system (normal equations with a tiny ridge), computed in float64 from smooth random fields
  of several correlation lengths (:func:`se_monai.equivariance.smooth_field`), with the resampling operator of
  :func:`se_monai.equivariance.rescale` ("cubic" B-spline by default): deterministic, no stochastic optimisation.

As for the Hermite bases, each function is divided by its L2 norm at scale index 0. A basis is computed once per
(kernel size, effective size, scales, interpolation) and stored as ``.npz``: bases for the default configurations
ship in ``se_monai/bases``; others are fitted on first use (with a progress bar) and cached in
``$SE_MONAI_CACHE`` (default ``~/.cache/se-monai/bases``).
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["FIT_VERSION", "disco_basis", "fit_disco_basis", "basis_filename", "cache_dir", "save_basis"]

#: Version of the fitting procedure; part of the file names, so a changed procedure never reads old files.
FIT_VERSION = 1
#: Resampling operator the shipped bases are optimised for.
DEFAULT_INTERPOLATION = "cubic"
#: Correlation lengths (voxels) of the random fields the loss is averaged over, and their edge (voxels).
FIELD_SIGMAS = (1.5, 2.5, 4.0)
FIELD_SIZE = 36
#: Ridge added to the normal equations, relative to their mean diagonal.
RIDGE = 1e-9
#: Environment variable naming the folder for bases fitted on first use.
CACHE_ENV = "SE_MONAI_CACHE"
_PACKAGED = Path(__file__).resolve().parent / "bases"


def cache_dir() -> Path:
    """Folder for fitted bases: ``$SE_MONAI_CACHE``, else ``$XDG_CACHE_HOME/se-monai/bases`` or
    ``~/.cache/se-monai/bases``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "se-monai" / "bases"


def _key_scales(scales: Sequence[float]) -> tuple[float, ...]:
    return tuple(round(float(s), 6) for s in scales)


def basis_filename(kernel_size: int, effective_size: int, scales: Sequence[float], interpolation: str) -> str:
    """File name of a basis, e.g. ``disco_k5_e3_s1-0.9-0.81-0.729_cubic_v1.npz``."""
    text = "-".join(f"{s:g}" for s in _key_scales(scales))
    return f"disco_k{kernel_size}_e{effective_size}_s{text}_{interpolation}_v{FIT_VERSION}.npz"


def _check(kernel_size: int, scales: Sequence[float], effective_size: int) -> None:
    if kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f"the disco basis needs an odd kernel_size >= 3, got {kernel_size}")
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be a non-empty list of positive widths, got {list(scales)}")
    support = _smallest_support(kernel_size, scales)
    if effective_size < 1 or effective_size > support:
        raise ValueError(
            f"effective_size {effective_size} needs at least as many voxels at the smallest scale, which has "
            f"{support} for kernel_size {kernel_size} and scales {list(scales)}; use a larger kernel_size"
        )


def _smallest_support(kernel_size: int, scales: Sequence[float]) -> int:
    return int(kernel_size * min(scales) / max(scales)) // 2 * 2 + 1


def _integer_multiple(scale: float, smallest: float) -> int | None:
    ratio = scale / smallest
    m = round(ratio)
    return m if m >= 2 and abs(ratio - m) < 1e-6 else None


def _taps(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``(1, 1, n, n, n) -> (k^3, n, n, n)``: x correlated with every one-hot k^3 kernel ("same" padding), i.e. the
    columns of the linear map from a kernel to ``conv3d(x, kernel, padding=k // 2)``."""
    eye = torch.eye(kernel_size**3, dtype=x.dtype).reshape(-1, 1, kernel_size, kernel_size, kernel_size)
    return F.conv3d(x, eye, padding=kernel_size // 2)[0]


def fit_disco_basis(kernel_size: int, scales: Sequence[float], effective_size: int,
                    interpolation: str = DEFAULT_INTERPOLATION, progress: bool = False) -> torch.Tensor:  # fmt: skip
    """Fit the basis (see the module docstring); seconds for k = 5, minutes for k = 9 on 2 CPU cores.

    Returns:
        float32 ``(effective_size**3, S, k, k, k)``, each function divided by its L2 norm at scale index 0.

    Raises:
        ValueError: even or too small ``kernel_size``, non-positive scales, or an ``effective_size`` larger than the
            support of the smallest scale.
    """
    from tqdm import tqdm

    from se_monai.basis import single_scale_basis
    from se_monai.equivariance import rescale, smooth_field

    scales = [float(s) for s in scales]
    _check(kernel_size, scales, effective_size)
    k, num_scales = kernel_size, len(scales)
    smallest = min(range(num_scales), key=lambda s: scales[s])
    support = _smallest_support(k, scales)
    pad = (k - support) // 2
    base = torch.from_numpy(single_scale_basis(support, scales[smallest], effective_size))
    base = F.pad(base, [pad] * 6)  # (F, k, k, k)
    num_funcs = base.shape[0]
    known = {smallest: base}
    for s in range(num_scales):
        m = _integer_multiple(scales[s], scales[smallest])
        if s != smallest and m is not None:
            dilated = torch.zeros_like(base)
            centre, r = k // 2, support // 2
            idx = torch.arange(-r, r + 1) * m + centre
            core = base[:, centre - r : centre + r + 1, centre - r : centre + r + 1, centre - r : centre + r + 1]
            dilated[:, idx[:, None, None], idx[None, :, None], idx[None, None, :]] = core
            known[s] = dilated
    free = [s for s in range(num_scales) if s not in known]
    taps = k**3
    offset = {s: n * taps for n, s in enumerate(free)}
    gram = torch.zeros(len(free) * taps, len(free) * taps, dtype=torch.float64)
    rhs = torch.zeros(len(free) * taps, num_funcs, dtype=torch.float64)
    pairs = [(i, j) for i in range(num_scales) for j in range(num_scales)
             if scales[j] > scales[i] and (i in offset or j in offset)]  # fmt: skip
    steps = [(sigma, pair) for sigma in FIELD_SIGMAS for pair in pairs]
    fields = {sigma: smooth_field(FIELD_SIZE, sigma, seed=n, dtype=torch.float64)
              for n, sigma in enumerate(FIELD_SIGMAS)}  # fmt: skip

    def columns(volume: torch.Tensor) -> torch.Tensor:
        n = volume.shape[-1]
        lo, hi = n // 4, n - n // 4
        return volume[:, lo:hi, lo:hi, lo:hi].reshape(taps, -1)

    for sigma, (i, j) in tqdm(steps, desc="fitting disco basis", unit="pair", disable=not progress):
        x = fields[sigma]
        factor = scales[i] / scales[j]
        after = columns(rescale(_taps(x, k), factor, interpolation))  # R(x * e_t): acts on psi_j
        before = columns(_taps(rescale(x, factor, interpolation), k))  # (R x) * e_t: acts on psi_i
        # residual = after^T psi_j - before^T psi_i; accumulate its normal equations
        for a, cols_a, sign_a in ((j, after, 1.0), (i, before, -1.0)):
            if a not in offset:
                continue
            rows = slice(offset[a], offset[a] + taps)
            for b, cols_b, sign_b in ((j, after, 1.0), (i, before, -1.0)):
                product = sign_a * sign_b * (cols_a @ cols_b.T)
                if b in offset:
                    gram[rows, offset[b] : offset[b] + taps] += product
                else:
                    rhs[rows] -= product @ known[b].reshape(num_funcs, taps).T
    basis = torch.zeros(num_funcs, num_scales, taps, dtype=torch.float64)
    for s, kernels in known.items():
        basis[:, s] = kernels.reshape(num_funcs, taps)
    if free:
        gram += RIDGE * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=torch.float64)
        solution = torch.linalg.solve(gram, rhs)
        for s in free:
            basis[:, s] = solution[offset[s] : offset[s] + taps].T
    basis = basis.reshape(num_funcs, num_scales, k, k, k)
    norm = basis[:, :1].pow(2).sum(dim=(2, 3, 4), keepdim=True).sqrt()
    return (basis / norm).float()


def _load(path: Path, shape: tuple[int, ...]) -> torch.Tensor | None:
    try:
        with np.load(path) as data:
            basis = torch.from_numpy(data["basis"].astype(np.float32))
    except (OSError, KeyError, ValueError) as err:
        warnings.warn(f"{path}: unreadable disco basis ({err}); fitting it again", stacklevel=3)
        return None
    if tuple(basis.shape) != shape:
        warnings.warn(f"{path}: disco basis of shape {tuple(basis.shape)}, expected {shape}; fitting it again",
                      stacklevel=3)  # fmt: skip
        return None
    return basis


def save_basis(basis: torch.Tensor, path: Path) -> None:
    """Write atomically (a temporary file renamed into place); warn instead of failing when the folder is read-only."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as handle:
            np.savez_compressed(handle, basis=basis.numpy())
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, path)
    except OSError as err:
        warnings.warn(f"could not cache the disco basis in {path.parent} ({err}); it will be fitted again",
                      stacklevel=3)  # fmt: skip


@functools.lru_cache(maxsize=32)
def _cached(kernel_size: int, scales: tuple[float, ...], effective_size: int, interpolation: str,
            progress: bool) -> torch.Tensor:  # fmt: skip
    name = basis_filename(kernel_size, effective_size, scales, interpolation)
    shape = (effective_size**3, len(scales), kernel_size, kernel_size, kernel_size)
    for folder in (_PACKAGED, cache_dir()):
        if (folder / name).is_file():
            basis = _load(folder / name, shape)
            if basis is not None:
                return basis
    basis = fit_disco_basis(kernel_size, scales, effective_size, interpolation, progress=progress)
    save_basis(basis, cache_dir() / name)
    return basis


def disco_basis(kernel_size: int, scales: Sequence[float], effective_size: int,
                interpolation: str = DEFAULT_INTERPOLATION, progress: bool = True) -> torch.Tensor:  # fmt: skip
    """The optimised basis ``(effective_size**3, S, k, k, k)`` (float32): shipped, cached, or fitted now.

    Args:
        kernel_size: odd kernel edge k (voxels).
        scales: Gaussian widths (voxels) of the S scales, in the layer's order.
        effective_size: functions per axis at the smallest scale (effective_size**3 functions).
        interpolation: resampling operator the loss uses (:data:`se_monai.equivariance.INTERPOLATIONS`).
        progress: show a progress bar while fitting.

    Raises:
        ValueError: see :func:`fit_disco_basis`.
    """
    _check(kernel_size, scales, effective_size)
    return _cached(int(kernel_size), _key_scales(scales), int(effective_size), interpolation, bool(progress)).clone()
