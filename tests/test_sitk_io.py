"""NRRD, MetaImage and DICOM series through SimpleITK: real files written here by SimpleITK from a crop of
the ICBM152 T1, segmented by the shipped model, the labels read back with SimpleITK."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import assert_same_geometry, write_dicom_series
from test_cli import run_cli

from se_monai.io import InputError
from se_monai.io.sitk import label_statistics, read_image
from se_monai.segmentation import segment_image


def test_nrrd_and_mha_in_and_out_keep_the_grid_and_the_labels(t1, tmp_path):
    nifti, nrrd = tmp_path / "t1.nii.gz", tmp_path / "t1.nrrd"
    sitk.WriteImage(t1, str(nifti))
    sitk.WriteImage(t1, str(nrrd))
    from_nifti = sitk.ReadImage(str(segment_image(nifti, tmp_path / "a.nii.gz", progress=False)))
    done = run_cli("segment", str(nrrd), str(tmp_path / "b.mha"), "--progress", "False")
    assert done.returncode == 0, done.stderr
    from_nrrd = sitk.ReadImage(str(tmp_path / "b.mha"))
    assert_same_geometry(from_nrrd, t1)  # read back with SimpleITK: the input's size, spacing, origin and direction
    assert from_nrrd.GetPixelID() == sitk.sitkUInt8
    labels = sitk.GetArrayFromImage(from_nrrd)
    np.testing.assert_array_equal(labels, sitk.GetArrayFromImage(from_nifti))  # the same segmentation
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    segment_image(nifti, tmp_path / "c.nrrd", progress=False)  # a NIfTI in, NRRD out
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "c.nrrd"))), labels)


def test_a_dicom_series_folder_is_read_with_its_geometry_and_segmented(t1, tmp_path):
    folder = write_dicom_series(t1, tmp_path / "dicom")
    image = read_image(folder)
    assert_same_geometry(image, t1)
    target = segment_image(folder, tmp_path / "seg.nrrd", progress=False)
    labels = sitk.ReadImage(str(target))
    assert_same_geometry(labels, t1)
    counts = np.bincount(sitk.GetArrayFromImage(labels).ravel(), minlength=3)
    assert counts[1] > 1000 and counts[2] > 1000  # grey and white matter found in the rescaled integer T1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dicom", "seg.nrrd"]  # nothing else left behind


def test_dicom_folders_that_cannot_be_used_are_one_line_errors(t1, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(InputError, match="no DICOM series in the folder"):
        read_image(empty)
    gap = write_dicom_series(t1, tmp_path / "gap", skip=20)
    with pytest.raises(InputError, match="missing or unevenly spaced"):
        read_image(gap)
    mixed = write_dicom_series(t1, tmp_path / "mixed")
    scout = "1.2.826.0.1.3680043.2.1125.2"
    other = write_dicom_series(t1[:, :, :12], tmp_path / "other", uid=scout, description="scout")
    for path in other.iterdir():
        shutil.move(str(path), str(mixed / f"b_{path.name}"))
    done = run_cli("segment", str(mixed), str(tmp_path / "seg.nii.gz"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "2 DICOM series" in done.stderr and "1.2.826.0.1.3680043.2.1125.2 (scout)" in done.stderr
    assert read_image(mixed, series="1.2.826.0.1.3680043.2.1125.2").GetSize()[2] == 12
    assert not (tmp_path / "seg.nii.gz").exists()


def test_bad_files_and_suffixes_are_one_line_errors(t1, tmp_path):
    nrrd = tmp_path / "t1.nrrd"
    sitk.WriteImage(t1, str(nrrd), useCompression=False)
    truncated = tmp_path / "truncated.nrrd"
    truncated.write_bytes(nrrd.read_bytes()[: nrrd.stat().st_size // 2])
    before = truncated.read_bytes()
    cases = [
        (truncated, tmp_path / "a.nii.gz", "not a readable image"),
        (nrrd, tmp_path / "a.mhd", "output must end in .nii, .nii.gz, .nrrd, .mha"),
        (nrrd, nrrd, "would overwrite the input"),
        (tmp_path / "missing.mha", tmp_path / "a.nii.gz", "no such file or folder"),
    ]
    for source, output, message in cases:
        done = run_cli("segment", str(source), str(output))
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("se-monai: error: "), done.stderr
        assert message in lines[0], lines[0]
    assert truncated.read_bytes() == before  # inputs are never modified
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t1.nrrd", "truncated.nrrd"]


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
def test_statistics_are_the_label_counts_times_the_voxel_volume(t1, tmp_path, suffix):
    source, table = tmp_path / f"t1{suffix}", tmp_path / "stats.json"
    sitk.WriteImage(t1, str(source))
    done = run_cli("segment", str(source), str(tmp_path / "seg.mha"), "--statistics", str(table), "--progress", "False")
    assert done.returncode == 0 and f"statistics written to {table}" in done.stdout, done.stderr
    stats = json.loads(table.read_text())
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "seg.mha")))
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(source)))
    voxel_ml = float(np.prod(t1.GetSpacing())) / 1000
    assert list(stats) == ["other", "grey matter", "white matter", "CSF"]
    for value, name in enumerate(stats):
        voxels = int((labels == value).sum())
        assert stats[name]["voxels"] == voxels > 0
        assert stats[name]["volume_ml"] == pytest.approx(voxels * voxel_ml)
        assert stats[name]["mean_intensity"] == pytest.approx(float(image[labels == value].mean()), rel=1e-6)
    # a T1: CSF < grey matter < white matter
    assert stats["CSF"]["mean_intensity"] < stats["grey matter"]["mean_intensity"]
    assert stats["white matter"]["mean_intensity"] > stats["grey matter"]["mean_intensity"]


def test_a_statistics_file_that_is_not_json_is_refused_before_anything_runs(t1, tmp_path):
    source = tmp_path / "t1.nrrd"
    sitk.WriteImage(t1, str(source))
    done = run_cli("segment", str(source), str(tmp_path / "seg.nrrd"), "--statistics", str(tmp_path / "s.csv"))
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"se-monai: error: {tmp_path / 's.csv'}: --statistics must name a .json file"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t1.nrrd"]


def test_statistics_of_a_four_channel_image_give_one_mean_per_channel(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=(5, 6, 7)).astype(np.uint8)  # (z, y, x) as SimpleITK arrays go
    channels = rng.normal(size=(4, 5, 6, 7))
    label_path = tmp_path / "labels.nii.gz"
    label_image = sitk.GetImageFromArray(labels)
    label_image.SetSpacing((0.5, 1.0, 2.0))
    sitk.WriteImage(label_image, str(label_path))
    four_d = sitk.GetImageFromArray(channels, isVector=False)  # (x, y, z, c), as a 4-D NIfTI reads
    vector = sitk.GetImageFromArray(np.moveaxis(channels, 0, -1), isVector=True)  # 4 components per voxel
    for image in (four_d, vector):
        stats = label_statistics(label_path, image, {"0": "a", "1": "b", "2": "c", "3": "absent"})
        for value, name in enumerate("abc"):
            assert stats[name]["voxels"] == int((labels == value).sum())
            assert stats[name]["volume_ml"] == pytest.approx(stats[name]["voxels"] * 1e-3)
            expected = [float(channels[c][labels == value].mean()) for c in range(4)]
            np.testing.assert_allclose(stats[name]["mean_intensity"], expected, rtol=1e-9)
        assert stats["absent"] == {"voxels": 0, "volume_ml": 0.0, "mean_intensity": [None] * 4}
