"""Per-channel operations on the (B, D, H, W, S, C) memory order, against torch and the reference formulas."""

import pytest
import torch

import se_monai.reference as ref
from se_monai.layers import SEBatchNorm
from se_monai.ops import channels_last

TOL = {"rtol": 1e-4, "atol": 1e-5}


def scale_channels_last(b, c, s, d, h, w, dtype=torch.float32):
    """A (B, C, S, D, H, W) tensor laid out as the SE convolutions emit it."""
    return torch.randn(b, d, h, w, s, c, dtype=dtype).permute(0, 5, 4, 1, 2, 3)


def test_channel_matrix_only_views_the_channels_last_layout():
    x = scale_channels_last(2, 3, 4, 5, 6, 7)
    matrix = channels_last.channel_matrix(x)
    assert matrix.shape == (2 * 4 * 5 * 6 * 7, 3) and matrix.data_ptr() == x.data_ptr()
    torch.testing.assert_close(matrix[:, 1], x[:, 1].permute(0, 2, 3, 4, 1).flatten())
    assert channels_last.channel_matrix(x.contiguous()) is None


@pytest.mark.parametrize("rows", [4096, 4097, 24])  # 16 rows at a time, 1 row at a time, 8 rows at a time
def test_affine_and_bias(rows):
    matrix, scale, shift = torch.randn(rows, 3), torch.randn(3), torch.randn(3)
    torch.testing.assert_close(channels_last.affine(matrix, scale, shift), matrix * scale + shift)
    torch.testing.assert_close(channels_last.add_bias(matrix, shift), matrix + shift)


@pytest.mark.parametrize("shape", [(2, 3, 4, 4, 6, 2), (1, 2, 3, 5, 3, 3)])
def test_batch_norm_matches_reference_with_gradients(shape):
    x = (scale_channels_last(*shape) * 3 + 5).requires_grad_()
    weight = torch.randn(shape[1], requires_grad=True)
    bias = torch.randn(shape[1], requires_grad=True)
    b, c, s, d, h, w = shape
    y, mean, var = channels_last.batch_norm(channels_last.channel_matrix(x), weight, bias, 1e-5)
    y = y.view(b, d, h, w, s, c).permute(0, 5, 4, 1, 2, 3)
    expected = ref.batch_norm(x, weight, bias)
    torch.testing.assert_close(y, expected, **TOL)
    torch.testing.assert_close(mean, x.mean(dim=(0, 2, 3, 4, 5)), **TOL)
    torch.testing.assert_close(var, x.var(dim=(0, 2, 3, 4, 5), unbiased=False), **TOL)
    upstream = torch.randn_like(expected)
    grads = torch.autograd.grad(y, (x, weight, bias), upstream)
    expected_grads = torch.autograd.grad(expected, (x, weight, bias), upstream)
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-3, atol=1e-4)


def test_batch_norm_gradcheck():
    matrix = torch.randn(40, 3, dtype=torch.double, requires_grad=True)
    weight = torch.randn(3, dtype=torch.double, requires_grad=True)
    bias = torch.randn(3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m, w, b: channels_last.batch_norm(m, w, b, 1e-5)[0], (matrix, weight, bias))


def test_variance_is_exact_far_from_zero_mean():
    matrix = torch.randn(4096, 2) * 0.01 + 1000.0  # a one-pass E[x^2] - E[x]^2 would lose every digit
    _, _mean, var = channels_last.batch_norm(matrix, None, None, 1e-5)
    torch.testing.assert_close(var, matrix.double().var(dim=0, unbiased=False).float(), rtol=1e-3, atol=0)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_se_batch_norm_running_statistics_as_torch(momentum):
    """On the channels-last layout SEBatchNorm updates its running estimates exactly as torch's BatchNorm3d."""
    norm, torch_norm = SEBatchNorm(3, momentum=momentum), torch.nn.BatchNorm3d(3, momentum=momentum)
    for _ in range(3):
        x = scale_channels_last(2, 3, 4, 5, 4, 3) * 2 + 1
        y = norm(x)
        b, c, s, d, h, w = x.shape
        expected = torch_norm(x.reshape(b, c, s * d, h, w)).reshape(x.shape)  # statistics over batch, scales, space
        torch.testing.assert_close(y, expected, **TOL)
        assert y.stride() == x.stride()  # no copy to another layout
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(norm, name), getattr(torch_norm, name), **TOL, msg=name)
    norm.eval(), torch_norm.eval()
    x = scale_channels_last(1, 3, 4, 3, 3, 3)
    b, c, s, d, h, w = x.shape
    torch.testing.assert_close(norm(x), torch_norm(x.reshape(b, c, s * d, h, w)).reshape(x.shape), **TOL)


def test_bfloat16_autocast_keeps_float32_statistics():
    """Under CPU autocast the feature maps are bfloat16; statistics and running estimates stay float32."""
    norm = SEBatchNorm(3)
    x = scale_channels_last(1, 3, 2, 4, 4, 4).to(torch.bfloat16).requires_grad_()
    y = norm(x)
    assert y.dtype == torch.bfloat16 and norm.running_mean.dtype == torch.float32
    expected = ref.batch_norm(x.float(), norm.weight, norm.bias)
    torch.testing.assert_close(y.float(), expected, rtol=2e-2, atol=2e-2)
    y.float().square().sum().backward()
    assert x.grad.dtype == torch.bfloat16 and norm.weight.grad.dtype == torch.float32
