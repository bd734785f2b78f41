"""Plausibility of a segmentation (se_monai.transforms.plausibility): class volumes in mL, the bundle's ranges, and
the one line (or the refusal) an input outside the model's domain gets."""

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import write_crops
from monai.data import MetaTensor
from test_cli import run_cli

from se_monai.data import add_head, load_icbm152
from se_monai.data.template import HEAD_PAD
from se_monai.transforms.plausibility import CheckPlausibilityd, ImplausibleSegmentation, check_volumes, class_volumes
from se_monai.workflows import SHIPPED_BUNDLE

NAMES = {"0": "other", "1": "grey matter", "2": "white matter"}
RULES = {"volume_ml": {"grey matter + white matter": [1.0, 2.0]}, "ratio": {"grey matter / white matter": [0.5, 2.0]}}


def labels_with(counts: dict[int, int], shape=(20, 20, 20)) -> np.ndarray:
    values = np.concatenate([np.full(n, k) for k, n in counts.items()])
    flat = np.zeros(int(np.prod(shape)), np.uint8)
    flat[: values.size] = values
    return np.random.default_rng(0).permutation(flat).reshape(shape)


def test_class_volumes_are_counts_times_the_voxel_volume():
    labels = labels_with({1: 1000, 2: 600})
    affine = np.diag([1.5, 1.0, 2.0, 1.0]) @ np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    volumes = class_volumes(torch.as_tensor(labels)[None], affine, NAMES)  # axes swapped: |det| still 3 mm^3
    assert volumes == pytest.approx({"other": (8000 - 1600) * 3e-3, "grey matter": 3.0, "white matter": 1.8})


def test_rules_name_what_they_break():
    assert check_volumes({"grey matter": 0.9, "white matter": 0.6}, RULES) == []
    broken = check_volumes({"grey matter": 3.0, "white matter": 0.5}, RULES)
    assert broken == [
        "grey matter + white matter 4 mL is outside 1-2 mL",
        "grey matter / white matter is 6.00, outside 0.5-2",
    ]
    assert check_volumes({"grey matter": 1.0, "white matter": 0.0}, RULES)[-1].endswith("is inf, outside 0.5-2")
    with pytest.raises(ValueError, match="unknown classes"):
        check_volumes({"grey matter": 1.0}, RULES)


def test_transform_warns_raises_or_stays_off(caplog):
    labels = MetaTensor(torch.as_tensor(labels_with({1: 3000, 2: 500}))[None], affine=torch.eye(4))
    labels.meta["filename_or_obj"] = "/data/head.nii.gz"
    data = {"pred": labels}
    assert CheckPlausibilityd("pred", NAMES, RULES)(data)["pred"] is labels  # warns, passes the labels on
    assert caplog.messages == [
        "/data/head.nii.gz: implausible segmentation: grey matter + white matter 4 mL is outside 1-2 mL; "
        "grey matter / white matter is 6.00, outside 0.5-2"
    ]
    with pytest.raises(ImplausibleSegmentation) as raised:
        CheckPlausibilityd("pred", NAMES, {**RULES, "hint": "expects a brain"}, action="raise")(data)
    assert str(raised.value) == caplog.messages[0] + " (expects a brain)"
    caplog.clear()
    CheckPlausibilityd("pred", NAMES, RULES, action="off")(data)
    CheckPlausibilityd("pred", NAMES, {})(data)  # a bundle without ranges checks nothing
    assert caplog.messages == []
    with pytest.raises(ValueError, match="action"):
        CheckPlausibilityd("pred", NAMES, RULES, action="strict")


def test_a_brain_cut_by_the_field_of_view_is_flagged(caplog):
    grid = np.indices((40, 40, 40)) - 19.5
    ball = np.where((grid**2).sum(0) < 12**2, np.where(grid[0] < 0, 1, 2), 0).astype(np.uint8)  # GM and WM halves
    rules = {"field_of_view": "grey matter + white matter"}
    whole = MetaTensor(torch.as_tensor(ball)[None], affine=torch.eye(4))
    CheckPlausibilityd("pred", NAMES, rules)({"pred": whole})
    assert caplog.messages == []
    cut = MetaTensor(torch.as_tensor(ball[:, :, :22].copy())[None], affine=torch.eye(4))  # a slab through it
    cut.meta["filename_or_obj"] = "/data/slab.nii.gz"
    CheckPlausibilityd("pred", NAMES, rules)({"pred": cut})
    assert caplog.messages == [
        "/data/slab.nii.gz: implausible segmentation: grey matter + white matter is cut by the field of view (a "
        "partial brain)"
    ]
    with pytest.raises(ValueError, match="unknown classes"):
        CheckPlausibilityd("pred", NAMES, {"field_of_view": "grey matter + csf"})({"pred": cut})


@pytest.fixture(scope="module")
def strict_bundle(tmp_path_factory):
    """The shipped bundle with ranges no brain crop meets (so the refusal path runs on a small real crop)."""
    root = tmp_path_factory.mktemp("strict") / "bundle"
    shutil.copytree(SHIPPED_BUNDLE / "configs", root / "configs")
    (root / "models").mkdir()
    (root / "models" / "model.pt").symlink_to(SHIPPED_BUNDLE / "models" / "model.pt")
    config = json.loads((root / "configs" / "inference.json").read_text())
    config["plausibility"]["volume_ml"] = {"grey matter + white matter": [5000, 6000]}
    (root / "configs" / "inference.json").write_text(json.dumps(config, indent=4))
    return root


def test_segment_warns_in_one_line_or_refuses_without_output(strict_bundle, tmp_path):
    crop = write_crops(tmp_path / "in")["ras"]
    out = tmp_path / "seg.nii.gz"
    done = run_cli("segment", str(crop), str(out), "--bundle_dir", str(strict_bundle), "--progress", "False")
    assert done.returncode == 0 and out.is_file()
    warned = [line for line in (done.stdout + done.stderr).splitlines() if "implausible segmentation" in line]
    assert len(warned) == 1 and f"{crop}: implausible segmentation: grey matter + white matter" in warned[0]
    assert "outside 5000-6000 mL" in warned[0] and "T1-weighted brain" in warned[0]
    seg = np.asarray(nib.load(str(out)).dataobj)
    assert 0 < np.isin(seg, (1, 2)).sum() / 1000 < 5000  # the volume the line reports is the written one's

    refused = tmp_path / "refused.nii.gz"
    args = ["--bundle_dir", str(strict_bundle), "--plausibility", "raise", "--progress", "False"]
    done = run_cli("segment", str(crop), str(refused), *args)
    assert done.returncode == 2 and not refused.exists() and not list(tmp_path.glob(".se-monai-*"))
    assert done.stderr.strip().splitlines()[-1].startswith(f"se-monai: error: {crop}: implausible segmentation")
    done = run_cli("segment", str(crop), str(refused), "--plausibility", "loud")
    assert done.returncode == 2 and "expected one of warn, raise, off" in done.stderr and not refused.exists()


@pytest.mark.slow
def test_shipped_model_segments_a_head_and_flags_an_inverted_contrast_and_a_partial_brain(tmp_path):
    """The whole 1 mm template (20-60 s per case on 2 cores): the real skull-stripped T1 and the same brain with a
    head around it (se_monai.data.add_head; its brain extracted first) pass the shipped ranges; the head without brain
    extraction, the brain with its contrast inverted and its upper half alone (a partial field of view) do not."""
    t1, _, _, affine = load_icbm152()
    head, head_affine = add_head(t1, affine)
    cases = {
        "t1": (t1, affine, False, ()),
        "head": (head, head_affine, False, ()),
        "head_kept": (head, head_affine, True, ("--brain_extraction", "never")),
        "inverted": (np.where(t1 > 0, t1.max() - t1, 0).astype(np.float32), affine, True, ()),
        "upper_half": (t1[:, :, t1.shape[2] // 2 :].copy(), affine, True, ()),
    }
    for name, (image, image_affine, implausible, options) in cases.items():
        path, out = tmp_path / f"{name}.nii.gz", tmp_path / f"{name}_seg.nii.gz"
        nib.save(nib.Nifti1Image(image, image_affine), str(path))
        done = run_cli("segment", str(path), str(out), "--plausibility", "raise", *options)
        assert done.returncode == (2 if implausible else 0), (name, done.stderr[-2000:])
        assert ("implausible segmentation" in done.stderr) == implausible, name
    labels = np.asarray(nib.load(str(tmp_path / "head_seg.nii.gz")).dataobj)
    brain = np.pad(t1 > 0, HEAD_PAD)
    # mL of grey and white matter outside the brain: the head is not segmented (CSF is: the template's skull-stripping
    # mask leaves out the CSF around the brain, 172 mL measured with bundles 1.0.0 and 1.1.0)
    assert np.isin(labels[~brain], (1, 2)).sum() / 1000 < 50
    assert (labels[~brain] == 3).sum() / 1000 < 250
