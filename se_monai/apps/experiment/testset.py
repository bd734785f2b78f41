"""Data of the experiment: the MSD-layout dataset (written when it is the offline ICBM152 one), the split into training
candidates and labelled test images, and the test images rescaled by every test scale."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from monai.data import load_decathlon_datalist
from monai.transforms import Zoom

from se_monai.apps.experiment.config import ConfigError, scale_tag
from se_monai.data import labelled_test_datalist, prepare_brain_tissue_dataset
from se_monai.io import nifti_stem
from se_monai.ops.atomic import atomic_write

__all__ = ["prepare_dataset", "datalists", "prepare_test_scales", "scaled_test_pairs"]


def scaled_test_pairs(output_dir: str | os.PathLike, scale: float) -> list[tuple[Path, Path]]:
    """``(image, label)`` files of the test images rescaled by ``scale`` (:func:`prepare_test_scales`)."""
    folder = Path(output_dir) / "test_scales"
    tag = scale_tag(scale)
    images = sorted(folder.glob(f"*_{tag}.nii.gz"))
    return [(image, image.with_name(f"{nifti_stem(image)}_label.nii.gz")) for image in images]


def datalists(config: dict[str, Any]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Training candidates (in dataset.json order, the held-out ones removed) and labelled test images."""
    root = Path(config["dataset_dir"])
    training = load_decathlon_datalist(str(root / "dataset.json"), True, "training", str(root))
    try:
        test = labelled_test_datalist(root)
    except FileNotFoundError:
        count = int(config.get("num_test", 5))
        training, test = training[:-count], training[-count:]
    largest = max(config["train_sizes"])
    if len(training) < largest + 1:
        raise ConfigError(f"{root}: {len(training)} training subjects; the config needs {largest} plus 1 held out")
    return training, test


def prepare_dataset(config: dict[str, Any]) -> None:
    root = Path(config["dataset_dir"])
    if (root / "dataset.json").is_file():
        return
    if not config.get("synthesise", False):
        raise ConfigError(f"{root}: no dataset.json (expected the MSD layout)")
    prepare_brain_tissue_dataset(
        root, num_subjects=max(config["train_sizes"]) + 1, seed=int(config.get("data_seed", 0))
    )


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    with atomic_write(path) as partial:
        nib.save(nib.Nifti1Image(array, affine), str(partial))


def prepare_test_scales(test: Sequence[dict[str, str]], scales: Sequence[float], folder: Path) -> list[dict[str, Any]]:
    """Rescale every test image (trilinear) and label (nearest) by every factor with MONAI's ``Zoom``, keeping the
    voxel size, so the anatomy shrinks or grows in millimetres. Written once, then reused.

    Returns:
        ``[{"image", "label", "scale", "source"}]``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for pair in test:
        stem = nifti_stem(pair["image"])
        image_nii = label_nii = None
        for scale in scales:
            tag = f"{stem}_{scale_tag(scale)}"
            image_path, label_path = folder / f"{tag}.nii.gz", folder / f"{tag}_label.nii.gz"
            if not (image_path.is_file() and label_path.is_file()):
                if image_nii is None:
                    image_nii, label_nii = nib.load(pair["image"]), nib.load(pair["label"])
                image = np.asarray(image_nii.dataobj, dtype=np.float32)
                label = np.asarray(label_nii.dataobj).astype(np.float32)
                if image.ndim == 3:
                    image = image[None]
                else:
                    image = np.moveaxis(image, -1, 0)
                zoomed = Zoom(scale, mode="trilinear", keep_size=False, align_corners=False)(image)
                zoomed_label = Zoom(scale, mode="nearest", keep_size=False)(label[None])
                zoomed = np.asarray(zoomed)
                _save_nifti(
                    zoomed[0] if zoomed.shape[0] == 1 else np.moveaxis(zoomed, 0, -1), image_nii.affine, image_path
                )
                _save_nifti(np.asarray(zoomed_label)[0].round().astype(np.uint8), image_nii.affine, label_path)
            items.append({"image": str(image_path), "label": str(label_path), "scale": float(scale), "source": stem})
    return items
