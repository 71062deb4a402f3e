"""Name → network class registry, and :func:`build_network` (config in, ``nn.Module`` out).

A registered class provides ``from_config(config) -> nn.Module``. Built-in names:
``"unet3d"`` (spatial_dims 3) and ``"unet2d"`` (spatial_dims 2), both :class:`~AutoCTVLib.nn.
unet3d.UNet`, and ``"prior_unet3d"``
(:class:`~AutoCTVLib.nn.prior_residual.PriorResidualUNet`). With ``recurrent_steps > 1`` the
network is wrapped in :class:`~AutoCTVLib.nn.recurrent.RecurrentRefinement`.

Every network built here has ``.config`` (the :class:`NetworkConfig` it was built from),
``forward(x) -> logits`` and ``forward_steps(x) -> list of logits`` (one per refinement step;
a single entry without recurrence).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from AutoCTVLib.nn.config import NetworkConfig

_NETWORKS: dict[str, Any] = {}
_BUILTIN_MODULES = ("AutoCTVLib.nn.unet3d", "AutoCTVLib.nn.prior_residual")

ClassT = TypeVar("ClassT")


def register_network(name: str) -> Callable[[ClassT], ClassT]:
    """Class decorator: make ``NetworkConfig(architecture=name)`` build this class."""

    def decorate(cls: ClassT) -> ClassT:
        if name in _NETWORKS and _NETWORKS[name] is not cls:
            raise ValueError(f"network name {name!r} is already registered")
        if not callable(getattr(cls, "from_config", None)):
            raise TypeError(f"{cls!r} needs a from_config(config) classmethod to be registered")
        _NETWORKS[name] = cls
        return cls

    return decorate


def _load_builtins() -> None:
    for module_name in _BUILTIN_MODULES:
        importlib.import_module(module_name)


def available_networks() -> list[str]:
    """Registered architecture names, sorted."""
    _load_builtins()
    return sorted(_NETWORKS)


def network_class(name: str) -> Any:
    """The class registered under ``name`` (``ValueError`` naming the known ones otherwise)."""
    _load_builtins()
    if name not in _NETWORKS:
        known = ", ".join(sorted(_NETWORKS))
        raise ValueError(f"unknown network architecture {name!r}; known: {known}")
    return _NETWORKS[name]


def build_network(config: NetworkConfig, *, seed: int | None = None) -> nn.Module:
    """Build the network ``config`` describes (recurrent wrapper included when K > 1).

    Args:
        config: the architecture.
        seed: when given, parameters are initialised from this seed without touching the
            global torch random state (same seed → identical weights). ``None`` uses the
            global state as ``torch.nn`` layers normally do.

    Returns:
        A module in training mode on the CPU, with ``.config`` set to ``config``.
    """
    if not isinstance(config, NetworkConfig):
        raise TypeError(f"build_network needs a NetworkConfig, got {type(config).__name__}")
    cls = network_class(config.architecture)
    if seed is None:
        return _build(cls, config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(cls, config)


def _build(cls: Any, config: NetworkConfig) -> nn.Module:
    network = cls.from_config(config)
    if config.recurrent_steps > 1:
        from AutoCTVLib.nn.recurrent import RecurrentRefinement

        network = RecurrentRefinement(
            network, steps=config.recurrent_steps, image_channels=config.in_channels
        )
    network.config = config
    return network
