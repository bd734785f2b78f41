"""How far intensity alone can go on S1: the best cortical-ribbon and white-surface Dice of global T1 thresholds,
chosen with S1's own truth (an oracle, so a ceiling of per-voxel thresholds, not a method). Inside S1's cerebrum (the
T1 masked by its pial surfaces dilated by 2 mm) a voxel is white matter above one threshold and grey matter between
two; every threshold on a 1-unit grid of the T1's scale (FreeSurfer's normalisation: white matter 110) is tried. A
classifier that looks at its neighbours can pass it: ANTs Atropos by its MRF smoothing, a network by the anatomy
around the voxel (e.g. deep grey matter and ventricles, which S1's white-surface interior holds, called white matter).

Run after `make real-brains` (which voxelises S1's surfaces; a few seconds):

    .venv/bin/python studies/intensity_ceiling.py
"""

from __future__ import annotations

import fire
import nibabel as nib
import numpy as np
from real_brains_study import PYCORTEX, _dice


def _at_or_above(counts: np.ndarray) -> np.ndarray:
    """Voxels at or above each intensity bin, from a histogram."""
    return np.cumsum(counts[::-1])[::-1]


def main(pycortex: str = PYCORTEX) -> None:
    """Print the best global thresholds and their Dice: white matter above one, grey matter between two."""
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
    print(f"white: Dice {white[0]:.3f} with white matter at T1 >= {white[1]}")
    print(f"ribbon: Dice {best[0]:.3f} with grey matter at {best[1]} <= T1 <= {best[2]}")
    check = _dice((np.round(values) >= white[1]), truth == 2)  # the histogram's answer, recounted voxel by voxel
    assert abs(check - white[0]) < 1e-9, (check, white)


if __name__ == "__main__":
    fire.Fire(main)
