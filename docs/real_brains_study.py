"""Real brains nobody here synthesised (docs/results.md, "Real brains"): trained bundles on the T1 volumes that
Debian's ``mricron-data`` package (a package registry, BSD-3-clause) ships in ``/usr/share/mricron/templates``:

- Colin27 (``ch2.nii.gz`` with the skull, ``ch2bet.nii.gz`` skull-stripped, 1 mm; ``ch2better.nii.gz``, 0.5 mm): one
  adult man scanned 27 times and averaged (Holmes et al., JCAT 1998), in MNI space; AAL (Tzourio-Mazoyer et al.,
  NeuroImage 2002) was drawn on it, and JHU's white-matter tract labels (FSL's MNI152 space) come in the same package.
- INIA19 (``inia19-t1-brain.nii.gz``, 0.5 mm): a rhesus macaque template averaged from 19 animals (Rohlfing et al.,
  Front. Neuroinform. 2012), a brain about 0.45 times a human one in linear size.

Per bundle, case and input zoom: grey- and white-matter volumes (mL, on the input's true voxel size) against the
norms, the bundle's plausibility verdict, the fraction of AAL voxels labelled grey matter and of JHU tract voxels
labelled white matter (atlases resampled onto each case's grid by their affines, nearest neighbour), for the skull-on
case the tissue found outside Colin27's brain mask, and a PNG of the labels per case and zoom. A zoom z relabels the
voxel size as z times the true one, so the bundle's Spacingd (1 mm) sees the anatomy z times larger: the levels of a
pyramid of rescaled inputs (issue 13, item 2).

Run (about 8 minutes on 2 CPU cores with the default zooms):

    make real-brains        # fetches mricron-data into data/mricron with apt-get download, then runs this script
    .venv/bin/python docs/real_brains_study.py --bundles "{'shipped': None}" --zooms "(1.0, 1.4, 2.0)"
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import fire
import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to

from se_monai.apps.plots import plot_segmentation
from se_monai.plausibility import check_volumes, class_volumes
from se_monai.workflows import SHIPPED_BUNDLE, resolve_bundle_dir, segment_image

TEMPLATES = "data/mricron/usr/share/mricron/templates"
#: case name: (file, species)
CASES = {
    "Colin27, skull-stripped, 1 mm": ("ch2bet.nii.gz", "human"),
    "Colin27, skull on, 1 mm": ("ch2.nii.gz", "human"),
    "Colin27, skull-stripped, 0.5 mm": ("ch2better.nii.gz", "human"),
    "INIA19 macaque, 0.5 mm": ("inia19-t1-brain.nii.gz", "macaque"),
}
#: Published norms (mL): adult human grey and white matter (issue 13); rhesus whole brain on MRI, female and male
#: means (Franklin et al., Brain Research 2000), compared with grey + white matter.
NORMS = {"human": {"grey matter": (550, 800), "white matter": (400, 600)}, "macaque": {"tissue": (70.8, 89.2)}}
SHIPPED_RULES = json.loads((SHIPPED_BUNDLE / "configs" / "inference.json").read_text())["plausibility"]
NAMES = {"1": "grey matter", "2": "white matter"}


def _on_grid(atlas: Path, reference: nib.Nifti1Image) -> np.ndarray:
    return np.asarray(resample_from_to(nib.load(str(atlas)), reference, order=0).dataobj)


def _within(volumes: dict[str, float], species: str) -> str:
    norms = NORMS[species]
    if "tissue" in norms:
        values = {"tissue": volumes["grey matter"] + volumes["white matter"]}
    else:
        values = volumes
    return "yes" if all(low <= values[k] <= high for k, (low, high) in norms.items()) else "no"


def _agreement(labels: np.ndarray, image: nib.Nifti1Image, folder: Path, name: str) -> list[str]:
    """AAL voxels labelled GM, JHU tract voxels labelled WM (Colin27 only), tissue outside the brain mask (mL)."""
    if not name.startswith("Colin27"):
        return ["-", "-", "-"]
    aal = _on_grid(folder / "aal.nii.gz", image) > 0
    jhu = _on_grid(folder / "JHU-WhiteMatter-labels-1mm.nii.gz", image) > 0
    cells = [f"{(labels[aal] == 1).mean():.3f}", f"{(labels[jhu] == 2).mean():.3f}"]
    if "skull on" in name:
        outside = (labels > 0) & (_on_grid(folder / "ch2bet.nii.gz", image) == 0)
        cells.append(f"{class_volumes(outside, image.affine, {'1': 'outside'})['outside']:.0f}")
    else:
        cells.append("-")
    return cells


def _zoomed(path: Path, zoom: float, folder: Path) -> Path:
    if zoom == 1.0:
        return path
    image = nib.load(str(path))
    affine = image.affine.copy()
    affine[:3, :3] *= zoom
    out = folder / f"zoom{zoom:g}_{path.name}"
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), affine, image.header), str(out))
    return out


def main(
    templates: str = TEMPLATES,
    bundles: dict | None = None,
    zooms: tuple = (1.0, 1.4, 2.0),
    output_dir: str = "docs/results/real_brains",
) -> None:
    """Print a markdown table per bundle and write the PNGs to ``output_dir``."""
    folder = Path(templates)
    missing = [f for f, _ in CASES.values() if not (folder / f).is_file()]
    if missing:
        raise SystemExit(f"{folder}: {', '.join(missing)} missing (run `make real-brains` to fetch mricron-data)")
    bundles = bundles or {"shipped": None}
    print(
        "| model | brain | zoom | grey matter (mL) | white matter (mL) | within norms | plausibility | AAL as GM "
        "| JHU as WM | tissue outside brain (mL) | seconds |"
    )
    print("| --- |" + " --- |" * 10)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for model, bundle in bundles.items():
            config = json.loads((resolve_bundle_dir(bundle) / "configs" / "inference.json").read_text())
            rules = config.get("plausibility") or SHIPPED_RULES
            for name, (file, species) in CASES.items():
                image = nib.load(str(folder / file))
                picture = np.asarray(image.dataobj, dtype=np.float32)
                for zoom in (float(z) for z in zooms):
                    out = work / f"{model}_{zoom:g}_{file}"
                    start = time.perf_counter()
                    segment_image(_zoomed(folder / file, zoom, work), out, bundle, progress=False, plausibility="off")
                    seconds = time.perf_counter() - start
                    labels = np.asarray(nib.load(str(out)).dataobj)
                    volumes = class_volumes(labels, image.affine, NAMES)  # labels on the input's own grid
                    broken = check_volumes(volumes, rules)
                    cells = [
                        model,
                        name,
                        f"{zoom:g}",
                        f"{volumes['grey matter']:.1f}",
                        f"{volumes['white matter']:.1f}",
                        _within(volumes, species),
                        "; ".join(broken) if broken else "plausible",
                        *_agreement(labels, image, folder, name),
                        f"{seconds:.0f}",
                    ]
                    print("| " + " | ".join(cells) + " |", flush=True)
                    stem = file.split(".")[0]
                    plot_segmentation(
                        picture,
                        labels,
                        Path(output_dir) / f"{model.replace(' ', '_')}_{stem}_zoom{zoom:g}.png",
                        list(NAMES.values()),
                        title=f"{model}: {name}, zoom {zoom:g} (GM {volumes['grey matter']:.0f} mL, "
                        f"WM {volumes['white matter']:.0f} mL)",
                    )


if __name__ == "__main__":
    fire.Fire(main)
