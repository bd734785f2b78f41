"""Objects smaller than the training data are enlarged before inference (se_monai.transforms.SizeAdaptiveSpacingd):
the rule on synthetic volumes, and the real ICBM152 T1 relabelled as a 0.45x brain segmented as the
1 mm brain is; images made coarser are low-pass filtered first (anti_aliased), against scipy's convolution."""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from monai.data import MetaTensor

from se_monai.data import icbm152_paths
from se_monai.segmentation import segment_image
from se_monai.transforms import SizeAdaptiveSpacingd, anti_aliased
from se_monai.workflows import SHIPPED_BUNDLE


def _ball(size, radius, spacing, centre=None):
    grid = torch.stack(torch.meshgrid(*[torch.arange(size, dtype=torch.float32)] * 3, indexing="ij"))
    centre = torch.tensor(centre or [size / 2] * 3).view(3, 1, 1, 1)
    inside = ((grid - centre) ** 2).sum(0) <= radius**2
    return MetaTensor(inside[None].float(), affine=torch.diag(torch.tensor([spacing] * 3 + [1.0])))


def test_the_relative_size_of_whole_and_cut_objects():
    transform = SizeAdaptiveSpacingd("image", (1.0, 1.0, 1.0), reference_ml=1.0, min_size=0.6)
    ball = _ball(40, 10, 0.5)  # 4189 voxels of 0.125 mm^3: 0.52 mL
    volume_ml = float(ball.sum()) * 0.125 / 1000
    assert transform.relative_size(ball) == pytest.approx((volume_ml / 1.0) ** (1 / 3))
    assert transform.relative_size(_ball(40, 10, 0.5, centre=[20, 20, 0])) is None  # cut in half by a face
    assert transform.relative_size(MetaTensor(torch.zeros(1, 8, 8, 8))) is None
    with pytest.raises(ValueError, match="reference_ml must be positive"):
        SizeAdaptiveSpacingd("image", (1.0, 1.0, 1.0), reference_ml=0.0)


def test_a_small_object_is_resampled_finer_and_inverted_onto_its_grid():
    ball = _ball(40, 10, 0.5)
    size = ((float(ball.sum()) * 0.125 / 1000) / 4.0) ** (1 / 3)  # against a 4 mL reference: 0.51
    small = SizeAdaptiveSpacingd("image", (1.0, 1.0, 1.0), reference_ml=4.0, min_size=0.6)
    out = small({"image": ball})["image"]
    np.testing.assert_allclose(out.pixdim.numpy(), [size] * 3, rtol=1e-6)  # pixdim x s, not 1 mm
    back = small.inverse({"image": out})["image"]
    assert back.shape == ball.shape and torch.allclose(back.affine, ball.affine)
    unchanged = SizeAdaptiveSpacingd("image", (1.0, 1.0, 1.0), reference_ml=0.5, min_size=0.6)({"image": ball})
    np.testing.assert_allclose(unchanged["image"].pixdim.numpy(), [1.0] * 3)  # 1.04 x the reference: as Spacingd


def test_anti_aliasing_is_a_gaussian_of_the_resampling_factor_inside_the_mask():
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 24, 24, 24, generator=generator)
    image = MetaTensor(noise.clone(), affine=torch.diag(torch.tensor([0.5, 0.25, 1.0, 1.0])))
    out = anti_aliased(image, (1.0, 1.0, 1.0))  # factors 2, 4, 1: sigma 0.5, 1.5 and 0 voxels
    expected = noise[0].numpy()
    for axis, sigma in ((0, 0.5), (1, 1.5)):
        edges = np.arange(-int(4 * sigma + 0.5), int(4 * sigma + 0.5) + 2) - 0.5  # voxels within 4 sigma
        kernel = np.diff([math.erf(edge / (sigma * math.sqrt(2.0))) for edge in edges])  # the Gaussian per voxel
        expected = ndi.convolve1d(expected, kernel / kernel.sum(), axis=axis)  # normalised: weights sum to 1
    inner = (slice(4, -4), slice(8, -8), slice(None))  # away from the faces, where the padding differs
    np.testing.assert_allclose(out[0][inner].numpy(), expected[inner], atol=1e-5)
    assert torch.equal(out.affine, image.affine) and torch.equal(image.as_tensor(), noise)  # input untouched
    assert anti_aliased(image, (0.5, 0.25, 1.0)) is image  # not coarser along any axis: nothing to do


def test_anti_aliasing_keeps_zeros_and_constants_and_leaves_labels_alone():
    ball = _ball(32, 10, 0.5)
    out = anti_aliased(ball * 7.0, (1.0, 1.0, 1.0))
    assert torch.all(out[ball == 0] == 0)  # the background of a skull-stripped brain stays exactly 0
    torch.testing.assert_close(out[ball > 0], torch.full_like(out[ball > 0], 7.0))  # its boundary is not darkened
    keys, modes = ["image", "label"], ["bilinear", "nearest"]
    noisy = ball * (1.0 + 0.5 * torch.rand(ball.shape, generator=torch.Generator().manual_seed(1)))
    smoothed = SizeAdaptiveSpacingd(keys, (1.0,) * 3, mode=modes, anti_aliasing=True)({"image": noisy, "label": ball})
    plain = SizeAdaptiveSpacingd(keys, (1.0,) * 3, mode=modes)({"image": noisy, "label": ball})
    assert torch.equal(smoothed["label"], plain["label"])  # labels are resampled, never smoothed
    inside = plain["label"] > 0
    assert float(smoothed["image"][inside].std()) < 0.7 * float(plain["image"][inside].std())  # noise averaged


def test_the_icbm_t1_as_a_small_brain_is_segmented_as_the_brain_at_its_size(tmp_path, icbm_t1_demo):
    config = json.loads((SHIPPED_BUNDLE / "configs" / "inference.json").read_text())
    assert config["min_relative_size"] == 0.6 and config["reference_object_ml"] == pytest.approx(1886.5)
    source = nib.load(str(icbm152_paths()["t1"]))
    template_ml = np.count_nonzero(np.asarray(source.dataobj)) * abs(np.linalg.det(source.affine[:3, :3])) / 1000
    assert template_ml == pytest.approx(config["reference_object_ml"], abs=0.05)  # the template's brain mask
    small = tmp_path / "small_t1.nii.gz"  # the same voxels, 0.45 mm apart: a brain 0.45 times the template's
    affine = source.affine.copy()
    affine[:3, :3] *= 0.45
    nib.save(nib.Nifti1Image(np.asarray(source.dataobj), affine), str(small))
    labels = np.asarray(nib.load(str(segment_image(small, tmp_path / "small_seg.nii.gz", progress=False))).dataobj)
    at_size = icbm_t1_demo["segmentation"]  # the same T1 at its own size, segmented by `se-monai demo`
    # the same anatomy on two resampled grids (0.625 mm and 0.45 x 0.625 mm) whose sizes round apart: 0.9982 measured
    assert np.mean(labels == np.asarray(nib.load(str(at_size)).dataobj)) > 0.997


def test_the_shipped_bundle_magnifies_its_input():
    """The shipped model runs at 1.6x magnification: its preprocessing resamples a 1 mm brain to 0.625 mm (1.6 times
    the voxels along each axis) and a macaque-sized brain to 1.6 times the template's size."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(SHIPPED_BUNDLE / "configs" / "inference.json"))
    assert parser["magnification"] == 1.6 and parser["pixdim"] == [1.0, 1.0, 1.0]
    spacing = next(
        t for t in parser.get_parsed_content("preprocessing").transforms if isinstance(t, SizeAdaptiveSpacingd)
    )
    brain = _ball(60, 20, 1.0)  # 33.5 mL: 0.26 of the template's size, below min_relative_size
    image = spacing({"image": brain})["image"]
    size = (float(brain.sum()) / 1000 / 1886.5) ** (1 / 3)
    np.testing.assert_allclose(image.pixdim[:3], [size / 1.6] * 3, rtol=1e-5)
    whole = spacing({"image": _ball(60, 28, 4.0)})["image"]  # 5.9 L: no size rule, the magnification alone
    np.testing.assert_allclose(whole.pixdim[:3], [0.625] * 3, rtol=1e-6)
    assert whole.shape[1] == pytest.approx((60 - 1) * 4.0 / 0.625 + 1, abs=1)  # first to last voxel centre
