"""Segmentation networks: config dataclass, registry, U-Net blocks, recurrence, MC dropout.

Typical use::

    from AutoCTVLib.nn import NetworkConfig, build_network
    network = build_network(NetworkConfig(residual=True, se=True), seed=0)
    logits = network(ct_batch)            # (N, 1, z, y, x) → (N, 1, z, y, x)
    step_logits = network.forward_steps(ct_batch)   # training: one entry per recurrent step
"""

from __future__ import annotations

from AutoCTVLib.nn.config import NetworkConfig, thesis_config
from AutoCTVLib.nn.mc_dropout import dropout_modules, first_dropout, has_dropout, mc_dropout
from AutoCTVLib.nn.recurrent import RecurrentRefinement
from AutoCTVLib.nn.registry import available_networks, build_network, register_network
from AutoCTVLib.nn.summary import count_parameters, describe_config
from AutoCTVLib.nn.unet3d import UNet, UNetFeatures

__all__ = [
    "NetworkConfig",
    "RecurrentRefinement",
    "UNet",
    "UNetFeatures",
    "available_networks",
    "build_network",
    "count_parameters",
    "describe_config",
    "dropout_modules",
    "first_dropout",
    "has_dropout",
    "mc_dropout",
    "register_network",
    "thesis_config",
]
