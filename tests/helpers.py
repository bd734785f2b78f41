"""Small real NIfTI files cut from the ICBM152 template for fast end-to-end tests."""

from __future__ import annotations

import json
import locale
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from scipy.ndimage import zoom

from se_monai.data import load_icbm152, tissue_labels

# a 64 x 72 x 56 block around the ventricles: grey and white matter, CSF and background
BLOCK = (slice(66, 130), slice(80, 152), slice(70, 126))


def run_installed(installed: dict, *args: str) -> subprocess.CompletedProcess:
    """``python ARGS`` with the wheel that the ``installed`` fixture installed first on the path, in a folder outside
    the repository."""
    command = [sys.executable, *args]  # the child writes UTF-8 (progress bars), whatever this process's locale
    return subprocess.run(
        command, capture_output=True, encoding="utf-8", timeout=600, env=installed["env"], cwd=installed["cwd"]
    )


def write_crops(folder: Path) -> dict[str, Path]:
    """Write three crops of the real T1 (RAS 1 mm, flipped LPS 1 mm, RAS 1.5 x 1 x 1 mm) and the RAS labels."""
    folder.mkdir(parents=True, exist_ok=True)
    t1, gm, wm, affine = load_icbm152()
    image = t1[BLOCK]
    shift = affine.copy()
    shift[:3, 3] = affine[:3, :3] @ np.array([s.start for s in BLOCK]) + affine[:3, 3]
    paths = {}
    paths["ras"] = folder / "crop_ras.nii.gz"
    nib.save(nib.Nifti1Image(image, shift), str(paths["ras"]))
    flipped = image[::-1, ::-1].copy()
    lps = shift @ np.array([[-1, 0, 0, image.shape[0] - 1], [0, -1, 0, image.shape[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]])
    paths["lps"] = folder / "crop_lps.nii"
    nib.save(nib.Nifti1Image(flipped, lps), str(paths["lps"]))
    coarse = zoom(image, (1 / 1.5, 1, 1), order=1)
    aniso = shift.copy()
    aniso[:3, 0] *= 1.5
    paths["aniso"] = folder / "crop_aniso.nii.gz"
    nib.save(nib.Nifti1Image(coarse.astype(np.float32), aniso), str(paths["aniso"]))
    labels_path = folder.parent / f"{folder.name}_labels_ras.nii.gz"
    nib.save(nib.Nifti1Image(tissue_labels(gm, wm)[BLOCK], shift), str(labels_path))
    paths["labels"] = labels_path
    return paths


def write_msd_dataset(
    root: Path,
    modalities: list[str],
    labels: list[str],
    shape=(28, 32, 24),
    train=3,
    test=1,
    label_dtype=np.uint8,
    label_affine_error=0.0,
    spacing=(1.2, 1.0, 1.5),
    background=100.0,
):
    """A small synthetic dataset in the exact MSD layout and dataset.json format: ``imagesTr/``, ``labelsTr/``,
    ``imagesTs/`` (and ``labelsTs/`` for evaluation); with several modalities the images are 4-D, channels last.

    Each class k > 0 is a box of its own brightness, so the labels are learnable from every channel. Quirks of real
    archives on request: labels stored as ``label_dtype`` (e.g. float32), and label affines that differ from the
    images' by ``label_affine_error`` (mm, float rounding in the archive's headers). ``spacing`` (mm) and the
    ``background`` intensity (e.g. -1000 for CT-like data) are those of every case.
    """
    rng = np.random.default_rng(len(modalities) * 10 + len(labels))
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    affine = np.diag([*spacing, 1.0])

    def case(name: str, images: str, labels_dir: str) -> None:
        label = np.zeros(shape, np.uint8)
        for k in range(1, len(labels)):
            lo = [int(rng.integers(2, s // 2)) for s in shape]
            label[tuple(slice(a, a + s // 3) for a, s in zip(lo, shape, strict=True))] = k
        channels = [label * (20.0 + 10 * c) + rng.normal(background, 5.0, shape) for c in range(len(modalities))]
        image = np.stack(channels, axis=-1) if len(modalities) > 1 else channels[0]
        nib.save(nib.Nifti1Image(image.astype(np.float32), affine), str(root / images / f"{name}.nii.gz"))
        label_affine = affine + label_affine_error * np.triu(np.ones((4, 4)), 1) * (np.arange(4) < 3)[:, None]
        nib.save(nib.Nifti1Image(label.astype(label_dtype), label_affine), str(root / labels_dir / f"{name}.nii.gz"))

    training = [f"case_{i:03d}" for i in range(train)]
    testing = [f"case_{i:03d}" for i in range(train, train + test)]
    for name in training:
        case(name, "imagesTr", "labelsTr")
    for name in testing:
        case(name, "imagesTs", "labelsTs")
    description = {
        "name": "Synthetic",
        "description": "boxes of distinct brightness",
        "reference": "se-monai tests",
        "licence": "CC-BY-SA 4.0",
        "release": "1.0 22/11/2026",
        "tensorImageSize": "4D" if len(modalities) > 1 else "3D",
        "modality": {str(i): m for i, m in enumerate(modalities)},
        "labels": {str(i): name for i, name in enumerate(labels)},
        "numTraining": train,
        "numTest": test,
        "training": [{"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"} for n in training],
        "test": [f"./imagesTs/{n}.nii.gz" for n in testing],
    }
    (root / "dataset.json").write_text(json.dumps(description, indent=4))
    return root


OBLIQUE = (0.9950042, -0.0998334, 0.0, 0.0998334, 0.9950042, 0.0, 0.0, 0.0, 1.0)  # 5.7 degrees about z


def geometry(image):
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def assert_same_geometry(a, b):
    """Equal size; spacing, origin and direction equal to 1e-4 (mm, cosines)."""
    assert a.GetSize() == b.GetSize()
    for x, y in zip(geometry(a)[1:], geometry(b)[1:], strict=True):
        np.testing.assert_allclose(x, y, atol=1e-4)


def write_dicom_series(image, folder, uid="1.2.826.0.1.3680043.2.1125.1", description="T1 crop", skip=None):
    """One DICOM file per slice, written by SimpleITK with the tags a scanner writes for geometry. (GDCM's writer
    sets the process's LC_CTYPE locale to "C"; it is restored, or later tests would decode text as ASCII.)"""
    folder.mkdir(parents=True, exist_ok=True)
    ctype = locale.setlocale(locale.LC_CTYPE)
    try:
        return _write_slices(image, folder, uid, description, skip)
    finally:
        locale.setlocale(locale.LC_CTYPE, ctype)


def _write_slices(image, folder, uid, description, skip):
    pixels = sitk.Cast(sitk.RescaleIntensity(image, 0, 2000), sitk.sitkInt16)
    direction = image.GetDirection()
    orientation = "\\".join(f"{v:.7f}" for v in (direction[0], direction[3], direction[6], direction[1], direction[4]))
    orientation += f"\\{direction[7]:.7f}"
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(pixels.GetDepth()):
        if k == skip:
            continue
        plane = pixels[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "MR",
            "0008|103e": description,
            "0020|000d": uid + ".0",
            "0020|000e": uid,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.5f}" for v in position),
            "0020|0037": orientation,
            "0028|0030": "\\".join(f"{v:.5f}" for v in image.GetSpacing()[:2]),
            "0018|0050": f"{image.GetSpacing()[2]:.5f}",
            "0008|0018": f"{uid}.{k + 1}",
            "0020|0052": uid + ".9",  # frame of reference
            "0010|0010": "Template^ICBM152",
            "0010|0020": "ICBM152",
            "0008|0020": "20261202",
        }
        for key, value in tags.items():
            plane.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice_{k:03d}.dcm"))
        writer.Execute(plane)
    return folder
