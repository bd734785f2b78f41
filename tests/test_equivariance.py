"""Scale equivariance of the lifting + group convolution stack, measured against a plain Conv3d stack.

With scales sigma_i = 0.9**i (ratio q = 0.9) and R the trilinear rescaling by q (shrinking), the continuous theory
gives  Phi[R f](., sigma_i) = R Phi[f](., sigma_{i-1})  for i >= 1 (Wimmer et al. 2023, Eq. 4-6): rescaling the
input shifts the output's scale axis by one. We measure the relative L2 error of that identity on the central
half of the volume for a smooth random field; a plain CNN of the same size has no scale axis, so for it the
identity is Conv[R f] = R Conv[f].
"""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from se_monai.layers import SESConv_H_H, SESConv_Z3_H

SIZE, KERNEL, CHANNELS, Q = 56, 9, 4, 0.9
SCALES = [Q**i for i in range(4)]


def smooth_field(size: int, sigma: float = 2.5) -> torch.Tensor:
    """White noise smoothed by a Gaussian of ``sigma`` voxels, zero mean, unit std: ``(1, 1, size, size, size)``."""
    radius = int(3 * sigma)
    g = torch.exp(-torch.arange(-radius, radius + 1.0) ** 2 / (2 * sigma**2))
    g = g / g.sum()
    x = torch.randn(1, 1, size + 2 * radius, size + 2 * radius, size + 2 * radius)
    x = F.conv3d(x, g.reshape(1, 1, -1, 1, 1))
    x = F.conv3d(x, g.reshape(1, 1, 1, -1, 1))
    x = F.conv3d(x, g.reshape(1, 1, 1, 1, -1))
    return (x - x.mean()) / x.std()


def rescale(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Trilinear rescaling of the spatial axes of a 5-D or 6-D tensor by ``factor``."""
    if x.dim() == 6:
        b, c, s = x.shape[:3]
        y = rescale(x.reshape(b, c * s, *x.shape[3:]), factor)
        return y.reshape(b, c, s, *y.shape[2:])
    return F.interpolate(x, scale_factor=factor, mode="trilinear", align_corners=False)


def central(x: torch.Tensor) -> torch.Tensor:
    d, h, w = x.shape[-3:]
    return x[..., d // 4 : d - d // 4, h // 4 : h - h // 4, w // 4 : w - w // 4]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return (central(a - b).norm() / central(b).norm()).item()


def se_stack() -> nn.Module:
    return nn.Sequential(
        SESConv_Z3_H(1, CHANNELS, KERNEL, 3, SCALES, padding=KERNEL // 2, basis_type="single", kernel_padding=False),
        nn.ReLU(),
        SESConv_H_H(CHANNELS, CHANNELS, 1, KERNEL, 3, SCALES, padding=KERNEL // 2, basis_type="single",
                    kernel_padding=False),  # fmt: skip
    )


def cnn_stack() -> nn.Module:
    return nn.Sequential(
        nn.Conv3d(1, CHANNELS, KERNEL, padding=KERNEL // 2, bias=False),
        nn.ReLU(),
        nn.Conv3d(CHANNELS, CHANNELS, KERNEL, padding=KERNEL // 2, bias=False),
    )


@torch.no_grad()
def se_error(model: nn.Module, f: torch.Tensor) -> float:
    out, out_small = model(f), model(rescale(f, Q))
    return relative_error(out_small[:, :, 1:], rescale(out[:, :, :-1], Q))


@torch.no_grad()
def cnn_error(model: nn.Module, f: torch.Tensor) -> float:
    return relative_error(model(rescale(f, Q)), rescale(model(f), Q))


@pytest.mark.parametrize("seed", [0, 1])
def test_se_stack_error_is_small_and_several_times_below_cnn(seed):
    torch.manual_seed(seed)
    f = smooth_field(SIZE)
    se, cnn = se_stack(), cnn_stack()
    e_se, e_cnn = se_error(se, f), cnn_error(cnn, f)
    print(f"seed {seed}: relative equivariance error SE {e_se:.4f}, plain CNN {e_cnn:.4f}, ratio {e_cnn / e_se:.1f}")
    assert e_se < 0.10
    assert e_cnn > 3 * e_se


@torch.no_grad()
def test_rescaling_shifts_the_scale_axis_rather_than_leaving_it():
    """The identity holds with the shift by one scale; without the shift the error is several times larger."""
    torch.manual_seed(2)
    f = smooth_field(SIZE)
    model = se_stack()
    out, out_small = model(f), model(rescale(f, Q))
    shifted = relative_error(out_small[:, :, 1:], rescale(out[:, :, :-1], Q))
    unshifted = relative_error(out_small[:, :, 1:], rescale(out[:, :, 1:], Q))
    assert unshifted > 2 * shifted
