"""Where each method's classes fall in S1's truth: for every label file (and ANTs Atropos, run here on the same input),
the millilitres of CSF, grey and white matter outside the pial surface (inside the cerebrum mask), in the cortical
ribbon and inside the white surface, then the ribbon and white Dice (as studies/real_brains_study.py scores them).

With ``--deep_grey``, also an estimate of S1's deep grey matter, which S1 has no segmentation of: AAL's hippocampi,
amygdalae, caudates, putamina, pallida and thalami (drawn on Colin27) registered onto S1 (ANTs SyN of Colin27's
``ch2``, skull on, onto S1's raw T1, intensities only; the labels moved by nearest neighbour, once, into
``S1_aal_deep_grey.nii.gz`` beside S1's T1), counted inside S1's white surface (the ribbon's voxels are the ribbon's);
and where each method's classes fall in it (`make real-brains` scores the grey matter against the ribbon plus it).

Run after `make real-brains` (which writes S1's cerebrum and its atlas), on labels of S1's cerebrum whose values are
the shipped bundle's (1 grey matter, 2 white matter, 3 CSF):

    .venv/bin/se-monai segment data/pycortex/pycortex-1.4.0/filestore/db/S1/S1_cerebrum.nii.gz /tmp/s1_shipped.nii.gz
    .venv/bin/python studies/s1_confusion.py /tmp/s1_shipped.nii.gz --atropos --deep_grey
"""

from __future__ import annotations

from pathlib import Path

import fire
import nibabel as nib
import numpy as np
from real_brains_study import NAMES, PYCORTEX, TEMPLATES, _dice, _on_grid, atropos_labels, deep_grey_on_s1

REGIONS = {0: "outside pial", 1: "ribbon", 2: "inside white"}


def main(
    *labels: str, atropos: bool = False, deep_grey: bool = False, pycortex: str = PYCORTEX, templates: str = TEMPLATES
) -> None:
    """Print a markdown table: method, class, mL outside the pial surface, in the ribbon and inside the white
    surface and total mL; then each method's ribbon and white Dice (and with ``deep_grey`` the registered deep grey
    matter's volume and each method's classes in it)."""
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
    if not deep_grey:
        return
    registered = _on_grid(deep_grey_on_s1({"pycortex": Path(pycortex), "mricron": Path(templates)}), cerebrum) > 0
    deep = registered & (atlas == 2)  # as studies/real_brains_study.py counts it beside the ribbon
    print(
        f"\nS1's deep grey matter (AAL's, registered): {registered.sum() * voxel_ml:.1f} mL, "
        f"{deep.sum() * voxel_ml:.1f} mL of it inside the white surface; with the ribbon's "
        f"{(atlas == 1).sum() * voxel_ml:.1f} mL, {((atlas == 1) | deep).sum() * voxel_ml:.1f} mL"
    )
    for name, found in methods.items():
        split = ", ".join(f"{((found == int(v)) & deep).sum() * voxel_ml:.1f} mL {t}" for v, t in NAMES.items())
        print(f"{name}: in the deep grey matter inside the white surface {split}")


if __name__ == "__main__":
    fire.Fire(main)
