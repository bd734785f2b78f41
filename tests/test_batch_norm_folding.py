"""Inference of SEConvolution with batch norm folded into the convolution, against the reference formulation."""

import pytest
import torch
import torch.nn.functional as F

import se_monai.reference as ref
from se_monai.bases import BasisSpec
from se_monai.networks import SEUNet
from se_monai.networks.blocks import SEConvolution

SCALES = [1.0, 0.9, 0.81, 0.729]
TOL = {"rtol": 1e-4, "atol": 1e-5}


def _randomised(block: SEConvolution) -> SEConvolution:
    """Random bias, batch-norm affine and running statistics (as after training), eval mode."""
    with torch.no_grad():
        if block.conv.bias is not None:
            block.conv.bias.normal_()
        block.norm.weight.uniform_(0.5, 2.0)
        block.norm.bias.normal_()
        block.norm.running_mean.normal_()
        block.norm.running_var.uniform_(0.2, 3.0)
    return block.eval()


def _expected(block: SEConvolution, x: torch.Tensor, lifting: bool, strides: int, transposed: bool) -> torch.Tensor:
    conv, norm = block.conv, block.norm
    geometry = (strides, conv.padding[0], transposed, strides - 1 if transposed else 0)
    if lifting:
        y = ref.lifting_conv(x, conv.weight, conv.basis, conv.bias, *geometry)
    else:
        y = ref.group_conv(x, conv.weight, conv.basis, conv.bias, *geometry)
    y = ref.batch_norm(y, norm.weight, norm.bias, norm.eps, norm.running_mean, norm.running_var)
    return F.silu(y)


@pytest.mark.parametrize("basis_type", ["multi", "disco"])
@pytest.mark.parametrize(
    "lifting,channels,scale_size,strides,transposed,bias",
    [
        (True, (1, 4), 1, 1, False, True),  # lifting, stride 1
        (True, (2, 3), 1, 2, False, False),  # lifting, strided, no conv bias
        (True, (2, 3), 1, 2, True, True),  # transposed lifting
        (False, (3, 3), 1, 1, False, True),  # space-to-depth form (<= 4 channels per scale)
        (False, (6, 8), 1, 1, False, True),  # direct grouped convolution
        (False, (4, 5), 2, 1, False, False),  # scale_size 2, no conv bias
        (False, (4, 3), 1, 2, False, True),  # strided
        (False, (8, 3), 1, 2, True, True),  # transposed (bias added after the convolution)
        (False, (4, 4), 2, 2, True, False),  # transposed, scale_size 2
    ],
)
def test_folded_inference_equals_reference(basis_type, lifting, channels, scale_size, strides, transposed, bias):
    spec = BasisSpec(5, 3, SCALES, basis_type)
    block = _randomised(
        SEConvolution(
            *channels,
            spec,
            lifting=lifting,
            scale_size=scale_size,
            strides=strides,
            bias=bias,
            is_transposed=transposed,
        )
    )
    shape = (2, channels[0]) + (() if lifting else (len(SCALES),)) + (8, 10, 6)
    x = torch.randn(*shape)
    with torch.no_grad():
        assert block._folds_norm()
        folded = block(x)
    expected = _expected(block, x, lifting, strides, transposed)
    torch.testing.assert_close(folded, expected, **TOL)
    with torch.enable_grad():  # autograd on: the layers one by one, the same result
        assert not block._folds_norm()
        torch.testing.assert_close(block(x), expected, **TOL)


@torch.no_grad()
def test_folded_kernel_follows_new_statistics_and_weights():
    """The folded kernel is cached with the kernel; new running statistics or weights must show."""
    block = _randomised(SEConvolution(3, 3, BasisSpec(5, 3, SCALES, "disco")))
    x = torch.randn(1, 3, len(SCALES), 8, 8, 8)
    torch.testing.assert_close(block(x), _expected(block, x, False, 1, False), **TOL)
    block.norm.running_mean.add_(1.0)
    block.norm.running_var.mul_(2.0)
    torch.testing.assert_close(block(x), _expected(block, x, False, 1, False), **TOL)
    block.conv.weight.mul_(-1.5)
    torch.testing.assert_close(block(x), _expected(block, x, False, 1, False), **TOL)
    block.norm.weight.mul_(0.5)  # the affine of the norm, not only its statistics
    torch.testing.assert_close(block(x), _expected(block, x, False, 1, False), **TOL)


def test_training_mode_is_not_folded():
    """Batch statistics in training: nothing folded, running estimates updated."""
    block = _randomised(SEConvolution(3, 3, BasisSpec(5, 3, SCALES, "disco"))).train()
    before = block.norm.running_mean.clone()
    with torch.no_grad():
        assert not block._folds_norm()
        block(torch.randn(2, 3, len(SCALES), 8, 8, 8))
    assert not torch.equal(before, block.norm.running_mean)


def test_seunet_inference_equals_layer_by_layer():
    """The whole network in inference (folded) against autograd-on evaluation (unfolded), with trained-like norms."""
    torch.manual_seed(0)
    net = SEUNet(in_channels=1, out_channels=3, basis_type="disco")
    for block in net.modules():
        if isinstance(block, SEConvolution) and hasattr(block, "norm"):
            _randomised(block)
    net.eval()
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        folded = net(x)
    with torch.enable_grad():
        expected = net(x)
    torch.testing.assert_close(folded, expected.detach(), rtol=1e-4, atol=1e-4)


def _trained_like(net: SEUNet) -> SEUNet:
    for block in net.modules():
        if isinstance(block, SEConvolution) and hasattr(block, "norm"):
            _randomised(block)
    return net.eval()


@pytest.mark.parametrize(
    "kwargs,blocked",
    [
        ({"basis_type": "disco"}, True),  # the shipped configuration
        ({"basis_type": "multi", "projection": "max"}, True),
        ({"basis_type": "disco", "act": "relu", "channels": (3, 6, 12)}, True),
        ({"basis_type": "disco", "scale_size": 2}, False),  # layers one by one
        ({"basis_type": "disco", "num_res_units": 0}, False),
    ],
)
def test_output_block_in_blocked_layout_equals_reference(kwargs, blocked):
    """SEUNet in inference (batch norm folded, the output block in blocked layout) against the reference formulation
    of every SE layer, with trained-like batch-norm statistics."""
    from se_monai.reference import reference_model

    torch.manual_seed(0)
    net = _trained_like(SEUNet(in_channels=2, out_channels=3, **kwargs))
    ref_net = reference_model(net).eval()
    x = torch.randn(2, 2, 16, 24, 16)
    with torch.no_grad():
        assert net.model[2]._runs_blocked(torch.randn(1, 1, 1, 1, 1, 1)) is blocked
        # the oracle computes every layer its own way: no folded or blocked path in it
        assert not ref_net.model[2]._runs_blocked(torch.randn(1, 1, 1, 1, 1, 1))
        assert not any(m._folds_norm() for m in ref_net.modules() if isinstance(m, SEConvolution))
        torch.testing.assert_close(net(x), ref_net(x), rtol=1e-4, atol=1e-4)


def test_output_block_with_dropout_in_eval():
    """Channel dropout (the identity in eval mode) does not keep the output block from the blocked layout."""
    torch.manual_seed(0)
    net = _trained_like(SEUNet(in_channels=1, out_channels=2, basis_type="disco", dropout=0.2))
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert net.model[2]._runs_blocked(x)
        folded = net(x)
    with torch.enable_grad():
        torch.testing.assert_close(folded, net(x).detach(), rtol=1e-4, atol=1e-4)
