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
  of several correlation lengths (:func:`se_monai.ops.resample.smooth_field`), with the resampling operator of
  :func:`se_monai.ops.resample.rescale` ("cubic" B-spline by default): deterministic, no stochastic optimisation.

As for the Hermite bases, each function is divided by its L2 norm at scale index 0. A basis is computed once per
(kernel size, effective size, scales, interpolation) and stored as ``.npz`` (:mod:`se_monai.bases.store`): bases for
the default configurations ship with the package; others are fitted on first use (with a progress bar) and cached.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from se_monai.bases.hermite import kernel_support, normalise_by_first_scale, single_scale_basis
from se_monai.bases.store import cache_dir, find_basis, save_basis, write_basis
from se_monai.ops.resample import rescale, smooth_field

__all__ = ["FIT_VERSION", "DEFAULT_INTERPOLATION", "disco_basis", "fit_disco_basis", "fit_to_file", "basis_filename"]

#: Version of the fitting procedure; part of the file names, so a changed procedure never reads old files.
FIT_VERSION = 1
#: Resampling operator the shipped bases are optimised for.
DEFAULT_INTERPOLATION = "cubic"
#: Correlation lengths (voxels) of the random fields the loss is averaged over, and their edge (voxels).
FIELD_SIGMAS = (1.5, 2.5, 4.0)
FIELD_SIZE = 36
#: Ridge added to the normal equations, relative to their mean diagonal.
RIDGE = 1e-9


def _key_scales(scales: Sequence[float]) -> tuple[float, ...]:
    return tuple(round(float(s), 6) for s in scales)


def basis_filename(kernel_size: int, effective_size: int, scales: Sequence[float], interpolation: str) -> str:
    """File name of a basis, e.g. ``disco_k5_e3_s1-0.9-0.81-0.729_cubic_v1.npz``."""
    text = "-".join(f"{s:g}" for s in _key_scales(scales))
    return f"disco_k{kernel_size}_e{effective_size}_s{text}_{interpolation}_v{FIT_VERSION}.npz"


def _smallest_support(kernel_size: int, scales: Sequence[float]) -> int:
    return kernel_support(kernel_size, min(scales), max(scales))


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


def _integer_multiple(scale: float, smallest: float) -> int | None:
    ratio = scale / smallest
    m = round(ratio)
    return m if m >= 2 and abs(ratio - m) < 1e-6 else None


def _taps(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``(1, 1, n, n, n) -> (k^3, n, n, n)``: x correlated with every one-hot k^3 kernel ("same" padding), i.e. the
    columns of the linear map from a kernel to ``conv3d(x, kernel, padding=k // 2)``."""
    eye = torch.eye(kernel_size**3, dtype=x.dtype).reshape(-1, 1, kernel_size, kernel_size, kernel_size)
    return F.conv3d(x, eye, padding=kernel_size // 2)[0]


def _dilated(base: torch.Tensor, m: int, support: int) -> torch.Tensor:
    """``base`` ``(F, k, k, k)``, nonzero on its central ``support^3``, spread out to every m-th voxel."""
    k = base.shape[-1]
    dilated = torch.zeros_like(base)
    centre, r = k // 2, support // 2
    idx = torch.arange(-r, r + 1) * m + centre
    core = base[:, centre - r : centre + r + 1, centre - r : centre + r + 1, centre - r : centre + r + 1]
    dilated[:, idx[:, None, None], idx[None, :, None], idx[None, None, :]] = core
    return dilated


def _fixed_kernels(kernel_size: int, scales: list[float], effective_size: int) -> dict[int, torch.Tensor]:
    """Scales whose kernels are not fitted, ``{scale index: (F, k, k, k)}``: the smallest (Hermite functions on its
    padded support) and its integer multiples (exact dilations)."""
    smallest = min(range(len(scales)), key=lambda s: scales[s])
    support = _smallest_support(kernel_size, scales)
    pad = (kernel_size - support) // 2
    base = F.pad(torch.from_numpy(single_scale_basis(support, scales[smallest], effective_size)), [pad] * 6)
    fixed = {smallest: base}
    for s, scale in enumerate(scales):
        m = _integer_multiple(scale, scales[smallest])
        if s != smallest and m is not None:
            fixed[s] = _dilated(base, m, support)
    return fixed


def _central_columns(volume: torch.Tensor) -> torch.Tensor:
    """``(T, n, n, n) -> (T, (n/2)^3)``: the central half of each axis, flattened."""
    n = volume.shape[-1]
    lo, hi = n // 4, n - n // 4
    return volume[:, lo:hi, lo:hi, lo:hi].reshape(volume.shape[0], -1)


def _normal_equations(
    kernel_size: int,
    scales: list[float],
    fixed: dict[int, torch.Tensor],
    free: list[int],
    interpolation: str,
    progress: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gram matrix and right-hand sides of the loss in the free kernels, stacked scale by scale: ``(P, P)`` and
    ``(P, F)`` with ``P = len(free) * k^3``."""
    taps = kernel_size**3
    num_funcs = next(iter(fixed.values())).shape[0]
    offset = {s: n * taps for n, s in enumerate(free)}
    gram = torch.zeros(len(free) * taps, len(free) * taps, dtype=torch.float64)
    rhs = torch.zeros(len(free) * taps, num_funcs, dtype=torch.float64)
    pairs = [
        (i, j)
        for i in range(len(scales))
        for j in range(len(scales))
        if scales[j] > scales[i] and (i in offset or j in offset)
    ]
    steps = [(n, sigma, pair) for n, sigma in enumerate(FIELD_SIGMAS) for pair in pairs]
    fields = [smooth_field(FIELD_SIZE, sigma, seed=n, dtype=torch.float64) for n, sigma in enumerate(FIELD_SIGMAS)]
    for n, _sigma, (i, j) in tqdm(steps, desc="fitting disco basis", unit="pair", disable=not progress):
        x, factor = fields[n], scales[i] / scales[j]
        after = _central_columns(rescale(_taps(x, kernel_size), factor, interpolation))  # R(x * e_t): acts on psi_j
        before = _central_columns(_taps(rescale(x, factor, interpolation), kernel_size))  # (R x) * e_t: acts on psi_i
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
                    rhs[rows] -= product @ fixed[b].reshape(num_funcs, taps).T
    return gram, rhs


def fit_disco_basis(
    kernel_size: int,
    scales: Sequence[float],
    effective_size: int,
    interpolation: str = DEFAULT_INTERPOLATION,
    progress: bool = False,
) -> torch.Tensor:
    """Fit the basis (see the module docstring); seconds for k = 5, minutes for k = 9 on 2 CPU cores.

    Returns:
        float32 ``(effective_size**3, S, k, k, k)``, each function divided by its L2 norm at scale index 0.

    Raises:
        ValueError: even or too small ``kernel_size``, non-positive scales, or an ``effective_size`` larger than the
            support of the smallest scale.
    """
    scales = [float(s) for s in scales]
    _check(kernel_size, scales, effective_size)
    k, taps = kernel_size, kernel_size**3
    fixed = _fixed_kernels(k, scales, effective_size)
    num_funcs = next(iter(fixed.values())).shape[0]
    free = [s for s in range(len(scales)) if s not in fixed]
    basis = torch.zeros(num_funcs, len(scales), taps, dtype=torch.float64)
    for s, kernels in fixed.items():
        basis[:, s] = kernels.reshape(num_funcs, taps)
    if free:
        gram, rhs = _normal_equations(k, scales, fixed, free, interpolation, progress)
        gram += RIDGE * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=torch.float64)
        solution = torch.linalg.solve(gram, rhs)
        for n, s in enumerate(free):
            basis[:, s] = solution[n * taps : (n + 1) * taps].T
    return normalise_by_first_scale(basis.reshape(num_funcs, len(scales), k, k, k))


@functools.lru_cache(maxsize=32)
def _cached(
    kernel_size: int, scales: tuple[float, ...], effective_size: int, interpolation: str, progress: bool
) -> torch.Tensor:
    name = basis_filename(kernel_size, effective_size, scales, interpolation)
    shape = (effective_size**3, len(scales), kernel_size, kernel_size, kernel_size)
    basis = find_basis(name, shape)
    if basis is None:
        basis = fit_disco_basis(kernel_size, scales, effective_size, interpolation, progress=progress)
        save_basis(basis, cache_dir() / name)
    return basis


def disco_basis(
    kernel_size: int,
    scales: Sequence[float],
    effective_size: int,
    interpolation: str = DEFAULT_INTERPOLATION,
    progress: bool = True,
) -> torch.Tensor:
    """The optimised basis ``(effective_size**3, S, k, k, k)`` (float32): shipped, cached, or fitted now.

    Args:
        kernel_size: odd kernel edge k (voxels).
        scales: Gaussian widths (voxels) of the S scales, in the layer's order.
        effective_size: functions per axis at the smallest scale (effective_size**3 functions).
        interpolation: resampling operator the loss uses (:data:`se_monai.ops.resample.INTERPOLATIONS`).
        progress: show a progress bar while fitting.

    Raises:
        ValueError: see :func:`fit_disco_basis`.
    """
    _check(kernel_size, scales, effective_size)
    return _cached(int(kernel_size), _key_scales(scales), int(effective_size), interpolation, bool(progress)).clone()


def fit_to_file(
    kernel_size: int,
    scales: Sequence[float],
    effective_size: int,
    interpolation: str = DEFAULT_INTERPOLATION,
    folder: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """Fit a basis (:func:`fit_disco_basis`) and write it under its :func:`basis_filename` into ``folder`` (default:
    the cache that :func:`disco_basis` reads).

    Returns:
        The path written.

    Raises:
        ValueError: see :func:`fit_disco_basis`. OSError: the folder cannot be written.
    """
    basis = fit_disco_basis(kernel_size, scales, effective_size, interpolation, progress=progress)
    path = Path(folder if folder is not None else cache_dir()) / basis_filename(
        kernel_size, effective_size, scales, interpolation
    )
    write_basis(basis, path)
    return path
