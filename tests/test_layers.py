"""se_monai.layers against the straightforward reference formulation (se_monai/reference.py)."""

import pytest
import torch
import torch.nn.functional as F
from devices import DEVICES

import se_monai.reference as ref
from se_monai.layers import (
    SEBatchNorm,
    SEDropout,
    SEInstanceNorm,
    SESConv_H_H,
    SESConv_H_H_1x1,
    SESConv_Z3_H,
    SESpatialMaxPool,
    SESProjection_H_Z3,
)

SCALES = [1.0, 0.9, 0.81]
TOL = {"rtol": 1e-4, "atol": 1e-5}


def _with_bias(layer):
    if layer.bias is not None:
        torch.nn.init.normal_(layer.bias)
    return layer


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("basis_type", ["single", "multi", "disco"])
@pytest.mark.parametrize(
    "stride,padding,transposed,output_padding", [(1, 2, False, 0), (2, 2, False, 0), (2, 2, True, 1), (1, 0, True, 0)]
)
def test_lifting_equals_reference(basis_type, stride, padding, transposed, output_padding, device):
    layer = _with_bias(
        SESConv_Z3_H(
            2,
            3,
            kernel_size=5,
            effective_size=2,
            scales=SCALES,
            stride=stride,
            padding=padding,
            bias=True,
            basis_type=basis_type,
            transposed=transposed,
            kernel_padding=False,
            output_padding=output_padding,
        )
    ).to(device)
    x = torch.randn(2, 2, 8, 9, 10, device=device, requires_grad=True)
    y = layer(x)
    expected = ref.lifting_conv(x, layer.weight, layer.basis, layer.bias, stride, padding, transposed, output_padding)
    assert y.shape == expected.shape and y.shape[:3] == (2, 3, 3)
    torch.testing.assert_close(y, expected, **TOL)
    grads = torch.autograd.grad(y.square().sum(), (x, layer.weight))
    expected_grads = torch.autograd.grad(expected.square().sum(), (x, layer.weight))
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("basis_type", ["single", "multi", "disco"])
@pytest.mark.parametrize("scale_size", [1, 2, 3])
@pytest.mark.parametrize(
    "stride,padding,transposed,output_padding", [(1, 1, False, 0), (2, 1, False, 0), (2, 1, True, 1)]
)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("device", DEVICES)
def test_group_conv_equals_reference(
    basis_type, scale_size, stride, padding, transposed, output_padding, training, device
):
    layer = _with_bias(
        SESConv_H_H(
            3,
            2,
            scale_size=scale_size,
            kernel_size=3,
            effective_size=2,
            scales=SCALES,
            stride=stride,
            padding=padding,
            bias=True,
            basis_type=basis_type,
            transposed=transposed,
            kernel_padding=False,
            output_padding=output_padding,
        )
    ).to(device)
    layer.train(training)
    x = torch.randn(2, 3, len(SCALES), 6, 7, 8, device=device, requires_grad=True)
    y = layer(x)
    expected = ref.group_conv(x, layer.weight, layer.basis, layer.bias, stride, padding, transposed, output_padding)
    assert y.shape == expected.shape
    torch.testing.assert_close(y, expected, **TOL)
    grads = torch.autograd.grad(y.square().sum(), (x, layer.weight))
    expected_grads = torch.autograd.grad(expected.square().sum(), (x, layer.weight))
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-3, atol=1e-4)


def test_group_conv_scale_mixing_semantics():
    """Output scale i sees input scales i..i+scale_size-1, the last scale repeated past the end."""
    layer = SESConv_H_H(
        1, 1, scale_size=2, kernel_size=1, effective_size=1, scales=[1.0, 1.0, 1.0], bias=False, kernel_padding=False
    )
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1.0, 10.0]).reshape(1, 1, 2, 1))
    x = torch.tensor([1.0, 2.0, 3.0]).reshape(1, 1, 3, 1, 1, 1)
    amplitude = layer.basis.flatten()[0].item()
    torch.testing.assert_close(layer(x).flatten(), amplitude * torch.tensor([1 + 20.0, 2 + 30.0, 3 + 30.0]))


def test_gradcheck_group_conv():
    layer = SESConv_H_H(
        2,
        2,
        scale_size=2,
        kernel_size=3,
        effective_size=2,
        scales=[1.0, 0.8],
        padding=1,
        bias=True,
        kernel_padding=False,
    ).double()
    x = torch.randn(1, 2, 2, 4, 4, 4, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp, w: layer_call(layer, inp, w), (x, layer.weight))


def layer_call(layer, inp, weight):
    return torch.func.functional_call(layer, {"weight": weight}, (inp,))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("stride", [1, 2])
def test_1x1_equals_per_scale_conv(stride, device):
    layer = SESConv_H_H_1x1(3, 5, stride=stride, num_scales=4).to(device)
    x = torch.randn(2, 3, 4, 6, 7, 5, device=device)
    torch.testing.assert_close(layer(x), ref.conv_1x1(x, layer.weight, layer.bias, stride), **TOL)


@pytest.mark.parametrize("device", DEVICES)
def test_batch_norm_statistics_shared_across_scales(device):
    norm = SEBatchNorm(3).to(device)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    spread = torch.tensor([1.0, 3.0, 0.5], device=device).reshape(1, 3, 1, 1, 1, 1)
    x = torch.randn(2, 3, 4, 5, 6, 7, device=device) * spread + 2.0
    torch.testing.assert_close(norm(x), ref.batch_norm(x, norm.weight, norm.bias), **TOL)
    n = x.numel() / 3
    expected_mean = 0.1 * x.mean(dim=[0, 2, 3, 4, 5])
    expected_var = 0.9 + 0.1 * x.var(dim=[0, 2, 3, 4, 5], unbiased=False) * n / (n - 1)
    torch.testing.assert_close(norm.running_mean, expected_mean, **TOL)
    torch.testing.assert_close(norm.running_var, expected_var, **TOL)
    norm.eval()
    y = norm(x)
    torch.testing.assert_close(
        y, ref.batch_norm(x, norm.weight, norm.bias, mean=norm.running_mean, var=norm.running_var), **TOL
    )


def test_instance_norm_per_sample():
    norm = SEInstanceNorm(2)
    x = torch.randn(3, 2, 4, 5, 5, 5) * 4 + 1
    y = norm(x)
    for b in range(3):
        torch.testing.assert_close(y[b : b + 1], ref.batch_norm(x[b : b + 1], norm.weight, norm.bias), **TOL)


def test_dropout_drops_channel_at_all_scales():
    drop = SEDropout(0.5)
    x = torch.ones(4, 16, 3, 2, 2, 2)
    y = drop(x)
    per_channel = y.flatten(3)  # (B, C, S, DHW)
    dropped = per_channel.amax(dim=(2, 3)) == 0
    assert dropped.any() and (~dropped).any()
    kept_values = per_channel[~dropped]
    torch.testing.assert_close(kept_values, torch.full_like(kept_values, 2.0))  # 1 / (1 - p)
    assert (per_channel[dropped] == 0).all()
    drop.eval()
    assert torch.equal(drop(x), x)


def test_spatial_max_pool_per_scale():
    pool = SESpatialMaxPool(2)
    x = torch.randn(2, 3, 4, 8, 6, 4)
    expected = torch.stack([F.max_pool3d(x[:, :, i], 2) for i in range(4)], dim=2)
    torch.testing.assert_close(pool(x), expected)


@pytest.mark.parametrize(
    "kind,reduce", [("max", lambda x: x.max(2).values), ("mean", lambda x: x.mean(2)), ("avg", lambda x: x.mean(2))]
)
def test_projection(kind, reduce):
    x = torch.randn(2, 3, 4, 5, 5, 5)
    torch.testing.assert_close(SESProjection_H_Z3(kind)(x), reduce(x))


@pytest.mark.parametrize(
    "layer,shape",
    [
        (SESConv_Z3_H(1, 1, scales=[1.0]), (1, 1, 1, 4, 4, 4)),
        (SESConv_H_H(1, 1, scales=[1.0]), (1, 1, 4, 4, 4)),
        (SEBatchNorm(1), (1, 1, 4, 4, 4)),
        (SESProjection_H_Z3(), (1, 1, 4, 4)),
    ],
)
def test_wrong_dimensionality_is_a_clear_error(layer, shape):
    with pytest.raises(ValueError, match=r"expects a \d-D"):
        layer(torch.zeros(shape))


def test_scale_count_mismatch():
    layer = SESConv_H_H(1, 1, scales=[1.0, 0.9])
    with pytest.raises(ValueError, match="2 scales, the input has 3"):
        layer(torch.zeros(1, 1, 3, 4, 4, 4))


def test_paper_parameter_layout():
    lift = SESConv_Z3_H(4, 8, kernel_size=5, effective_size=3, scales=[1.0, 0.9], bias=True)
    group = SESConv_H_H(8, 16, scale_size=2, kernel_size=5, effective_size=3, scales=[1.0, 0.9], bias=True)
    assert lift.weight.shape == (8, 4, 27) and lift.bias.shape == (8,) and lift.basis.shape == (27, 2, 5, 5, 5)
    assert group.weight.shape == (16, 8, 2, 27)
    assert set(lift.state_dict()) == {"weight", "bias", "basis"}
    assert set(SESConv_H_H_1x1(4, 8).state_dict()) == {"weight", "bias"}


@torch.no_grad()
def test_inference_kernel_cache_follows_weight_changes():
    """In inference the expanded kernel is cached; an in-place update, load_state_dict or a dtype change must show."""
    layer = _with_bias(
        SESConv_H_H(2, 3, kernel_size=3, effective_size=2, scales=SCALES, padding=1, bias=True, kernel_padding=False)
    ).eval()
    x = torch.randn(1, 2, len(SCALES), 5, 6, 7)

    def expected():
        return ref.group_conv(x.to(layer.weight.dtype), layer.weight, layer.basis, layer.bias, 1, 1)

    torch.testing.assert_close(layer(x), expected(), **TOL)
    first = layer._kernel()
    assert layer._kernel() is first  # cached while the weights are unchanged
    layer.weight.mul_(-2.0)  # what an optimiser step does: an in-place update
    torch.testing.assert_close(layer(x), expected(), **TOL)
    layer.load_state_dict({k: torch.randn_like(v) if k == "weight" else v for k, v in layer.state_dict().items()})
    torch.testing.assert_close(layer(x), expected(), **TOL)
    layer.double()
    x = x.double()
    torch.testing.assert_close(layer(x), expected(), **TOL)
    with torch.enable_grad():  # training never uses the cache: gradients reach the weights
        layer.train()
        layer(x).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


@torch.no_grad()
def test_the_cached_kernel_is_expanded_in_float32_also_under_autocast():
    """A first call under bfloat16 autocast must not leave a bfloat16-rounded product of weight and basis in the
    cache: the cached kernel is float32, a later float32 call gives the oracle's result, and autocast rounds only
    the finished kernel and the activations."""
    layer = SESConv_H_H(3, 4, kernel_size=5, effective_size=3, scales=SCALES, padding=2, kernel_padding=False).eval()
    x = torch.randn(1, 3, len(SCALES), 12, 12, 12)
    exact = ref.group_conv(x, layer.weight, layer.basis, None, 1, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = layer(x)
    assert layer._kernel_cache is not None and layer._kernel_cache[1].dtype == torch.float32
    torch.testing.assert_close(layer(x), exact, **TOL)  # from the kernel cached under autocast
    rounded = ref.group_conv(x.bfloat16().float(), layer.weight, layer.basis, None, 1, 2)  # the input rounded
    assert half.dtype == torch.bfloat16
    assert (half.float() - rounded).abs().max() < 0.01 * exact.abs().max()  # and the kernel and output, once each
    meta = SESConv_H_H(3, 4, kernel_size=5, effective_size=3, scales=SCALES, padding=2).to("meta").eval()
    assert meta(x.to("meta")).shape == exact.shape  # shape inference on the meta device, which has no autocast


def test_batch_norm_eval_on_channels_last_layout():
    """The SE convolutions emit (B, D, H, W, S, C) memory order; eval batch norm keeps it and stays exact."""
    norm = SEBatchNorm(3).eval()
    for tensor in (norm.weight, norm.bias, norm.running_mean):
        torch.nn.init.normal_(tensor)
    norm.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 4, 5, 6, 3, 3).permute(0, 5, 4, 1, 2, 3)  # (B, C, S, D, H, W) view of that memory order
    y = norm(x)
    expected = ref.batch_norm(x, norm.weight, norm.bias, mean=norm.running_mean, var=norm.running_var)
    torch.testing.assert_close(y, expected, **TOL)
    assert y.stride() == x.stride()


def test_mean_projection_gradient_in_the_convolution_layout():
    """The gradient of the mean projection equals torch's and comes back in (B, D, H, W, S, C) memory order."""
    x = torch.randn(2, 5, 6, 4, 3, 3, dtype=torch.double).permute(0, 5, 4, 1, 2, 3).requires_grad_()
    projection = SESProjection_H_Z3("mean")
    assert torch.autograd.gradcheck(projection, (x,))
    upstream = torch.randn(2, 3, 5, 6, 4, dtype=torch.double)  # a standard-layout gradient, as a loss returns
    (grad,) = torch.autograd.grad(projection(x), x, upstream)
    torch.testing.assert_close(grad, upstream.unsqueeze(2).expand_as(x) / 3)
    assert grad.permute(0, 3, 4, 5, 2, 1).is_contiguous()
