"""Dataset fingerprint and plan (se_monai.data.fingerprint): target spacing, patch size and normalisation from a
dataset."""

import json
import math

import nibabel as nib
import numpy as np
from helpers import write_msd_dataset
from test_cli import run_cli

from se_monai.data.fingerprint import PATCH_VOXELS, _ras, dataset_fingerprint, describe_plan, plan


def fingerprint_of(spacings, shapes, modality=None):
    stats = {"mean": 50.0, "std": 10.0, "percentile_00_5": 20.0, "percentile_99_5": 80.0, "min": 0.0, "max": 99.0}
    return {"spacings": spacings, "shapes": shapes, "modality": modality or {"0": "MRI"}, "intensity": {"0": stats}}


def test_isotropic_data_takes_the_median_spacing_and_a_patch_covering_the_median_case():
    values = plan(fingerprint_of([[1.0, 1.0, 1.0], [1.2, 1.2, 1.2], [0.8, 1.0, 1.4]], [[30, 40, 28]] * 3))
    assert values["pixdim"] == [1.0, 1.0, 1.2]
    assert values["median_shape"] == [30, 40, 28]  # each case resampled to the target spacing, then the median
    assert values["patch_size"] == [32, 40, 32]  # multiples of 8 at least as large: smaller volumes are padded
    assert values["normalization"] == "zscore_nonzero"


def test_anisotropic_data_keeps_finer_slices_and_the_patch_stays_within_the_budget():
    z = [5.0, 5.0, 4.0, 3.0, 2.5, 6.0, 5.0, 5.0, 5.0, 5.0]
    spacings = [[0.8, 0.8, s] for s in z]
    values = plan(fingerprint_of(spacings, [[512, 512, 80]] * len(z)))
    assert values["pixdim"][:2] == [0.8, 0.8]
    assert values["pixdim"][2] == np.percentile(z, 10)  # not the median 5 mm: more than 3 x 0.8 mm
    patch = values["patch_size"]
    assert all(p % 8 == 0 for p in patch) and math.prod(patch) <= PATCH_VOXELS
    # a large brain-sized volume: the shipped bundle's 64^3
    assert plan(fingerprint_of([[1.0] * 3] * 2, [[197, 233, 189]] * 2))["patch_size"] == [64, 64, 64]


def test_ct_gets_fixed_clipping_and_z_score():
    values = plan(fingerprint_of([[1.0] * 3], [[64] * 3], {"0": "CT"}))
    assert values["normalization"] == "ct" and values["ct_range"] == [20.0, 80.0]
    assert (values["ct_mean"], values["ct_std"]) == (50.0, 10.0)
    assert "clip to [20, 80]" in describe_plan(values)


def test_spacing_and_shape_in_ras_order(tmp_path):
    data = np.zeros((10, 20, 30), np.float32)  # array axes: I->S (z), A->P (y), R->L (x)
    affine = np.array([[0, 0, -0.5, 0], [0, -2.0, 0, 0], [3.0, 0, 0, 0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "x.nii.gz"))
    assert _ras(nib.load(str(tmp_path / "x.nii.gz"))) == ([0.5, 2.0, 3.0], [30, 20, 10])


def test_fingerprint_reads_every_case_and_its_foreground(tmp_path):
    dataset = write_msd_dataset(tmp_path / "d", ["MRI"], ["bg", "a"], train=3, test=0, spacing=(0.9, 0.9, 2.0))
    fp = dataset_fingerprint(dataset, progress=False)
    assert fp["cases"] == 3 and fp["spacings"] == [[0.9, 0.9, 2.0]] * 3 and fp["shapes"] == [[28, 32, 24]] * 3
    stats = fp["intensity"]["0"]
    assert 115 < stats["mean"] < 125 and 3 < stats["std"] < 7  # the boxes: 100 + 20, noise sd 5


def test_a_ct_dataset_trains_with_its_plan(tmp_path):
    dataset = write_msd_dataset(
        tmp_path / "Task98_CT",
        ["CT"],
        ["background", "organ"],
        train=2,
        test=1,
        spacing=(0.7, 0.7, 3.0),
        background=-1000.0,
    )
    bundle = tmp_path / "ct_bundle"
    args = ["--epochs", "1", "--val_interval", "1", "--num_workers", "0", "--num_samples", "1"]
    args += ["--bn_recalibration_batches", "4"]
    done = run_cli("train", "--dataset_dir", str(dataset), "--bundle_dir", str(bundle), *args)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads((bundle / "fingerprint.json").read_text())
    assert "plan: spacing 0.7 x 0.7 x 3 mm" in done.stdout and saved["plan"]["normalization"] == "ct"
    for name, key in (("train.json", "deterministic_transforms"), ("inference.json", "preprocessing")):
        config = json.loads((bundle / "configs" / name).read_text())
        transforms = config[key] if name == "train.json" else config[key]["transforms"]
        targets = [t["_target_"] for t in transforms]
        assert "ScaleIntensityRanged" in targets and "CropForegroundd" not in targets
        assert "NormalizeIntensityd" not in targets and config["pixdim"] == saved["plan"]["pixdim"]
        post = (config["train"] if name == "train.json" else config)["postprocessing"]["transforms"]
        assert "MaskIntensityd" not in [t["_target_"] for t in post]  # 0 is a tissue value in CT
    scan = dataset / "imagesTs" / "case_002.nii.gz"
    done = run_cli("segment", str(scan), str(tmp_path / "seg.nii.gz"), "--bundle_dir", str(bundle))
    assert done.returncode == 0, done.stderr[-3000:]
    assert nib.load(str(tmp_path / "seg.nii.gz")).shape == nib.load(str(scan)).shape
