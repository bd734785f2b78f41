"""Hermite-Gaussian steerable bases ("single" and "multi") on a range of scales.

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

__all__ = [
    "HERMITE_TYPES",
    "DEFAULT_MAX_ORDER",
    "DEFAULT_MULT",
    "hermite_gaussian_1d",
    "single_scale_basis",
    "multi_scale_basis",
    "kernel_support",
    "normalise_by_first_scale",
    "hermite_basis",
]

#: The Hermite-Gaussian basis kinds.
HERMITE_TYPES = ("single", "multi")
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


def kernel_support(kernel_size: int, sigma: float, max_sigma: float) -> int:
    """Support (voxels) of the basis at width ``sigma`` when smaller scales get a smaller, zero-padded support:
    ``int(k * sigma / max_sigma) // 2 * 2 + 1`` for odd k (``+ 2`` for even k), so it keeps k's parity."""
    odd = kernel_size % 2
    return int(kernel_size * sigma / max_sigma) // 2 * 2 + (1 if odd else 2)


def normalise_by_first_scale(basis: torch.Tensor) -> torch.Tensor:
    """``(F, S, k, k, k)`` with every function divided by its L2 norm at scale index 0, as float32 (the paper's
    code: the amplitude sigma^-3 then carries across scales)."""
    norm = basis[:, :1].pow(2).sum(dim=(2, 3, 4), keepdim=True).sqrt()
    return (basis / norm).float()


def hermite_basis(
    kernel_size: int,
    scales: Sequence[float],
    effective_size: int,
    basis_type: str = "single",
    kernel_padding: bool = True,
    max_order: int = DEFAULT_MAX_ORDER,
    mult: float = DEFAULT_MULT,
) -> torch.Tensor:
    """The "single" or "multi" basis sampled at every scale, normalised by the first: float32 ``(F, S, k, k, k)``.

    Arguments as :func:`se_monai.bases.steerable_basis`, which checks them.

    Raises:
        ValueError: with ``kernel_padding``, a scale whose kernel support is one voxel or less.
    """
    num_funcs = effective_size**3
    per_scale = []
    for sigma in scales:
        support = kernel_support(kernel_size, sigma, max(scales)) if kernel_padding else kernel_size
        if kernel_padding and support <= 1:
            raise ValueError(
                f"scale {sigma} gives a kernel support of {support} voxel(s) for kernel_size {kernel_size}; "
                "use a larger kernel_size, narrower scale range or kernel_padding=False"
            )
        if basis_type == "single":
            basis = single_scale_basis(support, sigma, effective_size)
        else:
            basis = multi_scale_basis(support, sigma, num_funcs, max_order=max_order, mult=mult)
        pad = (kernel_size - support) // 2
        per_scale.append(F.pad(torch.from_numpy(basis), [pad] * 6))
    return normalise_by_first_scale(torch.stack(per_scale, dim=1))
