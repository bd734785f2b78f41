"""Your data, your bundle: training on an MSD-layout dataset makes a bundle of its own, which segments, evaluates and
runs through monai.bundle with no architecture override; the shipped bundle is never written."""

import hashlib
import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from helpers import write_msd_dataset
from test_cli import run_cli

from se_monai.workflows import SHIPPED_BUNDLE

#: A run of one epoch with validation (so models/model.pt is written), without worker processes.
SHORT = ["--epochs", "1", "--val_interval", "1", "--num_workers", "0", "--num_samples", "1"]


def shipped_digest() -> str:
    return hashlib.sha256((SHIPPED_BUNDLE / "models" / "model.pt").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def digest_before():
    return shipped_digest()


@pytest.mark.parametrize(
    "modalities,labels",
    [(["MRI"], ["background", "left", "right"]), (["FLAIR", "T1w", "t1gd", "T2w"], ["bg", "edema", "core", "enh"])],
    ids=["3-D small volumes", "4-D four channels"],
)
def test_train_a_new_bundle_then_segment_evaluate_and_run_it(tmp_path, modalities, labels, digest_before):
    dataset = write_msd_dataset(tmp_path / "Task99_Synthetic", modalities, labels)
    bundle = tmp_path / "my_bundle"
    done = run_cli("train", "--dataset_dir", str(dataset), "--bundle_dir", str(bundle), *SHORT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (bundle / "models" / "model.pt").is_file()
    for name in ("train.json", "inference.json"):
        config = json.loads((bundle / "configs" / name).read_text())
        assert config["in_channels"] == len(modalities) and config["num_classes"] == len(labels)
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    image, pred = meta["network_data_format"]["inputs"]["image"], meta["network_data_format"]["outputs"]["pred"]
    assert image["num_channels"] == len(modalities) and list(image["channel_def"].values()) == modalities
    assert pred["num_channels"] == len(labels) and list(pred["channel_def"].values()) == labels
    assert "Synthetic" in meta["data_source"] and meta["changelog"]

    scan = dataset / "imagesTs" / "case_003.nii.gz"
    out = tmp_path / "case_003_seg.nii.gz"
    done = run_cli("segment", str(scan), str(out), "--bundle_dir", str(bundle), "--progress", "False")
    assert done.returncode == 0, done.stderr[-3000:]
    seg = nib.load(str(out))
    assert seg.shape == nib.load(str(scan)).shape[:3] and set(np.unique(np.asarray(seg.dataobj))) <= set(range(7))

    done = run_cli("evaluate", "--dataset_dir", str(dataset), "--bundle_dir", str(bundle), "--num_workers", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    with open(bundle / "eval" / "val_mean_dice_raw.csv") as handle:
        header = handle.readline().strip().split(",")
    assert header == ["filename", *[f"class{k}" for k in range(len(labels) - 1)], "mean"]

    command = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        "configs/inference.json",
        "--dataset_dir",
        str(dataset),
        "--output_dir",
        str(tmp_path / "labels"),
    ]
    done = subprocess.run(command, cwd=bundle, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.name for p in (tmp_path / "labels").iterdir()] == ["case_003_seg.nii.gz"]
    assert shipped_digest() == digest_before


def test_a_wrong_channel_count_is_one_line_naming_both(tmp_path):
    dataset = write_msd_dataset(tmp_path / "four", ["a", "b", "c", "d"], ["bg", "fg"], train=2, test=0)
    bundle = tmp_path / "bundle4"
    assert run_cli("train", "--dataset_dir", str(dataset), "--bundle_dir", str(bundle), *SHORT).returncode == 0
    three_d = write_msd_dataset(tmp_path / "one", ["a"], ["bg", "fg"], train=1, test=0) / "imagesTr" / "case_000.nii.gz"
    done = run_cli("segment", str(three_d), str(tmp_path / "seg.nii.gz"), "--bundle_dir", str(bundle))
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"se-monai: error: {three_d}: has 1 channel, the model expects 4"
    ]
    done = run_cli("train", "--dataset_dir", str(tmp_path / "one"), "--bundle_dir", str(bundle))
    assert done.returncode == 2 and "made for in_channels 4" in done.stderr and "has 1" in done.stderr


def test_training_never_writes_the_shipped_bundle(tmp_path, digest_before):
    dataset = write_msd_dataset(tmp_path / "d", ["MRI"], ["bg", "fg"], train=2, test=0)
    done = run_cli("train", "--dataset_dir", str(dataset))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "--bundle_dir" in done.stderr
    done = run_cli("train", "--dataset_dir", str(dataset), "--bundle_dir", str(SHIPPED_BUNDLE))
    assert done.returncode == 2 and "train into a bundle of your own" in done.stderr
    assert shipped_digest() == digest_before
