"""The network's tissue probabilities refined by each image's own intensities: :class:`MixtureRefinementd`.

A network trained on one template's labels carries that template's boundaries (a population average's cortex is
thicker than an individual's). Classical tissue classifiers fit the classes' intensities on each image instead. This
transform does both, as a Bayesian segmentation with spatial priors does (Ashburner and Friston, "Unified
segmentation", NeuroImage 2005; Puonti et al., "Fast and sequence-adaptive whole-brain segmentation using parametric
Bayesian modeling" (SAMSEG), NeuroImage 2016), with the network's probabilities as the priors: a Gaussian mixture of
the image's intensities, one Gaussian per refined class, fitted by expectation-maximisation (EM) on the image itself.

For voxel ``v`` with intensity ``x_v``, refined classes ``k`` with network probabilities ``p_k(v)`` and ``t(v) =
sum_k p_k(v)`` (the probability of tissue; classes not refined keep theirs):

- prior ``pi_k(v) = p_k(v) / t(v)``;
- E-step: ``r_k(v) = pi_k(v) N(x_v; mu_k(v), s^2) / sum_j pi_j(v) N(x_v; mu_j(v), s^2)``;
- M-step: ``mu_k(v)``, the mean of ``x`` weighted by ``t r_k`` under a Gaussian window of ``smoothing`` voxels (a
  class mean that may drift slowly across the image, as it does under an MRI bias field), and one variance ``s^2``
  shared by the classes (a narrow white-matter Gaussian would otherwise hand the partial-volume voxels of the
  grey/white boundary to grey matter), except for classes given a variance ``s_k^2`` of their own (``N`` then uses
  ``s_k``; CSF, whose intensities spread wider than the tissues');
- the output ``t(v) r_k(v)``: still probabilities (they sum to 1 with the classes not refined), on the same grid.

Only voxels where the image is non-zero (:func:`se_monai.data.datalists.acquired_voxels`) and the network's most
probable class is a refined one take part and change: the network decides where tissue is, the mixture which tissue.
EM climbs to the optimum nearest its start, the network's probabilities: where those put most of a class's weight on
voxels of another tissue, the mixture stays wrong there. It models each class as one intensity (a T1's tissues); a
bundle made for other data (``se-monai train``) has it off (``intensity_refinement`` false in ``inference.json``).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.networks.layers import GaussianFilter
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type

from se_monai.data.datalists import acquired_voxels

__all__ = ["MixtureRefinementd", "refine_by_mixture"]

#: Edge (voxels) of the blocks on which the class means are smoothed (their Gaussian window is far wider).
BLOCK = 6


class _LocalMean:
    """Means of per-voxel values under a Gaussian window of ``sigma`` voxels, at ``(N, 3)`` voxel ``positions`` of a
    grid: the sums are taken on blocks of :data:`BLOCK` voxels, smoothed there, and the means interpolated (trilinear,
    from the blocks' centres) back to the positions; the window is tens of voxels wide, the blocks keep it cheap."""

    def __init__(self, positions: torch.Tensor, sigma: float) -> None:
        self.block = min(BLOCK, max(1, int(sigma)))
        within = positions - positions.min(0).values // self.block * self.block  # from a block-aligned origin
        cells = within // self.block
        self.shape = [int(n) + 1 for n in cells.max(0).values]
        self.cell = self._linear(cells, self.shape)
        self.voxel = self._linear(within, [n * self.block for n in self.shape])
        self.smooth = GaussianFilter(3, [sigma / self.block] * 3, truncated=3.0)

    @staticmethod
    def _linear(index: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        return (index[:, 0] * shape[1] + index[:, 1]) * shape[2] + index[:, 2]

    def __call__(self, values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``(K, N)`` means of ``(N,)`` ``values`` weighted by ``(K, N)`` ``weights``."""
        k = weights.shape[0]
        sums = weights.new_zeros(2 * k, math.prod(self.shape))
        sums[:k].index_add_(1, self.cell, weights * values)
        sums[k:].index_add_(1, self.cell, weights)
        sums = self.smooth(sums.view(2 * k, 1, *self.shape))[:, 0]
        means = sums[:k] / sums[k:].clamp_min(1e-6)
        # align_corners False with an integer scale factor: block b's value lands on its centre voxel
        means = F.interpolate(means[None], scale_factor=self.block, mode="trilinear", align_corners=False)[0]
        return means.flatten(1).index_select(1, self.voxel)


def refine_by_mixture(
    probabilities: torch.Tensor,
    image: torch.Tensor,
    classes: Sequence[int],
    smoothing: float = 48.0,
    iterations: int = 20,
    separate_variance: Sequence[int] = (),
) -> torch.Tensor:
    """Refine ``probabilities`` of ``classes`` by an EM-fitted Gaussian mixture of ``image``'s intensities (module
    docstring).

    Args:
        probabilities: ``(C, X, Y, Z)`` class probabilities (softmax), on the grid of ``image``.
        image: ``(Cin, X, Y, Z)`` image; its first channel is the intensity modelled, voxels 0 in every channel are
            left out.
        classes: indices of the classes refined (at least two); the others keep their probabilities.
        smoothing: sigma (voxels) of the window over which class means may vary; ``float("inf")`` for one mean per
            class over the image. In voxels, not mm, so that a brain resampled to the template's size
            (:class:`se_monai.transforms.SizeAdaptiveSpacingd`) gets the same window, relative to its anatomy.
        iterations: EM iterations.
        separate_variance: indices, among ``classes``, of the classes whose Gaussian has a variance of its own (the
            shipped bundle's CSF, whose intensities spread wider than the tissues'); the others share one.

    Returns:
        ``(C, X, Y, Z)`` float32 probabilities, the input's where the image is 0 or the most probable class is not
        refined.

    Raises:
        ValueError: fewer than two classes, a class index out of range, a class with a separate variance that is not
            refined, grids that differ, a non-positive smoothing.
    """
    if len(set(classes)) < 2 or not all(0 <= k < probabilities.shape[0] for k in classes):
        raise ValueError(f"refine_by_mixture: needs two or more classes among {probabilities.shape[0]}, got {classes}")
    if not set(separate_variance) <= set(classes):
        raise ValueError(f"refine_by_mixture: separate_variance {separate_variance} not among the classes {classes}")
    if probabilities.shape[1:] != image.shape[1:]:
        raise ValueError(f"refine_by_mixture: probabilities {tuple(probabilities.shape)}, image {tuple(image.shape)}")
    if not smoothing > 0:
        raise ValueError(f"refine_by_mixture: smoothing must be positive, got {smoothing}")
    out, image, index = probabilities.detach().float().clone(), torch.as_tensor(image), list(classes)
    inside = acquired_voxels(image)[0].to(out.device)
    # the network decides where tissue is (its most probable class a refined one), the mixture which tissue it is
    others = [k for k in range(out.shape[0]) if k not in index]
    if others:
        inside &= out[index].amax(0) > out[others].amax(0)
    voxels = out[:, inside]  # (C, N)
    if float(voxels[index].sum()) < 1.0:
        return out
    positions = None if math.isinf(smoothing) else torch.nonzero(inside)
    separate = torch.tensor([k in separate_variance for k in index], device=out.device)
    voxels[index] = _em(voxels[index], image[0].to(out)[inside], positions, smoothing, iterations, separate)
    out[:, inside] = voxels
    return out


def _em(
    probabilities: torch.Tensor,
    x: torch.Tensor,
    positions: torch.Tensor | None,
    smoothing: float,
    iterations: int,
    separate: torch.Tensor,
) -> torch.Tensor:
    """The EM of :func:`refine_by_mixture` on the ``(K, N)`` refined probabilities and ``(N,)`` intensities of the
    voxels refined, at ``(N, 3)`` ``positions`` on the grid (None for one mean per class), ``(K,)`` ``separate`` True
    for the classes with a variance of their own; stops early once no variance changes by more than 1e-4 of the
    smallest."""
    tissue = probabilities.sum(0)
    prior = probabilities / tissue.clamp_min(1e-12)
    log_prior = prior.clamp_min(1e-6).log()
    local_mean = None if positions is None else _LocalMean(positions, smoothing)
    responsibility, variance = prior, torch.full(separate.shape, float("inf"), device=separate.device)
    for _ in range(iterations):
        weights = tissue * responsibility
        if local_mean is None:
            means = ((weights * x).sum(1) / weights.sum(1).clamp_min(1e-6))[:, None]
        else:
            means = local_mean(x, weights)
        squared = (x - means).square_()
        spread, mass = (weights * squared).sum(1), weights.sum(1).clamp_min(1e-12)
        shared = spread[~separate].sum() / mass[~separate].sum().clamp_min(1e-12)
        previous, variance = variance, torch.where(separate, spread / mass, shared).clamp_min(1e-12)
        log_likelihood = -squared / (2 * variance[:, None]) - 0.5 * variance.log()[:, None]
        responsibility = torch.softmax(log_prior + log_likelihood, 0)
        if float((variance - previous).abs().max()) < 1e-4 * float(variance.min()):
            break
    return tissue * responsibility


class MixtureRefinementd(MapTransform):
    """:func:`refine_by_mixture` on a dictionary: the network's softmax probabilities of the tissue classes refined
    by a Gaussian mixture of the image's own intensities, fitted by EM with the probabilities as spatial priors
    (module docstring: the model and its sources).

    Args:
        keys: the probability keys, ``(C, X, Y, Z)`` MetaTensors (after ``Activationsd`` softmax, on the image's grid).
        image_key: the image the network saw, ``(Cin, X, Y, Z)``.
        classes: indices of the classes refined, e.g. the tissues ``(1, 2, 3)`` of the shipped bundle (grey matter,
            white matter, CSF; "other" keeps its probability).
        smoothing: sigma (voxels of the network's grid) of the window over which a class's mean intensity may vary
            (bias fields); the shipped bundle's 48 are 30 mm of a brain the network sees at 0.625 mm.
        iterations: EM iterations.
        separate_variance: indices, among ``classes``, of the classes with a variance of their own (the shipped
            bundle's CSF, 3); the others share one.
        allow_missing_keys: as MONAI's ``MapTransform``.

    Raises:
        ValueError: (when called) as :func:`refine_by_mixture`.
    """

    def __init__(
        self,
        keys: KeysCollection,
        image_key: str = "image",
        classes: Sequence[int] = (1, 2, 3),
        smoothing: float = 48.0,
        iterations: int = 20,
        separate_variance: Sequence[int] = (),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key, self.classes = image_key, [int(k) for k in classes]
        self.smoothing, self.iterations = float(smoothing), int(iterations)
        self.separate_variance = [int(k) for k in separate_variance]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            refined = refine_by_mixture(
                d[key], d[self.image_key], self.classes, self.smoothing, self.iterations, self.separate_variance
            )
            d[key] = convert_to_dst_type(refined, d[key])[0]  # the MetaTensor's meta and applied operations kept
        return d
