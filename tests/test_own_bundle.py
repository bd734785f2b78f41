"""Your data, your bundle: training on an MSD-layout dataset makes a bundle of its own, which segments, evaluates and
runs through monai.bundle with no architecture override; the shipped bundle is never written."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import write_msd_dataset
from monai.bundle import ConfigParser
from test_cli import run_cli

from se_monai.bundles import create_bundle, record_network_overrides
from se_monai.io import InputError
from se_monai.workflows import SHIPPED_BUNDLE

#: A run of one epoch with validation (so models/model.pt is written), without worker processes.
SHORT = [
    "--epochs",
    "1",
    "--val_interval",
    "1",
    "--num_workers",
    "0",
    "--num_samples",
    "1",
    "--bn_recalibration_batches",
    "4",
]


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
    # (inference.json) the brain-size rule and the inference magnification are the shipped model's only
    assert config["min_relative_size"] == 0.0 and config["magnification"] == 1.0
    assert config["brain_extraction"] == "never"  # the shipped model's head handling is not theirs
    assert config["intensity_refinement"] is False  # nor its brain-tissue intensity model
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
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"val_mean_dice: [01]\.\d{4}", lines[0]) and lines[-1].startswith("metrics written to ")
    with open(bundle / "eval" / "val_mean_dice_raw.csv") as handle:
        header = handle.readline().strip().split(",")
    assert header == ["filename", *[f"class{k}" for k in range(len(labels) - 1)], "mean"]
    table = json.loads((bundle / "eval" / "statistics.json").read_text())[str(scan)]
    assert list(table) == labels  # the dataset's class names, one mean intensity per channel
    means = [c["mean_intensity"] for c in table.values() if c["voxels"]]
    assert means and all(isinstance(m, float) if len(modalities) == 1 else len(m) == len(modalities) for m in means)

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
    from monai.bundle import verify_net_in_out  # the model zoo's check of metadata against the network

    configs = bundle / "configs"
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(configs / "metadata.json"),
        config_file=str(configs / "inference.json"),
        bundle_root=str(bundle),
    )
    three_d = write_msd_dataset(tmp_path / "one", ["a"], ["bg", "fg"], train=1, test=0) / "imagesTr" / "case_000.nii.gz"
    done = run_cli("segment", str(three_d), str(tmp_path / "seg.nii.gz"), "--bundle_dir", str(bundle))
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"se-monai: error: {three_d}: has 1 channel, the model expects 4"
    ]
    done = run_cli("train", "--dataset_dir", str(tmp_path / "one"), "--bundle_dir", str(bundle))
    assert done.returncode == 2 and "made for in_channels 4" in done.stderr and "has 1" in done.stderr


def test_network_overrides_of_a_training_run_are_written_where_inference_builds_the_network(tmp_path):
    """A model trained with --network_def#basis_type disco must not be loaded into the "multi" network (same weight
    layout, so it would load without error and be wrong): the override goes into train.json and inference.json."""
    dataset = write_msd_dataset(tmp_path / "d", ["MRI"], ["bg", "fg"], train=2, test=0)
    bundle = create_bundle(tmp_path / "b", dataset)
    written = record_network_overrides(bundle, {"network_def#basis_type": "disco", "epochs": 3})
    assert written == ["network_def#basis_type"]
    for name in ("train.json", "inference.json"):
        config = json.loads((bundle / "configs" / name).read_text())
        assert config["network_def"]["basis_type"] == "disco" and config.get("epochs") != 3
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    assert parser.get_parsed_content("network_def").model[0].conv[0].conv.basis_type == "disco"
    with pytest.raises(InputError, match="network_def#scales is not a dictionary"):
        record_network_overrides(bundle, {"network_def#scales#0": 1.0})


def test_training_never_writes_the_shipped_bundle(tmp_path, digest_before):
    dataset = write_msd_dataset(tmp_path / "d", ["MRI"], ["bg", "fg"], train=2, test=0)
    done = run_cli("train", "--dataset_dir", str(dataset))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "--bundle_dir" in done.stderr
    done = run_cli("train", "--dataset_dir", str(dataset), "--bundle_dir", str(SHIPPED_BUNDLE))
    assert done.returncode == 2 and "train into a bundle of your own" in done.stderr
    assert shipped_digest() == digest_before


def test_every_run_ends_with_weights_even_below_the_validation_interval(tmp_path):
    dataset = write_msd_dataset(tmp_path / "d", ["MRI"], ["bg", "fg"], train=2, test=0)
    bundle = tmp_path / "bundle"
    args = ["--epochs", "2", "--val_interval", "5", "--num_workers", "0", "--num_samples", "1"]
    assert run_cli("train", "--dataset_dir", str(dataset), "--bundle_dir", str(bundle), *args).returncode == 0
    models = bundle / "models"
    assert sorted(p.name for p in models.iterdir()) == ["model.pt", "model_final.pt"]  # no training state left
    for name in ("model.pt", "model_final.pt"):
        assert any(key.endswith("basis") for key in torch.load(models / name, weights_only=True))


def test_a_killed_run_resumes_after_its_last_epoch(tmp_path):
    dataset = write_msd_dataset(tmp_path / "d", ["MRI"], ["bg", "fg"], train=2, test=0)
    bundle = tmp_path / "bundle"
    command = [
        sys.executable,
        "-m",
        "se_monai.cli",
        "train",
        "--dataset_dir",
        str(dataset),
        "--bundle_dir",
        str(bundle),
        "--epochs",
        "20",
        "--val_interval",
        "100",
        "--num_workers",
        "0",
        "--num_samples",
        "1",
    ]
    state = bundle / "models" / "training_state.pt"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not state.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    saved = torch.load(state, weights_only=True)  # written atomically: whole, whenever the kill came
    killed_after = saved["trainer"]["iteration"] // saved["trainer"]["epoch_length"]
    assert set(saved) == {"model", "optimizer", "lr_scheduler", "checkpointer", "trainer"}
    assert 1 <= killed_after < 20
    done = subprocess.run([*command, "--verbose"], capture_output=True, text=True, timeout=600)  # with the epochs' logs
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming the training run of {state} after epoch {killed_after}" in done.stdout
    assert done.stdout.splitlines()[-1] == f"model written to {state.parent / 'model.pt'}"
    epochs = [int(n) for n in re.findall(r"SupervisedTrainer - INFO - Epoch\[(\d+)\] Complete", done.stdout)]
    assert epochs == list(range(killed_after + 1, 21))
    assert not state.exists() and (bundle / "models" / "model.pt").is_file()


def test_archive_quirks_float_labels_and_rounded_label_geometry(tmp_path):
    """As MSD archives come: labels stored as floats, label headers equal to the images' only up to rounding."""
    dataset = write_msd_dataset(
        tmp_path / "d", ["CT"], ["bg", "organ"], train=2, test=1, label_dtype=np.float32, label_affine_error=1e-3
    )
    bundle = tmp_path / "bundle"
    done = run_cli("train", "--dataset_dir", str(dataset), "--bundle_dir", str(bundle), *SHORT)
    assert done.returncode == 0, done.stderr[-3000:]
    # without --verbose: what the command says and its results, no engine log
    assert re.fullmatch(r"best validation val_mean_dice [01]\.\d{4} at epoch \d+", done.stdout.splitlines()[-2])
    assert done.stdout.splitlines()[-1] == f"model written to {bundle / 'models' / 'model.pt'}"
    assert " - INFO - " not in done.stdout + done.stderr
    done = run_cli("evaluate", "--dataset_dir", str(dataset), "--bundle_dir", str(bundle), "--num_workers", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"val_mean_dice: [01]\.\d{4}", lines[0]) and lines[-1].startswith("metrics written to ")


def _parameters(path) -> dict[str, torch.Tensor]:
    """The trained parameters of a checkpoint (no batch-norm statistics, which every training step updates)."""
    state = torch.load(path, weights_only=True)
    return {k: v for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def test_fine_tuning_starts_from_the_given_weights_and_bad_ones_are_one_line(tmp_path):
    dataset = write_msd_dataset(tmp_path / "d", ["MRI"], ["bg", "fg"], train=2, test=0)
    first = tmp_path / "first"
    assert run_cli("train", "--dataset_dir", str(dataset), "--bundle_dir", str(first), *SHORT).returncode == 0
    start = first / "models" / "model_final.pt"
    frozen = [*SHORT, "--learning_rate", "0"]  # Adam with lr 0 leaves the parameters where they start
    for name, init in (("tuned", ["--init_weights", str(start)]), ("scratch", [])):
        done = run_cli("train", "--dataset_dir", str(dataset), "--bundle_dir", str(tmp_path / name), *frozen, *init)
        assert done.returncode == 0, done.stderr[-3000:]
    expected = _parameters(start)
    tuned, scratch = (_parameters(tmp_path / n / "models" / "model_final.pt") for n in ("tuned", "scratch"))
    assert tuned.keys() == expected.keys()
    assert all(torch.equal(tuned[k], expected[k]) for k in expected)
    assert not all(torch.equal(scratch[k], expected[k]) for k in expected)

    three = write_msd_dataset(tmp_path / "three", ["MRI"], ["bg", "a", "b"], train=2, test=0)
    other = tmp_path / "other"
    assert run_cli("train", "--dataset_dir", str(three), "--bundle_dir", str(other), *SHORT).returncode == 0
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    cases = {
        str(tmp_path / "missing.pt"): "no checkpoint",
        str(other / "models" / "model_final.pt"): "does not fit the bundle's network_def",
        str(tmp_path / "junk.pt"): "not a PyTorch checkpoint",
    }
    for path, problem in cases.items():
        done = run_cli(
            "train", "--dataset_dir", str(dataset), "--bundle_dir", str(tmp_path / "tuned"), "--init_weights", path
        )
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr[-3000:]
        assert path in done.stderr and problem in done.stderr
