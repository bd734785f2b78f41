"""MONAI-native SimpleITK reading and writing, probability maps, mirroring test-time augmentation and folders:
the reader and writer inside MONAI transforms and a bundle config against nibabel on the same real
files; FlipInferer against a straightforward loop over the mirror images; whole folders through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from helpers import assert_same_geometry, write_dicom_series
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.inferers import SimpleInferer, SlidingWindowInferer
from monai.transforms import EnsureChannelFirstd, LoadImaged, SaveImaged
from test_cli import run_cli

from se_monai import segmentation
from se_monai.inferers import AutocastInferer, AutocastNetwork, FlipInferer, complete_background, cpu_bf16_preferred
from se_monai.io import InputError
from se_monai.io import sitk as sitk_io
from se_monai.io.sitk import SimpleITKReader, SimpleITKWriter, bundle_readers, read_image
from se_monai.segmentation import find_cases, segment_image


def _load(path, reader=None):
    return EnsureChannelFirstd("image")(LoadImaged("image", reader=reader, image_only=True)({"image": str(path)}))[
        "image"
    ]


def test_the_reader_gives_what_nibabel_gives_for_the_same_image(t1, tmp_path):
    sitk.WriteImage(t1, str(tmp_path / "t1.nii.gz"))
    sitk.WriteImage(t1, str(tmp_path / "t1.nrrd"))
    sitk.WriteImage(t1, str(tmp_path / "t1.mha"))
    expected = _load(tmp_path / "t1.nii.gz")  # MONAI's default reader: nibabel
    dicom = write_dicom_series(sitk.Cast(sitk.RescaleIntensity(t1, 0, 2000), sitk.sitkInt16), tmp_path / "dicom")
    for path in (tmp_path / "t1.nrrd", tmp_path / "t1.mha", tmp_path / "t1.nii.gz", dicom):
        image = _load(path, SimpleITKReader())
        assert image.shape == expected.shape == (1, *t1.GetSize())
        np.testing.assert_allclose(image.affine.numpy(), expected.affine.numpy(), atol=1e-4)
        if path != dicom:  # the series holds integers rescaled to 0..2000
            np.testing.assert_array_equal(image.numpy(), expected.numpy())
    rescaled = _load(dicom, bundle_readers())  # the bundle's readers: nibabel cannot, SimpleITK reads the series
    assert np.corrcoef(rescaled.numpy().ravel(), expected.numpy().ravel())[0, 1] > 0.999


def test_the_reader_is_a_bundle_config_component_and_reads_vector_images(t1, tmp_path):
    vector = sitk.Compose([t1, t1 * 2.0])
    sitk.WriteImage(vector, str(tmp_path / "two.nrrd"))
    parser = ConfigParser(
        {
            "load": {
                "_target_": "LoadImaged",
                "keys": "image",
                "image_only": True,
                "ensure_channel_first": True,
                "reader": {"_target_": "se_monai.io.sitk.SimpleITKReader"},
            }
        }
    )
    image = parser.get_parsed_content("load")({"image": str(tmp_path / "two.nrrd")})["image"]
    assert image.shape == (2, *t1.GetSize())
    np.testing.assert_allclose(image[1].numpy(), 2 * image[0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(image[0].numpy(), sitk.GetArrayFromImage(t1).T, rtol=1e-6)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match="unknown image format"):
        SimpleITKReader().read(tmp_path / "notes.txt")


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_the_writer_round_trips_data_and_geometry_through_saveimaged(t1, tmp_path, suffix):
    sitk.WriteImage(t1, str(tmp_path / "t1.nii.gz"))
    image = _load(tmp_path / "t1.nii.gz")
    two = torch.cat([image, -image]).as_subclass(type(image))
    two.meta = dict(image.meta)
    for name, data in (("one", image), ("two", two)):
        save = SaveImaged("image", output_dir=str(tmp_path), output_postfix=name, output_ext=suffix, resample=False,
                          writer=SimpleITKWriter, separate_folder=False)  # fmt: skip
        save({"image": data})
        back = sitk.ReadImage(str(tmp_path / f"t1_{name}{suffix}"))
        assert_same_geometry(back, t1)
        assert back.GetNumberOfComponentsPerPixel() == data.shape[0]
        array = sitk.GetArrayFromImage(back)  # (z, y, x) or (z, y, x, c)
        channels = np.moveaxis(array, -1, 0) if name == "two" else array[None]
        np.testing.assert_allclose(channels[0], sitk.GetArrayFromImage(t1))
        np.testing.assert_allclose(channels[1:], -channels[:1].repeat(len(channels) - 1, 0))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


#: FreeSurfer's conformed orientation (LIA: x left, y inferior, z anterior), 1 mm: a permuted grid.
LIA = np.array([[-1.0, 0, 0, 60], [0, 0, 1, -50], [0, -1, 0, 40], [0, 0, 0, 1]])


def _volume_and_channels_last(t1, tmp_path, channels=(1,)):
    """The crop on the LIA grid as a 3-D NIfTI and as 4-D NIfTIs with ``channels`` copies of it, channel-last."""
    volume = sitk.GetArrayFromImage(t1).T
    nib.save(nib.Nifti1Image(volume, LIA), str(tmp_path / "t1.nii.gz"))
    for c in channels:
        nib.save(nib.Nifti1Image(np.stack([volume] * c, -1), LIA), str(tmp_path / f"t1_{c}.nii.gz"))
    return tmp_path / "t1.nii.gz", [tmp_path / f"t1_{c}.nii.gz" for c in channels]


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_one_channel_of_a_channel_last_image_is_written_on_its_grid(t1, tmp_path, suffix):
    """Labels of a 4-D NIfTI read channel-last (X, Y, Z, C), with C 1 (a volume as some converters write it) or 2,
    keep the input's permuted grid: MONAI 1.6's writers took the one-channel data for 2-D and failed."""
    three, fours = _volume_and_channels_last(t1, tmp_path, (1, 2))
    for path in fours:
        image = _load(path, bundle_readers())
        save = SaveImaged("image", output_dir=str(tmp_path), output_postfix="seg", output_ext=suffix, resample=False,
                          writer=sitk_io.writer_for(suffix), separate_folder=False, print_log=False)  # fmt: skip
        save({"image": image[:1]})
        back = sitk.ReadImage(str(tmp_path / (path.name.split(".")[0] + f"_seg{suffix}")))
        assert back.GetDimension() == 3
        assert_same_geometry(back, sitk.ReadImage(str(three)))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(t1))


def test_a_four_d_nifti_with_one_volume_and_upper_case_names_are_segmented_as_the_volume(t1, tmp_path):
    """(X, Y, Z, 1) on a permuted grid, and ``T1.NII.GZ`` (Windows tools, some DICOM converters): NIfTI in and out,
    the labels of the 3-D file, alone and in a folder."""
    three, (four,) = _volume_and_channels_last(t1, tmp_path)
    expected = sitk.ReadImage(str(segment_image(three, tmp_path / "a.nii.gz", progress=False)))
    labels = sitk.ReadImage(str(segment_image(four, tmp_path / "b.nii.gz", progress=False)))
    assert labels.GetDimension() == 3
    assert_same_geometry(labels, expected)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(expected))
    assert set(np.unique(sitk.GetArrayFromImage(labels))) == {0, 1, 2, 3}
    (tmp_path / "upper").mkdir()
    shutil.copy(three, tmp_path / "upper" / "BRAIN.NII.GZ")
    target = segment_image(tmp_path / "upper" / "BRAIN.NII.GZ", tmp_path / "SEG.NII.GZ", progress=False)
    assert nib.load(str(target)).shape == t1.GetSize()  # nibabel reads it: a gzipped NIfTI
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(target))), sitk.GetArrayFromImage(expected))
    assert [c.name for c in find_cases(tmp_path / "upper")[0]] == ["BRAIN"]


class _Mirrors(torch.nn.Module):
    """A network that sees orientation: logits from the input and its coordinates."""

    def forward(self, x):
        grid = torch.linspace(-1, 1, x.shape[-1])
        return torch.cat([x, x * grid, -x + grid.expand_as(x)], dim=1)


def test_flip_inferer_averages_the_mirrored_softmax_as_a_plain_loop_does():
    x = torch.randn(1, 1, 6, 5, 4)
    network = _Mirrors()
    for axes, passes in (((0,), 2), ((0, 1, 2), 8), ((2,), 2)):
        inferer = FlipInferer(SimpleInferer(), axes)
        assert len(inferer.flips) == passes
        expected = torch.zeros(1, 3, 6, 5, 4)
        for flips in inferer.flips:
            image = torch.flip(x, flips)
            expected += torch.flip(torch.softmax(network(image), 1), flips) / passes
        got = torch.softmax(inferer(x, network), 1)  # the bundle's Activationsd gives back the mean
        torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, torch.softmax(network(x), 1))  # the mirrors change this network's output
    with pytest.raises(ValueError, match="distinct values of 0, 1, 2"):
        FlipInferer(SimpleInferer(), (0, 3))


def test_autocast_inferer_runs_the_network_in_bfloat16_and_returns_float32():
    torch.manual_seed(0)
    network = torch.nn.Conv3d(1, 3, 3, padding=1)
    x = torch.randn(1, 1, 8, 8, 8)
    seen = []
    network.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    off = AutocastInferer(SimpleInferer(), enabled=False)(x, network)
    assert torch.equal(off, network(x)) and seen[-2:] == [torch.float32, torch.float32]
    on = AutocastInferer(SimpleInferer())(x, network)
    assert seen[-1] == torch.bfloat16 and on.dtype == torch.float32
    error = (on - off).abs().max() / off.abs().max()
    assert 0 < error < 0.02  # bfloat16 rounding (8-bit significand), not float32's
    # only the network's calls are autocast: the windows are blended in float32, as bfloat16 windows would be
    windows = SlidingWindowInferer((8, 8, 8), overlap=0.5, mode="gaussian")
    x = torch.randn(1, 1, 20, 16, 12)
    blended = AutocastInferer(windows)(x, network)
    assert blended.dtype == torch.float32 and torch.equal(blended, windows(x, AutocastNetwork(network, "cpu")))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        everything = windows(x, network).float()  # the blending in bfloat16 too: coarser
    full = windows(x, network)
    assert (blended - full).abs().max() < (everything - full).abs().max()


def test_bfloat16_is_the_default_only_on_cpus_with_amx():
    assert not cpu_bf16_preferred("meta") and not cpu_bf16_preferred(torch.device("cuda:0"))
    amx = torch.cpu._is_amx_tile_supported() and torch.cpu._is_avx512_bf16_supported()
    assert cpu_bf16_preferred("cpu") == amx


def test_complete_background_gives_other_the_rest_of_the_probability():
    probabilities = torch.tensor([[0.2, 0.0], [0.5, 0.0], [0.3, 0.0]]).reshape(3, 2, 1, 1)
    completed = complete_background(probabilities)
    assert torch.equal(completed[:, 0], probabilities[:, 0])  # already summing to one: unchanged, bit for bit
    tie = torch.softmax(torch.tensor([0.77, 0.77, -1.0]), 0).reshape(3, 1, 1, 1)  # argmax: "other" (first)
    assert 1.0 - tie[1:].sum() < tie[1]  # recomputing "other" would round it below grey matter here
    assert torch.equal(complete_background(tie), tie) and int(complete_background(tie).argmax(0)) == 0
    torch.testing.assert_close(completed[:, 1].flatten(), torch.tensor([1.0, 0.0, 0.0]))  # masked: "other"


def test_probabilities_and_tta_on_a_real_nrrd(t1, tmp_path):
    source = tmp_path / "t1.nrrd"
    sitk.WriteImage(t1, str(source))
    plain = segment_image(source, tmp_path / "plain.mha", progress=False, probabilities=tmp_path / "p.nrrd")
    maps = sitk.ReadImage(str(tmp_path / "p.nrrd"))
    assert_same_geometry(maps, t1)
    assert maps.GetNumberOfComponentsPerPixel() == 4 and maps.GetPixelID() == sitk.sitkVectorFloat32
    p = sitk.GetArrayFromImage(maps)  # (z, y, x, class)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(plain)))
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(p.argmax(-1), labels)
    tta = segment_image(
        source, tmp_path / "tta.nii.gz", progress=False, tta=[0], probabilities=tmp_path / "p.npz",
        probabilities_dtype="float16",
    )  # fmt: skip
    archive = np.load(tmp_path / "p.npz")
    assert archive["probabilities"].dtype == np.float16 and archive["probabilities"].shape == (4, *t1.GetSize())
    tta_labels = np.asarray(nib.load(str(tta)).dataobj)
    np.testing.assert_allclose(archive["affine"], nib.load(str(tta)).affine, atol=1e-6)
    assert np.mean(archive["probabilities"].argmax(0) == tta_labels) > 0.999  # float16 rounding of near-ties
    changed = np.mean(tta_labels != labels.T)
    assert 0.0 < changed < 0.1  # the mirror average moves boundary voxels (many in this small field of view)
    with pytest.raises(InputError, match=r"float16 probabilities need a \.npz file"):
        segment_image(source, tmp_path / "x.mha", probabilities=tmp_path / "x.nrrd", probabilities_dtype="float16")
    with pytest.raises(InputError, match="expected distinct spatial axes"):
        segment_image(source, tmp_path / "x.mha", tta=[0, 0])


def test_amp_chooses_the_precision_of_the_bundles_inference(t1, tmp_path):
    source = tmp_path / "t1.nrrd"
    sitk.WriteImage(t1, str(source))
    runs = {}
    for amp in (None, False, True):
        probabilities = tmp_path / f"p_{amp}.npz"
        segment_image(source, tmp_path / f"s_{amp}.nii.gz", progress=False, amp=amp, probabilities=probabilities)
        runs[amp] = np.load(probabilities)["probabilities"]
    # the default is float32 or bfloat16 as cpu_bf16_preferred says for this CPU, bit for bit
    np.testing.assert_array_equal(runs[None], runs[cpu_bf16_preferred("cpu")])
    difference = np.abs(runs[True] - runs[False])
    # autocast took effect, and it is rounding, not another model (a voxel at a class boundary may still flip: the
    # intensity refinement's EM counts the voxels the network labels tissue)
    assert difference.max() > 0 and difference.mean() < 1e-3 and np.quantile(difference, 0.999) < 0.1
    assert np.mean(runs[True].argmax(0) == runs[False].argmax(0)) > 0.99


def test_a_folder_is_segmented_case_by_case_and_resumes(t1, tmp_path):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    sitk.WriteImage(t1, str(inputs / "brain.nii.gz"))
    write_dicom_series(t1, inputs / "patient" / "series")
    (inputs / "broken.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    (inputs / "notes.txt").write_text("scanner notes")
    # an archive unpacked from a Mac: AppleDouble files beside the images, hidden or (copied by hand) not, and a
    # __MACOSX folder mirroring the DICOM folder
    apple = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64)
    (inputs / "._brain.nii.gz").write_bytes(apple)
    (inputs / "brain copy.nii.gz").write_bytes(apple)
    (inputs / "__MACOSX" / "patient" / "series").mkdir(parents=True)
    (inputs / "__MACOSX" / "patient" / "series" / "._IM0001.dcm").write_bytes(apple)
    cases, notes = find_cases(inputs)
    assert [c.name for c in cases] == ["brain", "broken", "patient_series"]
    suffixes = ".nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd"
    assert notes == [
        f"{inputs / 'brain copy.nii.gz'}: ignored (a macOS AppleDouble file, not an image)",
        f"{inputs / 'notes.txt'}: ignored (not an image of {suffixes} or DICOM)",
    ]
    before = {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()}
    args = ["segment", str(inputs), str(outputs), "--output_ext", ".nrrd", "--statistics", "--progress", "False"]
    done = run_cli(*args)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "broken" in line]
    assert len(errors) == 1 and errors[0].startswith(f"{inputs / 'broken.nii.gz'}: not a readable NIfTI image")
    assert "se-monai: error: 1 of 3 inputs failed (listed above)" in done.stderr
    assert "WARNING" not in done.stderr  # no ITK warnings for the folders without DICOM
    assert "2 written, 0 already there, 1 failed" in done.stdout
    written = sorted(p.name for p in outputs.iterdir())
    assert written == [
        "brain_seg.nrrd", "brain_statistics.json", "patient_series_seg.nrrd", "patient_series_statistics.json"
    ]  # fmt: skip
    for name in ("brain", "patient_series"):
        labels = sitk.ReadImage(str(outputs / f"{name}_seg.nrrd"))
        assert_same_geometry(labels, t1)
        table = json.loads((outputs / f"{name}_statistics.json").read_text())
        assert table["white matter"]["voxels"] == int((sitk.GetArrayFromImage(labels) == 2).sum()) > 1000
    again = run_cli(*args)
    assert again.returncode == 2 and "0 written, 2 already there, 1 failed" in again.stdout
    assert {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()} == before  # inputs untouched


def test_a_nifti_write_that_fails_leaves_no_partial_file(tmp_path, monkeypatch):
    """The bundle's NIfTI writer (writer_for(".nii.gz")) writes through a temporary file: a write that fails half-way
    leaves neither the target nor the temporary file."""

    def half_then_fail(image, filename):
        Path(filename).write_bytes(b"\x1f\x8b partial")
        raise OSError(28, "No space left on device")

    save = SaveImaged("pred", output_dir=str(tmp_path), writer=sitk_io.writer_for(".nii.gz"), separate_folder=False)
    image = MetaTensor(torch.ones(1, 4, 4, 4), meta={"filename_or_obj": "case.nii.gz"})
    monkeypatch.setattr(nib, "save", half_then_fail)
    with pytest.raises(RuntimeError, match="No space left on device"):  # MONAI's SaveImage reports its writer's error
        save({"pred": image})
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    save({"pred": image})
    assert [p.name for p in tmp_path.iterdir()] == ["case_trans.nii.gz"]
    assert nib.load(str(tmp_path / "case_trans.nii.gz")).shape == (4, 4, 4)


def test_folders_and_channels_that_cannot_be_used_are_one_line_errors(t1, tmp_path):
    sitk.WriteImage(sitk.Compose([t1, t1]), str(tmp_path / "two.nrrd"))
    done = run_cli("segment", str(tmp_path / "two.nrrd"), str(tmp_path / "seg.nrrd"))
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"se-monai: error: {tmp_path / 'two.nrrd'}: has 2 channel(s), the model expects 1"
    ]
    (tmp_path / "empty").mkdir()
    done = run_cli("segment", str(tmp_path / "empty"), str(tmp_path / "labels"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert f"{tmp_path / 'empty'}: no image" in done.stderr and "or DICOM series" in done.stderr
    anat = tmp_path / "bids" / "sub-01" / "anat"  # a BIDS dataset: its scans in subfolders
    anat.mkdir(parents=True)
    sitk.WriteImage(t1, str(anat / "sub-01_T1w.nii.gz"))
    done = run_cli("segment", str(tmp_path / "bids"), str(tmp_path / "labels"))
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"se-monai: error: {tmp_path / 'bids'}: no image (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd) or DICOM series; "
        "subfolders are searched for DICOM only (found sub-01/anat/sub-01_T1w.nii.gz)"
    ]
    shutil.rmtree(tmp_path / "bids")
    done = run_cli("segment", str(tmp_path), str(tmp_path / "labels"), "--output_ext", ".mhd")
    assert done.returncode == 2 and "--output_ext .mhd: expected one of .nii, .nii.gz, .nrrd, .mha" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "two.nrrd"]  # nothing written
    nib.save(nib.Nifti1Image(np.ones((8, 8, 1), np.float32), np.eye(4)), str(tmp_path / "slice.nii.gz"))
    done = run_cli("segment", str(tmp_path / "slice.nii.gz"), str(tmp_path / "seg.nii.gz"))
    assert done.returncode == 2 and "shape (8, 8, 1) is a single slice (a 2-D image), not a volume" in done.stderr
    (tmp_path / "slice.nii.gz").unlink()
    header = tmp_path / "header.mha"  # its data file is missing: ITK's C++ reader also prints to the process's stderr
    fields = ["ObjectType = Image", "NDims = 3", "DimSize = 4 4 4", "ElementType = MET_FLOAT", "ElementDataFile = a"]
    header.write_text("\n".join(fields) + "\n")
    done = run_cli("segment", str(header), str(tmp_path / "seg.nii.gz"), process=True)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"se-monai: error: {header}: not a readable image (ITK ERROR: MetaImageIO: File cannot be read: {header} for "
        "reading.)"
    ]


def test_a_dicom_series_gets_a_dicom_seg_referencing_its_images(t1, tmp_path):
    highdicom = pytest.importorskip("highdicom")
    pydicom = pytest.importorskip("pydicom")
    folder = write_dicom_series(t1, tmp_path / "series")
    done = run_cli("segment", str(folder), str(tmp_path / "seg.dcm"), "--progress", "False")
    assert done.returncode == 0, done.stderr
    segment_image(folder, tmp_path / "seg.nrrd", progress=False)
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "seg.nrrd")))  # (slice, row, column)
    seg = highdicom.seg.segread(str(tmp_path / "seg.dcm"))
    sources = [pydicom.dcmread(name, stop_before_pixels=True) for name in sitk_io.series_files(folder)]
    pixels = seg.get_pixels_by_source_instance([s.SOPInstanceUID for s in sources], combine_segments=True)
    np.testing.assert_array_equal(pixels, expected)  # every source slice's frame: the labels of that slice
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["grey matter", "white matter", "CSF"]
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID and seg.PatientID == sources[0].PatientID
    sitk.WriteImage(t1, str(tmp_path / "t1.nrrd"))
    done = run_cli("segment", str(tmp_path / "t1.nrrd"), str(tmp_path / "other.dcm"))
    assert done.returncode == 2 and "DICOM SEG output (.dcm) needs a DICOM series folder as input" in done.stderr


def test_a_real_dicom_archive_with_localizers_indexes_and_gaps(tmp_path):
    """pydicom's test archive (real scanner files: CR, CT and MR series of 16 x 16 images, DICOMDIR indexes, single
    slices, series with gaps, several series per folder): every input is segmented or refused in one line."""
    pydicom = pytest.importorskip("pydicom")
    archive = tmp_path / "archive"
    shutil.copytree(Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests", archive)
    done = run_cli("segment", str(archive), str(tmp_path / "labels"), "--plausibility", "off", "--progress", "False")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{archive / 'DICOMDIR'}: ignored (a DICOM file outside any image series, e.g. a DICOMDIR index" in lines[0]
    single = [line for line in lines if "is a single slice (a localizer or 2-D image)" in line]
    gaps = [line for line in lines if "DICOM slices are missing or unevenly spaced" in line]
    assert len(single) == 7 and len(gaps) == 4
    assert any(line.startswith(f"{archive / '98892003' / 'MR1'} (series 1.3.6.1.4.1.5962.") for line in single)
    assert lines[-1] == "se-monai: error: 11 of 13 inputs failed (listed above)"
    written = sorted(p.name for p in (tmp_path / "labels").iterdir())
    assert written == ["98892001_CT2N_seg.nii.gz", "98892001_CT5N_seg.nii.gz"]
    for name in written:  # the CT series' labels on their own grids
        series = archive / "98892001" / name.split("_")[1]
        assert sitk.ReadImage(str(tmp_path / "labels" / name)).GetSize() == read_image(series).GetSize()


def test_a_failure_inside_the_bundle_is_one_line_naming_the_input(t1, tmp_path, monkeypatch):
    source = tmp_path / "t1.nrrd"
    sitk.WriteImage(t1, str(source))

    def failing(*args, **kwargs):
        try:
            raise ValueError("Affine [[0. 0. 0.]\n [0. 0. 0.]] is singular")
        except ValueError as err:
            raise RuntimeError("applying transform <monai.transforms.io.dictionary.SaveImaged>") from err

    monkeypatch.setattr(segmentation, "run_bundle", failing)
    done = run_cli("segment", str(source), str(tmp_path / "seg.nii.gz"))
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"se-monai: error: {source}: inference failed (ValueError: Affine [[0. 0. 0.])"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t1.nrrd"]  # nothing written, no staging left


def test_zeros_of_a_finer_skull_stripped_input_stay_other_after_resampling(tmp_path):
    """Voxels a skull-stripped input leaves at exactly 0 are "other" on the input's own grid, also when the bundle
    resamples the input (here 0.6 mm to 1 mm and back): before the mask moved onto the input's grid, the probabilities
    interpolated back from the 1 mm grid labelled a rim of grey matter in those zeros (41 mL on Colin27 at 0.5 mm)."""
    from scipy.ndimage import zoom

    from se_monai.data import load_icbm152

    t1, _, _, affine = load_icbm152()
    slab = t1[:, :, 110:]  # the upper brain: its outer boundary with the zeros around it, cut below
    factor = 1 / 0.6
    inside = zoom((slab > 0).astype(np.uint8), factor, order=0) > 0
    fine = np.where(inside, zoom(slab, factor, order=1), 0.0).astype(np.float32)
    fine_affine = affine @ np.diag([0.6, 0.6, 0.6, 1.0])
    fine_affine[:3, 3] = affine[:3, :3] @ np.array([0, 0, 110]) + affine[:3, 3]
    source = tmp_path / "fine.nii.gz"
    nib.save(nib.Nifti1Image(fine, fine_affine), str(source))
    labels = np.asarray(nib.load(str(segment_image(source, tmp_path / "seg.nii.gz", progress=False))).dataobj)
    assert labels.shape == fine.shape
    assert int((labels[fine == 0] > 0).sum()) == 0
    assert (labels[fine > 0] > 0).mean() > 0.8  # the brain itself is segmented
