"""Export of the bundle's SEUNet: TorchScript through MONAI's ckpt_export (and the inference config that runs it),
ONNX through se_monai.apps.export, each checked against the eager network."""

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import write_crops

from se_monai.apps import export
from se_monai.workflows import default_bundle_dir, load_bundle_network

BUNDLE = default_bundle_dir()
ATOL = 1e-4  # float32 logits of magnitude ~10; reordered reductions differ by ~1e-5


@pytest.fixture(scope="module")
def eager():
    return load_bundle_network(BUNDLE)


def _outputs_match(module, reference, shape):
    image = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(module(image), reference(image), atol=ATOL, rtol=0)


def test_ckpt_export_torchscript_matches_eager(tmp_path, eager):
    target = tmp_path / "model.ts"
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "ckpt_export",
        "network_def",
        "--filepath",
        str(target),
        "--ckpt_file",
        str(BUNDLE / "models" / "model.pt"),
        "--meta_file",
        str(BUNDLE / "configs" / "metadata.json"),
        "--config_file",
        str(BUNDLE / "configs" / "inference.json"),
        "--bundle_root",
        str(BUNDLE),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    scripted = torch.jit.load(str(target)).eval()
    for shape in [(1, 1, 48, 40, 32), (2, 1, 32, 32, 64)]:
        _outputs_match(scripted, eager, shape)


def test_shipped_torchscript_is_the_shipped_checkpoint(eager):
    scripted = torch.jit.load(str(BUNDLE / "models" / "model.ts")).eval()
    _outputs_match(scripted, eager, (1, 1, 40, 48, 32))


def test_torchscript_inference_config_segments_like_eager(tmp_path):
    """Both runs in float32 (cpu_bf16 off): on CPUs with AMX the bundle autocasts to bfloat16 by default, and the
    two graphs then round differently; bfloat16 against float32 is tested in test_segmentation.py."""
    crops = write_crops(tmp_path / "in")
    labels = {}
    for name, extra in (("eager", []), ("torchscript", ["bundle/configs/inference_torchscript.json"])):
        configs = "[" + ",".join(f"'{c}'" for c in ["bundle/configs/inference.json", *extra]) + "]"
        cmd = [
            sys.executable,
            "-m",
            "monai.bundle",
            "run",
            "--config_file",
            configs,
            "--meta_file",
            "bundle/configs/metadata.json",
            "--bundle_root",
            "bundle",
            "--datalist",
            f"['{crops['ras']}']",
            "--output_dir",
            str(tmp_path / name),
            "--cpu_bf16",
            "False",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=BUNDLE.parent)
        assert done.returncode == 0, done.stderr[-2000:]
        (written,) = (tmp_path / name).glob("*.nii.gz")
        labels[name] = np.asarray(nib.load(str(written)).dataobj)
    assert labels["eager"].shape == nib.load(str(crops["ras"])).shape
    assert set(np.unique(labels["eager"])) == {0, 1, 2, 3}
    assert (labels["torchscript"] == labels["eager"]).mean() > 0.9999


def test_onnx_export_matches_eager_at_several_shapes(tmp_path, eager):
    pytest.importorskip("onnxruntime")
    path = export.export_onnx(tmp_path / "model.onnx", eager, input_shape=(1, 1, 32, 32, 32))
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no staging left behind
    for shape in [(1, 1, 32, 32, 32), (2, 1, 48, 40, 64), (1, 1, 96, 96, 96)]:  # dynamic batch and spatial sizes
        assert export.check_onnx(path, eager, shape) < ATOL


def test_onnx_export_rejects_bad_requests(tmp_path, eager):
    with pytest.raises(ValueError, match=r"must end in \.onnx"):
        export.export_onnx(tmp_path / "model.pt", eager)
    with pytest.raises(ValueError, match="multiples of 8"):
        export.export_onnx(tmp_path / "model.onnx", eager, input_shape=(1, 1, 30, 32, 32))
    assert not list(tmp_path.iterdir())
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_bundle_network(BUNDLE, tmp_path / "missing.pt")
