"""The MONAI bundle: train.json, evaluate.json and inference.json run through MONAI's own entry points."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import write_crops
from test_cli import run_cli

import se_monai.inferers
from se_monai.bases import steerable_basis
from se_monai.engines import CasesFailed
from se_monai.inferers import complete_background
from se_monai.workflows import default_bundle_dir, run_bundle

BUNDLE = default_bundle_dir()

# a short run: small patches, one epoch, validation on the held-out subject with large windows
SHORT = {
    "epochs": 1,
    "patch_size": [32, 32, 32],
    "num_samples": 1,
    "num_workers": 0,
    "val_interval": 1,
    "validate#inferer#roi_size": [128, 128, 128],
    "bn_recalibration_batches": 4,
}


def test_bundle_layout():
    for name in [
        "configs/metadata.json",
        "configs/train.json",
        "configs/evaluate.json",
        "configs/inference.json",
        "configs/logging.conf",
        "docs/README.md",
        "LICENSE",
    ]:
        assert (BUNDLE / name).is_file(), name
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert meta["network_data_format"]["inputs"]["image"]["num_channels"] == 1
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {
        "0": "other",
        "1": "grey matter",
        "2": "white matter",
        "3": "CSF",
    }
    inference = json.loads((BUNDLE / "configs" / "inference.json").read_text())
    for key in [
        "network_def",
        "network",
        "preprocessing",
        "postprocessing",
        "inferer",
        "dataset_dir",
        "output_dir",
        "bundle_root",
    ]:
        assert key in inference, key


def test_train_then_evaluate(icbm_csf_dataset, tmp_path):
    ckpt_dir = tmp_path / "models"
    workflow = run_bundle(
        ["train.json"],
        dataset_dir=str(icbm_csf_dataset),
        ckpt_dir=str(ckpt_dir),
        output_dir=str(tmp_path / "eval"),
        **SHORT,
    )
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 1 and np.isfinite(float(trainer.state.output[0]["loss"]))
    assert (ckpt_dir / "model.pt").is_file()
    assert list((tmp_path / "eval").glob("events.out.tfevents.*"))  # TensorBoardStatsHandler
    state = torch.load(ckpt_dir / "model.pt", map_location="cpu")
    assert any(k.endswith("basis") for k in state)

    run_bundle(
        ["train.json", "evaluate.json"],
        workflow_type="infer",
        dataset_dir=str(icbm_csf_dataset),
        ckpt_dir=str(ckpt_dir),
        output_dir=str(tmp_path / "eval"),
    )
    with open(tmp_path / "eval" / "val_mean_dice_raw.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["filename", "class0", "class1", "class2", "mean"]  # GM, WM, CSF (background excluded)
    assert "icbm152_t1" in rows[1][0] and all(0.0 <= float(v) <= 1.0 for v in rows[1][1:])
    # label statistics per image on its own grid (LabelStatisticsSaver): every voxel in one class, mL from mm^3
    statistics = json.loads((tmp_path / "eval" / "statistics.json").read_text())
    (source, table), image = next(iter(statistics.items())), nib.load(rows[1][0])
    assert source == rows[1][0] and list(table) == ["other", "grey matter", "white matter", "CSF"]
    assert sum(c["voxels"] for c in table.values()) == int(np.prod(image.shape))
    voxel_ml = float(np.prod(image.header.get_zooms()[:3])) / 1000
    assert all(c["volume_ml"] == pytest.approx(c["voxels"] * voxel_ml) for c in table.values())


def write_archive_quirks(folder: Path, truncate: Path) -> Path:
    """What real archives hold beside their images: a macOS ``._`` AppleDouble file for each (named like the image),
    a ``.DS_Store``, a README; and ``truncate`` cut to half its bytes (a download that stopped). Returns the
    truncated file."""
    for image in list(folder.iterdir()):
        (folder / f"._{image.name}").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64))
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(32))
    (folder / "README.txt").write_text("test images\n")
    data = truncate.read_bytes()
    truncate.write_bytes(data[: len(data) // 2])
    return truncate


def test_monai_bundle_run_segments_an_msd_folder_past_a_bad_case(tmp_path):
    """An MSD dataset as the Decathlon archives ship it (``._`` files beside every image) with one truncated image:
    the run writes every good case, names the bad one with its reason, and exits 1 at the end."""
    crops = write_crops(tmp_path / "Task01" / "imagesTs")
    bad = write_archive_quirks(tmp_path / "Task01" / "imagesTs", truncate=crops["aniso"])
    out = tmp_path / "seg"
    # the command of the README, from the repository root, without --bundle_root
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        "bundle/configs/inference.json",
        "--dataset_dir",
        str(tmp_path / "Task01"),
        "--output_dir",
        str(out),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=BUNDLE.parent)
    assert result.returncode == 1, result.stderr[-3000:]
    failures = [line for line in result.stdout.splitlines() if " - ERROR - " in line]
    assert len(failures) == 1 and failures[0].endswith(
        f"{bad}: skipped (EOFError: Compressed file ended before the end-of-stream marker was reached)"
    ), result.stdout
    assert result.stderr.strip().splitlines()[-1] == f"1 case failed and was skipped: {bad}"
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["crop_lps_seg.nii.gz", "crop_ras_seg.nii.gz"]
    for kind in ("ras", "lps"):
        name = Path(crops[kind]).name.split(".")[0] + "_seg.nii.gz"
        seg, image = nib.load(str(out / name)), nib.load(str(crops[kind]))
        assert seg.shape == image.shape
        np.testing.assert_allclose(seg.affine, image.affine, atol=1e-4)
        assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 1, 2, 3}


def test_a_case_failing_after_its_labels_are_written_leaves_nothing(tmp_path, monkeypatch):
    """A case that fails in its iteration after SaveImaged wrote its labels (here writing its probabilities) keeps
    no output; the next case is written and the run ends with CasesFailed naming the failed one."""
    crops = write_crops(tmp_path / "images")
    for kind in ("aniso", "labels"):
        crops[kind].unlink(missing_ok=True)

    def fail_for_the_lps_crop(probabilities):
        if "crop_lps" in str(probabilities.meta["filename_or_obj"]):
            raise OSError(28, "No space left on device")
        return complete_background(probabilities)

    monkeypatch.setattr(se_monai.inferers, "complete_background", fail_for_the_lps_crop)
    out = tmp_path / "seg"
    with pytest.raises(CasesFailed) as raised:
        run_bundle(
            ["inference.json"],
            workflow_type="infer",
            quiet=True,
            dataset_dir=str(tmp_path / "images"),
            output_dir=str(out),
            save_probabilities=True,
        )
    assert [case.line() for case in raised.value.failed] == [
        f"{crops['lps']}: skipped (OSError: [Errno 28] No space left on device)"
    ]
    assert raised.value.code == "1 case failed and was skipped: " + str(crops["lps"])
    assert sorted(p.name for p in out.iterdir()) == ["crop_ras_prob.nii.gz", "crop_ras_seg.nii.gz"]


def test_evaluation_scores_the_cases_that_load_and_names_the_others(tmp_path):
    """evaluate.json over a test set with a truncated image: the others' Dice are saved, the run ends failed."""
    crops = write_crops(tmp_path / "crops")
    root = tmp_path / "Task01"
    for sub in ("imagesTs", "labelsTs"):
        (root / sub).mkdir(parents=True)
    for name in ("case_1", "case_2"):
        (root / "imagesTs" / f"{name}.nii.gz").write_bytes(crops["ras"].read_bytes())
        (root / "labelsTs" / f"{name}.nii.gz").write_bytes(crops["labels"].read_bytes())
    bad = write_archive_quirks(root / "imagesTs", truncate=root / "imagesTs" / "case_2.nii.gz")
    args = ["--dataset_dir", str(root), "--ckpt_dir", str(BUNDLE / "models"), "--output_dir", str(tmp_path / "eval")]
    done = run_cli("evaluate", *args, "--num_workers", "1")  # failures cross from a DataLoader worker
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"{bad}: skipped (EOFError: Compressed file ended before the end-of-stream marker was reached)",
        f"se-monai: error: 1 case failed and was skipped: {bad}",
    ]
    # the metrics of the cases that loaded, then where they are
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == [
        "val_mean_dice",
        "val_accuracy",
        "metrics written to " + str(tmp_path / "eval"),
    ]
    with open(tmp_path / "eval" / "val_mean_dice_raw.csv") as handle:
        rows = list(csv.reader(handle))
    assert [Path(row[0]).name for row in rows[1:]] == ["case_1.nii.gz"]
    assert 0.7 < float(rows[1][-1]) <= 1.0  # the shipped model on a crop of the real T1


def test_train_with_the_optimised_basis(icbm_csf_dataset, tmp_path):
    """SEUNet with basis_type "disco" through the bundle's train.json (a short run)."""
    workflow = run_bundle(
        ["train.json"],
        dataset_dir=str(icbm_csf_dataset),
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "eval"),
        **{**SHORT, "network_def#basis_type": "disco"},
    )
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 1 and np.isfinite(float(trainer.state.output[0]["loss"]))
    network = workflow.parser.get_parsed_content("network")
    expected = steerable_basis(5, [1.0, 0.9, 0.81, 0.729], 3, "disco")
    torch.testing.assert_close(network.model[0].conv[0].conv.basis, expected)
    assert (tmp_path / "models" / "model.pt").is_file()


def test_training_data_given_as_monailabel_gives_it(tmp_path):
    """MONAI Label's bundle trainer sets train#dataset#data and validate#dataset#data, with no dataset_dir: nothing
    of the training workflow (here the batch-norm recalibration's loader) may read the bundle's own datalist."""
    from monai.bundle import ConfigParser

    crops = write_crops(tmp_path / "crops")
    items = [{"image": str(crops["ras"]), "label": str(crops["labels"])}] * 2
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    parser.update({"bundle_root": str(BUNDLE), "dataset_dir": str(tmp_path / "missing")})
    parser.update({"train#dataset#data": items, "validate#dataset#data": items[:1], "num_workers": 0})
    loader = parser.get_parsed_content("train#bn_dataloader")
    assert len(loader.dataset) == 2 and loader.dataset.dataset is parser.get_parsed_content("train#dataset")
    with pytest.raises(RuntimeError):  # the bundle's datalist itself would need the missing dataset
        parser.get_parsed_content("datalist")


@pytest.mark.parametrize("name", sorted(p.name for p in (BUNDLE / "configs").glob("*.json")))
def test_configs_in_the_model_zoo_json_style(name):
    """The model zoo's pre-commit pretty-format-json (4-space indent, keys in their order, ASCII)."""
    text = (BUNDLE / "configs" / name).read_text()
    assert text == json.dumps(json.loads(text), indent=4) + "\n"


def test_network_in_and_out_as_the_model_zoo_verifies_them(tmp_path):
    from monai.bundle import verify_net_in_out

    config = str(BUNDLE / "configs" / "inference.json")
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(BUNDLE / "configs" / "metadata.json"),
        config_file=config,
        bundle_root=str(BUNDLE),
    )
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    meta["network_data_format"]["outputs"]["pred"]["num_channels"] = 2  # metadata that does not fit the network
    wrong = tmp_path / "metadata.json"
    wrong.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="channel"):
        verify_net_in_out(net_id="network_def", meta_file=str(wrong), config_file=config, bundle_root=str(BUNDLE))
    assert (BUNDLE / "docs" / "data_license.txt").read_text().count("McGill") >= 2


def test_docs_follow_the_model_zoo_template():
    headings = [
        line[3:].strip() for line in (BUNDLE / "docs" / "README.md").read_text().splitlines() if line[:3] == "## "
    ]
    template = [
        "Model Overview",
        "Data",
        "Training configuration",
        "Input",
        "Output",
        "Performance",
        "MONAI Bundle Commands",
        "References",
        "License",
    ]
    assert set(template) <= set(headings)
