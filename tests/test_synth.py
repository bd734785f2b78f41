"""The SynthSeg-style generator (se_monai.data.synth): structure label maps, per-structure random intensities, and whole
synthetic subjects, on a small ball-shaped brain (fast) and, for the label map, the real template's sizes."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import load_decathlon_datalist
from test_cli import run_cli

from se_monai.data import HEAD_PAD, HEAD_SHELLS, prepare_brain_tissue_dataset
from se_monai.data.synth import (
    STRUCTURES,
    AlternatingSubjects,
    RandCorticalThicknessd,
    RandLabelIntensityd,
    RandSkullStripd,
    structure_labels,
    synthseg_transform,
)


@pytest.fixture(scope="module")
def ball():
    """A 40^3 brain: white matter inside radius 8, grey matter to radius 12, CSF-dark T1 to 13 (1 mm voxels)."""
    r = np.sqrt(((np.indices((40, 40, 40)) - 19.5) ** 2).sum(0))
    wm = (r < 8).astype(np.float32)
    gm = ((r >= 8) & (r < 12)).astype(np.float32)
    t1 = np.where(r < 13, 100.0, 0.0).astype(np.float32)
    return gm, wm, t1


def test_structure_labels_put_tissue_inside_and_the_shells_around(ball):
    gm, wm, t1 = ball
    labels = structure_labels(gm, wm, t1)
    assert labels.shape == (40 + 2 * HEAD_PAD,) * 3 and len(STRUCTURES) == 4 + len(HEAD_SHELLS)
    inner = labels[HEAD_PAD:-HEAD_PAD, HEAD_PAD:-HEAD_PAD, HEAD_PAD:-HEAD_PAD]
    assert (inner[wm > 0] == STRUCTURES.index("white matter")).all()
    assert (inner[gm > 0] == STRUCTURES.index("grey matter")).all()
    assert (inner[(t1 > 0) & (gm + wm == 0)] == STRUCTURES.index("csf")).all()
    centre = 19 + HEAD_PAD
    profile = labels[centre, centre, centre:]  # outwards along one axis: tissue, csf, then each shell in order
    seen = [v for i, v in enumerate(profile) if i == 0 or v != profile[i - 1]]
    assert seen == [3, 2, 1, *range(4, len(STRUCTURES)), 0]


def test_each_structure_gets_its_own_random_intensity():
    labels = torch.arange(4).repeat_interleave(2000).reshape(1, 8, 10, 100)
    paint = RandLabelIntensityd("label", "image", num_labels=4, std_range=(0.01, 0.02))
    paint.set_random_state(seed=3)
    image = paint({"label": labels})["image"]
    means = [float(image[labels == k].mean()) for k in range(4)]
    np.testing.assert_allclose(means, paint.means, atol=2e-3)
    assert paint.means[0] <= 0.1 and all(float(image[labels == k].std()) < 0.025 for k in range(4))
    again = RandLabelIntensityd("label", "image", num_labels=4, std_range=(0.01, 0.02))
    again.set_random_state(seed=3)
    torch.testing.assert_close(again({"label": labels})["image"], image)
    off = RandLabelIntensityd("label", "image", num_labels=4, prob=0.0)({"label": labels})["image"]
    torch.testing.assert_close(off, labels.float() / 3)


def test_t1_order_sorts_the_chosen_means_in_the_given_fraction_of_draws():
    labels = torch.arange(5).repeat_interleave(200).reshape(1, 10, 10, 10)
    counts = {}
    for prob in (0.0, 0.7, 1.0):
        paint = RandLabelIntensityd("label", "image", num_labels=5, ordered=(1, 2, 3), order_prob=prob)
        paint.set_random_state(seed=0)
        ordered = 0
        for _ in range(400):
            image = paint({"label": labels})["image"]
            means = list(paint.means[[1, 2, 3]])  # the drawn means; the painted image has them (test above)
            ordered += means == sorted(means)
        assert float(image[labels == 1].mean()) == pytest.approx(paint.means[1], abs=0.02)
        counts[prob] = ordered / 400
    # unsorted draws are in order by chance 1 / 3! of the time; sorting adds the rest
    assert counts[1.0] == 1.0
    assert abs(counts[0.0] - 1 / 6) < 0.06
    assert abs(counts[0.7] - (0.7 + 0.3 / 6)) < 0.07


def test_a_subject_is_an_image_in_0_1_and_grey_white_other_labels(ball):
    labels = torch.from_numpy(structure_labels(*ball))[None]
    first = synthseg_transform(seed=0)({"label": labels})
    image, target = torch.as_tensor(first["image"]), torch.as_tensor(first["label"])
    assert image.shape == target.shape == labels.shape and image.dtype == torch.float32
    assert float(image.min()) == 0.0 and float(image.max()) == 1.0
    assert set(torch.unique(target).tolist()) == {0, 1, 2}
    same = synthseg_transform(seed=0)({"label": labels})
    torch.testing.assert_close(torch.as_tensor(same["image"]), image)
    other = synthseg_transform(seed=1)({"label": labels})
    assert not torch.equal(torch.as_tensor(other["image"]), image)
    # the scale range shrinks or grows the anatomy: tissue volumes differ from subject to subject
    volumes = [
        int((torch.as_tensor(synthseg_transform(seed=s)({"label": labels})["label"]) > 0).sum()) for s in range(4)
    ]
    assert max(volumes) > 1.5 * min(volumes)


def test_with_csf_the_csf_and_its_shell_are_class_3_and_the_tissue_keeps_its_labels(ball):
    labels = torch.from_numpy(structure_labels(*ball))[None]
    plain = torch.as_tensor(synthseg_transform(seed=0, strip_prob=0.0)({"label": labels})["label"])
    subject = synthseg_transform(seed=0, strip_prob=0.0, csf=True)({"label": labels})
    with_csf = torch.as_tensor(subject["label"])
    assert set(torch.unique(with_csf).tolist()) == {0, 1, 2, 3}
    torch.testing.assert_close(with_csf[with_csf != 3], plain[with_csf != 3])  # the same subject, CSF set apart
    assert bool((plain[with_csf == 3] == 0).all())
    # CSF is the dark class of a T1-ordered subject: between the background and grey matter
    t1 = synthseg_transform(seed=0, strip_prob=0.0, csf=True, t1_prob=1.0)({"label": labels})
    image, target = torch.as_tensor(t1["image"]), torch.as_tensor(t1["label"])
    assert image[target == 3].mean() < image[target == 1].mean() < image[target == 2].mean()


def test_a_partial_volume_subject_mixes_tissues_on_their_boundary_and_keeps_the_classes(ball):
    labels = torch.from_numpy(structure_labels(*ball))[None]
    settings = {"seed": 0, "strip_prob": 0.0, "csf": True, "t1_prob": 1.0}
    crisp = synthseg_transform(**settings)({"label": labels})
    mixed = synthseg_transform(**settings, partial_volume=2)({"label": labels})
    image, target = torch.as_tensor(mixed["image"]), torch.as_tensor(mixed["label"])
    assert image.shape == target.shape == labels.shape and float(image.min()) == 0 and float(image.max()) == 1
    assert set(torch.unique(target).tolist()) == {0, 1, 2, 3}
    assert image[target == 3].mean() < image[target == 1].mean() < image[target == 2].mean()
    # the same anatomy: the tissue volumes of the crisp and the partial-volume subject agree within 10 %
    for k in (1, 2):
        crisp_volume = int((torch.as_tensor(crisp["label"]) == k).sum())
        assert abs(int((target == k).sum()) - crisp_volume) < 0.1 * crisp_volume


def test_skull_stripping_removes_the_head_and_outer_csf_to_the_drawn_depth(ball):
    labels = torch.from_numpy(structure_labels(*ball))[None]
    csf, gm = STRUCTURES.index("csf"), STRUCTURES.index("grey matter")
    kept = RandSkullStripd("label", prob=0.0)({"label": labels})
    assert torch.equal(kept["label"], labels) and bool(kept["mask"].all())
    strip = RandSkullStripd("label", prob=1.0, csf_depth=(3.0, 3.0))
    out = strip({"label": labels})
    stripped, mask = out["label"], out["mask"]
    assert int((stripped >= STRUCTURES.index("csf shell")).sum()) == 0  # no head left
    assert torch.equal(mask, stripped != 0) and int((labels == gm).sum()) == int((stripped == gm).sum())
    # the ball's CSF layer (radius 12-13 plus the hull's closing) is within 3 voxels of the outside: all gone
    assert int((stripped == csf).sum()) == 0 < int((labels == csf).sum())
    shallow = RandSkullStripd("label", prob=1.0, csf_depth=(0.0, 0.0))({"label": labels})["label"]
    assert torch.equal(shallow == csf, labels == csf)  # depth 0: the CSF stays, only the head goes
    # in a whole subject the stripped voxels are exactly 0, as brain-extraction tools write them
    subject = synthseg_transform(seed=0, strip_prob=1.0)({"label": labels})
    image, target = torch.as_tensor(subject["image"]), torch.as_tensor(subject["label"])
    assert float(image.max()) == 1.0 and float((image == 0).float().mean()) > 0.5 and "mask" not in subject
    assert int((target[image == 0] > 0).sum()) == 0


def test_cortical_thickness_moves_the_grey_white_boundary_by_the_drawn_depth(ball):
    labels = torch.from_numpy(structure_labels(*ball))[None]
    gm, wm = STRUCTURES.index("grey matter"), STRUCTURES.index("white matter")
    centre = 19 + HEAD_PAD
    r = torch.from_numpy(np.sqrt(((np.indices(labels.shape[1:]) - centre - 0.5) ** 2).sum(0)))[None]

    def radii(out):  # white matter's outer and grey matter's outer radius, from the voxels' centres
        return float(r[out == wm].max()), float(r[out == gm].max())

    wm_outer, gm_outer = radii(labels)
    for depth in (2.0, 3.0, 0.6, -1.0, -2.0):
        out = RandCorticalThicknessd("label", depth_range=(depth, depth))({"label": labels})["label"]
        assert out.shape == labels.shape and torch.equal(
            out != labels, (out != labels) & ((labels == gm) | (labels == wm))
        )
        new_wm, new_gm = radii(out)
        assert abs(new_wm - (wm_outer + depth)) <= 1.0  # the boundary moved by the depth, to a voxel
        assert new_gm == gm_outer and int((out == gm).sum()) > 0  # the cortex's outer surface stays
        assert (int((out == wm).sum()) > int((labels == wm).sum())) == (depth > 0)
    # thinning never removes the outer grey-matter layer, even deeper than the cortex is thick
    deep = RandCorticalThicknessd("label", depth_range=(10.0, 10.0))({"label": labels})["label"]
    outer = (labels == gm) & (r > gm_outer - 0.5)
    assert bool((deep[outer] == gm).all())
    off = RandCorticalThicknessd("label", prob=0.0)({"label": labels})["label"]
    assert torch.equal(off, labels)
    within_half_a_layer = RandCorticalThicknessd("label", depth_range=(0.4, 0.4))({"label": labels})["label"]
    assert torch.equal(within_half_a_layer, labels)
    # (0, 0) leaves a whole subject as before the option existed; a range changes its labels
    plain = synthseg_transform(seed=0)({"label": labels})["label"]
    assert torch.equal(
        torch.as_tensor(synthseg_transform(seed=0, thickness_range=(0.0, 0.0))({"label": labels})["label"]),
        torch.as_tensor(plain),
    )
    thinner = synthseg_transform(seed=0, thickness_range=(2.0, 2.0))({"label": labels})["label"]
    assert int((torch.as_tensor(thinner) == 2).sum()) > int((torch.as_tensor(plain) == 2).sum())


def test_alternating_subjects_take_turns_and_name_their_generators():
    class Ones:
        def __call__(self, seed):
            return np.ones((2, 2, 2), np.float32), np.ones((2, 2, 2), np.uint8), np.eye(4)

    class Twos(Ones):
        def __call__(self, seed):
            return tuple(2 * a for a in super().__call__(seed))

    both = AlternatingSubjects(Ones(), Twos())
    assert [int(both(seed)[1][0, 0, 0]) for seed in range(10007, 10011)] == [2, 1, 2, 1]
    assert "Ones and, in turn, from Twos" in both.description
    with pytest.raises(ValueError, match="at least one"):
        AlternatingSubjects()
    Twos.tissue = "intensity"
    with pytest.raises(ValueError, match="take their tissue from"):
        AlternatingSubjects(Ones(), Twos())


def test_a_dataset_from_another_generator_keeps_its_grid_and_the_real_test_image(tmp_path):
    def tiny(seed):  # stands in for SynthSegSubjects: a 6^3 subject on a shifted grid
        rng = np.random.default_rng(seed)
        return (
            rng.random((6, 6, 6)).astype(np.float32),
            rng.integers(0, 3, (6, 6, 6)).astype(np.uint8),
            np.diag([2.0, 2.0, 2.0, 1.0]),
        )

    path = prepare_brain_tissue_dataset(tmp_path, num_subjects=2, subjects=tiny, description="tiny subjects")
    assert json.loads(path.read_text())["description"] == "tiny subjects"
    items = load_decathlon_datalist(str(path), True, "training", str(tmp_path))
    assert len(items) == 2 and nib.load(items[0]["image"]).shape == (6, 6, 6)
    np.testing.assert_array_equal(nib.load(items[1]["label"]).affine, np.diag([2.0, 2.0, 2.0, 1.0]))
    assert nib.load(str(tmp_path / "imagesTs" / "icbm152_t1.nii.gz")).shape == (197, 233, 189)


def test_prepare_data_names_the_generators():
    done = run_cli("prepare-data", "/nonexistent/d", "--generator", "synthetic")
    assert done.returncode == 2 and "expected one of template, synthseg, mixed" in done.stderr
    done = run_cli("prepare-data", "/nonexistent/d", "--tissue", "argmax")
    assert done.returncode == 2 and "--tissue argmax: expected one of probability, intensity" in done.stderr
    for bad in ("(2,1)", "3", "(a,b)"):
        done = run_cli("prepare-data", "/nonexistent/d", "--thickness_range", bad)
        assert done.returncode == 2 and "--thickness_range" in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and not Path("/nonexistent/d").exists()
