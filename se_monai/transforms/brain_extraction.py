"""Brain extraction of a T1-weighted head before segmentation: :class:`BrainExtractiond`, with deepbet's networks
(Fisch et al., "deepbet: Fast brain extraction of T1-weighted MRI using Convolutional Neural Networks", Computers in
Biology and Medicine 2024; MIT licence; its trained weights travel inside its wheel, nothing is downloaded)."""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.transforms import MapTransform

from se_monai.data.datalists import acquired_voxels, voxel_ml
from se_monai.io.files import InputError

__all__ = ["BRAIN_EXTRACTION_MODES", "BrainExtractiond"]

#: ``mode`` of :class:`BrainExtractiond`: "auto" extracts the brain from heads only, "always" from every image,
#: "never" leaves images as they are.
BRAIN_EXTRACTION_MODES = ("auto", "always", "never")


@functools.lru_cache(maxsize=2)
def _deepbet(device: str) -> Any:
    """deepbet's two TorchScript networks (a 128^3 bounding-box finder and a 256^3 brain mask), loaded once per
    device."""
    from deepbet import BrainExtraction

    extractor = BrainExtraction(no_gpu=True)
    extractor.model = extractor.model.to(device)
    extractor.bbox_model = extractor.bbox_model.to(device)
    return extractor


class BrainExtractiond(MapTransform):
    """Zero every voxel outside the brain of a T1-weighted head, so that a model trained on skull-stripped brains
    segments a raw scan with its skull, scalp, eyes and neck.

    deepbet finds the brain: its first network locates the brain's bounding box on the image resized to 128^3, its
    second segments the box resized to 256^3 (both nearest-neighbour; the voxel size is not used: it was trained on
    healthy adults' T1-weighted heads at about 1 mm); the mask is its largest connected component with the holes filled.
    Voxels outside it are set to 0 in every key, as a skull-stripping tool writes them, so the size rule of
    :class:`se_monai.transforms.SizeAdaptiveSpacingd`, ``CropForegroundd`` and the bundle's ``MaskIntensityd`` see
    the brain only. Nothing changes the geometry and nothing is recorded for ``Invertd``.

    With ``mode="auto"`` only heads are extracted: images whose non-zero voxels hold more than ``head_ml`` (the heads
    of docs/results.md, S1's and Colin27's, hold 5.1 and 4.2 L; its skull-stripped brains 0.1-1.7 L, Colin27 in MNI
    space, whose registration enlarges brains, the largest; the ICBM152 template 1.9 L). Skull-stripped brains and
    crops of them pass unchanged.

    Args:
        keys: the image keys, ``(C, X, Y, Z)`` MetaTensors in RAS orientation (after ``Orientationd``), intensities
            as acquired; the first key's first channel (the T1) is the one extracted.
        mode: one of :data:`BRAIN_EXTRACTION_MODES`.
        head_ml: with ``mode="auto"``, the non-zero volume (mL, from the affine) above which an image is a head.
        threshold: deepbet's brain probability above which a voxel is brain.
        device: where deepbet runs (default: the image's device).
        allow_missing_keys: as MONAI's ``MapTransform``.

    Raises:
        ValueError: an unknown ``mode`` or a non-positive ``head_ml``.
        InputError: when called, an image in which deepbet finds no brain.
    """

    def __init__(
        self,
        keys: Any,
        mode: str = "auto",
        head_ml: float = 2800.0,
        threshold: float = 0.5,
        device: str | torch.device | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if mode not in BRAIN_EXTRACTION_MODES:
            raise ValueError(f"brain extraction {mode!r}: expected one of {', '.join(BRAIN_EXTRACTION_MODES)}")
        if head_ml <= 0:
            raise ValueError(f"BrainExtractiond: head_ml must be positive, got {head_ml}")
        self.mode, self.head_ml, self.threshold = mode, float(head_ml), float(threshold)
        self.device = None if device is None else torch.device(device)

    def is_head(self, image: Any) -> bool:
        """Whether the ``(C, X, Y, Z)`` MetaTensor ``image`` is a head: its non-zero voxels (any channel) hold more
        than ``head_ml``."""
        return float(acquired_voxels(image).sum()) * voxel_ml(image.affine) > self.head_ml

    def brain_mask(self, image: Any) -> torch.Tensor:
        """deepbet's brain mask of the ``(C, X, Y, Z)`` image's first channel: a ``(1, X, Y, Z)`` bool tensor on the
        image's device.

        Raises:
            InputError: deepbet finds no brain (one line naming the image's file).
        """
        device = self.device or image.device
        extractor = _deepbet(str(device))
        t1 = torch.as_tensor(image[0]).detach().float().cpu().numpy()  # deepbet moves it to its networks' device
        try:
            probability = extractor.run_model(t1.copy())
            mask = extractor.postprocess(probability > self.threshold)
        except (AssertionError, ValueError, IndexError):  # deepbet asserts a foreground, cc3d an object
            mask = None
        if mask is None or not mask.any():
            source = getattr(image, "meta", {}).get("filename_or_obj", "the image")
            raise InputError(f"{source}: brain extraction found no brain in the image")
        return torch.as_tensor(mask, dtype=torch.bool, device=image.device)[None]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        key = self.first_key(out)
        if key == () or self.mode == "never" or (self.mode == "auto" and not self.is_head(out[key])):
            return out
        mask = self.brain_mask(out[key])
        for key in self.key_iterator(out):
            out[key] = out[key] * mask.to(out[key].device)
        return out
