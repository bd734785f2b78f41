"""One line per case for a candidate bundle, as docs/results.md ("The shipped model") compares the models tried for
the shipped one: Dice on the two validation subjects and on the real ICBM152 T1, and the grey- and white-matter volumes
(mL), their norms verdict, atlas agreement and the shipped plausibility verdict on the real brains of
studies/real_brains_study.py at their own size (zoom 1).

Run (after `make data` and `make real-brains`' downloads; about 2 minutes per bundle on 2 CPU cores):

    .venv/bin/python studies/candidate_scorecard.py out/icbm152_bundle
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import fire
import nibabel as nib
import numpy as np
from real_brains_study import CASES, NAMES, PYCORTEX, SHIPPED_RULES, TEMPLATES, _agreement, _within

from se_monai.metrics import label_dice
from se_monai.segmentation import segment_image
from se_monai.transforms.plausibility import check_volumes, class_volumes

DATASET = "data/icbm152_mixed_csf"
LABELLED = {
    "validation subject 22": "imagesTr/subject_022.nii.gz",
    "validation subject 23": "imagesTr/subject_023.nii.gz",
    "ICBM152 T1": "imagesTs/icbm152_t1.nii.gz",
}


def main(bundle: str | None = None, dataset_dir: str = DATASET) -> None:
    """Print the scorecard of ``bundle`` (default: the shipped one)."""
    folders = {"mricron": Path(TEMPLATES), "pycortex": Path(PYCORTEX)}
    cases = {name: Path(dataset_dir) / path for name, path in LABELLED.items()}
    cases.update({n: folders[src] / f for n, (src, f, _) in CASES.items()})
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in cases.items():
            out = Path(tmp) / "seg.nii.gz"
            start = time.perf_counter()
            segment_image(path, out, bundle, progress=False, plausibility="off")
            image, labels = nib.load(str(path)), np.asarray(nib.load(str(out)).dataobj)
            volumes = class_volumes(labels, image.affine, NAMES)
            gm, wm = volumes["grey matter"], volumes["white matter"]
            line = f"{name}: GM {gm:.1f} mL, WM {wm:.1f} mL, GM/WM {gm / max(wm, 1e-6):.2f}"
            if name in LABELLED:
                truth = np.asarray(nib.load(str(path).replace("images", "labels")).dataobj)
                dice = label_dice(labels, truth, {"GM": 1, "WM": 2})
                line += f", Dice GM {dice['GM']:.4f} WM {dice['WM']:.4f}"
            else:
                broken = check_volumes(volumes, SHIPPED_RULES)
                atlas = _agreement(labels, image, folders, name)
                line += f", within norms {_within(volumes, CASES[name][2])}, atlas GM/WM agreement {atlas[:3]}"
                line += f", tissue Dice with atlas {atlas[4]}" if atlas[4] != "-" else ""
                line += f", {'flagged' if broken else 'plausible'}"
            print(f"{line} ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    fire.Fire(main)
