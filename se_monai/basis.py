"""Steerable bases of 3-D Hermite-Gaussian functions on a range of scales.

The kernels of every scale-equivariant layer are linear combinations of a fixed basis evaluated at each
scale sigma of a scale list; only the combination weights are learned (SESN: Sosnovik, Szmaja, Smeulders,
"Scale-Equivariant Steerable Networks", ICLR 2020, Sec. 4; in 3-D: Wimmer et al., "Scale-Equivariant Deep
Learning for 3D Data", arXiv 2304.05864, Sec. 3.2).

One basis function of orders (n, m, k) at scale sigma, sampled at integer offsets (voxels)::

    psi_{sigma,n,m,k}(x, y, z) = sigma^-3 He_n(x/sigma) He_m(y/sigma) He_k(z/sigma) exp(-(x^2+y^2+z^2) / (2 sigma^2))

with He the probabilists' Hermite polynomials. The sampling grid, the enumeration order of the functions and
the normalisation follow the paper's code exactly, so that weights trained there mean the same here:

- sample points ``numpy.linspace(-(k // 2), k // 2, k)`` on each kernel axis;
- orders (a, b, c) enumerated as ``numpy.indices`` yields them (c fastest); order c varies along the first
  kernel axis, b along the second, a along the third;
- every function is divided by its own L2 norm at scale index 0, so the sigma^-3 amplitude carries across
  scales (the basis is then scale-steerable up to discretisation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["BASIS_TYPES", "hermite_gaussian_1d", "single_scale_basis", "multi_scale_basis", "steerable_basis"]

#: Basis kinds accepted by every scale-equivariant convolution (``basis_type`` argument); "disco" is the basis
#: optimised for equivariance of :mod:`se_monai.disco`.
BASIS_TYPES = ("single", "multi", "disco")
#: Default highest total order n + m + k of the "multi" basis (paper's code).
DEFAULT_MAX_ORDER = 4
#: Default ratio between the Gaussian widths of the "multi" basis (sigma / mult**j; paper's code).
DEFAULT_MULT = 1.2


def hermite_gaussian_1d(size: int, sigma: float, orders: np.ndarray) -> np.ndarray:
    """One-dimensional factors ``He_n(x / sigma) exp(-x^2 / (2 sigma^2)) / sigma``.

    Args:
        size: number of sample points (voxels); points ``linspace(-(size // 2), size // 2, size)``.
        sigma: Gaussian width in voxels.
        orders: 1-D integer array of polynomial orders n.

    Returns:
        float64 array ``(len(orders), size)``.
    """
    x = np.linspace(-(size // 2), size // 2, size)
    envelope = np.exp(-(x**2) / (2.0 * sigma**2)) / sigma
    table = {}
    for n in np.unique(orders):
        coefficients = np.zeros(int(n) + 1)
        coefficients[-1] = 1.0
        table[int(n)] = envelope * np.polynomial.hermite_e.hermeval(x / sigma, coefficients)
    return np.stack([table[int(n)] for n in orders])


def _separable_product(orders: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """Products of 1-D factors for orders ``(F, 3)`` given as (a, b, c); c on the first kernel axis."""
    first = hermite_gaussian_1d(size, sigma, orders[:, 2])
    second = hermite_gaussian_1d(size, sigma, orders[:, 1])
    third = hermite_gaussian_1d(size, sigma, orders[:, 0])
    return np.einsum("fi,fj,fk->fijk", first, second, third)


def _orders(max_order: int) -> np.ndarray:
    """All orders (a, b, c) with each entry <= max_order, in ``numpy.indices`` order: ``(F, 3)``."""
    grid = np.indices((max_order + 1,) * 3)
    return grid.reshape(3, -1).T


def single_scale_basis(size: int, sigma: float, effective_size: int) -> np.ndarray:
    """The "single" basis at one scale: all orders a, b, c < effective_size.

    Returns:
        float64 array ``(effective_size**3, size, size, size)``.
    """
    return _separable_product(_orders(effective_size - 1), size, sigma)


def multi_scale_basis(
    size: int, sigma: float, num_funcs: int, max_order: int = DEFAULT_MAX_ORDER, mult: float = DEFAULT_MULT
) -> np.ndarray:
    """The "multi" basis at one scale: orders with a + b + c <= max_order at widths sigma / mult**j.

    Functions are added width by width until ``num_funcs`` are collected, then cut to ``num_funcs``.

    Returns:
        float64 array ``(num_funcs, size, size, size)``.
    """
    orders = _orders(max_order)
    orders = orders[orders.sum(axis=1) <= max_order]
    widths = math.ceil(num_funcs / len(orders))
    parts = [_separable_product(orders, size, sigma / mult**j) for j in range(widths)]
    return np.concatenate(parts)[:num_funcs]


def _support(kernel_size: int, sigma: float, max_sigma: float, kernel_padding: bool) -> int:
    """Support (voxels) of the basis at ``sigma``: smaller scales get a smaller, zero-padded support."""
    if not kernel_padding:
        return kernel_size
    odd = kernel_size % 2
    return int(kernel_size * sigma / max_sigma) // 2 * 2 + (1 if odd else 2)


def steerable_basis(
    kernel_size: int,
    scales: Sequence[float],
    effective_size: int,
    basis_type: str = "single",
    kernel_padding: bool = True,
    max_order: int = DEFAULT_MAX_ORDER,
    mult: float = DEFAULT_MULT,
) -> torch.Tensor:
    """Normalised steerable Hermite-Gaussian basis for all scales.

    Args:
        kernel_size: edge length k of the cubic kernel (voxels).
        scales: Gaussian widths sigma (voxels), one per scale of the scale-translation group.
        effective_size: number of functions per axis; the basis has ``effective_size**3`` functions.
        basis_type: "single" (orders < effective_size), "multi" (total order <= max_order at
            several widths), or "disco" (optimised for equivariance, :func:`se_monai.disco.disco_basis`; it ignores
            ``kernel_padding``, ``max_order`` and ``mult``).
        kernel_padding: if True, the basis at scale sigma is sampled on
            ``int(k * sigma / max(scales)) // 2 * 2 + 1`` voxels (odd k) and zero-padded to k.
        max_order: highest total order for "multi".
        mult: ratio between consecutive widths for "multi".

    Returns:
        float32 tensor ``(F, S, k, k, k)``, F = effective_size**3, S = len(scales); each function divided by
        its L2 norm at scale index 0.

    Raises:
        ValueError: unknown ``basis_type``, empty or non-positive ``scales``, ``effective_size < 1``, or a
            scaled support of one voxel or less.
    """
    if basis_type not in BASIS_TYPES:
        raise ValueError(f"basis_type must be one of {BASIS_TYPES}, got {basis_type!r}")
    scales = [float(s) for s in scales]
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be a non-empty list of positive widths, got {scales}")
    if effective_size < 1 or kernel_size < 1:
        raise ValueError(f"kernel_size and effective_size must be >= 1, got {kernel_size}, {effective_size}")
    if basis_type == "disco":
        from se_monai.disco import disco_basis

        return disco_basis(kernel_size, scales, effective_size)
    num_funcs = effective_size**3
    per_scale = []
    for sigma in scales:
        support = _support(kernel_size, sigma, max(scales), kernel_padding)
        if kernel_padding and support <= 1:
            raise ValueError(
                f"scale {sigma} gives a kernel support of {support} voxel(s) for kernel_size {kernel_size}; "
                "use a larger kernel_size, narrower scale range or kernel_padding=False"
            )
        if basis_type == "single":
            basis = single_scale_basis(support, sigma, effective_size)
        else:
            basis = multi_scale_basis(support, sigma, num_funcs, max_order=max_order, mult=mult)
        basis = torch.from_numpy(basis)
        pad = (kernel_size - support) // 2
        per_scale.append(F.pad(basis, [pad] * 6))
    stacked = torch.stack(per_scale, dim=1)
    norm = stacked[:, :1].pow(2).sum(dim=(2, 3, 4), keepdim=True).sqrt()
    return (stacked / norm).float()
