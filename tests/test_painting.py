"""Partial-volume painting (se_monai.data.painting): sub-voxel label maps against torch's trilinear upsampling, the
mixture of intensities on a boundary and majority labels (whole subjects painted with partial volume: test_synth)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_cli import run_cli

from se_monai.data.painting import RandPartialVolumeIntensityd, subvoxel_fractions


@pytest.mark.parametrize("factor", [2, 3])
def test_subvoxel_grids_are_the_trilinear_upsampling_block_by_block(factor):
    fractions = torch.rand(3, 5, 6, 7, generator=torch.Generator().manual_seed(0))
    # oracle: torch's trilinear upsampling (half-pixel centres, edges clamped), its sub-voxel (a, b, c) of each block
    fine = F.interpolate(fractions[None], scale_factor=factor, mode="trilinear", align_corners=False)[0]
    grids = list(subvoxel_fractions(fractions, factor))
    assert len(grids) == factor**3
    for n, grid in enumerate(grids):
        a, b, c = np.unravel_index(n, (factor,) * 3)
        torch.testing.assert_close(grid, fine[:, a::factor, b::factor, c::factor], rtol=0, atol=1e-6)


def _paint(fractions, factor=2, **kwargs):
    paint = RandPartialVolumeIntensityd("label", "image", num_labels=fractions.shape[0], factor=factor, **kwargs)
    paint.set_random_state(0)
    out = paint({"label": fractions})
    return paint, out["image"], out["label"]


def test_a_voxel_half_filled_by_each_tissue_takes_the_mean_of_their_intensities():
    # structure 1 fills x < 5, structure 2 x > 5; voxel 5 is half of each: a boundary through the voxel's centre
    a = torch.zeros(1, 3, 3, 11)
    a[..., :5], a[..., 5] = 1.0, 0.5
    fractions = torch.cat([torch.zeros_like(a), a, 1 - a])
    paint, image, labels = _paint(fractions, std_range=(0.0, 0.0))
    low, high = paint.means[1], paint.means[2]
    assert image.shape == labels.shape == (1, 3, 3, 11) and labels.dtype == torch.int64
    np.testing.assert_allclose(image[0, 1, 1, :5], low, rtol=1e-6)
    np.testing.assert_allclose(image[0, 1, 1, 6:], high, rtol=1e-6)
    np.testing.assert_allclose(image[0, 1, 1, 5], (low + high) / 2, rtol=1e-6)  # 4 sub-voxels of each
    # 4 against 4: the tie goes to the larger fraction at the centre, here equal, so to the first structure
    assert labels[0, 1, 1].tolist() == [1] * 6 + [2] * 5


def test_partial_volume_is_the_fine_painting_averaged_and_labels_the_majority():
    fractions = torch.softmax(4 * torch.rand(4, 6, 6, 6, generator=torch.Generator().manual_seed(1)), 0)
    paint, image, labels = _paint(fractions, std_range=(0.0, 0.0))
    # oracle: paint the 2x finer argmax map, average 2x2x2 blocks; labels: each block's most frequent structure
    fine = F.interpolate(fractions[None], scale_factor=2, mode="trilinear", align_corners=False)[0].argmax(0)
    painted = torch.as_tensor(paint.means, dtype=torch.float32)[fine]
    torch.testing.assert_close(image[0], F.avg_pool3d(painted[None, None], 2)[0, 0], rtol=1e-5, atol=1e-6)
    votes = F.avg_pool3d(F.one_hot(fine, 4).permute(3, 0, 1, 2).float()[None], 2)[0]
    clear = votes.max(0).values > 0.5  # no tie
    assert clear.sum() > 50
    assert torch.equal(labels[0][clear], votes.argmax(0)[clear])
    with pytest.raises(ValueError, match="5 structure fractions, expected 4"):
        RandPartialVolumeIntensityd("label", "image", num_labels=4)({"label": torch.ones(5, 2, 2, 2)})
    with pytest.raises(ValueError, match="factor must be >= 1"):
        RandPartialVolumeIntensityd("label", "image", num_labels=4, factor=0)


def test_prepare_data_refuses_a_partial_volume_below_one():
    done = run_cli("prepare-data", "/nonexistent/d", "--partial_volume", "0")
    assert done.returncode == 2 and "--partial_volume must be at least 1, got 0" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
