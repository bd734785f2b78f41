"""Small real NIfTI files cut from the ICBM152 template for fast end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import zoom

from se_monai.data import load_icbm152, tissue_labels

# a 64 x 72 x 56 block around the ventricles: grey and white matter, CSF and background
BLOCK = (slice(66, 130), slice(80, 152), slice(70, 126))


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
