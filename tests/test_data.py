"""Offline ICBM152 data: files found in nilearn, labels, MSD layout, determinism."""

import json
import logging

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import load_decathlon_datalist

from se_monai.data import (
    HEAD_SHELLS,
    acquired_voxels,
    add_head,
    icbm152_paths,
    images_to_segment,
    intensity_tissue_maps,
    is_skull_stripped,
    labelled_test_datalist,
    list_nifti,
    load_icbm152,
    skull_stripped_indices,
    split_datalist,
    synthesis_transform,
    tissue_labels,
)
from se_monai.io import InputError, list_images


def test_template_is_found_offline_and_real():
    paths = icbm152_paths()
    t1, gm, wm, affine = load_icbm152()
    assert set(paths) == {"t1", "gm", "wm"} and all(p.is_file() for p in paths.values())
    assert t1.shape == gm.shape == wm.shape == (197, 233, 189)
    np.testing.assert_allclose(np.abs(np.diag(affine)[:3]), 1.0)
    assert gm.min() >= 0 and gm.max() <= 1 and wm.min() >= 0 and wm.max() <= 1
    labels = tissue_labels(gm, wm)
    # white matter is brighter than grey matter on T1, which is brighter than CSF inside the brain
    brain = t1 > 0
    means = [t1[brain & (labels == k)].mean() for k in (0, 1, 2)]
    assert means[0] < means[1] < means[2]
    assert 0.8e6 < (labels == 1).sum() < 1.5e6 and 0.4e6 < (labels == 2).sum() < 0.9e6


def test_tissue_labels_argmax():
    gm = np.array([0.6, 0.2, 0.1, 0.0])
    wm = np.array([0.3, 0.7, 0.1, 0.0])
    np.testing.assert_array_equal(tissue_labels(gm, wm), [1, 2, 0, 0])
    # with the brain mask, "other" inside it is CSF (3); outside it stays 0
    brain = np.array([True, True, True, False])
    np.testing.assert_array_equal(tissue_labels(gm, wm, brain), [1, 2, 3, 0])


def test_intensity_tissue_follows_the_t1_and_thins_the_template_cortex():
    t1, gm, wm, _ = load_icbm152()
    grey, white = intensity_tissue_maps(t1, gm, wm)
    assert load_icbm152("intensity")[1].sum() == grey.sum()
    brain = t1 > 0
    labels, intensity = tissue_labels(gm, wm, brain), tissue_labels(grey, white, brain)
    # every class is an interval of T1 intensities, in T1 order, and the classes cover the brain
    ranges = [(t1[intensity == k].min(), t1[intensity == k].max()) for k in (3, 1, 2)]
    assert ranges[0][1] < ranges[1][0] <= ranges[1][1] < ranges[2][0]
    assert np.array_equal(intensity > 0, brain)
    # the thresholds lie midway between the probability labels' class medians (103, 169, 215 on the template)
    medians = [np.median(t1[labels == k]) for k in (3, 1, 2)]
    assert abs(ranges[1][0] - (medians[0] + medians[1]) / 2) <= 1.0
    assert abs(ranges[2][0] - (medians[1] + medians[2]) / 2) <= 1.0
    ratios = [(x == 1).sum() / (x == 2).sum() for x in (labels, intensity)]
    assert 1.6 < ratios[0] < 1.8 and 1.3 < ratios[1] < 1.5  # 1.72 and 1.39 measured
    for k in (1, 2):  # the same anatomy, its boundaries moved
        assert 2 * ((labels == k) & (intensity == k)).sum() / ((labels == k).sum() + (intensity == k).sum()) > 0.9
    with pytest.raises(ValueError, match="expected one of probability, intensity"):
        load_icbm152("argmax")


def test_synthesis_is_deterministic_and_changes_the_image():
    volume = torch.rand(3, 24, 24, 24) * torch.tensor([200.0, 1.0, 1.0]).reshape(3, 1, 1, 1)
    geometry_a, _ = synthesis_transform(seed=3).transforms
    geometry_b, _ = synthesis_transform(seed=3).transforms
    geometry_c, _ = synthesis_transform(seed=4).transforms
    a = geometry_a({"image": volume.clone()})["image"]
    b = geometry_b({"image": volume.clone()})["image"]
    c = geometry_c({"image": volume.clone()})["image"]
    assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    assert not torch.allclose(torch.as_tensor(a), torch.as_tensor(c))
    assert not torch.allclose(torch.as_tensor(a), volume)


def test_skull_stripped_images_are_told_from_heads_by_their_zeros(tmp_path):
    rng = np.random.default_rng(0)
    head = rng.random((20, 20, 20)).astype(np.float32) + 0.01  # noise everywhere, as a scan with the head on
    stripped = np.where(np.indices((20, 20, 20)).sum(0) < 25, head, 0).astype(np.float32)  # about half zero
    items = []
    for name, volume in (("head", head), ("brain", stripped), ("head2", head)):
        nib.save(nib.Nifti1Image(volume, np.eye(4)), str(tmp_path / f"{name}.nii.gz"))
        items.append({"image": str(tmp_path / f"{name}.nii.gz")})
    assert [is_skull_stripped(i["image"]) for i in items] == [False, True, False]
    assert skull_stripped_indices(items) == [1]
    assert skull_stripped_indices([items[0], items[2]]) == [0, 1]  # none stripped: all of them
    (tmp_path / "bad.nii.gz").write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"bad\.nii\.gz: not a readable image"):
        is_skull_stripped(tmp_path / "bad.nii.gz")


def test_the_last_items_validate_but_never_all_of_them():
    items = [{"image": str(k)} for k in range(5)]
    assert split_datalist(items, 2) == (items[:3], items[3:])
    assert split_datalist(items[:2], 2) == (items[:1], items[1:2])  # at most all but one
    assert split_datalist(items[:1], 2) == (items[:1], items[:1]) == split_datalist(items[:1], 0)
    assert split_datalist(items, 0) == (items, items[-1:])
    with pytest.raises(ValueError, match="needs items"):
        split_datalist([], 1)


def test_acquired_voxels_are_non_zero_in_any_channel():
    image = torch.zeros(4, 3, 2, 2)
    image[2, 1, 0, 0], image[0, 2, 1, 1] = -1.0, 5.0
    mask = acquired_voxels(image)
    assert mask.shape == (1, 3, 2, 2) and mask.dtype == torch.bool
    assert sorted(map(tuple, mask[0].nonzero().tolist())) == [(1, 0, 0), (2, 1, 1)]


def test_msd_dataset(icbm_dataset):
    root = icbm_dataset
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["labels"] == {"0": "other", "1": "grey matter", "2": "white matter"} and meta["numTraining"] == 2
    items = load_decathlon_datalist(str(root / "dataset.json"), True, "training", str(root))
    assert len(items) == 2
    for item in items:
        image, label = nib.load(item["image"]), nib.load(item["label"])
        assert image.shape == label.shape == (197, 233, 189)
        values = np.asarray(label.dataobj)
        assert set(np.unique(values)) == {0, 1, 2}
        data = np.asarray(image.dataobj)
        assert data.std() > 0 and (data[values == 2].mean() > data[values == 1].mean())
    assert images_to_segment(root) == [str(root / "imagesTs" / "icbm152_t1.nii.gz")]
    assert labelled_test_datalist(root)[0]["label"].endswith("labelsTs/icbm152_t1.nii.gz")


def test_images_to_segment_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        images_to_segment(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no image files"):
        images_to_segment(tmp_path)


def test_images_are_listed_as_real_archives_hold_them(tmp_path, caplog):
    """An MSD folder as the Decathlon archives ship it: a ``._`` AppleDouble file beside every image (named like it),
    ``.DS_Store``, a README; images of every readable format, a truncated image (listed: reading it fails, with its
    reason, where it is segmented), upper-case suffixes, a sub-folder."""
    root = tmp_path / "Task04_Hippocampus"
    folder = root / "imagesTs"
    folder.mkdir(parents=True)
    apple = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64)
    image = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    for name in ("hippocampus_001.nii.gz", "hippocampus_002.nii", "b.NII.GZ"):
        nib.save(image, str(folder / name))
        (folder / f"._{name}").write_bytes(apple)
    (folder / "c.nrrd").write_bytes(b"NRRD0004\n")
    (folder / "truncated.nii.gz").write_bytes((folder / "hippocampus_001.nii.gz").read_bytes()[:40])
    (folder / "renamed.nii.gz").write_bytes(apple)  # an AppleDouble file that lost its "._" on the way
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "README.md").write_text("the test cases")
    (folder / "extra").mkdir()
    names = ["b.NII.GZ", "c.nrrd", "hippocampus_001.nii.gz", "hippocampus_002.nii", "truncated.nii.gz"]
    images, ignored = list_images(folder)
    assert images == [str(folder / name) for name in names]
    assert ignored == {
        str(folder / "README.md"): "not an image of .nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd",
        str(folder / "renamed.nii.gz"): "a macOS AppleDouble file, not an image",
    }
    with caplog.at_level(logging.INFO, logger="se_monai.data"):
        assert images_to_segment(root) == images  # an MSD dataset: its imagesTs/
    assert f"{folder / 'renamed.nii.gz'}: ignored (a macOS AppleDouble file, not an image)" in caplog.messages
    with pytest.warns(DeprecationWarning, match="images_to_segment"):
        assert list_nifti(root) == images  # the name the configs of earlier bundles import
    with pytest.raises(InputError, match="no such folder"):
        list_images(folder / "missing")


def test_add_head_puts_csf_skull_and_scalp_around_the_brain():
    grid = np.indices((40, 40, 40)) - 19.5
    brain = np.where((grid**2).sum(0) < 15**2, 150.0, 0.0).astype(np.float32)  # a ball of radius 15 voxels
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    head, head_affine = add_head(brain, affine)
    pad = sum(t for t, _ in HEAD_SHELLS) + 4
    assert head.shape == (40 + 2 * pad,) * 3
    np.testing.assert_allclose(head_affine[:3, 3], -pad)  # the brain keeps its world position
    inside = head[pad:-pad, pad:-pad, pad:-pad]
    assert np.abs(inside[brain > 0] - 150.0).max() < 12  # the brain, plus noise of sd 2
    centre = 19.5 + pad
    profile = head[int(centre), int(centre), int(centre) :]  # from the centre outwards along one axis
    radius = 15.0
    for thickness, value in HEAD_SHELLS:
        middle = int(centre + radius + thickness / 2) - int(centre)
        assert abs(profile[middle] - value) < 12, (middle, profile[middle], value)
        radius += thickness
    assert profile[-1] < 10  # air outside the scalp
