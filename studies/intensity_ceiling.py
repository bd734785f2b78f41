"""How far intensity alone can go against each real brain's truth: global T1 thresholds, chosen with the truth itself
(an oracle, so a ceiling of per-voxel thresholds, not a method). A classifier that looks at its neighbours can pass
it: ANTs Atropos by its MRF smoothing, a network by the anatomy around the voxel.

- S1: the best cortical-ribbon and white-surface Dice. Inside S1's cerebrum (the T1 masked by its pial surfaces
  dilated by 2 mm) a voxel is white matter above one threshold and grey matter between two; every threshold on a
  1-unit grid of the T1's scale (FreeSurfer's normalisation: white matter 110) is tried (S1's white-surface interior
  also holds deep grey matter and ventricles, which a network can call white matter by their place).
- Colin27: the most JHU tract voxels a white-matter threshold labels white matter while grey / white matter stays at
  least 1.1, even with every non-zero voxel below it counted grey matter (no CSF at all, the most lenient count), for
  the tracts resampled by their affines and registered onto Colin27 (real_brains_study.py).
- INIA19: the Dice of the voxels above one threshold with the NeuroMaps atlas's labelled voxels, and where that
  threshold lies: the mean T1 of the non-zero voxels the atlas leaves unlabelled, its interior's (the atlas eroded by
  2 mm) and its outer 1 mm's.

Run after `make real-brains` (which voxelises S1's surfaces and registers the tracts; a few seconds):

    .venv/bin/python studies/intensity_ceiling.py
"""

from __future__ import annotations

from pathlib import Path

import fire
import nibabel as nib
import numpy as np
from real_brains_study import INIA19_ATLAS, JHU, PYCORTEX, TEMPLATES, _dice, _on_grid, _tracts_on_colin27
from scipy import ndimage


def _at_or_above(counts: np.ndarray) -> np.ndarray:
    """Voxels at or above each intensity bin, from a histogram."""
    return np.cumsum(counts[::-1])[::-1]


def _integer_t1(path: str) -> tuple[nib.Nifti1Image, np.ndarray]:
    image = nib.load(path)
    return image, np.clip(np.round(np.asarray(image.dataobj, dtype=np.float32)), 0, 255).astype(int)


def colin27_tracts(templates: str = TEMPLATES) -> None:
    """Print, per placement of JHU's tracts, the lowest white-matter threshold that keeps grey / white matter >= 1.1
    with no CSF, and the fraction of tract voxels above it (the most any such threshold labels white matter)."""
    image, t1 = _integer_t1(f"{templates}/ch2bet.nii.gz")
    brain = t1 > 0
    above = _at_or_above(np.bincount(t1[brain], minlength=256))  # voxels at or above each threshold
    lowest = next(t for t in range(1, 256) if (brain.sum() - above[t]) >= 1.1 * above[t])
    placements = {"resampled by their affines": Path(templates) / JHU}
    placements["registered onto Colin27"] = _tracts_on_colin27(Path(templates))  # registered once, if not yet
    for placement, atlas in placements.items():
        tracts = _on_grid(atlas, image) > 0
        print(
            f"Colin27 JHU tracts {placement}: white matter at T1 >= {lowest} keeps GM/WM >= 1.1 with no CSF; "
            f"{(t1[tracts] >= lowest).mean():.3f} of the tract voxels lie there"
        )


def inia19(templates: str = TEMPLATES) -> None:
    """Print the best single threshold's Dice with INIA19's atlas, the highest threshold with Dice >= 0.96, and the
    mean T1 of the atlas's unlabelled non-zero voxels, its interior and its outer 1 mm."""
    image = nib.load(f"{templates}/inia19-t1-brain.nii.gz")
    t1 = np.asarray(image.dataobj, dtype=np.float32)
    atlas = _on_grid(Path(templates) / INIA19_ATLAS, image) > 0
    inside = t1 != 0
    thresholds = np.arange(20.0, 80.5, 0.5)
    dice = np.array([_dice(inside & (t1 > t), atlas) for t in thresholds])
    steps = round(1.0 / float(image.header.get_zooms()[0]))  # voxels per mm
    eroded = {mm: ndimage.binary_erosion(atlas, iterations=mm * steps) for mm in (1, 2)}
    print(
        f"INIA19: Dice {dice.max():.3f} at T1 > {thresholds[dice.argmax()]:g}; Dice >= 0.96 up to T1 > "
        f"{thresholds[dice >= 0.96].max():g}; mean T1 of the non-zero voxels the atlas leaves unlabelled "
        f"{t1[inside & ~atlas].mean():.1f}, of its interior (eroded 2 mm) {t1[eroded[2]].mean():.1f}, of its outer "
        f"1 mm {t1[atlas & inside & ~eroded[1]].mean():.1f}"
    )


def s1(pycortex: str = PYCORTEX) -> None:
    """Print S1's best global thresholds and their Dice: white matter above one, grey matter between two."""
    t1 = np.asarray(nib.load(f"{pycortex}/S1_cerebrum.nii.gz").dataobj, dtype=np.float32)
    atlas = np.asarray(nib.load(f"{pycortex}/S1_atlas.nii.gz").dataobj)
    inside = t1 > 0
    values, truth = t1[inside], atlas[inside]
    # histograms over integer intensity bins make every threshold's Dice a cumulative sum
    bins = np.clip(np.round(values).astype(int), 0, 255)
    counts = {k: np.bincount(bins[truth == k], minlength=256) for k in (1, 2)}
    total = np.bincount(bins, minlength=256)
    white_dice = 2 * _at_or_above(counts[2]) / (_at_or_above(total) + counts[2].sum())
    white = (float(white_dice.max()), int(white_dice.argmax()))
    best = (0.0, 0, 0)
    for low in range(256):
        grey = np.cumsum(counts[1][low:])  # ribbon voxels in [low, high]
        labelled = np.cumsum(total[low:])
        dice = 2 * grey / (labelled + counts[1].sum())
        if dice.max() > best[0]:
            best = (float(dice.max()), low, low + int(dice.argmax()))
    print(f"S1 white: Dice {white[0]:.3f} with white matter at T1 >= {white[1]}")
    print(f"S1 ribbon: Dice {best[0]:.3f} with grey matter at {best[1]} <= T1 <= {best[2]}")
    check = _dice((np.round(values) >= white[1]), truth == 2)  # the histogram's answer, recounted voxel by voxel
    assert abs(check - white[0]) < 1e-9, (check, white)


def main(pycortex: str = PYCORTEX, templates: str = TEMPLATES) -> None:
    """Print the ceilings of S1, Colin27's tracts and INIA19."""
    s1(pycortex)
    colin27_tracts(templates)
    inia19(templates)


if __name__ == "__main__":
    fire.Fire(main)
