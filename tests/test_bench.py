"""se-monai bench: structure and sanity of the measurements, on tiny sizes."""

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from test_cli import run_cli
from torch.utils.flop_counter import FlopCounterMode

from se_monai.apps import bench
from se_monai.apps.compute import convolution_calls, convolution_share, multiply_adds
from se_monai.apps.paper_formulation import paper_model
from se_monai.data import icbm152_paths
from se_monai.inferers import AutocastNetwork, cpu_bf16_preferred
from se_monai.networks import SEUNet, paper_baseline_unet
from se_monai.reference import reference_model
from se_monai.workflows import bundle_preprocess


def test_models_and_ratios_tiny():
    report = bench.run(size=16, repeats=1, threads=2, layers=True, volume=False)
    models = report["models"]
    assert set(models) == {"SEUNet", "SEUNet paper formulation", "SEUNet reference", "UNet baseline"}
    assert models["SEUNet"]["params"] == models["SEUNet reference"]["params"]
    assert models["SEUNet"]["macs_per_voxel"] == models["SEUNet paper formulation"]["macs_per_voxel"] > 0
    assert 5.3e6 < models["UNet baseline"]["params"] < 5.6e6  # the paper's baseline: about 5.5 M
    for m in models.values():
        assert m["forward_s"] > 0 and m["train_step_s"] > 0
        assert m["peak_mb"] is None or m["peak_mb"] > 0
    se, ref = models["SEUNet"], models["SEUNet reference"]
    assert report["ratios"]["forward reference / SEUNet"] == ref["forward_s"] / se["forward_s"]
    paper = models["SEUNet paper formulation"]
    assert report["ratios"]["forward paper formulation / SEUNet"] == paper["forward_s"] / se["forward_s"]
    assert se["forward_gflops"] == pytest.approx(2 * se["macs_per_voxel"] * 16**3 / se["forward_s"] / 1e9)
    assert report["dense_conv3d"]["gflops"] > 0
    assert "SESConv_H_H + norm + act" in report["layers"] and report["layers"]["whole network"] > 0
    text = bench.format_table(report)
    assert "SEUNet reference" in text and "SEUNet paper formulation" in text and "dense conv3d" in text
    share = report["convolutions"]
    assert set(share) == {"SEUNet", "UNet baseline"} and all(v > 0 for t in share.values() for v in t.values())
    assert "SEUNet convolutions / UNet baseline forward" in text


def test_volume_inference_keeps_shape_and_reports_memory():
    result = bench.benchmark_volume(roi_size=16, image=torch.randn(20, 24, 18))
    assert result["shape"] == [20, 24, 18] and result["seconds"] > 0
    assert result["precision"] == ("bfloat16" if cpu_bf16_preferred("cpu") else "float32")  # as the bundle runs
    for autocast, precision in ((False, "float32"), (True, "bfloat16")):
        result = bench.benchmark_volume(roi_size=16, image=torch.randn(20, 24, 18), autocast=autocast)
        assert result["precision"] == precision


def test_whole_volume_input_is_the_bundles_preprocessing_of_the_t1():
    """The volume the bench times is what the shipped inference.json gives its inferer for the ICBM152 T1 at the
    training spacing (magnification 1): the non-zero voxels' bounding box plus a 4-voxel margin (CropForegroundd),
    z-scored over the non-zero voxels; at the shipped magnification, 1.6 times as many voxels along each axis."""
    t1 = nib.load(str(icbm152_paths()["t1"]))  # 1 mm, RAS: no resampling, no reorientation
    assert np.allclose(nib.affines.voxel_sizes(t1.affine), 1) and nib.aff2axcodes(t1.affine) == ("R", "A", "S")
    data = np.asarray(t1.dataobj)
    nonzero = np.argwhere(data != 0)
    low, high = np.maximum(nonzero.min(0) - 4, 0), np.minimum(nonzero.max(0) + 5, data.shape)
    image = bundle_preprocess(icbm152_paths()["t1"], magnification=1.0)
    assert list(image.shape) == [1, *(high - low)]
    magnified = bundle_preprocess(icbm152_paths()["t1"]).shape[1:]
    # 1.6 times the voxels along each axis, less the 4-voxel margin, which stays 4 voxels (242 x 299 x 252 measured)
    assert all(1.55 < m / n < 1.6 for m, n in zip(magnified, high - low, strict=True)), magnified
    crop = data[tuple(slice(a, b) for a, b in zip(low, high, strict=True))]
    expected = np.where(crop != 0, (crop - crop[crop != 0].mean()) / crop[crop != 0].std(), 0)
    assert np.abs(image[0].numpy() - expected).max() < 1e-4


def test_cli_json_and_bad_size():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "se_monai.cli",
            "bench",
            "--size",
            "16",
            "--repeats",
            "1",
            "--layers",
            "False",
            "--volume",
            "False",
            "--memory",
            "False",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["config"]["size"] == 16 and "ratios" in report
    assert all(m["peak_mb"] is None for m in report["models"].values())  # --memory False: no fresh processes
    bad = run_cli("bench", "--size", "30")
    assert bad.returncode == 2 and "divisible by 8" in bad.stderr
    bad = run_cli("bench", "--basis_type", "hermite")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "se-monai: error: --basis_type hermite: expected one of single, multi, disco"
    ]


def test_the_shipped_basis_is_benchmarked_on_request():
    report = bench.run(size=16, repeats=1, threads=2, layers=False, volume=False, memory=False, basis_type="disco")
    assert report["config"]["basis_type"] == "disco" and "basis disco" in bench.format_table(report)
    assert (
        report["models"]["SEUNet"]["macs_per_voxel"]
        == bench.run(size=16, repeats=1, threads=2, layers=False, volume=False, memory=False)["models"]["SEUNet"][
            "macs_per_voxel"
        ]
    )  # the basis changes the kernel values, not the computation


def test_autocast_row_computes_the_same_segmentation():
    report = bench.run(size=16, repeats=1, threads=2, layers=False, volume=False, amp=True, memory=False)
    assert "SEUNet autocast bf16" in report["models"]
    assert report["ratios"]["train_step SEUNet / SEUNet autocast bf16"] > 0
    unet = report["models"]["UNet baseline autocast bf16"]["forward_s"]
    ratio = report["ratios"]["forward SEUNet autocast bf16 / UNet baseline autocast bf16"]
    assert ratio == report["models"]["SEUNet autocast bf16"]["forward_s"] / unet
    rows = [line.split() for line in bench.format_table(report).splitlines() if line.startswith("UNet baseline auto")]
    assert len(rows) == 1 and rows[0][:4] == ["UNet", "baseline", "autocast", "bf16"]  # the name keeps its own column
    se = SEUNet(in_channels=4, out_channels=3).eval()
    x = torch.randn(1, 4, 16, 16, 16)
    with torch.no_grad():
        full, half = se(x), AutocastNetwork(se, "cpu")(x)
    assert half.dtype == torch.float32
    assert (full.argmax(1) == half.argmax(1)).float().mean() > 0.95  # bfloat16 rounding flips few voxels


@pytest.mark.parametrize("kwargs", [{}, {"basis_type": "disco"}, {"scale_size": 2}, {"basis_type": "single"}])
def test_paper_formulation_computes_what_seunet_and_the_reference_compute(kwargs):
    """Every layer kind of SEUNet (lifting, strided and transposed group convolutions, 1x1x1, batch norm), in
    training (batch statistics, running estimates updated) and evaluation."""
    torch.manual_seed(0)
    se = SEUNet(in_channels=2, out_channels=3, **kwargs)
    paper, ref = paper_model(se), reference_model(se)
    assert {type(m).__name__ for m in paper.modules()} >= {"_Paper1x1", "_PaperBatchNorm", "_ReferenceGroup"}
    x = torch.randn(2, 2, 16, 16, 16)
    for mode in ("train", "eval"):
        outputs = [getattr(net, mode)()(x) for net in (se, paper, ref)]
        torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=2e-5)
        torch.testing.assert_close(outputs[1], outputs[2], rtol=1e-4, atol=2e-5)
    for key, value in se.state_dict().items():  # the running estimates moved alike
        torch.testing.assert_close(paper.state_dict()[key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["SEUNet", "SEUNet scale_size 2", "UNet baseline"])
def test_multiply_adds_are_those_torch_counts_in_the_convolutions(name):
    """The analytic count against torch's FLOP counter on the reference formulation (plain conv3d calls, grouped
    over the scales; 2 FLOP per multiply-add)."""
    net = {
        "SEUNet": lambda: SEUNet(in_channels=4, out_channels=3),
        "SEUNet scale_size 2": lambda: SEUNet(in_channels=4, out_channels=3, scale_size=2),
        "UNet baseline": lambda: paper_baseline_unet(3, 4, 3),
    }[name]()
    x = torch.randn(1, 4, 16, 16, 16)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        reference_model(net).eval()(x)
    conv_flops = sum(v for op, v in counter.get_flop_counts()["Global"].items() if "convolution" in str(op))
    assert multiply_adds(net, x) * 16**3 == conv_flops / 2 > 0


def test_the_recorded_convolutions_are_the_forward_pass_s_own():
    """The calls that the "convolutions alone" line replays: one per convolution, with the very arguments, so that
    replayed they give the layers' outputs; for SEUNet's fast inference paths too (oneDNN's operator called
    directly), the output block's four per-scale pairs among them."""
    net = torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 3, 1))
    x = torch.randn(1, 2, 8, 8, 8)
    calls = convolution_calls(net, x)
    assert len(calls) == 2
    (func, args, kwargs), _ = calls
    with torch.no_grad():
        torch.testing.assert_close(func(*args, **kwargs), net[0](x), rtol=0, atol=0)
    se = SEUNet(in_channels=4, out_channels=3, basis_type="disco")
    names = [func.__name__ for func, _, _ in convolution_calls(se, torch.randn(1, 4, 16, 16, 16))]
    assert sum(n.startswith("mkldnn_convolution") for n in names) >= 8 and all("convolution" in n for n in names)
    share = convolution_share({"net": net}, x, repeats=2)["net"]
    assert share["forward_s"] > 0 and share["convolutions_s"] > 0
