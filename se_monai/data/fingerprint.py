"""Dataset fingerprint and plan, in the manner of nnU-Net's (Isensee et al., Nature Methods 2021): what a dataset in
the MSD layout looks like, and the preprocessing and patch size a bundle trained on it uses.

The fingerprint reads every training case once: voxel spacing and shape from the headers (in the RAS axis order the
bundle resamples in), and a sample of the intensities under the foreground labels, per channel. The plan derives:

- **target spacing** (mm): the median spacing of each axis; when the coarsest axis's median is more than
  :data:`ANISOTROPY` times the finest's, that axis takes the 10th percentile of its spacings instead (at least the
  other axes' largest), so thick-slice data is not resampled to the thickest slices;
- **patch size** (voxels): the median shape after resampling, rounded up to a multiple of the network's stride
  product (volumes smaller than the patch are padded), then shrunk along its longest axis, one stride at a time, to at
  most :data:`PATCH_VOXELS` voxels;
- **intensity normalisation**: for CT (every channel "CT" in ``dataset.json``) the intensities are clipped to the 0.5
  and 99.5 percentiles of the foreground and z-scored with its mean and standard deviation, the same constants for
  every image; otherwise each image is z-scored over its non-zero voxels, channel by channel.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from monai.data import load_decathlon_datalist
from tqdm import tqdm

from se_monai.data.datalists import read_dataset

__all__ = ["ANISOTROPY", "PATCH_VOXELS", "dataset_fingerprint", "plan", "describe_plan"]

#: Ratio of the coarsest to the finest median spacing above which data is treated as anisotropic (nnU-Net's 3).
ANISOTROPY = 3.0
#: Largest patch, in voxels: the shipped bundle's 64^3 (a SEUNet training step on such a patch adds about 213 MB on
#: 2 CPU cores, docs/performance.md).
PATCH_VOXELS = 64**3
#: Foreground intensities sampled per case and channel.
SAMPLES_PER_CASE = 20_000


def _ras(image: nib.Nifti1Image) -> tuple[list[float], list[int]]:
    """Spacing (mm) and shape of the spatial axes in RAS order (the order after the bundle's ``Orientationd``)."""
    order = nib.io_orientation(image.affine)[:, 0].astype(int)
    zooms, shape = image.header.get_zooms()[:3], image.shape[:3]
    spacing, size = [0.0] * 3, [0] * 3
    for axis, ras in enumerate(order):
        spacing[ras], size[ras] = round(float(zooms[axis]), 6), int(shape[axis])  # headers hold float32
    return spacing, size


def dataset_fingerprint(dataset_dir: str | os.PathLike, progress: bool | None = None) -> dict[str, Any]:
    """Spacings, shapes and foreground intensity statistics of the training cases of an MSD-layout dataset
    (``progress``: a bar over the cases on stderr; None: when stderr is a terminal).

    Returns:
        ``{"cases", "modality", "spacings": [[x, y, z] mm per case], "shapes": [[x, y, z] per case],
        "intensity": {channel: {"mean", "std", "percentile_00_5", "percentile_99_5", "min", "max"}}}``.

    Raises:
        InputError: an unusable ``dataset.json`` (:func:`se_monai.data.read_dataset`).
    """
    root = Path(dataset_dir)
    dataset = read_dataset(root)
    cases = load_decathlon_datalist(str(root / "dataset.json"), True, "training", str(root))
    rng = np.random.default_rng(0)
    spacings, shapes, samples = [], [], {str(c): [] for c in range(len(dataset["modality"]))}
    hidden = None if progress is None else not progress  # tqdm's None: hidden unless stderr is a terminal
    for case in tqdm(cases, desc="dataset fingerprint", unit="case", disable=hidden):
        image = nib.load(case["image"])
        spacing, shape = _ras(image)
        spacings.append(spacing)
        shapes.append(shape)
        data = np.asarray(image.dataobj, dtype=np.float32).reshape(*image.shape[:3], -1)
        foreground = np.asarray(nib.load(case["label"]).dataobj) > 0
        for channel, values in samples.items():
            voxels = data[..., int(channel)][foreground]
            if voxels.size > SAMPLES_PER_CASE:
                voxels = rng.choice(voxels, SAMPLES_PER_CASE, replace=False)
            values.append(voxels)
    intensity = {}
    for channel, values in samples.items():
        pooled = np.concatenate(values) if values else np.zeros(1, np.float32)
        pooled = pooled if pooled.size else np.zeros(1, np.float32)
        low, high = np.percentile(pooled, [0.5, 99.5])
        intensity[channel] = {
            "mean": float(pooled.mean()),
            "std": float(pooled.std()),
            "percentile_00_5": float(low),
            "percentile_99_5": float(high),
            "min": float(pooled.min()),
            "max": float(pooled.max()),
        }
    return {
        "cases": len(cases),
        "modality": dataset["modality"],
        "spacings": spacings,
        "shapes": shapes,
        "intensity": intensity,
    }


def _target_spacing(spacings: np.ndarray) -> list[float]:
    target = np.median(spacings, axis=0)
    coarse = int(np.argmax(target))
    others = [axis for axis in range(3) if axis != coarse]
    if target[coarse] > ANISOTROPY * min(target[others]):
        target[coarse] = max(np.percentile(spacings[:, coarse], 10), max(target[others]))
    return [round(float(s), 4) for s in target]


def _patch_size(median_shape: list[int], stride: int, budget: int) -> list[int]:
    patch = [max(2 * stride, math.ceil(s / stride) * stride) for s in median_shape]
    while math.prod(patch) > budget and max(patch) > 2 * stride:
        patch[int(np.argmax(patch))] -= stride
    return patch


def plan(fingerprint: dict[str, Any], stride: int = 8, budget: int = PATCH_VOXELS) -> dict[str, Any]:
    """The preprocessing and patch size for a dataset (see the module docstring).

    Args:
        fingerprint: from :func:`dataset_fingerprint`.
        stride: product of the network's strides; patch sizes are multiples of it.
        budget: largest patch in voxels.

    Returns:
        ``{"pixdim": [x, y, z] mm, "patch_size": [x, y, z], "median_shape": [...], "normalization": "ct" or
        "zscore_nonzero", "ct_range": [low, high], "ct_mean", "ct_std"}`` (the ``ct_*`` keys only for CT).
    """
    spacings, shapes = np.asarray(fingerprint["spacings"], float), np.asarray(fingerprint["shapes"], float)
    pixdim = _target_spacing(spacings)
    median_shape = [round(float(s)) for s in np.median(shapes * spacings / np.asarray(pixdim), axis=0)]
    result: dict[str, Any] = {
        "pixdim": pixdim,
        "patch_size": _patch_size(median_shape, stride, budget),
        "median_shape": median_shape,
        "normalization": "zscore_nonzero",
    }
    if all(str(name).strip().upper() == "CT" for name in fingerprint["modality"].values()):
        stats = fingerprint["intensity"]["0"]
        result.update(
            normalization="ct",
            ct_range=[stats["percentile_00_5"], stats["percentile_99_5"]],
            ct_mean=stats["mean"],
            ct_std=max(stats["std"], 1e-8),
        )
    return result


def describe_plan(values: dict[str, Any]) -> str:
    """One line describing a plan, e.g. for printing when training starts."""
    norm = "z-score of the non-zero voxels per image"
    if values["normalization"] == "ct":
        low, high = values["ct_range"]
        norm = f"CT: clip to [{low:g}, {high:g}], z-score with mean {values['ct_mean']:g}, std {values['ct_std']:g}"
    spacing = " x ".join(f"{s:g}" for s in values["pixdim"])
    patch = " x ".join(str(p) for p in values["patch_size"])
    return f"plan: spacing {spacing} mm, patch {patch} voxels, normalisation {norm}"
