"""SEUNet and the shipped model on every device (tests/devices.py): the CPU in the default suite, CUDA when a GPU is
there (``pytest -m cuda``, run by ``.ci/cuda_check.sh``). On CUDA the general path runs (the CPU-only inference
forms do not), so it is checked against the reference formulation and against the CPU's results."""

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from devices import DEVICES
from helpers import write_crops, write_msd_dataset
from monai.inferers import SlidingWindowInferer

from se_monai.networks import SEUNet
from se_monai.reference import reference_model
from se_monai.workflows import default_bundle_dir, load_bundle_network

BUNDLE = default_bundle_dir()
SMALL = {"channels": (4, 8, 8), "strides": (2, 2), "kernel_size": 3, "up_kernel_size": 3}
#: float32 against float32 on another device or another formulation (sums in another order)
TOL = {"rtol": 1e-4, "atol": 1e-4}


def _small(basis_type: str, seed: int = 0) -> SEUNet:
    torch.manual_seed(seed)
    net = SEUNet(in_channels=1, out_channels=3, basis_type=basis_type, scale_size=2, **SMALL)
    for module in net.modules():  # batch-norm statistics and affine maps away from their initial values
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            torch.nn.init.normal_(module.weight, 1.0, 0.2)
    return net


def _smooth_input(seed: int = 0, shape=(2, 1, 16, 24, 16)) -> torch.Tensor:
    field = torch.randn(*shape[:2], *(s + 4 for s in shape[2:]), generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.avg_pool3d(field, 5, stride=1) * 3


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("basis_type", ["multi", "disco"])
@pytest.mark.parametrize("training", [False, True])
def test_seunet_equals_its_reference_formulation(device, basis_type, training):
    """The whole network (lifting, group, strided, transposed, 1x1 convolutions, batch norm, projection) against
    the same weights in the reference formulation, on the device, in training and in inference."""
    net = _small(basis_type).to(device).train(training)
    oracle = reference_model(net).to(device).train(training)
    x = _smooth_input().to(device)
    with torch.set_grad_enabled(training):
        torch.testing.assert_close(net(x), oracle(x), **TOL)


@pytest.mark.parametrize("device", DEVICES)
def test_a_training_step_gives_the_cpus_loss_and_gradients(device):
    x, labels = _smooth_input(1), (_smooth_input(2)[:, 0] > 0).long()
    results = {}
    for where in ("cpu", device):
        net = _small("disco").to(where).train()
        loss = torch.nn.functional.cross_entropy(net(x.to(where)), labels.to(where))
        loss.backward()
        results[where] = (loss.detach().cpu(), {n: p.grad.cpu() for n, p in net.named_parameters()})
    (loss, grads), (cpu_loss, cpu_grads) = results[device], results["cpu"]
    torch.testing.assert_close(loss, cpu_loss, rtol=1e-5, atol=1e-6)
    assert grads.keys() == cpu_grads.keys() and all(g.abs().sum() > 0 for g in grads.values())
    for name in grads:
        torch.testing.assert_close(grads[name], cpu_grads[name], rtol=1e-3, atol=1e-5, msg=name)


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    """A 64 x 72 x 56 crop of the real ICBM152 T1, z-scored over its brain as the bundle normalises: (1, 1, D, H, W)."""
    image = np.asarray(nib.load(str(write_crops(tmp_path_factory.mktemp("crop"))["ras"])).dataobj, np.float32)
    brain = image[image > 0]
    return torch.from_numpy((image - brain.mean()) / brain.std())[None, None]


@pytest.fixture(scope="module")
def shipped():
    return load_bundle_network(BUNDLE).eval()


def _labels(net, image, device, **autocast):
    inferer = SlidingWindowInferer(roi_size=(48, 48, 48), sw_batch_size=2, overlap=0.25)
    with torch.no_grad(), torch.autocast(torch.device(device).type, **autocast):
        probabilities = torch.softmax(inferer(image.to(device), net.to(device)).float(), 1)
    return probabilities.cpu()


@pytest.mark.parametrize("device", DEVICES)
def test_sliding_window_labels_of_a_real_crop_equal_the_cpus(device, crop, shipped):
    cpu = _labels(shipped, crop, "cpu", enabled=False)
    here = _labels(shipped, crop, device, enabled=False)
    torch.testing.assert_close(here, cpu, rtol=0, atol=1e-4)
    same = (here.argmax(1) == cpu.argmax(1)).float().mean().item()
    assert same >= 1 - 1e-5, same  # at most a near-tie voxel in 10^5 may round to the other class
    assert set(cpu.argmax(1).unique().tolist()) == {0, 1, 2, 3}


#: Mixed precision against float32 on the real crop: the largest probability difference and the share of voxels
#: whose label changes, about 5x what the CPU gave on 2026-12-05 (float16 0.0045 and 0.012 %, bfloat16 0.018 and
#: 0.10 %; the rounding of 11 and 8 significant bits through the network's 18 convolutions).
AMP_TOLERANCE = {torch.float16: (0.025, 0.001), torch.bfloat16: (0.1, 0.005)}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_mixed_precision_stays_within_its_tolerance(device, dtype, crop, shipped):
    if device == "cpu" and dtype == torch.float16:
        pytest.skip(
            "float16 convolutions have no fast CPU kernels (20 s here): measured for the tolerance, run on CUDA"
        )
    exact = _labels(shipped, crop, device, enabled=False)
    mixed = _labels(shipped, crop, device, enabled=True, dtype=dtype)
    largest, changed = AMP_TOLERANCE[dtype]
    assert (mixed - exact).abs().max().item() < largest
    assert (mixed.argmax(1) != exact.argmax(1)).float().mean().item() < changed
    assert (mixed - exact).abs().max().item() > 0  # autocast took effect


@pytest.mark.parametrize("device", DEVICES)
def test_the_shipped_torchscript_model_runs_like_eager(device, shipped):
    scripted = torch.jit.load(str(BUNDLE / "models" / "model.ts"), map_location=device).eval()
    image = _smooth_input(3, (1, 1, 40, 48, 32)).to(device)
    with torch.no_grad():
        torch.testing.assert_close(scripted(image), shipped.to(device)(image), **TOL)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_one_process_nccl_training_with_torchrun(tmp_path):
    """The bundle's multi-GPU training (NCCL) with one process, as a user with one GPU starts it."""
    assert torch.distributed.is_nccl_available()  # multi_gpu_train.json takes NCCL wherever CUDA is
    dataset = write_msd_dataset(tmp_path / "data", ["MRI"], ["background", "box"], shape=(32, 32, 32), train=2, test=0)
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    args += ["-m", "monai.bundle", "run", "--meta_file", str(BUNDLE / "configs" / "metadata.json")]
    configs = [str(BUNDLE / "configs" / name) for name in ("train.json", "multi_gpu_train.json")]
    args += ["--config_file", json.dumps(configs), "--bundle_root", str(BUNDLE), "--dataset_dir", str(dataset)]
    short = {"epochs": 2, "patch_size": [16, 16, 16], "num_workers": 0, "val_interval": 1, "num_val": 1}
    short |= {"ckpt_dir": str(tmp_path / "models"), "output_dir": str(tmp_path / "eval")}
    for key, value in short.items():
        args += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-3000:]
    weights = torch.load(tmp_path / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
