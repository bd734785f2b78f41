"""se-monai bench: structure and sanity of the measurements, on tiny sizes."""

import json
import subprocess
import sys

import torch
from test_cli import run_cli

from se_monai.apps import bench
from se_monai.networks import SEUNet


def test_models_and_ratios_tiny():
    report = bench.run(size=16, repeats=1, threads=2, layers=True, volume=False)
    models = report["models"]
    assert set(models) == {"SEUNet", "SEUNet reference", "UNet baseline"}
    assert models["SEUNet"]["params"] == models["SEUNet reference"]["params"]
    assert 5.3e6 < models["UNet baseline"]["params"] < 5.6e6  # the paper's baseline: about 5.5 M
    for m in models.values():
        assert m["forward_s"] > 0 and m["train_step_s"] > 0
        assert m["peak_mb"] is None or m["peak_mb"] > 0
    se, ref = models["SEUNet"], models["SEUNet reference"]
    assert report["ratios"]["forward reference / SEUNet"] == ref["forward_s"] / se["forward_s"]
    assert "SESConv_H_H" in report["layers"] and report["layers"]["whole network"] > 0
    text = bench.format_table(report)
    assert "SEUNet reference" in text and "ratios" in text


def test_volume_inference_keeps_shape_and_reports_memory():
    result = bench.benchmark_volume(roi_size=16, image=torch.randn(20, 24, 18))
    assert result["shape"] == [20, 24, 18] and result["seconds"] > 0


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


def test_autocast_row_computes_the_same_segmentation():
    report = bench.run(size=16, repeats=1, threads=2, layers=False, volume=False, amp=True, memory=False)
    assert "SEUNet autocast bf16" in report["models"]
    assert report["ratios"]["train_step SEUNet / SEUNet autocast bf16"] > 0
    se = SEUNet(in_channels=4, out_channels=3).eval()
    x = torch.randn(1, 4, 16, 16, 16)
    with torch.no_grad():
        full, half = se(x), bench.Autocast(se, "cpu")(x)
    assert half.dtype == torch.float32
    assert (full.argmax(1) == half.argmax(1)).float().mean() > 0.95  # bfloat16 rounding flips few voxels
