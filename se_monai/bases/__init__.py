"""Steerable bases on the scale-translation group: every scale-equivariant convolution's kernels are linear
combinations of a fixed basis evaluated at each scale sigma of a scale list; only the combination weights are learned
(SESN: Sosnovik, Szmaja, Smeulders, ICLR 2020, Sec. 4; in 3-D: Wimmer et al., arXiv 2304.05864, Sec. 3.2).

- :mod:`se_monai.bases.hermite`: sampled Hermite-Gaussian functions, "single" and "multi" (the paper's bases);
- :mod:`se_monai.bases.disco`: the basis fitted for equivariance, "disco";
- :mod:`se_monai.bases.store`: shipped and cached basis files.

:class:`BasisSpec` names one basis; :func:`steerable_basis` computes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from se_monai.bases.disco import disco_basis
from se_monai.bases.hermite import DEFAULT_MAX_ORDER, DEFAULT_MULT, HERMITE_TYPES, hermite_basis

__all__ = ["BASIS_TYPES", "BasisSpec", "steerable_basis", "DEFAULT_MAX_ORDER", "DEFAULT_MULT"]

#: Basis kinds accepted by every scale-equivariant convolution (``basis_type`` argument): the Hermite-Gaussian
#: "single" and "multi" bases of the paper, and "disco", optimised for equivariance (:mod:`se_monai.bases.disco`).
BASIS_TYPES = (*HERMITE_TYPES, "disco")


def steerable_basis(
    kernel_size: int,
    scales: Sequence[float],
    effective_size: int,
    basis_type: str = "single",
    kernel_padding: bool = True,
    max_order: int = DEFAULT_MAX_ORDER,
    mult: float = DEFAULT_MULT,
) -> torch.Tensor:
    """Normalised steerable basis for all scales.

    Args:
        kernel_size: edge length k of the cubic kernel (voxels).
        scales: Gaussian widths sigma (voxels), one per scale of the scale-translation group.
        effective_size: number of functions per axis; the basis has ``effective_size**3`` functions.
        basis_type: "single" (Hermite orders < effective_size), "multi" (total order <= max_order at several widths),
            or "disco" (optimised for equivariance, :func:`se_monai.bases.disco.disco_basis`; it ignores
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
            scaled support of one voxel or less; for "disco" also an even kernel size (see
            :func:`se_monai.bases.disco.fit_disco_basis`).
    """
    if basis_type not in BASIS_TYPES:
        raise ValueError(f"basis_type must be one of {BASIS_TYPES}, got {basis_type!r}")
    scales = [float(s) for s in scales]
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be a non-empty list of positive widths, got {scales}")
    if effective_size < 1 or kernel_size < 1:
        raise ValueError(f"kernel_size and effective_size must be >= 1, got {kernel_size}, {effective_size}")
    if basis_type == "disco":
        return disco_basis(kernel_size, scales, effective_size)
    return hermite_basis(kernel_size, scales, effective_size, basis_type, kernel_padding, max_order, mult)


@dataclasses.dataclass(frozen=True)
class BasisSpec:
    """Everything that determines a steerable basis, passed as one value from a network to its layers.

    Fields are the arguments of :func:`steerable_basis` (kernel size and widths in voxels); ``scales`` is stored as a
    tuple of floats, the sizes as ints. The scale-equivariant convolutions keep their flat, paper-compatible
    arguments and build one of these (:meth:`layer_arguments` goes the other way).
    """

    kernel_size: int = 3
    effective_size: int = 1
    scales: tuple[float, ...] = (1.0,)
    basis_type: str = "single"
    kernel_padding: bool = True
    max_order: int = DEFAULT_MAX_ORDER
    mult: float = DEFAULT_MULT

    def __post_init__(self) -> None:
        for name, kind in (("kernel_size", int), ("effective_size", int), ("max_order", int), ("mult", float)):
            object.__setattr__(self, name, kind(getattr(self, name)))
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        object.__setattr__(self, "kernel_padding", bool(self.kernel_padding))

    @property
    def num_scales(self) -> int:
        """S, the number of scales."""
        return len(self.scales)

    def build(self) -> torch.Tensor:
        """The basis, float32 ``(F, S, k, k, k)``; raises as :func:`steerable_basis`."""
        return steerable_basis(
            self.kernel_size,
            self.scales,
            self.effective_size,
            self.basis_type,
            self.kernel_padding,
            self.max_order,
            self.mult,
        )

    def layer_arguments(self) -> dict[str, object]:
        """The fields as keyword arguments of the SE convolutions: ``SESConv_Z3_H(c, c2, **spec.layer_arguments())``."""
        return dataclasses.asdict(self)
