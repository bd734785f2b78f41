"""Where each method's classes fall in S1's truth: for every label file (and ANTs Atropos, run here on the same input),
the millilitres of CSF, grey and white matter outside the pial surface (inside the cerebrum mask), in the cortical
ribbon and inside the white surface, then the ribbon and white Dice (as studies/real_brains_study.py scores them).

Run after `make real-brains` (which writes S1's cerebrum and its atlas), on labels of S1's cerebrum whose values are
the shipped bundle's (1 grey matter, 2 white matter, 3 CSF):

    .venv/bin/se-monai segment data/pycortex/pycortex-1.4.0/filestore/db/S1/S1_cerebrum.nii.gz /tmp/s1_shipped.nii.gz
    .venv/bin/python studies/s1_confusion.py /tmp/s1_shipped.nii.gz --atropos
"""

from __future__ import annotations

from pathlib import Path

import fire
import nibabel as nib
import numpy as np
from real_brains_study import NAMES, PYCORTEX, _dice, atropos_labels

REGIONS = {0: "outside pial", 1: "ribbon", 2: "inside white"}


def main(*labels: str, atropos: bool = False, pycortex: str = PYCORTEX) -> None:
    """Print a markdown table: method, class, mL outside the pial surface, in the ribbon and inside the white
    surface and total mL; then each method's ribbon and white Dice."""
    cerebrum = nib.load(f"{pycortex}/S1_cerebrum.nii.gz")
    inside = np.asarray(cerebrum.dataobj) > 0
    atlas = np.asarray(nib.load(f"{pycortex}/S1_atlas.nii.gz").dataobj)
    voxel_ml = abs(np.linalg.det(cerebrum.affine[:3, :3])) / 1000.0
    print("| method | class | " + " | ".join(f"{r} (mL)" for r in REGIONS.values()) + " | total (mL) |")
    print("| --- | --- |" + " --- |" * (len(REGIONS) + 1))
    methods = {Path(p).name.removesuffix(".gz").removesuffix(".nii"): np.asarray(nib.load(p).dataobj) for p in labels}
    if atropos:
        methods["ANTs Atropos"] = atropos_labels(Path(pycortex) / "S1_cerebrum.nii.gz")
    methods = {name: np.where(inside, found, 0) for name, found in methods.items()}
    for name, found in methods.items():
        for value, tissue in NAMES.items():
            volumes = [((found == int(value)) & (atlas == region)).sum() * voxel_ml for region in REGIONS]
            print(f"| {name} | {tissue} | " + " | ".join(f"{v:.0f}" for v in volumes) + f" | {sum(volumes):.0f} |")
    print()
    for name, found in methods.items():
        ribbon, white = _dice(found == 1, atlas == 1), _dice(found == 2, atlas == 2)
        print(f"{name}: ribbon Dice {ribbon:.3f}, white Dice {white:.3f}")


if __name__ == "__main__":
    fire.Fire(main)
