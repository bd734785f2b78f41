"""Painting images from label maps, as SynthSeg's generative model (Billot et al., "SynthSeg: Segmentation of brain MRI
scans of any contrast and resolution without retraining", Medical Image Analysis 2023, Sec. 3.1): every label value
gets a random mean intensity and spread. :class:`RandLabelIntensityd` paints one value per voxel;
:class:`RandPartialVolumeIntensityd` paints a finer grid of sub-voxels from structure fractions and averages it back,
so that a voxel on a boundary takes the mixture of its tissues' intensities (partial volume), as a scanner's voxel
does, while its label is the structure that fills most of it.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai import transforms as mt
from monai.config import KeysCollection

__all__ = ["RandLabelIntensityd", "RandPartialVolumeIntensityd", "subvoxel_fractions"]


class RandLabelIntensityd(mt.RandomizableTransform, mt.MapTransform):
    """Paints an image from a label map: every label value gets its own random mean intensity and spread (a Gaussian
    per structure, as SynthSeg's generative model; Billot et al. 2023, Sec. 3.1).

    Args:
        keys: the label key, ``(1, D, H, W)`` integer values ``0..num_labels - 1``.
        image_key: where to write the ``(1, D, H, W)`` float32 image.
        num_labels: number of label values.
        mean_range: range of the uniform draw of each label's mean intensity.
        std_range: range of the uniform draw of each label's standard deviation.
        background_max: label 0 (air) draws its mean from ``[mean_range[0], background_max]``, dark as in scans.
        prob: probability of painting with random intensities; otherwise the label values scaled to 0..1.
        ordered: label values whose means are sorted ascending with probability ``order_prob`` (e.g. CSF < grey <
            white matter, the order of T1-weighted contrast); the other draws keep every contrast possible.
        order_prob: probability of that ordering.
        tied: ``{label: other label}``: labels of one tissue drawn in two places (the CSF inside the brain's hull and
            in the shell around it) take the other label's mean and spread.
    """

    def __init__(
        self,
        keys: KeysCollection,
        image_key: str,
        num_labels: int,
        mean_range: tuple[float, float] = (0.0, 1.0),
        std_range: tuple[float, float] = (0.0, 0.08),
        background_max: float = 0.1,
        prob: float = 1.0,
        ordered: tuple[int, ...] = (),
        order_prob: float = 0.0,
        tied: Mapping[int, int] | None = None,
    ) -> None:
        mt.RandomizableTransform.__init__(self, prob)
        mt.MapTransform.__init__(self, keys)
        self.image_key, self.num_labels = image_key, int(num_labels)
        self.mean_range, self.std_range, self.background_max = mean_range, std_range, background_max
        self.ordered, self.order_prob = list(ordered), float(order_prob)
        self.tied = dict(tied or {})
        self.means = self.stds = np.zeros(self.num_labels)

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self.means = self.R.uniform(*self.mean_range, self.num_labels)
        self.means[0] = self.R.uniform(self.mean_range[0], self.background_max)
        self.stds = self.R.uniform(*self.std_range, self.num_labels)
        # no draw without an ordering to choose: the random stream (and the data) stay as without ``ordered``
        if self.ordered and self.order_prob > 0 and self.R.uniform() < self.order_prob:
            self.means[self.ordered] = np.sort(self.means[self.ordered])
        for label, same in self.tied.items():
            self.means[label], self.stds[label] = self.means[same], self.stds[same]

    def paint(self, labels: torch.Tensor) -> torch.Tensor:
        """An image of integer ``labels`` (any shape) with the last draw's means and spreads (float32, same shape);
        without a random draw (``prob``) the label values scaled to 0..1."""
        if not self._do_transform:
            return labels.float() / max(1, self.num_labels - 1)
        means = torch.as_tensor(self.means, dtype=torch.float32)[labels]
        stds = torch.as_tensor(self.stds, dtype=torch.float32)[labels]
        return means + stds * torch.as_tensor(self.R.standard_normal(labels.shape), dtype=torch.float32)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        for key in self.key_iterator(d):
            d[self.image_key] = self.paint(torch.as_tensor(d[key]).long().clamp(0, self.num_labels - 1))
        return d


def _shift(volume: torch.Tensor, axis: int, offset: float) -> torch.Tensor:
    """``volume`` linearly interpolated at ``offset`` voxels (|offset| < 1) along ``axis``, edges replicated."""
    if offset == 0:
        return volume
    step = 1 if offset > 0 else -1
    index = torch.arange(volume.shape[axis]) + step
    neighbour = volume.index_select(axis, index.clamp(0, volume.shape[axis] - 1))
    return torch.lerp(volume, neighbour, abs(offset))


def subvoxel_fractions(fractions: torch.Tensor, factor: int) -> Any:
    """The ``factor ** 3`` sub-voxel grids of a voxel grid: structure fractions ``(C, D, H, W)`` interpolated
    (trilinear) at the centres of each voxel's sub-voxels of side ``1 / factor`` voxel, one grid per sub-voxel
    position; a generator of ``(C, D, H, W)`` tensors. Their argmax over ``C`` is the label map sampled ``factor``
    times finer along each axis (e.g. 0.5 mm for 1 mm voxels and ``factor`` 2), a block of sub-voxels per voxel.
    Grid by grid, the same values as :func:`torch.nn.functional.interpolate` (trilinear, ``scale_factor`` ``factor``)
    without ever holding the finer map: 10 structures over a padded template at 0.5 mm would take about 5 GB."""
    offsets = [(k + 0.5) / factor - 0.5 for k in range(factor)]
    for dz, dy, dx in itertools.product(offsets, repeat=3):
        yield _shift(_shift(_shift(fractions, 1, dz), 2, dy), 3, dx)


class RandPartialVolumeIntensityd(RandLabelIntensityd):
    """Paints an image with partial volume from structure fractions, and replaces them by a label map.

    ``d[keys]`` holds ``(C, D, H, W)`` fractions of the ``C = num_labels`` structures (e.g. a one-hot label map moved
    by a trilinear deformation, whose boundaries then fall between voxel centres). The label map is sampled
    ``factor`` times finer along each axis (:func:`subvoxel_fractions`, argmax), every sub-voxel is painted as
    :class:`RandLabelIntensityd` paints a voxel (the same random means and spreads), and each voxel's intensity is
    the mean of its ``factor ** 3`` sub-voxels: a voxel that is 30 % grey and 70 % white matter is 0.3 * grey + 0.7 *
    white. The voxel's label is the structure of most of its sub-voxels (ties: the larger fraction at its centre),
    the convention of a label map voxelised from surfaces (a voxel at least half inside). Writes ``d[keys]`` as
    ``(1, D, H, W)`` int64 labels and ``d[image_key]`` as ``(1, D, H, W)`` float32.

    Args:
        keys, image_key, num_labels, and the painting's keyword arguments: as :class:`RandLabelIntensityd`.
        factor: sub-voxels per voxel along each axis (2: label maps at half the voxel size).

    Raises:
        ValueError: ``factor < 1``, or fractions whose channel count is not ``num_labels``.
    """

    def __init__(self, keys: KeysCollection, image_key: str, num_labels: int, factor: int = 2, **painting: Any) -> None:
        if int(factor) < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        super().__init__(keys, image_key, num_labels, **painting)
        self.factor = int(factor)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        for key in self.key_iterator(d):
            fractions = torch.as_tensor(d[key]).float()
            if fractions.shape[0] != self.num_labels:
                raise ValueError(f"{key}: {fractions.shape[0]} structure fractions, expected {self.num_labels}")
            image, counts = torch.zeros(fractions.shape[1:]), torch.zeros_like(fractions)
            one = torch.ones_like(counts[:1])
            for sub in subvoxel_fractions(fractions, self.factor):
                labels = sub.argmax(0)
                counts.scatter_add_(0, labels[None], one)
                image += self.paint(labels)
            d[key] = (counts + 0.5 * fractions.clamp(0, 1)).argmax(0, keepdim=True)
            d[self.image_key] = image[None] / self.factor**3
        return d
