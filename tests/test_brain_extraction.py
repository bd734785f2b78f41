"""Brain extraction before the shipped model (se_monai.transforms.BrainExtractiond, deepbet's networks): heads are
reduced to their brain, skull-stripped brains pass unchanged, a field of view without a brain is one clear error."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import write_crops
from monai.data import MetaTensor
from test_cli import run_cli

from se_monai.data import add_head, load_icbm152
from se_monai.data.template import HEAD_PAD
from se_monai.transforms import BrainExtractiond
from se_monai.workflows import SHIPPED_BUNDLE


@pytest.fixture(scope="module")
def template():
    t1, _, _, affine = load_icbm152()
    return MetaTensor(torch.as_tensor(t1)[None], affine=torch.as_tensor(affine))


@pytest.fixture(scope="module")
def head():
    """The real ICBM152 T1 with CSF, skull and scalp shells around it (9.4 L non-zero), and its brain mask."""
    t1, _, _, affine = load_icbm152()
    image, image_affine = add_head(t1, affine)
    return MetaTensor(torch.as_tensor(image)[None], affine=torch.as_tensor(image_affine)), np.pad(t1 > 0, HEAD_PAD)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_a_head_is_reduced_to_its_brain(head):
    image, brain = head
    transform = BrainExtractiond("image")
    assert transform.is_head(image)
    out = transform({"image": image, "other": 7})
    kept = out["image"][0].numpy() != 0
    assert _dice(kept, brain) > 0.97  # 0.980 measured: the shells are gone, the brain kept
    assert (kept & ~brain).sum() / 1000 < 150 and (brain & ~kept).sum() / brain.sum() < 0.01
    np.testing.assert_array_equal(out["image"][0].numpy()[kept], image[0].numpy()[kept])  # intensities as they were
    assert isinstance(out["image"], MetaTensor) and torch.equal(out["image"].affine, image.affine)
    assert out["other"] == 7
    assert BrainExtractiond("image", mode="never")({"image": image})["image"] is image


def test_skull_stripped_brains_pass_unchanged_unless_asked(template):
    transform = BrainExtractiond("image")
    assert not transform.is_head(template)  # 1886.5 mL non-zero: a brain, not a head
    assert transform({"image": template})["image"] is template
    kept = BrainExtractiond("image", mode="always")({"image": template})["image"][0].numpy() != 0
    brain = template[0].numpy() != 0
    assert (kept & brain).sum() / brain.sum() > 0.98  # deepbet on a brain already stripped keeps it
    assert BrainExtractiond("image", head_ml=1000.0).is_head(template)


def test_bad_settings_and_an_image_without_a_brain_raise():
    with pytest.raises(ValueError, match="expected one of auto, always, never"):
        BrainExtractiond("image", mode="sometimes")
    with pytest.raises(ValueError, match="head_ml must be positive"):
        BrainExtractiond("image", head_ml=0)
    empty = MetaTensor(torch.zeros(1, 64, 64, 64), affine=torch.diag(torch.tensor([4.0, 4.0, 4.0, 1.0])))
    with pytest.raises(ValueError, match="found no brain"):
        BrainExtractiond("image", mode="always")({"image": empty})


def test_the_shipped_bundle_extracts_heads_before_it_resamples():
    config = json.loads((SHIPPED_BUNDLE / "configs" / "inference.json").read_text())
    targets = [t["_target_"] for t in config["preprocessing"]["transforms"]]
    position = targets.index("se_monai.transforms.BrainExtractiond")
    assert (
        targets[position - 1] == "Orientationd" and targets[position + 1] == "se_monai.transforms.SizeAdaptiveSpacingd"
    )
    assert config["brain_extraction"] == "auto" and config["head_ml"] == 2800


def test_segment_checks_the_brain_extraction_option(tmp_path):
    crop = write_crops(tmp_path / "in")["ras"]
    done = run_cli("segment", str(crop), str(tmp_path / "seg.nii.gz"), "--brain_extraction", "sometimes")
    assert done.returncode == 2 and "expected one of auto, always, never" in done.stderr
    old = Path(__file__).parent / "data" / "bundle_0.3.4"  # made before bundles had a brain extraction stage
    done = run_cli(
        "segment", str(crop), str(tmp_path / "seg.nii.gz"), "--bundle_dir", str(old), "--brain_extraction", "auto"
    )
    assert done.returncode == 2 and "has no brain extraction stage" in done.stderr
    assert not (tmp_path / "seg.nii.gz").exists()
    empty = tmp_path / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((64, 64, 64), np.float32), np.diag([4.0, 4.0, 4.0, 1.0])), str(empty))
    done = run_cli("segment", str(empty), str(tmp_path / "seg.nii.gz"), "--brain_extraction", "always")
    assert done.returncode == 2 and not (tmp_path / "seg.nii.gz").exists()
    assert done.stderr.strip().splitlines() == [
        f"se-monai: error: {empty}: brain extraction found no brain in the image"
    ]
