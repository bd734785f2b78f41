"""Trained bundles compared as docs/results.md ("The shipped model") reports them: Dice of grey and white matter on the
real ICBM152 T1 rescaled by several factors (MONAI Zoom, 1 mm voxels kept, as the experiment does), and the tissue
volumes and plausibility verdict for the real T1, the same brain with a head around it, and with its contrast
inverted.

Run (after `make data`, which writes the real T1 and its labels to data/icbm152_mixed_csf/imagesTs and labelsTs; about
2 minutes per bundle on 2 CPU cores):

    .venv/bin/python studies/shipped_model_study.py --bundles "{'shipped': 'bundle', 'retrained': 'out/icbm152_bundle'}"
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import fire
import nibabel as nib
import numpy as np

from se_monai.apps.experiment.testset import prepare_test_scales
from se_monai.data import add_head, load_icbm152
from se_monai.metrics import label_dice
from se_monai.segmentation import segment_image
from se_monai.transforms.plausibility import check_volumes, class_volumes
from se_monai.workflows import SHIPPED_BUNDLE, resolve_bundle_dir

TEST = {
    "image": "data/icbm152_mixed_csf/imagesTs/icbm152_t1.nii.gz",
    "label": "data/icbm152_mixed_csf/labelsTs/icbm152_t1.nii.gz",
}
TISSUE = {"grey matter": 1, "white matter": 2}
#: The shipped bundle's class names and ranges, also for bundles made before the ranges existed.
SHIPPED = json.loads((SHIPPED_BUNDLE / "configs" / "inference.json").read_text())
SHIPPED_NAMES, SHIPPED_RULES = SHIPPED["class_names"], SHIPPED["plausibility"]


def _labels(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def _domain_cases(folder: Path) -> dict[str, Path]:
    t1, _, _, affine = load_icbm152()
    head, head_affine = add_head(t1, affine)
    inverted = np.where(t1 > 0, t1.max() - t1, 0).astype(np.float32)
    cases = {"real T1": (t1, affine), "with a head": (head, head_affine), "inverted contrast": (inverted, affine)}
    paths = {}
    for name, (image, image_affine) in cases.items():
        paths[name] = folder / f"{name.replace(' ', '_')}.nii.gz"
        nib.save(nib.Nifti1Image(image, image_affine), str(paths[name]))
    return paths


def main(bundles: dict, scales: tuple = (0.5, 0.7, 1.0, 1.25)) -> None:
    """Print two markdown tables: Dice per test scale, and volumes (mL) with the plausibility verdict per case."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        items = prepare_test_scales([TEST], [float(s) for s in scales], folder / "scaled")
        cases = _domain_cases(folder)
        dice_rows, volume_rows = [], []
        for name, bundle in bundles.items():
            cells = []
            for item in items:
                out = folder / f"{name}_{item['scale']}.nii.gz"
                segment_image(item["image"], out, bundle, progress=False, plausibility="off")
                dice = label_dice(_labels(out), _labels(Path(item["label"])), TISSUE)
                cells.append(f"{dice['grey matter']:.4f} / {dice['white matter']:.4f}")
            dice_rows.append(f"| {name} | " + " | ".join(cells) + " |")
            config = json.loads((resolve_bundle_dir(bundle) / "configs" / "inference.json").read_text())
            names, rules = SHIPPED_NAMES, config.get("plausibility") or SHIPPED_RULES
            for case, path in cases.items():
                out = folder / f"{name}_{path.name}"
                segment_image(path, out, bundle, progress=False, plausibility="off")
                volumes = class_volumes(_labels(out), nib.load(str(out)).affine, names)
                broken = check_volumes(volumes, rules)
                verdict = "; ".join(broken) if broken else "plausible"
                gm, wm = volumes["grey matter"], volumes["white matter"]
                volume_rows.append(f"| {name} | {case} | {gm:.0f} | {wm:.0f} | {verdict} |")
    print("| model | " + " | ".join(f"scale {s}" for s in scales) + " |")
    print("| --- |" + " --- |" * len(scales))
    print("\n".join(dice_rows))
    print()
    print("| model | input | grey matter (mL) | white matter (mL) | plausibility |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(volume_rows))


if __name__ == "__main__":
    fire.Fire(main)
