"""The steerable basis against the Hermite-Gaussian formula evaluated point by point (se_monai/reference.py)."""

import numpy as np
import pytest
import torch

from se_monai.bases import steerable_basis
from se_monai.reference import reference_basis

SCALES = [1.0, 0.9, 0.81, 0.729]


@pytest.mark.parametrize("basis_type", ["single", "multi"])
@pytest.mark.parametrize("kernel_padding", [True, False])
@pytest.mark.parametrize("kernel_size,effective_size", [(5, 3), (7, 2)])
def test_basis_equals_formula(basis_type, kernel_padding, kernel_size, effective_size):
    scales = [2.0, 1.6, 1.28] if kernel_padding else SCALES
    ours = steerable_basis(kernel_size, scales, effective_size, basis_type, kernel_padding)
    oracle = reference_basis(kernel_size, scales, effective_size, basis_type, kernel_padding)
    assert ours.shape == (effective_size**3, len(scales), kernel_size, kernel_size, kernel_size)
    torch.testing.assert_close(ours, oracle, rtol=1e-5, atol=1e-6)


def test_axis_and_order_convention():
    """Function 1 has orders (a, b, c) = (0, 0, 1): odd along the first kernel axis, even along the others."""
    basis = steerable_basis(5, [1.0], 2, "single", False)[1, 0].numpy()
    np.testing.assert_allclose(basis, -basis[::-1], atol=1e-7)
    np.testing.assert_allclose(basis, basis[:, ::-1], atol=1e-7)
    np.testing.assert_allclose(basis, basis[:, :, ::-1], atol=1e-7)
    assert basis[4, 2, 2] > 0  # He_1(x) = x is positive at positive x


def test_normalised_at_first_scale_and_amplitude_carries():
    basis = steerable_basis(9, [1.0, 2.0], 3, "single", False)
    norms = basis.pow(2).sum(dim=(2, 3, 4)).sqrt()
    torch.testing.assert_close(norms[:, 0], torch.ones(27))
    # the sigma^-3 amplitude: the zero-order Gaussian at twice the width has ~2^-3/2 of the L2 norm in the continuum
    assert abs(norms[0, 1].item() - 2.0**-1.5) < 0.05


def test_kernel_padding_support():
    basis = steerable_basis(9, [1.0, 0.5], 2, "single", True)
    support = int(9 * 0.5 / 1.0) // 2 * 2 + 1  # 5 voxels
    pad = (9 - support) // 2
    small = basis[:, 1]
    assert small[:, :pad].abs().max() == 0 and small[:, -pad:].abs().max() == 0
    assert small[:, pad:-pad, pad:-pad, pad:-pad].abs().max() > 0


def test_multi_takes_total_order_and_second_width():
    """effective_size 4 needs 64 > 35 functions: the second width sigma / 1.2 supplies the rest."""
    basis = steerable_basis(7, [1.5], 4, "multi", False)
    oracle = reference_basis(7, [1.5], 4, "multi", False)
    torch.testing.assert_close(basis, oracle, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"basis_type": "fourier"}, "basis_type"),
        ({"scales": []}, "scales"),
        ({"scales": [1.0, -1.0]}, "scales"),
        ({"scales": [4.0, 0.5], "kernel_padding": True}, "support"),
    ],
)
def test_basis_errors(kwargs, message):
    args = {"kernel_size": 3, "scales": [1.0], "effective_size": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        steerable_basis(**args)


def test_basis_spec_names_one_basis():
    from se_monai.bases import BasisSpec
    from se_monai.layers import SESConv_H_H

    spec = BasisSpec(5, 2, [1, 0.8], "multi", False, max_order=2, mult=1.5)
    assert spec.scales == (1.0, 0.8) and spec.num_scales == 2
    torch.testing.assert_close(spec.build(), steerable_basis(5, [1.0, 0.8], 2, "multi", False, 2, 1.5), rtol=0, atol=0)
    layer = SESConv_H_H(2, 3, **spec.layer_arguments())
    torch.testing.assert_close(layer.basis, spec.build(), rtol=0, atol=0)
    with pytest.raises(ValueError, match="basis_type"):
        BasisSpec(basis_type="hermite").build()


def test_the_steerable_base_is_abstract():
    from se_monai.bases import BasisSpec
    from se_monai.layers.steerable import SteerableConv

    conv = {"groups": 1, "stride": 1, "padding": 0, "output_padding": 0, "transposed": False, "bias": False}
    with pytest.raises(TypeError, match="abstract"):
        SteerableConv(1, 1, weight_shape=(1, 1), spec=BasisSpec(), **conv)
