"""The space-to-depth (blocked) form of small-channel stride-1 convolutions equals the direct convolution."""

import pytest
import torch
import torch.nn.functional as F

import se_monai.reference as ref
from se_monai.layers import SESConv_H_H, SESConv_Z3_H
from se_monai.ops import space_to_depth

TOL = {"rtol": 1e-4, "atol": 1e-5}


@pytest.mark.parametrize("kernel_size,groups,in_per_group,out_per_group", [(5, 4, 3, 3), (5, 1, 2, 4), (9, 2, 1, 2)])
def test_blocked_conv3d_equals_conv3d(kernel_size, groups, in_per_group, out_per_group):
    x = torch.randn(2, groups * in_per_group, 8, 6, 10, dtype=torch.double)
    shape = (groups * out_per_group, in_per_group, kernel_size, kernel_size, kernel_size)
    kernel = torch.randn(shape, dtype=torch.double)
    bias = torch.randn(groups * out_per_group, dtype=torch.double)
    expected = F.conv3d(x, kernel, bias, padding=kernel_size // 2, groups=groups)
    x.requires_grad_(True)
    blocked = space_to_depth.blocked_conv3d(x, space_to_depth.blocked_kernel(kernel, groups), bias, groups)
    torch.testing.assert_close(blocked, expected)
    grad = torch.randn_like(expected)
    (blocked_grad,) = torch.autograd.grad(blocked, x, grad)
    (expected_grad,) = torch.autograd.grad(F.conv3d(x, kernel, bias, padding=kernel_size // 2, groups=groups), x, grad)
    torch.testing.assert_close(blocked_grad, expected_grad)


def test_blocks_layout_round_trip_and_sizes():
    x = torch.randn(1, 6, 4, 2, 6, dtype=torch.double, requires_grad=True)
    blocks = space_to_depth.to_blocks(x)
    assert blocks.shape == (1, 48, 2, 1, 3)
    assert torch.equal(blocks[0, 8 * 4 + 3, 1, 0, 2], x[0, 4, 2, 1, 5])  # channel 4, sub-voxel (0, 1, 1)
    assert torch.equal(space_to_depth.from_blocks(blocks), x)
    assert torch.autograd.gradcheck(space_to_depth.to_blocks, (x,))
    assert torch.autograd.gradcheck(space_to_depth.from_blocks, (blocks.detach().requires_grad_(),))
    assert [space_to_depth.blocked_size(k) for k in (3, 5, 7, 9)] == [3, 3, 5, 5]
    with pytest.raises(ValueError, match="even spatial sizes"):
        space_to_depth.to_blocks(torch.randn(1, 2, 4, 5, 4))


def test_blocking_rule():
    even, odd = torch.zeros(1, 12, 8, 8, 8), torch.zeros(1, 12, 8, 7, 8)
    assert space_to_depth.worth_blocking(even, 5, 3, 3)
    assert not space_to_depth.worth_blocking(odd, 5, 3, 3)
    assert not space_to_depth.worth_blocking(even, 3, 3, 3)  # 8 times the multiply-adds
    assert not space_to_depth.worth_blocking(even, 5, 8, 8)  # enough channels for the direct convolution


@pytest.fixture
def blocked_calls(count_calls):
    """Counts the convolutions that run in blocked form."""
    return count_calls(space_to_depth, "blocked_conv3d")


@pytest.mark.parametrize("basis_type", ["single", "multi", "disco"])
@pytest.mark.parametrize("channels,scale_size", [(3, 1), (2, 2)])  # 3 and 4 input channels per group
@pytest.mark.parametrize("training", [True, False])
def test_group_conv_in_blocked_form_equals_reference(basis_type, channels, scale_size, training, blocked_calls):
    scales = [1.0, 0.9, 0.81]
    layer = SESConv_H_H(
        channels,
        3,
        scale_size=scale_size,
        kernel_size=5,
        effective_size=3,
        scales=scales,
        padding=2,
        bias=True,
        basis_type=basis_type,
        kernel_padding=False,
    ).train(training)
    torch.nn.init.normal_(layer.bias)
    x = torch.randn(2, channels, 3, 8, 6, 10, requires_grad=True)
    expected = ref.group_conv(x, layer.weight, layer.basis, layer.bias, 1, 2)
    if not training:
        with torch.no_grad():  # the cached inference kernel
            torch.testing.assert_close(layer(x), expected, **TOL)
    y = layer(x)
    torch.testing.assert_close(y, expected, **TOL)
    assert len(blocked_calls) == (1 if training else 2)  # the blocked path is the one under test
    grads = torch.autograd.grad(y.square().sum(), (x, layer.weight, layer.bias))
    expected_grads = torch.autograd.grad(expected.square().sum(), (x, layer.weight, layer.bias))
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-3, atol=1e-4)


def test_lifting_in_blocked_form_equals_reference(blocked_calls):
    layer = SESConv_Z3_H(2, 4, kernel_size=5, effective_size=2, scales=[1.0], padding=2, bias=True)
    torch.nn.init.normal_(layer.bias)
    x = torch.randn(1, 2, 6, 8, 4)
    torch.testing.assert_close(layer(x), ref.lifting_conv(x, layer.weight, layer.basis, layer.bias, 1, 2), **TOL)
    assert len(blocked_calls) == 1


def test_odd_sizes_and_strides_take_the_direct_path(blocked_calls):
    layer = SESConv_H_H(3, 3, kernel_size=5, effective_size=2, scales=[1.0, 0.9], padding=2)
    layer(torch.randn(1, 3, 2, 7, 8, 8))
    SESConv_H_H(3, 3, kernel_size=5, effective_size=2, scales=[1.0, 0.9], padding=2, stride=2)(
        torch.randn(1, 3, 2, 8, 8, 8)
    )
    assert blocked_calls == []


@pytest.mark.parametrize("kernel_size,groups,in_per_group,out_per_group", [(5, 4, 8, 3), (3, 1, 2, 4), (7, 2, 3, 2)])
def test_sub_pixel_kernel_equals_transposed_conv3d(kernel_size, groups, in_per_group, out_per_group):
    """The sub-pixel form's output is the blocked layout of the stride-2 transposed convolution."""
    x = torch.randn(2, groups * in_per_group, 4, 5, 3, dtype=torch.double)
    kernel = torch.randn(groups * in_per_group, out_per_group, *(kernel_size,) * 3, dtype=torch.double)
    expected = F.conv_transpose3d(x, kernel, None, 2, (kernel_size - 1) // 2, 1, groups)
    assert expected.shape[2:] == (8, 10, 6)
    sub_pixel = space_to_depth.sub_pixel_kernel(kernel, groups)
    y = F.conv3d(x, sub_pixel, None, 1, sub_pixel.shape[-1] // 2, 1, groups)
    torch.testing.assert_close(y, space_to_depth.to_blocks(expected))
