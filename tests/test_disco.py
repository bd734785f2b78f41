"""The optimised (disco) bases: shipped files, determinism, caching, dilation, and use in layers and SEUNet."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from se_monai.bases import disco, steerable_basis, store
from se_monai.networks import SEUNet

PAPER_SCALES = [0.9**i for i in range(4)]


@pytest.mark.parametrize("kernel_size", [5, 9])
def test_shipped_bases_exist_for_the_default_configurations(kernel_size):
    name = disco.basis_filename(kernel_size, 3, PAPER_SCALES, "cubic")
    assert (store.PACKAGED_DIR / name).is_file()
    basis = steerable_basis(kernel_size, PAPER_SCALES, 3, "disco")
    assert basis.shape == (27, 4, kernel_size, kernel_size, kernel_size) and basis.dtype == torch.float32
    torch.testing.assert_close(basis[:, 0].square().sum(dim=(1, 2, 3)), torch.ones(27))  # unit norm at scale 0


def test_fit_is_deterministic_and_equals_the_shipped_basis():
    shipped = steerable_basis(5, PAPER_SCALES, 3, "disco")
    fitted = disco.fit_disco_basis(5, PAPER_SCALES, 3)
    torch.testing.assert_close(fitted, shipped, rtol=1e-4, atol=1e-5)


def test_smallest_scale_keeps_the_hermite_functions_on_its_padded_support():
    basis = disco.fit_disco_basis(5, PAPER_SCALES, 3)
    hermite = steerable_basis(5, PAPER_SCALES, 3, "single", kernel_padding=True)
    smallest = basis[:, 3] / basis[:, 3].flatten(1).norm(dim=1)[:, None, None, None]
    expected = hermite[:, 3] / hermite[:, 3].flatten(1).norm(dim=1)[:, None, None, None]
    torch.testing.assert_close(smallest, expected, rtol=1e-4, atol=1e-6)
    assert smallest[:, 0].abs().max() == 0  # support 3 of 5 at sigma 0.729: the outer shell is zero


def test_integer_multiple_is_the_exact_dilation():
    basis = disco.fit_disco_basis(9, [1.0, 2.0], 3)  # no free scale: nothing to fit
    small, large = basis[:, 0], basis[:, 1]
    core = small[:, 2:7, 2:7, 2:7]  # support int(9 / 2) // 2 * 2 + 1 = 5 at scale 1
    torch.testing.assert_close(large[:, ::2, ::2, ::2], core)
    mask = torch.zeros(9, 9, 9, dtype=torch.bool)
    mask[::2, ::2, ::2] = True
    assert large[:, ~mask].abs().max() == 0


def test_fitted_on_first_use_then_cached(tmp_path, monkeypatch):
    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path))
    scales = [1.0, 0.95]  # a configuration nobody ships
    basis = disco.disco_basis(3, scales, 2, progress=False)
    path = tmp_path / disco.basis_filename(3, 2, scales, "cubic")
    assert path.is_file() and basis.shape == (8, 2, 3, 3, 3)
    with np.load(path) as data:
        np.testing.assert_array_equal(data["basis"], basis.numpy())
    disco._cached.cache_clear()
    calls = []
    monkeypatch.setattr(disco, "fit_disco_basis", lambda *a, **k: calls.append(a))
    torch.testing.assert_close(disco.disco_basis(3, scales, 2), basis)  # read from the cache, not fitted again
    assert calls == []


def test_unwritable_cache_warns_and_still_returns(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(store.CACHE_ENV, str(blocker / "bases"))
    disco._cached.cache_clear()
    with pytest.warns(UserWarning, match="could not cache"):
        basis = disco.disco_basis(3, [1.0, 0.97], 2, progress=False)
    assert torch.isfinite(basis).all()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"kernel_size": 4}, "odd kernel_size"),
        ({"effective_size": 4}, "effective_size 4"),
        ({"scales": [1.0, -1.0]}, "positive"),
    ],
)
def test_bad_configurations_are_clear_errors(kwargs, message):
    args = {"kernel_size": 5, "scales": PAPER_SCALES, "effective_size": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        disco.disco_basis(**args)


def test_seunet_with_the_disco_basis_trains():
    net = SEUNet(in_channels=1, out_channels=2, channels=(4, 8), strides=(2,), basis_type="disco")
    x = torch.randn(2, 1, 16, 16, 16)
    loss = torch.nn.functional.cross_entropy(net(x), (x[:, 0] > 0).long())
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_cli_fit_basis_and_equivariance_errors(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "se_monai.cli",
            "fit-basis",
            "--kernel_size",
            "3",
            "--effective_size",
            "2",
            "--scales",
            "[1,0.9]",
            "--output_dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / disco.basis_filename(3, 2, [1.0, 0.9], "cubic")).is_file()
    bad = subprocess.run(
        [sys.executable, "-m", "se_monai.cli", "equivariance", "--factors", "0.8", "--network", "False"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not ratio**k" in bad.stderr
