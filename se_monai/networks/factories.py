"""Layers by name for the networks' ``norm`` and ``act`` arguments, as MONAI's networks take them.

Normalisation goes through :data:`SENorm`, a MONAI ``LayerFactory`` of the norms on the scale-translation group;
activations through :func:`activation`, which resolves "silu" (the paper's activation, absent from MONAI's ``Act``
factory) to torch's fused ``nn.SiLU`` and every other name through MONAI's ``Act``. Nothing here registers into
MONAI's global factories.
"""

from __future__ import annotations

import torch.nn as nn
from monai.networks.layers.factories import LayerFactory
from monai.networks.layers.utils import get_act_layer, split_args

from se_monai.layers import SEBatchNorm, SEInstanceNorm

__all__ = ["SENorm", "se_norm", "activation"]

#: Normalisation layers on the scale-translation group, by name, for ``norm="batch"`` or
#: ``norm=("instance", {"affine": True})`` as in MONAI's networks.
SENorm = LayerFactory(name="SE normalisation", description="normalisation layers on (B, C, S, D, H, W) tensors")
SENorm.add_factory_class("batch", SEBatchNorm)
SENorm.add_factory_class("instance", SEInstanceNorm)


def se_norm(norm: str | tuple, channels: int) -> nn.Module:
    """The norm named by ``norm`` (a name or ``(name, args)``) for ``channels`` channels.

    Raises:
        KeyError: a name :data:`SENorm` does not have.
    """
    name, args = split_args(norm)
    return SENorm[name](num_features=channels, **args)


def activation(act: str | tuple) -> nn.Module:
    """The activation named by ``act`` (a name or ``(name, args)``): "silu" is ``torch.nn.SiLU``, other names come
    from MONAI's ``Act`` factory (e.g. "swish", "relu", ("leakyrelu", {"negative_slope": 0.1})).

    Raises:
        KeyError: a name neither knows.
    """
    name, args = split_args(act)
    if isinstance(name, str) and name.lower() == "silu":
        return nn.SiLU(**args)
    return get_act_layer(act)
