"""A U-Net that corrects a prior: its logits start from a guess given as its last input channel.

::

    x (N, C_in, *S) ──► U-Net ──► correction (N, 1, *S) ─┐
    x[:, -1:] = prior p ∈ [0, 1] ──► PRIOR_LOGIT·(2p − 1) ─┴─ + ──► logits

With a freshly initialised U-Net (corrections near 0) the network predicts the prior
(probability 0.95 inside it, 0.05 outside); training teaches it where and how to depart from
it. Used by sparse-slice completion, whose prior is the interpolation between the drawn slices:
on a structure the network has never seen, an unsure correction leaves the interpolation
standing instead of replacing it with a guess. Registry name ``"prior_unet3d"`` (3D only, one
output channel); the state dict is the U-Net's own.
"""

from __future__ import annotations

import torch

from AutoCTVLib.nn.config import NetworkConfig
from AutoCTVLib.nn.registry import register_network
from AutoCTVLib.nn.unet3d import UNet

#: Logit given to the prior's inside (+) and outside (−) before the network's correction.
PRIOR_LOGIT = 3.0


@register_network("prior_unet3d")
class PriorResidualUNet(UNet):
    """``forward(x) = UNet(x) + PRIOR_LOGIT · (2 · x[:, -1:] − 1)`` (see the module docstring)."""

    @classmethod
    def from_config(cls, config: NetworkConfig) -> UNet:
        if config.spatial_dims != 3 or config.out_channels != 1 or config.recurrent_steps != 1:
            raise ValueError(
                "prior_unet3d needs spatial_dims 3, one output channel and no recurrent "
                f"refinement, got {config.spatial_dims}, {config.out_channels}, "
                f"{config.recurrent_steps}"
            )
        if config.in_channels < 2:
            raise ValueError("prior_unet3d needs an image channel and the prior channel")
        return super().from_config(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prior = x[:, -1:].to(torch.float32)
        return super().forward(x) + PRIOR_LOGIT * (2.0 * prior - 1.0)
