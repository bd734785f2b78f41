"""Offline brain-tissue data: the ICBM 2009a template shipped in the nilearn wheel, as an MSD-layout dataset.

The template (Fonov et al., NeuroImage 2011; ICBM 2009a nonlinear symmetric, 197 x 233 x 189 voxels, 1 mm,
skull-stripped T1 and grey/white-matter probability maps) is found inside the installed nilearn package: nothing
is downloaded. Labels: 0 other (CSF and background), 1 grey matter, 2 white matter, the argmax of
(1 - p_gm - p_wm, p_gm, p_wm); with the CSF class (:data:`CSF_LABELS`) 3 CSF where "other" wins inside the brain.
With ``tissue="intensity"`` (:data:`TISSUE_SOURCES`) the classes instead follow the template T1's own intensities
(:func:`intensity_tissue_maps`).

:func:`prepare_brain_tissue_dataset` writes a Medical Segmentation Decathlon layout (``imagesTr/``, ``labelsTr/``,
``imagesTs/``, ``labelsTs/``, ``dataset.json``): training subjects synthesised from the template by random smooth
deformation, isotropic rescaling, intensity and contrast changes, bias field and noise (MONAI transforms), and the
real template T1 as the held-out test image.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai import transforms as mt
from scipy import ndimage
from tqdm import tqdm

from se_monai.ops.atomic import atomic_write

__all__ = [
    "LABELS",
    "CSF_LABELS",
    "TISSUE_SOURCES",
    "icbm152_paths",
    "intensity_tissue_maps",
    "tissue_labels",
    "load_icbm152",
    "add_head",
    "random_geometry",
    "head_shell_labels",
    "HEAD_SHELLS",
    "HEAD_PAD",
    "synthesis_transform",
    "TemplateSubjects",
    "prepare_brain_tissue_dataset",
]

#: Label values of the brain-tissue task.
LABELS = {"0": "other", "1": "grey matter", "2": "white matter"}
#: Label values of the brain-tissue task with a CSF class (labels 1 and 2 keep their meaning).
CSF_LABELS = {**LABELS, "3": "CSF"}
_TEMPLATE = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
#: Where the template's tissue classes come from: "probability" (the argmax of its probability maps) or "intensity"
#: (its T1 thresholded between the classes, :func:`intensity_tissue_maps`).
TISSUE_SOURCES = ("probability", "intensity")


def icbm152_paths() -> dict[str, Path]:
    """Paths of the ICBM152 2009a T1, grey- and white-matter maps inside the installed nilearn package.

    Returns:
        ``{"t1": Path, "gm": Path, "wm": Path}``.

    Raises:
        FileNotFoundError: nilearn is not installed or its wheel lacks the template files.
    """
    try:
        root = Path(str(resources.files("nilearn.datasets") / "data"))
    except ModuleNotFoundError as err:
        raise FileNotFoundError(
            "nilearn is not installed; it ships the ICBM152 template (pip install nilearn)"
        ) from err
    paths = {key: root / _TEMPLATE.format(key) for key in ("t1", "gm", "wm")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"ICBM152 template files not found in the nilearn package: {', '.join(missing)}")
    return paths


def tissue_labels(gm: np.ndarray, wm: np.ndarray, brain: np.ndarray | None = None) -> np.ndarray:
    """Labels 0 other, 1 grey matter, 2 white matter from probability maps in [0, 1] (argmax; ties go low), and with
    ``brain`` 3 CSF where "other" wins inside it (:data:`CSF_LABELS`).

    Args:
        gm, wm: arrays of the same shape, probabilities in [0, 1].
        brain: a boolean mask of that shape: the skull-stripped brain (its CSF included), e.g. the template T1's
            non-zero voxels.

    Returns:
        uint8 array of that shape.
    """
    other = np.clip(1.0 - gm - wm, 0.0, 1.0)
    labels = np.argmax(np.stack([other, gm, wm]), axis=0).astype(np.uint8)
    if brain is not None:
        labels[(labels == 0) & brain] = 3
    return labels


def intensity_tissue_maps(t1: np.ndarray, gm: np.ndarray, wm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grey- and white-matter maps (float32, 0 or 1) that follow a skull-stripped T1's intensities: inside the brain
    (``t1 > 0``) a voxel is CSF below the midpoint of the CSF and grey-matter medians, white matter above the midpoint
    of the grey- and white-matter medians, grey matter between; the medians are those of the classes of
    :func:`tissue_labels` (``gm``, ``wm`` with the brain as mask). The template's probability maps average the
    segmentations of 152 brains, whose cortices do not align, so their argmax draws a thick cortex (the template's
    grey/white-matter volume ratio is 1.72, individual adults' 1.1-1.5); the boundaries of its T1, where the
    intensity is halfway between two tissues, make a ratio of 1.39.

    Args:
        t1: the T1 (any intensity scale), 0 outside the brain.
        gm, wm: probability maps in [0, 1] of the same shape.

    Returns:
        ``(gm, wm)`` maps of that shape, for :func:`tissue_labels` (CSF where neither is 1 inside the brain).
    """
    brain = t1 > 0
    labels = tissue_labels(gm, wm, brain)
    csf, grey, white = (float(np.median(t1[labels == k])) for k in (3, 1, 2))
    low, high = (csf + grey) / 2.0, (grey + white) / 2.0
    return (brain & (t1 >= low) & (t1 < high)).astype(np.float32), (brain & (t1 >= high)).astype(np.float32)


def load_icbm152(tissue: str = "probability") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The template as arrays: T1 (float32, 0..255), GM and WM maps (float32, 0..1), and the affine; ``tissue``
    (:data:`TISSUE_SOURCES`): the maps are the template's probabilities ("probability") or follow its T1
    ("intensity", :func:`intensity_tissue_maps`).

    Raises:
        ValueError: an unknown ``tissue``. FileNotFoundError: as :func:`icbm152_paths`.
    """
    if tissue not in TISSUE_SOURCES:
        raise ValueError(f"unknown tissue source {tissue!r}: expected one of {', '.join(TISSUE_SOURCES)}")
    paths = icbm152_paths()
    images = {k: nib.load(str(p)) for k, p in paths.items()}
    t1 = images["t1"].get_fdata(dtype=np.float32)
    gm = images["gm"].get_fdata(dtype=np.float32) / 255.0
    wm = images["wm"].get_fdata(dtype=np.float32) / 255.0
    if tissue == "intensity":
        gm, wm = intensity_tissue_maps(t1, gm, wm)
    return t1, gm, wm, images["t1"].affine


def random_geometry(
    keys: str, rescale_range: tuple[float, float], magnitude_range: tuple[float, float], rotate: float, modes: tuple
) -> list[mt.Transform]:
    """A random smooth elastic deformation (displacement sigma 8-10 voxels, ``magnitude_range``) with rotation up to
    ``rotate`` rad, then one isotropic rescale factor in ``rescale_range`` with the field of view kept; ``modes``:
    the interpolation of each (e.g. ("nearest", "nearest") for labels)."""
    return [
        mt.Rand3DElasticd(
            keys=keys,
            sigma_range=(8, 10),
            magnitude_range=magnitude_range,
            prob=1.0,
            rotate_range=(rotate,) * 3,
            mode=modes[0],
            padding_mode="zeros",
        ),
        mt.RandZoomd(
            keys=keys,
            prob=1.0,
            min_zoom=rescale_range[0],
            max_zoom=rescale_range[1],
            mode=modes[1],
            keep_size=True,
            padding_mode="constant",
        ),
    ]


def synthesis_transform(rescale_range: tuple[float, float] = (0.85, 1.15), seed: int = 0) -> mt.Compose:
    """MONAI transform that makes one synthetic subject from ``{"image": (3, D, H, W)}`` = (T1, p_gm, p_wm).

    Geometry (all three channels, trilinear): a random smooth elastic deformation (displacement sigma 8-10
    voxels, magnitude 60-120), rotation up to 0.1 rad, and one isotropic rescale factor in ``rescale_range``
    (``keep_size``: the field of view stays 197 x 233 x 189). Intensity (T1 only): gamma contrast, a smooth bias
    field, global scaling and shift, slight blur, and Gaussian noise inside the head.
    """
    geometry = mt.Compose(random_geometry("image", rescale_range, (60, 120), 0.1, ("bilinear", "trilinear")))
    intensity = mt.Compose(
        [
            mt.ScaleIntensityd(keys="t1"),
            mt.RandAdjustContrastd(keys="t1", prob=1.0, gamma=(0.6, 1.6)),
            mt.RandBiasFieldd(keys="t1", prob=1.0, coeff_range=(0.1, 0.3), degree=3),
            mt.RandGaussianSmoothd(keys="t1", prob=0.5, sigma_x=(0.3, 0.8), sigma_y=(0.3, 0.8), sigma_z=(0.3, 0.8)),
            mt.RandScaleIntensityd(keys="t1", prob=1.0, factors=0.3),
            mt.RandGaussianNoised(keys="t1", prob=1.0, mean=0.0, std=0.03),
        ]
    )
    composed = mt.Compose([geometry, intensity])
    composed.set_random_state(seed=seed)
    return composed


def _synthesise(volume: np.ndarray, transform: mt.Compose, csf: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Apply the synthesis to a (3, D, H, W) stack; returns (T1 float32, labels uint8, with CSF when ``csf``)."""
    geometry, intensity = transform.transforms
    moved = geometry({"image": torch.from_numpy(volume)})["image"]
    moved = torch.as_tensor(moved).float()
    head = moved[0] > 1.0  # template T1 is 0 outside the head (skull-stripped)
    brain = head.numpy() if csf else None
    labels = tissue_labels(moved[1].clamp(0, 1).numpy(), moved[2].clamp(0, 1).numpy(), brain)
    t1 = intensity({"t1": moved[:1]})["t1"]
    t1 = torch.as_tensor(t1)[0].clamp_min(0) * head  # noise and bias only inside the head, as in the test image
    return t1.numpy().astype(np.float32), labels


class TemplateSubjects:
    """Training subjects for :func:`prepare_brain_tissue_dataset` (its ``subjects``): the template deformed and
    recontrasted by :func:`synthesis_transform` with each subject's seed. Returns per call ``(image float32,
    labels uint8, affine)`` on the template's grid (197 x 233 x 189, 1 mm); with ``csf`` the labels of
    :data:`CSF_LABELS` (CSF where neither tissue wins inside the skull-stripped template), else of :data:`LABELS`;
    ``tissue`` as in :func:`load_icbm152`."""

    description = (
        "Brain tissue (grey/white matter) of the ICBM 2009a symmetric template; training subjects synthesised by "
        "random deformation, rescaling, contrast, bias field and noise; the real T1 held out."
    )

    def __init__(self, csf: bool = False, tissue: str = "probability") -> None:
        t1, gm, wm, self.affine = load_icbm152(tissue)
        self.stack = np.stack([t1, gm, wm]).astype(np.float32)
        self.csf, self.class_names, self.tissue = bool(csf), CSF_LABELS if csf else LABELS, tissue

    def __call__(self, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (*_synthesise(self.stack, synthesis_transform(seed=seed), self.csf), self.affine)


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    with atomic_write(path) as partial:
        nib.save(nib.Nifti1Image(array, affine), str(partial))


def prepare_brain_tissue_dataset(
    root: str | os.PathLike,
    num_subjects: int = 12,
    seed: int = 0,
    overwrite: bool = False,
    subjects: Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
    description: str | None = None,
) -> Path:
    """Write the ICBM152 brain-tissue dataset in the MSD layout under ``root``.

    Args:
        root: output folder; created if missing.
        num_subjects: synthetic training subjects (``imagesTr/subject_XXX.nii.gz`` with ``labelsTr/``).
        seed: random seed; the same seed writes the same data.
        overwrite: rewrite files that exist (else they are kept, so an interrupted run resumes).
        subjects: makes one training subject from its seed: ``(image, labels, affine)``; default: the template
            deformed and recontrasted by :func:`synthesis_transform` (another generator: :mod:`se_monai.data.synth`).
            Its ``class_names`` (default :data:`LABELS`) are the dataset's labels, and its ``tissue`` (default
            "probability", :func:`load_icbm152`) the source of the test image's labels.
        description: dataset.json's "description" for ``subjects``.

    Returns:
        Path of ``dataset.json``. The real template T1 is ``imagesTs/icbm152_t1.nii.gz`` and its labels
        ``labelsTs/icbm152_t1.nii.gz``.

    Raises:
        FileNotFoundError: the template is not in the nilearn package. ValueError: ``num_subjects < 1``.
    """
    if num_subjects < 1:
        raise ValueError(f"num_subjects must be >= 1, got {num_subjects}")
    root = Path(root)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    subjects = subjects or TemplateSubjects()
    class_names = getattr(subjects, "class_names", LABELS)
    t1, gm, wm, affine = load_icbm152(getattr(subjects, "tissue", "probability"))
    test_image, test_label = root / "imagesTs" / "icbm152_t1.nii.gz", root / "labelsTs" / "icbm152_t1.nii.gz"
    if overwrite or not test_image.exists():
        _save(t1, affine, test_image)
    if overwrite or not test_label.exists():
        _save(tissue_labels(gm, wm, (t1 > 0) if "3" in class_names else None), affine, test_label)

    training = []
    for i in tqdm(range(num_subjects), desc="synthesising subjects", unit="subject", disable=None):  # on a terminal
        name = f"subject_{i:03d}.nii.gz"
        image_path, label_path = root / "imagesTr" / name, root / "labelsTr" / name
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
        if not overwrite and image_path.exists() and label_path.exists():
            continue
        image, label, subject_affine = subjects(seed * 10007 + i)
        _save(label, subject_affine, label_path)
        _save(image, subject_affine, image_path)

    description = {
        "name": "ICBM152BrainTissue",
        "description": description or getattr(subjects, "description", TemplateSubjects.description),
        "reference": "Fonov et al., NeuroImage 54(1), 2011; template files from the nilearn package",
        "licence": "ICBM152 template licence (see nilearn)",
        "tensorImageSize": "3D",
        "modality": {"0": "T1"},
        "labels": class_names,
        "numTraining": num_subjects,
        "numTest": 1,
        "training": training,
        "test": ["./imagesTs/icbm152_t1.nii.gz"],
    }
    path = root / "dataset.json"
    with atomic_write(path) as partial:
        partial.write_text(json.dumps(description, indent=2) + "\n")
    return path


#: Shells around the brain's hull, outwards (thickness in voxels of 1 mm, T1 intensity on the template's 0-255
#: scale): CSF, skull inner table, diploe (marrow), outer table, muscle, subcutaneous fat (scalp).
HEAD_SHELLS = ((3, 40.0), (2, 15.0), (3, 120.0), (2, 15.0), (3, 90.0), (4, 230.0))
#: Voxels added on every side of the field of view for the shells (and a margin of air).
HEAD_PAD = sum(t for t, _ in HEAD_SHELLS) + 4


def head_shell_labels(brain: np.ndarray) -> np.ndarray:
    """Where a head goes around a brain mask (1 mm voxels), on the grid padded by :data:`HEAD_PAD`: 0 air, 1 inside
    the brain's hull (closing of the mask, holes filled), k + 2 the k-th shell of :data:`HEAD_SHELLS` (by distance
    from the hull). Returns uint8 of shape ``brain.shape + 2 * HEAD_PAD``."""
    mask = np.pad(np.asarray(brain, bool), HEAD_PAD)
    hull = ndimage.binary_fill_holes(ndimage.binary_closing(mask, np.ones((7, 7, 7)), iterations=2))
    labels = hull.astype(np.uint8)
    distance = ndimage.distance_transform_edt(~hull)
    inner = 0.0
    for k, (thickness, _) in enumerate(HEAD_SHELLS):
        labels[(distance > inner) & (distance <= inner + thickness)] = k + 2
        inner += thickness
    return labels


def add_head(t1: np.ndarray, affine: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A skull-stripped T1 (zero outside the brain, 1 mm voxels) with a head put back around it: CSF in the sulci,
    and shells of CSF, skull and scalp around the brain's hull (:func:`head_shell_labels`, intensities of
    :data:`HEAD_SHELLS`), plus noise (sd 2), in a field of view padded by :data:`HEAD_PAD`. Returns the image
    (float32) and its affine. An input the shipped model was not trained for, to test that it is flagged
    (:mod:`se_monai.transforms.plausibility`)."""
    labels = head_shell_labels(t1 > 0)
    head = np.pad(t1, HEAD_PAD)
    head = np.where((labels == 1) & (head <= 0), HEAD_SHELLS[0][1], head)
    for k, (_, value) in enumerate(HEAD_SHELLS):
        head[labels == k + 2] = value
    shifted = affine.copy()
    shifted[:3, 3] -= affine[:3, :3] @ np.full(3, HEAD_PAD)
    noise = np.random.default_rng(seed).normal(0.0, 2.0, head.shape)
    return np.clip(head + noise, 0, None).astype(np.float32), shifted
