"""SEUNet: MONAI UNet topology on the scale-translation group."""

import warnings

import pytest
import torch
from monai.bundle import ConfigParser
from monai.inferers import SlidingWindowInferer

from se_monai.layers import SESConv_H_H, SESConv_Z3_H, SESProjection_H_Z3
from se_monai.networks import SEUNet

SMALL = {"channels": (4, 8, 8), "strides": (2, 2), "kernel_size": 3, "up_kernel_size": 3}


@pytest.mark.parametrize("preset,basis", [("default", "multi"), ("equivariant", "disco")])
def test_paper_configuration(preset, basis):
    net = (SEUNet.equivariant if preset == "equivariant" else SEUNet)(in_channels=4, out_channels=1)
    n = sum(p.numel() for p in net.parameters())
    assert 70_000 < n < 80_000, n  # the paper: about 75 k parameters
    lifts = [m for m in net.modules() if isinstance(m, SESConv_Z3_H)]
    groups = [m for m in net.modules() if isinstance(m, SESConv_H_H)]
    assert len(lifts) == 2  # first subunit and residual path of the top down block
    assert all(m.basis_type == basis and m.kernel_size == 5 and m.effective_size == 3 for m in lifts + groups)
    assert lifts[0].scales == pytest.approx([1.0, 0.9, 0.81, 0.729])
    assert sum(m.transposed for m in groups) == 3
    assert isinstance(net.model[2][-1], SESProjection_H_Z3)


@pytest.mark.parametrize("shape", [(16, 16, 16), (24, 16, 32), (8, 40, 16)])
def test_any_size_divisible_by_strides(shape):
    net = SEUNet(in_channels=1, out_channels=3, **SMALL).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 1, *shape)).shape == (2, 3, *shape)


def test_paper_default_runs_and_trains():
    net = SEUNet(in_channels=1, out_channels=2)
    x = torch.nn.functional.avg_pool3d(torch.randn(2, 1, 20, 20, 20), 5, stride=1)[..., :16, :16, :16] * 3
    y = (x[:, 0] > 0).long()  # learnable: the sign of a smooth field
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_res_units": 0},
        {"projection": "max", "norm": "instance", "dropout": 0.1},
        {"basis_type": "single", "scale_size": 2, "act": "relu"},
        {"norm": ("batch", {"momentum": 0.2}), "act": ("leakyrelu", {"negative_slope": 0.1}), "bias": False},
    ],
)
def test_variants(kwargs):
    net = SEUNet(in_channels=2, out_channels=3, **{**SMALL, **kwargs})
    assert net(torch.randn(2, 2, 16, 16, 16)).shape == (2, 3, 16, 16, 16)


def test_sliding_window_inference_on_uneven_volume():
    net = SEUNet(in_channels=1, out_channels=3, **SMALL).eval()
    inferer = SlidingWindowInferer(roi_size=(16, 16, 16), sw_batch_size=2, overlap=0.25)
    with torch.no_grad():
        out = inferer(torch.randn(1, 1, 37, 29, 22), net)
    assert out.shape == (1, 3, 37, 29, 22) and torch.isfinite(out).all()


def test_torchscript_and_trace_match_eager():
    net = SEUNet(in_channels=1, out_channels=2, **SMALL).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = net(x)
        torch.testing.assert_close(torch.jit.script(net)(x), expected)
        torch.testing.assert_close(torch.jit.trace(net, x)(x), expected)


def test_bundle_target():
    parser = ConfigParser(
        {
            "net": {
                "_target_": "se_monai.networks.SEUNet",
                "in_channels": 1,
                "out_channels": 3,
                "channels": [4, 8],
                "strides": [2],
                "projection": "avg",
            }
        }
    )
    net = parser.get_parsed_content("net")
    assert isinstance(net, SEUNet) and net(torch.randn(1, 1, 8, 8, 8)).shape == (1, 3, 8, 8, 8)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"spatial_dims": 2}, "3-D only"),
        ({"channels": (4,)}, "channels"),
        ({"channels": (4, 8, 16), "strides": (2,)}, "strides"),
        ({"projection": "median"}, "projection"),
        ({"basis_type": "fourier"}, "basis_type"),
    ],
)
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SEUNet(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"basis_type": "single", "scale_size": 2, "projection": "max"},
        {"kernel_size": 5, "up_kernel_size": 5, "channels": (4, 4, 8)},  # the blocked (space-to-depth) convolutions
    ],
)
def test_whole_network_equals_reference_formulation(kwargs):
    """SEUNet against a copy computing every SE layer with the straightforward formulation (train and eval)."""
    from se_monai.reference import reference_model

    net = SEUNet(in_channels=2, out_channels=3, **{**SMALL, **kwargs})
    ref = reference_model(net)
    x = torch.randn(2, 2, 16, 16, 16)
    out, expected = net(x), ref(x)  # train mode: batch statistics, running statistics updated
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    grads = torch.autograd.grad(out.square().sum(), list(net.parameters()))
    expected_grads = torch.autograd.grad(expected.square().sum(), list(ref.parameters()))
    scale = max(e.abs().max().item() for e in expected_grads)
    for g, e in zip(
        grads, expected_grads, strict=True
    ):  # biases before batch norms have ~0 gradient: compare on a common scale
        assert (g - e).abs().max().item() <= 1e-3 * scale
    for (name, b), (_, e) in zip(net.named_buffers(), ref.named_buffers(), strict=True):
        torch.testing.assert_close(b, e, rtol=1e-4, atol=1e-5, msg=name)
    net.eval(), ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x), rtol=1e-4, atol=1e-4)


def test_max_order_and_mult_reach_every_layer():
    from se_monai.bases import steerable_basis

    net = SEUNet(in_channels=1, out_channels=2, basis_type="multi", max_order=2, mult=1.5, **SMALL)
    convs = [m for m in net.modules() if isinstance(m, (SESConv_Z3_H, SESConv_H_H))]
    expected = steerable_basis(3, net.scales, 3, "multi", False, max_order=2, mult=1.5)
    assert len(convs) > 5 and all(torch.equal(m.basis, expected) for m in convs)
    assert not torch.equal(expected, steerable_basis(3, net.scales, 3, "multi", False))


def test_activations_by_name_without_touching_monais_factory():
    from monai.networks.layers.factories import Act

    silu = SEUNet(in_channels=1, out_channels=2, act="silu", **SMALL)
    assert any(isinstance(m, torch.nn.SiLU) for m in silu.modules())
    assert "SILU" not in Act.names  # importing se_monai registers nothing in MONAI's global factories
    relu = SEUNet(in_channels=1, out_channels=2, act=("leakyrelu", {"negative_slope": 0.2}), **SMALL)
    slopes = {m.negative_slope for m in relu.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.2}
