"""Real brains nobody here synthesised (docs/results.md, "Real brains"): trained bundles on the T1 volumes that
Debian's ``mricron-data`` package (a package registry, BSD-3-clause) ships in ``/usr/share/mricron/templates``:

- Colin27 (``ch2.nii.gz`` with the skull, ``ch2bet.nii.gz`` skull-stripped, 1 mm; ``ch2better.nii.gz``, 0.5 mm): one
  adult man scanned 27 times and averaged (Holmes et al., JCAT 1998), in MNI space; AAL (Tzourio-Mazoyer et al.,
  NeuroImage 2002) was drawn on it, and JHU's white-matter tract labels (FSL's MNI152 space) come in the same package.
- INIA19 (``inia19-t1-brain.nii.gz``, 0.5 mm): a rhesus macaque template averaged from 19 animals (Rohlfing et al.,
  Front. Neuroinform. 2012), a brain about 0.45 times a human one in linear size, with its NeuroMaps atlas
  (``inia19-NeuroMaps.nii.gz``: 724 brain structures; its labelled voxels are the template's brain tissue).

Per bundle, case and input zoom: grey- and white-matter volumes (mL, on the input's true voxel size) against the
norms, the bundle's plausibility verdict, the fraction of AAL voxels labelled grey matter and of JHU tract voxels
labelled white matter (atlases resampled onto each case's grid by their affines, nearest neighbour; JHU's tracts, drawn
in MNI152 space, also registered onto Colin27 with ANTs SyN through the ICBM 2009a T1), for the skull-on
case the tissue found outside Colin27's brain mask, for INIA19 the Dice of grey + white matter with its NeuroMaps
atlas's labelled voxels, and a PNG of the labels per case and zoom. A zoom z relabels the
voxel size as z times the true one, so the bundle's Spacingd (1 mm) sees the anatomy z times larger: the levels of a
pyramid of rescaled inputs.

And one individual brain in its own (native) space, from the pycortex sdist on PyPI (BSD-2-clause): subject S1 of
its example database (``filestore/db/S1``), a FreeSurfer-processed adult T1 (``anatomicals/raw.nii.gz``, 256^3, 1 mm,
skull on, FreeSurfer's intensity normalisation: white matter 110) with its pial and white-matter surfaces
(``surfaces/pia_*.gii``, ``wm_*.gii``, in the T1's scanner coordinates). The surfaces are voxelised onto the T1's grid
(trimesh, 64 samples per voxel: the fraction of each voxel inside each surface, checked against the meshes'
volumes): voxels at least half inside the pial surface and less than half inside the white surface are its cortical
ribbon, voxels at least half inside the white surface its white-surface interior, and the T1 masked to the pial
surfaces dilated by 2 mm is its skull-stripped cerebrum (no cerebellum or brainstem: the surfaces cover the cerebrum
only). S1's deep grey matter, which it has no segmentation of, is estimated by AAL's hippocampi, amygdalae, caudates,
putamina, pallida and thalami registered from Colin27 (inside the white surface); the grey matter's volume is
compared with the ribbon's plus that.

Beside each model, on the same inputs, a classical tissue classifier: ANTs Atropos (antspyx, the study extra; never
a dependency of se-monai), ``atropos(a=image, m="[0.2,1x1x1]", c="[5,0]", i="kmeans[3]", x=mask)`` with the non-zero
voxels as mask, its three classes named CSF, grey and white matter by their mean intensity. S1 is validation data
only: no model is trained on it, takes intensities from it or is tuned on it beyond choosing between models.

Run (about 15 minutes on 2 CPU cores, 8 of them ANTs Atropos on the 0.5 mm Colin27; at zoom 1 by default):

    make real-brains        # fetches mricron-data (apt-get download) and pycortex (pip download), then runs this
    .venv/bin/python studies/real_brains_study.py --bundles "{'shipped': None}" --zooms "(1.0, 1.4, 2.0)"
    .venv/bin/python studies/real_brains_study.py --cases "('INIA19',)" --atropos False   # one case
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
from scipy import ndimage

from se_monai.apps.plots import plot_segmentation
from se_monai.segmentation import segment_image
from se_monai.transforms.plausibility import check_volumes, class_volumes
from se_monai.workflows import SHIPPED_BUNDLE, resolve_bundle_dir

TEMPLATES = "data/mricron/usr/share/mricron/templates"
PYCORTEX = "data/pycortex/pycortex-1.4.0/filestore/db/S1"
#: case name: (source, file, norms); the S1 cerebrum is made from the T1 and its surfaces by :func:`_s1_cerebrum`.
CASES = {
    "Colin27, skull-stripped, 1 mm": ("mricron", "ch2bet.nii.gz", "human, MNI space"),
    "Colin27, skull on, 1 mm": ("mricron", "ch2.nii.gz", "human, MNI space"),
    "Colin27, skull-stripped, 0.5 mm": ("mricron", "ch2better.nii.gz", "human, MNI space"),
    "S1, cerebrum (skull-stripped by its surfaces), 1 mm": ("pycortex", "S1_cerebrum.nii.gz", "human"),
    "S1, skull on, 1 mm": ("pycortex", "anatomicals/raw.nii.gz", "human"),
    "INIA19 macaque, 0.5 mm": ("mricron", "inia19-t1-brain.nii.gz", "macaque, INIA19 space"),
}
INIA19_ATLAS = "inia19-NeuroMaps.nii.gz"
#: JHU's tract labels, in FSL's MNI152 space; and the same labels registered onto Colin27 (:func:`_tracts_on_colin27`).
JHU = "JHU-WhiteMatter-labels-1mm.nii.gz"
JHU_ON_COLIN27 = "JHU-WhiteMatter-labels-on-ch2bet.nii.gz"
#: AAL's deep grey structures, left and right (values of mricron-data's aal.nii.gz, listed in its aal.nii.txt):
#: hippocampus 37-38, amygdala 41-42, caudate 71-72, putamen 73-74, pallidum 75-76, thalamus 77-78.
DEEP_GREY = (37, 38, 41, 42, 71, 72, 73, 74, 75, 76, 77, 78)
#: The volume (mL) of the voxels INIA19_ATLAS labels, as main measures it (and checks) on mricron-data's copy.
INIA19_ATLAS_ML = 100.2
#: Published norms (mL): adult human grey and white matter in a brain's own space; in MNI space (Colin27,
#: linearly registered to MNI305, which enlarges brains) only their ratio is comparable, 550 / 600 to 800 / 400;
#: the INIA19 template, like Colin27 a population average in a space of its own, holds more brain than the rhesus
#: literature's sex means (whole brain on MRI 70.8-89.2 mL, Franklin et al., Brain Research 2000): its NeuroMaps atlas
#: labels INIA19_ATLAS_ML, so grey + white matter is compared with that volume, within 10 %.
NORMS = {
    "human": {"grey matter": (550, 800), "white matter": (400, 600)},
    "human, MNI space": {"grey matter / white matter": (550 / 600, 800 / 400)},
    "macaque, INIA19 space": {"grey matter + white matter": (0.9 * INIA19_ATLAS_ML, 1.1 * INIA19_ATLAS_ML)},
}
SHIPPED_RULES = json.loads((SHIPPED_BUNDLE / "configs" / "inference.json").read_text())["plausibility"]
#: The classes every method reports, by name (a model's class index for each comes from its bundle's class names).
TISSUES = ("grey matter", "white matter", "csf")  # compared in lower case: the shipped bundle names its class "CSF"
#: Label values of the labels this study scores: 1 grey matter, 2 white matter, 3 CSF (0 anything else).
NAMES = {"1": "grey matter", "2": "white matter", "3": "csf"}


def _on_grid(atlas: Path, reference: nib.Nifti1Image) -> np.ndarray:
    return np.asarray(resample_from_to(nib.load(str(atlas)), reference, order=0).dataobj)


def register_labels(fixed: Path, moving: Path, labels: Path, out: Path, keep: tuple[int, ...] = ()) -> Path:
    """Labels drawn on ``moving``'s image carried onto ``fixed``'s, written once to ``out`` (whole, then renamed): ANTs
    SyN (seeded; ITK's threads still vary about 2 % of the moved voxels between runs) of ``moving`` onto ``fixed``, on
    intensities alone, the labels moved by nearest neighbour (with ``keep``, only those values, as 1)."""
    if out.is_file():
        return out
    import os

    import ants  # the study's own dependency (pip install 'se-monai[study]')

    threads = os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")
    ants.config.set_ants_deterministic(True, 0)  # the seed (and the thread variable, restored below)
    fixed_image = ants.image_read(str(fixed))
    transforms = ants.registration(fixed_image, ants.image_read(str(moving)), type_of_transform="SyN")
    ants.config.set_ants_deterministic(False, None)
    if threads is None:
        os.environ.pop("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")
    else:
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = threads
    drawn = ants.image_read(str(labels))
    if keep:
        drawn = drawn.new_image_like(np.isin(drawn.numpy(), keep).astype(np.float32))
    moved = ants.apply_transforms(fixed_image, drawn, transforms["fwdtransforms"], interpolator="nearestNeighbor")
    partial = out.with_name(f".{out.name}")
    ants.image_write(moved, str(partial))
    partial.replace(out)
    return out


def _tracts_on_colin27(folder: Path) -> Path:
    """JHU's tract labels carried from MNI152 space onto Colin27, written once beside them: MNI152 and Colin27's MNI305
    space differ in size and shape (the labels resampled by their affines put tract voxels over Colin27's cortex and
    ventricles). The ICBM 2009a T1 (MNI152 space, from nilearn's wheel) is registered onto ``ch2bet``
    (:func:`register_labels`); no model's output enters it."""
    from se_monai.data.template import icbm152_paths

    return register_labels(folder / "ch2bet.nii.gz", icbm152_paths()["t1"], folder / JHU, folder / JHU_ON_COLIN27)


def deep_grey_on_s1(folders: dict[str, Path]) -> Path:
    """S1's deep grey matter as AAL's :data:`DEEP_GREY` structures (drawn on Colin27) registered from Colin27's head
    (``ch2``) onto S1's raw T1 (:func:`register_labels`), written once beside S1's T1: S1 has no subcortical
    segmentation."""
    pycortex, templates = folders["pycortex"], folders["mricron"]
    out, raw = pycortex / "S1_aal_deep_grey.nii.gz", pycortex / "anatomicals" / "raw.nii.gz"
    return register_labels(raw, templates / "ch2.nii.gz", templates / "aal.nii.gz", out, keep=DEEP_GREY)


def _within(volumes: dict[str, float], norms: str) -> str:
    """ "yes" when the volumes meet the norms and the shipped plausibility ranges (a head labelled tissue can have a
    normal grey/white ratio, never normal volumes)."""
    if check_volumes(volumes, SHIPPED_RULES):
        return "no"
    gm, wm = volumes["grey matter"], volumes["white matter"]
    values = {"grey matter": gm, "white matter": wm, "grey matter + white matter": gm + wm}
    values["grey matter / white matter"] = gm / wm if wm > 0 else float("inf")
    return "yes" if all(low <= values[k] <= high for k, (low, high) in NORMS[norms].items()) else "no"


#: Samples per voxel along each axis when S1's surfaces are voxelised (4: 64 per voxel, a 0.25 mm pitch on S1's T1).
SAMPLES = 4


def _surface_fractions(db: Path, image: nib.Nifti1Image, surface: str) -> tuple[np.ndarray, float, float]:
    """The fraction of each voxel of ``image``'s grid inside a closed surface of S1 (both hemispheres), the volume the
    meshes enclose (mL) and the fractions' volume (mL). Each voxel is sampled on a :data:`SAMPLES`-cubed grid
    centred on it (offsets (k + 0.5) / SAMPLES - 0.5 voxels); a sample counts 1 inside the surface and 1/2 in a cell
    the surface crosses (trimesh's voxelisation marks those cells whichever side of the surface their centres lie).
    The fractions must add up to the meshes' volume within 1 %, or the study stops: a voxelisation that grows or
    shifts the surfaces would move every Dice scored against them."""
    import trimesh  # the study's own dependency (pip install 'se-monai[study]')

    world_to_voxel = np.linalg.inv(image.affine)
    fraction, volume = np.zeros(image.shape[:3], np.float32), 0.0
    for hemisphere in ("lh", "rh"):
        gifti = nib.load(str(db / "surfaces" / f"{surface}_{hemisphere}.gii"))
        vertices, faces = gifti.darrays[0].data.astype(np.float64), gifti.darrays[1].data
        volume += abs(trimesh.Trimesh(vertices, faces, process=False).volume) / 1000.0
        voxels = nib.affines.apply_affine(world_to_voxel, vertices)
        # sample k of voxel v lies at SAMPLES * v + k on this grid
        crossed = trimesh.Trimesh(voxels * SAMPLES + (SAMPLES - 1) / 2, faces, process=False).voxelized(pitch=1.0)
        inside = ndimage.binary_fill_holes(crossed.matrix)
        weight = np.where(crossed.matrix, 0.5, 1.0)[inside] / SAMPLES**3
        samples = np.argwhere(inside) + np.round(crossed.translation).astype(int)
        np.add.at(fraction, tuple((samples // SAMPLES).T), weight)
    voxelised = float(fraction.sum()) * abs(np.linalg.det(image.affine[:3, :3])) / 1000.0
    if abs(voxelised - volume) > 0.01 * volume:
        raise SystemExit(f"{surface} surfaces: voxelised {voxelised:.1f} mL, meshes {volume:.1f} mL")
    return np.clip(fraction, 0.0, 1.0), volume, voxelised


def _s1_cerebrum(db: Path) -> dict[str, float]:
    """Write S1's skull-stripped cerebrum (the T1 inside its pial surfaces dilated by 2 mm) and its atlas (1 cortical
    ribbon, 2 inside the white surface; voxels at least half inside) beside the T1, once; returns the surfaces'
    volumes (mL), from the meshes and voxelised."""
    cached = db / "S1_surfaces.json"
    if cached.is_file():  # written by this voxelisation (an older one left no sample count)
        volumes = json.loads(cached.read_text())
        if volumes.pop("samples per voxel", None) == SAMPLES**3:
            return volumes
    image = nib.load(str(db / "anatomicals" / "raw.nii.gz"))
    pial, pial_ml, pial_voxelised = _surface_fractions(db, image, "pia")
    white, white_ml, white_voxelised = _surface_fractions(db, image, "wm")
    atlas = np.where(white >= 0.5, 2, np.where(pial >= 0.5, 1, 0)).astype(np.uint8)
    brain = ndimage.binary_dilation(pial > 0, iterations=2)
    t1 = np.asarray(image.dataobj, dtype=np.float32)
    nib.save(nib.Nifti1Image(np.where(brain, t1, 0).astype(np.float32), image.affine), str(db / "S1_cerebrum.nii.gz"))
    nib.save(nib.Nifti1Image(atlas, image.affine), str(db / "S1_atlas.nii.gz"))
    volumes = {
        "cortical ribbon": pial_ml - white_ml,
        "inside white surface": white_ml,
        "cortical ribbon, voxelised": pial_voxelised - white_voxelised,
        "inside white surface, voxelised": white_voxelised,
    }
    cached.write_text(json.dumps({**volumes, "samples per voxel": SAMPLES**3}, indent=2) + "\n")
    return volumes


def _agreement(labels: np.ndarray, image: nib.Nifti1Image, folders: dict[str, Path], name: str) -> list[str]:
    """Atlas GM voxels labelled GM and atlas WM voxels labelled WM (Colin27: AAL and JHU tracts; S1: its cortical
    ribbon and white-surface interior), for a case with the skull on the tissue (CSF, GM, WM) outside the brain mask
    (mL) and for Colin27 its Dice with ``ch2bet``'s brain mask, and for INIA19 the Dice of grey + white matter with
    the NeuroMaps atlas's labelled voxels (its brain tissue); Colin27's tracts both resampled by their affines and
    registered onto it (:func:`_tracts_on_colin27`)."""
    if name.startswith("INIA19"):
        atlas, tissue = _on_grid(folders["mricron"] / INIA19_ATLAS, image) > 0, np.isin(labels, (1, 2))
        return ["-", "-", "-", "-", f"{2 * (atlas & tissue).sum() / max(atlas.sum() + tissue.sum(), 1):.3f}"]
    if name.startswith("Colin27"):
        folder = folders["mricron"]
        grey = _on_grid(folder / "aal.nii.gz", image) > 0
        white = _on_grid(folder / JHU, image) > 0
        registered = _on_grid(_tracts_on_colin27(folder), image) > 0
        brain = _on_grid(folder / "ch2bet.nii.gz", image) > 0
    elif name.startswith("S1"):
        atlas = _on_grid(folders["pycortex"] / "S1_atlas.nii.gz", image)
        grey, white, registered = atlas == 1, atlas == 2, None
        brain = _on_grid(folders["pycortex"] / "S1_cerebrum.nii.gz", image) > 0
    else:
        return ["-", "-", "-", "-", "-"]
    cells = [f"{(labels[grey] == 1).mean():.3f}", f"{(labels[white] == 2).mean():.3f}"]
    cells.append("-" if registered is None else f"{(labels[registered] == 2).mean():.3f}")
    if "skull on" not in name:
        return [*cells, "-", "-"]
    outside = (labels > 0) & ~brain
    cells.append(f"{class_volumes(outside, image.affine, {'1': 'outside'})['outside']:.0f}")
    return [*cells, f"{_dice(labels > 0, brain):.3f}" if name.startswith("Colin27") else "-"]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(int(a.sum() + b.sum()), 1))


def _s1_scores(labels: np.ndarray, image: nib.Nifti1Image, folders: dict[str, Path], name: str) -> list[str]:
    """S1's cortical ribbon against the grey matter and its white-surface interior against the white matter (with the
    skull on, inside its cerebrum: the surfaces cover the cerebrum only), and the grey matter's volume over the ribbon's
    plus the deep grey matter's inside the white surface (:func:`deep_grey_on_s1`)."""
    if not name.startswith("S1"):
        return ["-", "-", "-"]
    atlas = _on_grid(folders["pycortex"] / "S1_atlas.nii.gz", image)
    labels = labels * (_on_grid(folders["pycortex"] / "S1_cerebrum.nii.gz", image) > 0)
    deep = (_on_grid(deep_grey_on_s1(folders), image) > 0) & (atlas == 2)
    ratio = (labels == 1).sum() / ((atlas == 1).sum() + deep.sum())
    return [f"{_dice(labels == 1, atlas == 1):.3f}", f"{_dice(labels == 2, atlas == 2):.3f}", f"{ratio:.3f}"]


def atropos_labels(path: Path) -> np.ndarray:
    """ANTs Atropos (k-means initialised, 3 classes, MRF smoothing 0.2) over the image's non-zero voxels, as
    :data:`NAMES` labels (classes ordered CSF < grey < white matter by their mean intensity)."""
    import ants  # the study's own dependency (pip install 'se-monai[study]')

    image = ants.image_read(str(path))
    mask = ants.get_mask(image, low_thresh=float(np.nextafter(np.float32(0), np.float32(1))), cleanup=0)
    classes = ants.atropos(a=image, m="[0.2,1x1x1]", c="[5,0]", i="kmeans[3]", x=mask)["segmentation"].numpy()
    intensities = image.numpy()
    order = np.argsort([intensities[classes == k].mean() for k in (1, 2, 3)])  # darkest first
    labels = np.zeros(classes.shape, np.uint8)
    for value, k in zip((3, 1, 2), order, strict=True):
        labels[classes == k + 1] = value
    return labels


def _model_labels(written: Path, class_names: dict[str, str]) -> np.ndarray:
    """A model's labels as :data:`NAMES` values, by its classes' names."""
    labels = np.asarray(nib.load(str(written)).dataobj)
    out = np.zeros(labels.shape, np.uint8)
    for index, name in class_names.items():
        if name.lower() in TISSUES:
            out[labels == int(index)] = TISSUES.index(name.lower()) + 1
    return out


def _zoomed(path: Path, zoom: float, folder: Path) -> Path:
    if zoom == 1.0:
        return path
    image = nib.load(str(path))
    affine = image.affine.copy()
    affine[:3, :3] *= zoom
    out = folder / f"zoom{zoom:g}_{path.name}"
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), affine, image.header), str(out))
    return out


def _plot(image: nib.Nifti1Image, labels: np.ndarray, output: Path, title: str) -> None:
    """The overlay PNG, on the volume turned to RAS axes (S1's T1 is stored LIA)."""
    canonical = nib.as_closest_canonical(image)
    turned = nib.as_closest_canonical(nib.Nifti1Image(labels.astype(np.uint8), image.affine))
    picture = np.asarray(canonical.dataobj, dtype=np.float32)
    plot_segmentation(picture, np.asarray(turned.dataobj), output, list(NAMES.values()), title=title)


def main(
    templates: str = TEMPLATES,
    pycortex: str = PYCORTEX,
    bundles: dict | None = None,
    zooms: tuple = (1.0,),
    output_dir: str = "docs/results/real_brains",
    atropos: bool = True,
    cases: tuple = (),
) -> None:
    """Print a markdown table of every bundle and of ANTs Atropos (``atropos``: at zoom 1) and write the PNGs to
    ``output_dir``; ``cases``: only the cases whose names contain one of these strings (default: all)."""
    folders = {"mricron": Path(templates), "pycortex": Path(pycortex)}
    if not (folders["pycortex"] / "anatomicals" / "raw.nii.gz").is_file():
        raise SystemExit(f"{pycortex}: no anatomicals/raw.nii.gz (run `make real-brains` to fetch pycortex)")
    surfaces = _s1_cerebrum(folders["pycortex"])
    print("S1's surfaces: " + ", ".join(f"{k} {v:.1f} mL" for k, v in surfaces.items()))
    needed = [(source, f) for source, f, _ in CASES.values()] + [("mricron", INIA19_ATLAS)]
    missing = [f for source, f in needed if not (folders[source] / f).is_file()]
    if missing:
        raise SystemExit(f"{', '.join(missing)} missing (run `make real-brains` to fetch mricron-data and pycortex)")
    atlas = nib.load(str(folders["mricron"] / INIA19_ATLAS))
    labelled = class_volumes(np.asarray(atlas.dataobj) > 0, atlas.affine, {"1": "brain"})["brain"]
    print(f"INIA19's NeuroMaps atlas labels {labelled:.1f} mL")
    if round(labelled, 1) != INIA19_ATLAS_ML:
        raise SystemExit(f"{INIA19_ATLAS}: labels {labelled:.1f} mL, not the {INIA19_ATLAS_ML} mL of INIA19's norm")
    bundles = bundles or {"shipped": None}
    header = (
        "| method | brain | zoom | CSF (mL) | grey matter (mL) | white matter (mL) | GM/WM | within norms "
        "| plausibility | atlas GM as GM | atlas WM as WM | tracts registered as WM | ribbon Dice | white Dice "
        "| GM / (ribbon + deep GM) | tissue outside brain (mL) | tissue Dice with atlas | seconds |"
    )
    print(header)
    print("| --- |" + " --- |" * (header.count("|") - 2))
    methods = {**bundles, **({"ANTs Atropos": "atropos"} if atropos else {})}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for method, bundle in methods.items():
            config = (
                {}
                if bundle == "atropos"
                else json.loads((resolve_bundle_dir(bundle) / "configs" / "inference.json").read_text())
            )
            rules = config.get("plausibility") or SHIPPED_RULES
            for name, (source, file, norms) in CASES.items():
                if cases and not any(part in name for part in cases):
                    continue
                path = folders[source] / file
                image = nib.load(str(path))
                stem = Path(file).name.split(".")[0]
                stem = stem if source == "mricron" or stem.startswith("S1") else f"S1_{stem}"
                for zoom in (1.0,) if bundle == "atropos" else (float(z) for z in zooms):
                    out = work / f"{method.replace(' ', '_')}_{zoom:g}_{stem}.nii.gz"
                    start = time.perf_counter()
                    if bundle == "atropos":
                        labels = atropos_labels(path)
                    else:
                        segment_image(_zoomed(path, zoom, work), out, bundle, progress=False, plausibility="off")
                        labels = _model_labels(out, config["class_names"])
                    seconds = time.perf_counter() - start
                    volumes = class_volumes(labels, image.affine, NAMES)  # labels on the input's own grid
                    broken = check_volumes(volumes, rules)
                    agreement = _agreement(labels, image, folders, name)
                    ratio = (
                        volumes["grey matter"] / volumes["white matter"] if volumes["white matter"] else float("inf")
                    )
                    cells = [
                        method,
                        name,
                        f"{zoom:g}",
                        f"{volumes['csf']:.1f}" if volumes["csf"] else "-",
                        f"{volumes['grey matter']:.1f}",
                        f"{volumes['white matter']:.1f}",
                        f"{ratio:.2f}",
                        _within(volumes, norms),
                        "; ".join(broken) if broken else "plausible",
                        *agreement[:3],
                        *_s1_scores(labels, image, folders, name),
                        *agreement[3:],
                        f"{seconds:.0f}",
                    ]
                    print("| " + " | ".join(cells) + " |", flush=True)
                    _plot(
                        image,
                        labels,
                        Path(output_dir) / f"{method.replace(' ', '_')}_{stem}_zoom{zoom:g}.png",
                        f"{method}: {name}, zoom {zoom:g} (GM {volumes['grey matter']:.0f} mL, "
                        f"WM {volumes['white matter']:.0f} mL)",
                    )


if __name__ == "__main__":
    fire.Fire(main)
