"""Label-driven synthetic training subjects in the spirit of SynthSeg (Billot et al., "SynthSeg: Segmentation of brain
MRI scans of any contrast and resolution without retraining", Medical Image Analysis 2023).

The template's tissue maps and a head around them (:func:`se_monai.data.head_shell_labels`) make one label map of
:data:`STRUCTURES`: air, CSF, grey and white matter, and the shells of CSF, skull and scalp. Every subject deforms
that map (elastic, rotation, isotropic rescaling over a wide range, nearest-neighbour), draws an intensity mean and
spread for every structure (so every contrast is seen, T1, T2 and others), then blurs with a random per-axis width
(slice thickness), simulates a lower acquisition resolution, multiplies a smooth bias field, applies a gamma, adds
noise and rescales to 0..1: all MONAI transforms except the per-structure intensities (:mod:`se_monai.data.painting`:
per voxel, or with partial volume on a finer grid). The segmentation target keeps grey and white matter and calls
everything else "other" (``data.LABELS``), or CSF class 3 (``data.CSF_LABELS``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai import transforms as mt
from monai.config import KeysCollection
from monai.utils import convert_to_dst_type, convert_to_numpy
from scipy import ndimage

from se_monai.data.painting import RandLabelIntensityd, RandPartialVolumeIntensityd
from se_monai.data.template import (
    CSF_LABELS,
    HEAD_PAD,
    HEAD_SHELLS,
    LABELS,
    TemplateSubjects,
    head_shell_labels,
    load_icbm152,
    random_geometry,
    tissue_labels,
)

__all__ = [
    "STRUCTURES",
    "T1_ORDER",
    "structure_labels",
    "RandLabelIntensityd",
    "RandPartialVolumeIntensityd",
    "RandSkullStripd",
    "RandCorticalThicknessd",
    "synthseg_transform",
    "SynthSegSubjects",
    "AlternatingSubjects",
    "GENERATORS",
    "training_subjects",
]

#: Structures of the generator's label map, in the order of their values.
STRUCTURES = (
    "air",
    "csf",
    "grey matter",
    "white matter",
    "csf shell",
    "skull inner table",
    "diploe",
    "skull outer table",
    "muscle",
    "fat",
)


def structure_labels(gm: np.ndarray, wm: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """The label map of :data:`STRUCTURES` from the template's grey/white-matter probabilities and skull-stripped T1
    (1 mm), on the grid padded by :data:`se_monai.data.HEAD_PAD`: inside the brain's hull grey and white matter by
    :func:`se_monai.data.tissue_labels`, CSF elsewhere; outside it the head's shells."""
    shells = head_shell_labels(t1 > 0)
    pad = (shells.shape[0] - t1.shape[0]) // 2
    tissue = np.pad(tissue_labels(gm, wm), pad)
    labels = np.where(shells >= 2, shells + 2, 0).astype(np.uint8)  # shell k (value k + 2) -> structure k + 4
    inside = shells == 1
    labels[inside] = 1
    labels[inside & (tissue == 1)] = 2
    labels[inside & (tissue == 2)] = 3
    return labels


class _RandDepthd(mt.RandomizableTransform, mt.MapTransform):
    """A map transform applied with probability ``prob`` at a depth (voxels) drawn uniformly from ``depth_range``."""

    def __init__(self, keys: KeysCollection, prob: float, depth_range: tuple[float, float]) -> None:
        mt.RandomizableTransform.__init__(self, prob)
        mt.MapTransform.__init__(self, keys)
        self.depth_range, self.depth = depth_range, 0.0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self.depth = self.R.uniform(*self.depth_range)


class RandSkullStripd(_RandDepthd):
    """Skull-strips a structure label map (:data:`STRUCTURES`) as brain-extraction tools do, with probability
    ``prob``: the head's shells become air, and so does the CSF within a random depth (voxels, uniform in
    ``csf_depth``) of the brain hull's outside, so that some brains keep a layer of CSF and others are cut at the
    grey-matter surface (as BET cuts Colin27). Writes ``mask_key``: ``(1, D, H, W)`` bool, False where stripped (all
    True for an unstripped head), for :class:`monai.transforms.MaskIntensityd` after the intensities are drawn.

    Args:
        keys: the structure label key, ``(1, D, H, W)``.
        mask_key: where to write the mask.
        prob: probability of stripping.
        csf_depth: range of the depth (voxels) of CSF removed from the hull's outside.
    """

    def __init__(
        self, keys: KeysCollection, mask_key: str = "mask", prob: float = 0.5, csf_depth: tuple[float, float] = (0, 4)
    ) -> None:
        super().__init__(keys, prob, csf_depth)
        self.mask_key = mask_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        for key in self.key_iterator(d):
            labels = torch.as_tensor(d[key])
            if not self._do_transform:
                d[self.mask_key] = torch.ones_like(labels, dtype=torch.bool)
                continue
            head = labels >= STRUCTURES.index("csf shell")
            depth = ndimage.distance_transform_edt(np.asarray((labels != 0) & ~head))  # in the hull, from outside
            stripped = head | ((labels == STRUCTURES.index("csf")) & torch.from_numpy(depth <= self.depth))
            d[key] = torch.where(stripped, torch.zeros_like(labels), labels)
            d[self.mask_key] = ~stripped & (labels != 0)
        return d


class RandCorticalThicknessd(_RandDepthd):
    """Varies the thickness of grey matter in a structure label map (:data:`STRUCTURES`), with probability ``prob``:
    white matter grows into the grey matter by a random depth (voxels, uniform in ``depth_range``; a negative depth
    grows grey matter into the white matter instead). The template's tissue maps average 152 brains, which blurs and
    thickens their cortex; drawing the grey/white boundary at other depths lets a network trained on the painted
    images learn the boundary from the image rather than from the template's thickness. The voxels whose centres lie
    within ``|depth| + 0.5`` of the other tissue change, so the depth counts in whole layers of voxels, rounded
    (``|depth| < 0.5`` changes nothing). The outermost grey-matter voxels (next to CSF or air) stay grey matter, so
    no cortex disappears.

    Args:
        keys: the structure label key, ``(1, D, H, W)``.
        prob: probability of changing the thickness.
        depth_range: range of the depth (voxels; positive thins, negative thickens the grey matter).
    """

    def __init__(self, keys: KeysCollection, prob: float = 1.0, depth_range: tuple[float, float] = (-1.0, 2.0)) -> None:
        super().__init__(keys, prob, depth_range)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        reach = abs(self.depth) + 0.5  # voxel-centre distances are 1, 1.41, ...: the depth rounded to layers
        if not self._do_transform or reach < 1.0:
            return d
        grey, white = STRUCTURES.index("grey matter"), STRUCTURES.index("white matter")
        for key in self.key_iterator(d):
            labels = convert_to_numpy(d[key]).copy()
            gm, wm = labels == grey, labels == white
            if self.depth > 0:  # grey matter within ``reach`` of white matter, off the outer surface, becomes white
                inner = ndimage.distance_transform_edt(gm | wm) > 1.0
                labels[gm & inner & (ndimage.distance_transform_edt(~wm) <= reach)] = white
            else:  # white matter within ``reach`` of grey matter becomes grey matter
                labels[wm & (ndimage.distance_transform_edt(~gm) <= reach)] = grey
            d[key] = convert_to_dst_type(labels, d[key])[0]
        return d


#: Structures in the order of their mean intensity in T1-weighted MRI: CSF < grey matter < white matter.
T1_ORDER = (STRUCTURES.index("csf"), STRUCTURES.index("grey matter"), STRUCTURES.index("white matter"))


def synthseg_transform(
    scale_range: tuple[float, float] = (0.6, 1.5),
    seed: int = 0,
    t1_prob: float = 0.0,
    strip_prob: float = 0.5,
    thickness_range: tuple[float, float] = (0.0, 0.0),
    csf: bool = False,
    partial_volume: int = 1,
) -> mt.Compose:
    """One synthetic subject from ``{"label": (1, D, H, W)}`` structure labels (:func:`structure_labels`):
    ``{"image": (1, D, H, W) float32 in 0..1, "label": (1, D, H, W) segmentation classes 0 other, 1 GM, 2 WM}``.

    ``scale_range`` is the isotropic rescaling of the anatomy (field of view kept), 2.5x between its ends by
    default. A fraction ``strip_prob`` of the subjects is skull-stripped (:class:`RandSkullStripd`: the head and
    some of the CSF around the brain turned to air, the image exactly 0 there). ``t1_prob`` is the fraction of
    subjects whose CSF, grey- and white-matter means are in T1 order (:data:`T1_ORDER`), the rest of any contrast.
    ``thickness_range`` other than ``(0, 0)`` first moves the grey/white boundary by a random depth in it (voxels of
    the template, :class:`RandCorticalThicknessd`); with ``(0, 0)`` the subjects are those of earlier versions.
    With ``csf`` the CSF inside the brain's hull and in the shell around it is class 3
    (:data:`se_monai.data.CSF_LABELS`), else "other". ``partial_volume`` > 1: the label map is moved as structure
    fractions (one-hot, trilinear), sampled ``partial_volume`` times finer along each axis and painted there, and the
    image averaged back to the voxel (:class:`RandPartialVolumeIntensityd`: boundary voxels mix their tissues'
    intensities, labels are the structure filling most of the voxel); 1: the map is moved nearest-neighbour and
    painted at the voxel, the subjects of earlier versions. Deterministic for a given ``seed``.
    """
    thickness = [RandCorticalThicknessd("label", depth_range=thickness_range)] if any(thickness_range) else []
    strip = RandSkullStripd(keys="label", mask_key="mask", prob=strip_prob)
    painting = {
        "keys": "label",
        "image_key": "image",
        "num_labels": len(STRUCTURES),
        "ordered": T1_ORDER,
        "order_prob": t1_prob,
        "tied": {STRUCTURES.index("csf shell"): STRUCTURES.index("csf")} if csf else None,
    }
    if int(partial_volume) > 1:  # stripped after painting: the mask's boundary voxels keep their partial volume
        painted = [
            mt.AsDiscreted(keys="label", to_onehot=len(STRUCTURES)),
            *random_geometry("label", scale_range, (40, 100), 0.15, ("bilinear", "trilinear")),
            RandPartialVolumeIntensityd(factor=int(partial_volume), **painting),
            strip,
        ]
    else:
        painted = [
            *random_geometry("label", scale_range, (40, 100), 0.15, ("nearest", "nearest")),
            strip,
            RandLabelIntensityd(**painting),
        ]
    composed = mt.Compose(
        [
            *thickness,
            *painted,
            mt.RandGaussianSmoothd(keys="image", prob=1.0, sigma_x=(0.3, 2.0), sigma_y=(0.3, 2.0), sigma_z=(0.3, 2.0)),
            mt.RandSimulateLowResolutiond(keys="image", prob=0.5, zoom_range=(0.5, 1.0)),
            mt.RandBiasFieldd(keys="image", prob=1.0, coeff_range=(0.1, 0.4), degree=3),
            mt.RandAdjustContrastd(keys="image", prob=1.0, gamma=(0.6, 1.6)),
            mt.RandGaussianNoised(keys="image", prob=1.0, mean=0.0, std=0.03),
            mt.MaskIntensityd(keys="image", mask_key="mask"),  # stripped: exactly 0 outside, as tools write it
            mt.DeleteItemsd(keys="mask"),
            mt.ScaleIntensityd(keys="image"),
            mt.MapLabelValued(
                keys="label",
                orig_labels=list(range(len(STRUCTURES))),
                target_labels=[0, 3 if csf else 0, 1, 2] + [3 if csf else 0] + [0] * (len(HEAD_SHELLS) - 1),
            ),
        ]
    )
    composed.set_random_state(seed=seed)
    return composed


class SynthSegSubjects:
    """Training subjects for :func:`se_monai.data.prepare_brain_tissue_dataset` (its ``subjects``): the template's
    structure label map (made once) through :func:`synthseg_transform` with each subject's seed.

    Returns per call ``(image float32, labels uint8, affine)`` on the template's grid padded by
    :data:`se_monai.data.HEAD_PAD` (1 mm). ``scale_range``, ``t1_prob``, ``strip_prob``, ``thickness_range``,
    ``csf`` and ``partial_volume`` as in :func:`synthseg_transform`; ``tissue`` as in
    :func:`se_monai.data.load_icbm152`.
    """

    description = (
        "Brain tissue (grey/white matter) of the ICBM 2009a symmetric template; training subjects generated "
        "SynthSeg-style from its tissue maps with a synthetic head (random per-structure intensities, resolution, "
        "bias field, noise, isotropic scaling 0.6-1.5, half skull-stripped); the real T1 held out."
    )

    def __init__(
        self,
        scale_range: tuple[float, float] = (0.6, 1.5),
        t1_prob: float = 0.0,
        strip_prob: float = 0.5,
        thickness_range: tuple[float, float] = (0.0, 0.0),
        csf: bool = False,
        tissue: str = "probability",
        partial_volume: int = 1,
    ) -> None:
        t1, gm, wm, affine = load_icbm152(tissue)
        self.labels = torch.from_numpy(structure_labels(gm, wm, t1))[None]
        self.affine = affine.copy()
        self.affine[:3, 3] -= affine[:3, :3] @ np.full(3, HEAD_PAD)
        self.scale_range, self.t1_prob, self.strip_prob = scale_range, float(t1_prob), float(strip_prob)
        self.thickness_range = tuple(float(v) for v in thickness_range)
        self.csf, self.class_names, self.tissue = bool(csf), CSF_LABELS if csf else LABELS, tissue
        self.partial_volume = int(partial_volume)

    def __call__(self, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        transform = synthseg_transform(
            self.scale_range, seed, self.t1_prob, self.strip_prob, self.thickness_range, self.csf, self.partial_volume
        )
        out = transform({"label": self.labels})
        image = np.asarray(out["image"])[0].astype(np.float32)
        return image, np.asarray(out["label"])[0].astype(np.uint8), self.affine


class AlternatingSubjects:
    """Training subjects drawn in turn from several generators (``generators[seed % len(generators)]``), e.g. the
    template's own deformed T1 (:class:`se_monai.data.TemplateSubjects`) and :class:`SynthSegSubjects`: consecutive
    subjects of :func:`se_monai.data.prepare_brain_tissue_dataset` alternate, so its last two subjects (a bundle's
    validation split with ``num_val`` 2) hold one of each of two generators.

    Raises:
        ValueError: no generators, or generators with different classes or tissue sources.
    """

    def __init__(self, *generators: Any) -> None:
        if not generators:
            raise ValueError("AlternatingSubjects needs at least one generator")
        names = [getattr(g, "class_names", LABELS) for g in generators]
        if any(n != names[0] for n in names):
            raise ValueError(f"AlternatingSubjects: the generators label different classes: {names}")
        tissues = {getattr(g, "tissue", "probability") for g in generators}
        if len(tissues) > 1:
            raise ValueError(f"AlternatingSubjects: the generators take their tissue from {sorted(tissues)}")
        self.generators, self.class_names, self.tissue = generators, names[0], tissues.pop()
        self.description = (
            "Brain tissue (grey/white matter) of the ICBM 2009a symmetric template; training subjects from "
            + " and, in turn, from ".join(type(g).__name__ for g in generators)
            + "; the real T1 held out."
        )

    def __call__(self, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.generators[seed % len(self.generators)](seed)


#: Names of the training-subject generators of :func:`training_subjects` (``se-monai prepare-data --generator``).
GENERATORS = ("template", "synthseg", "mixed")


def training_subjects(generator: str, csf: bool = False, tissue: str = "probability", **synthseg: Any) -> Any:
    """The training-subject generator named ``generator``: "template" (:class:`se_monai.data.TemplateSubjects`),
    "synthseg" (:class:`SynthSegSubjects` with the ``synthseg`` keyword arguments) or "mixed" (the two in turn,
    :class:`AlternatingSubjects`); ``csf``: with the CSF class (:data:`se_monai.data.CSF_LABELS`); ``tissue``: the
    source of the tissue classes (:data:`se_monai.data.TISSUE_SOURCES`).

    Raises:
        ValueError: an unknown name or tissue source.
    """
    if generator not in GENERATORS:
        raise ValueError(f"unknown generator {generator!r}: expected one of {', '.join(GENERATORS)}")
    if generator == "template":
        return TemplateSubjects(csf, tissue)
    if generator == "synthseg":
        return SynthSegSubjects(csf=csf, tissue=tissue, **synthseg)
    return AlternatingSubjects(TemplateSubjects(csf, tissue), SynthSegSubjects(csf=csf, tissue=tissue, **synthseg))
