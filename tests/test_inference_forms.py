"""Inference-only forms of the SE layers on CPU (sub-pixel transposed convolutions, oneDNN's convolution whatever
torch's size heuristic, the skip connection written in the convolutions' layout) against the reference formulation
and torch's own operations."""

import pytest
import torch
import torch.nn.functional as F

import se_monai.reference as ref
from se_monai.layers import SESConv_H_H, SESConv_Z3_H
from se_monai.networks import SEUNet
from se_monai.networks.blocks import SESkipConnection
from se_monai.ops import channels_last, onednn, space_to_depth

TOL = {"rtol": 1e-4, "atol": 1e-5}
SCALES = [1.0, 0.9, 0.81]


@pytest.fixture
def sub_pixel_calls(count_calls):
    """Counts the depth-to-space rearrangements of sub-pixel convolutions."""
    return count_calls(space_to_depth, "from_blocks")


@pytest.mark.parametrize("lifting", [True, False])
@pytest.mark.parametrize("kernel_size,scale_size,bias", [(5, 1, True), (3, 2, False), (7, 1, True)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_transposed_conv_in_sub_pixel_form_equals_reference(
    lifting, kernel_size, scale_size, bias, dtype, sub_pixel_calls
):
    """In inference a stride-2 transposed SE convolution runs as a stride-1 convolution at the input's resolution
    (sub-pixel form) and equals the reference's transposed convolution; with autograd on it runs directly."""
    common = {"kernel_size": kernel_size, "effective_size": 2, "scales": SCALES, "stride": 2, "bias": bias}
    common |= {"padding": kernel_size // 2, "output_padding": 1, "transposed": True, "kernel_padding": False}
    if lifting:
        layer = SESConv_Z3_H(3, 2, **common)
        x = torch.randn(2, 3, 5, 4, 3, dtype=dtype)
        oracle = ref.lifting_conv
    else:
        layer = SESConv_H_H(3, 2, scale_size=scale_size, **common)
        x = torch.randn(2, 3, len(SCALES), 5, 4, 3, dtype=dtype)
        oracle = ref.group_conv
    layer = layer.to(dtype).eval()
    if bias:
        torch.nn.init.normal_(layer.bias)
    expected = oracle(x, layer.weight, layer.basis, layer.bias, 2, kernel_size // 2, True, 1)
    assert expected.shape[-3:] == (10, 8, 6)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected.detach(), **TOL)
    assert len(sub_pixel_calls) == 1
    with torch.enable_grad():
        torch.testing.assert_close(layer(x), expected, **TOL)
    assert len(sub_pixel_calls) == 1


@pytest.mark.parametrize("groups,in_per_group,out_per_group,kernel_size", [(1, 8, 24, 3), (4, 8, 24, 3), (2, 3, 5, 5)])
def test_onednn_conv3d_equals_conv3d(groups, in_per_group, out_per_group, kernel_size):
    """oneDNN's convolution where torch would take its im2col path (8 channels, 3^3 kernel, a batch of one), in
    float32, float64 (torch's own convolution) and under bfloat16 autocast (bfloat16 result, as conv3d's)."""
    x = torch.randn(1, groups * in_per_group, 8, 6, 10)
    weight = torch.randn(groups * out_per_group, in_per_group, *(kernel_size,) * 3)
    bias = torch.randn(groups * out_per_group)
    for dtype in (torch.float32, torch.float64):
        args = (x.to(dtype), weight.to(dtype), bias.to(dtype))
        expected = F.conv3d(*args, 1, kernel_size // 2, 1, groups)
        torch.testing.assert_close(onednn.conv3d(*args, groups), expected, **TOL)
    torch.testing.assert_close(
        onednn.conv3d(x, weight, None, groups), F.conv3d(x, weight, None, 1, kernel_size // 2, 1, groups), **TOL
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = onednn.conv3d(x, weight, bias, groups)
        same = F.conv3d(x, weight, bias, 1, kernel_size // 2, 1, groups)
    assert low.dtype == same.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), same.float(), rtol=2e-2, atol=2e-2)


def test_cat_channels_equals_cat_in_the_convolutions_layout():
    a = torch.randn(2, 3, 4, 5, 6, 2, dtype=torch.double, requires_grad=True)
    b = torch.randn(2, 5, 4, 5, 6, 2, dtype=torch.double).permute(0, 1, 2, 3, 4, 5).requires_grad_(True)
    out = channels_last.cat_channels([a, b])
    assert torch.equal(out, torch.cat([a, b], dim=1))
    assert channels_last.channel_matrix(out) is not None  # (B, D, H, W, S, C) in memory: no copy for the next layer
    assert torch.autograd.gradcheck(lambda u, v: channels_last.cat_channels([u, v]), (a, b))
    assert channels_last.cat_channels([a, b.float()]).dtype == torch.double
    with pytest.raises(ValueError, match="equal in every axis but 1"):
        channels_last.cat_channels([a, b[:, :, :3]])


def test_seunet_skip_connections_keep_monai_keys_and_values():
    """SEUNet's skip connections have MONAI's SkipConnection keys, so checkpoints port over, and concatenate as
    torch.cat does, also for 5-D inputs and under TorchScript."""
    from monai.networks.layers.simplelayers import SkipConnection

    net = SEUNet(in_channels=1, out_channels=2, channels=(2, 4), strides=(2,), basis_type="disco")
    skips = [m for m in net.modules() if isinstance(m, SESkipConnection)]
    assert len(skips) == 1 and isinstance(skips[0], SkipConnection)
    plain = SkipConnection(skips[0].submodule)
    assert list(plain.state_dict()) == list(skips[0].state_dict())
    x = torch.randn(1, 2, 4, 4, 4, 4)  # (B, C, S, D, H, W)
    with torch.no_grad():
        torch.testing.assert_close(skips[0](x), plain(x))
    identity = SESkipConnection(torch.nn.Identity())
    volume = torch.randn(1, 2, 4, 4, 4)
    assert torch.equal(identity(volume), torch.cat([volume, volume], dim=1))
    assert torch.equal(torch.jit.script(identity)(x), torch.cat([x, x], dim=1))
    # the oracle concatenates with torch.cat
    oracle = ref.reference_model(net)
    assert [type(m) for m in oracle.modules() if isinstance(m, SkipConnection)] == [SkipConnection]


def _hw_blocks(x: torch.Tensor) -> torch.Tensor:
    """(B, C, D, H, W) -> (B, 4 C, D, H/2, W/2), channel (c, a2, a3): H and W in 2 x 2 blocks, written out."""
    b, c, d, h, w = x.shape
    return x.reshape(b, c, d, h // 2, 2, w // 2, 2).permute(0, 1, 4, 6, 2, 3, 5).reshape(b, 4 * c, d, h // 2, w // 2)


@pytest.mark.parametrize("kernel_size,groups", [(5, 4), (3, 1), (7, 2)])
def test_blocked_kernel_with_only_h_and_w_blocked_equals_conv3d(kernel_size, groups):
    x = torch.randn(2, groups * 3, 5, 6, 8, dtype=torch.double)
    kernel = torch.randn(groups * 2, 3, *(kernel_size,) * 3, dtype=torch.double)
    expected = F.conv3d(x, kernel, None, 1, kernel_size // 2, 1, groups)
    blocked = space_to_depth.blocked_kernel(kernel, groups, depth=False)
    assert blocked.shape[-3:] == (kernel_size,) + (space_to_depth.blocked_size(kernel_size),) * 2
    y = onednn.conv3d(_hw_blocks(x), blocked, None, groups)
    torch.testing.assert_close(y, _hw_blocks(expected))
    assert space_to_depth.from_hw_blocks(y).is_contiguous()
    torch.testing.assert_close(space_to_depth.from_hw_blocks(y), expected)


def test_depth_major_rows_unblock_to_the_h_and_w_blocked_layout():
    """A blocked map whose channels are ordered (b1, c, b2, b3), as a depth-major kernel makes them, becomes the
    H and W blocked map with the depth axis at full resolution."""
    x = torch.randn(1, 3, 6, 4, 8)
    blocks = space_to_depth.to_blocks(x)  # channels (c, b1, b2, b3)
    rows = space_to_depth.depth_major(blocks.transpose(0, 1)).transpose(0, 1)  # the channel axis reordered
    assert torch.equal(
        space_to_depth.depth_major(torch.arange(16.0)),
        torch.tensor([0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15.0]),
    )
    unblocked = space_to_depth.unblock_depth(rows.contiguous(memory_format=torch.channels_last_3d))
    assert torch.equal(unblocked, _hw_blocks(x))
    assert unblocked.is_contiguous(memory_format=torch.channels_last_3d)


@pytest.mark.parametrize("scale_size,act,bias", [(1, "silu", True), (2, "relu", False)])
def test_strided_residual_unit_fused_in_inference_equals_reference(scale_size, act, bias, count_calls):
    """A residual unit whose residual is a strided group convolution runs its first subunit and the residual as one
    convolution in inference, equal to the reference formulation of both (trained-like batch norm)."""
    from se_monai.bases import BasisSpec
    from se_monai.networks.blocks import SEConvolution, SEResidualUnit
    from se_monai.reference import reference_model

    torch.manual_seed(0)
    spec = BasisSpec(5, 3, tuple(SCALES), "disco", False)
    unit = SEResidualUnit(3, 4, spec, strides=2, scale_size=scale_size, subunits=2, act=act, bias=bias)
    with torch.no_grad():
        for block in unit.modules():
            if isinstance(block, SEConvolution) and "norm" in block._modules:
                block.norm.running_mean.normal_()
                block.norm.running_var.uniform_(0.2, 3.0)
                block.norm.weight.uniform_(0.5, 2.0)
            if isinstance(block, SEConvolution) and block.conv.bias is not None:
                block.conv.bias.normal_()
    unit.eval()
    oracle = reference_model(unit).eval()
    calls = count_calls(SEResidualUnit, "_fused_forward")
    x = torch.randn(2, 3, len(SCALES), 8, 6, 10)
    with torch.no_grad():
        fused = unit(x)
        assert not oracle._fuses_residual(x)
        expected = oracle(x)
    assert len(calls) == 1
    torch.testing.assert_close(fused, expected, rtol=1e-4, atol=1e-4)
