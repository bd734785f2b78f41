"""Plain (not scale-equivariant) networks the paper compares with."""

from __future__ import annotations

from typing import Any

from monai.networks.nets import UNet

__all__ = ["paper_baseline_unet"]


def paper_baseline_unet(spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 1, **overrides: Any) -> UNet:
    """The paper's baseline (Wimmer et al. 2023, Sec. 4): MONAI's UNet with channels 16..128, strides 2, kernel 5,
    2 residual units, swish, batch norm, dropout 0.05 (about 5.5 M parameters for 4 input channels).

    Args:
        spatial_dims, in_channels, out_channels: as ``monai.networks.nets.UNet``.
        overrides: any other ``UNet`` argument, replacing the paper's value.
    """
    settings: dict[str, Any] = {
        "channels": (16, 32, 64, 128),
        "strides": (2, 2, 2),
        "kernel_size": 5,
        "up_kernel_size": 5,
        "num_res_units": 2,
        "act": "swish",
        "norm": "batch",
        "dropout": 0.05,
    }
    settings.update(overrides)
    return UNet(spatial_dims, in_channels, out_channels, **settings)
