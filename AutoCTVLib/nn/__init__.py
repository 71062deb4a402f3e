"""Segmentation networks: config dataclass, registry, U-Net blocks, recurrence, MC dropout.

Typical use::

    from AutoCTVLib.nn import NetworkConfig, build_network
    network = build_network(NetworkConfig(residual=True, se=True), seed=0)
    logits = network(ct_batch)            # (N, 1, z, y, x) → (N, 1, z, y, x)
    step_logits = network.forward_steps(ct_batch)   # training: one entry per recurrent step
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# The configuration needs no torch: model cards are checked with it before PyTorch is installed
# (the Slicer module's first start). Everything else is imported when first asked for.
from AutoCTVLib.lazy_exports import keep_exports_over_submodules, lazy_getattr
from AutoCTVLib.nn.config import NetworkConfig, thesis_config

if TYPE_CHECKING:
    from AutoCTVLib.nn.mc_dropout import dropout_modules, first_dropout, has_dropout, mc_dropout
    from AutoCTVLib.nn.recurrent import RecurrentRefinement
    from AutoCTVLib.nn.registry import available_networks, build_network, register_network
    from AutoCTVLib.nn.summary import count_parameters, describe_config
    from AutoCTVLib.nn.unet3d import UNet, UNetFeatures

_LAZY = {
    "dropout_modules": "mc_dropout",
    "first_dropout": "mc_dropout",
    "has_dropout": "mc_dropout",
    "mc_dropout": "mc_dropout",
    "RecurrentRefinement": "recurrent",
    "available_networks": "registry",
    "build_network": "registry",
    "register_network": "registry",
    "count_parameters": "summary",
    "describe_config": "summary",
    "UNet": "unet3d",
    "UNetFeatures": "unet3d",
}

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

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
keep_exports_over_submodules(__name__, frozenset({"mc_dropout"}))
