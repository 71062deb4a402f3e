"""The network configuration: one frozen dataclass, JSON-round-trippable, validated on creation.

A :class:`NetworkConfig` says everything needed to rebuild a network (the model card stores
``config.to_dict()``; :func:`AutoCTVLib.nn.registry.build_network` turns it back into a module).

Defaults reproduce the thesis' plain UNet3D: 5 resolution levels with 16/32/64/96/128 channels,
two conv modules (3×3×3 conv → ELU → BatchNorm) per level, a bridge of two conv modules at the
deepest level, skip connections by concatenation, one output logit (the CTV).
:func:`thesis_config` gives the thesis' final model (residual + SE + recurrent refinement).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DROPOUT_PLACES = ("none", "bottleneck", "decoder", "all")
"""Where dropout layers go (after each conv module of the named part):

* ``"none"``: no dropout layers.
* ``"bottleneck"``: the two conv modules of the bridge (deepest level) only.
* ``"decoder"``: the bridge and every decoder conv module.
* ``"all"``: every conv module (encoder, bridge, decoder).
"""
DROPOUT_KINDS = ("element", "channel")
"""``"element"``: ``nn.Dropout`` (independent voxels; smoother MC-dropout maps, the default);
``"channel"``: ``nn.Dropout3d``/``nn.Dropout2d`` (whole feature maps)."""
NORMS = ("batch", "instance", "none")
PAD_MODES = ("replicate", "zeros")
UPSAMPLE_MODES = ("transpose", "linear")
"""``"transpose"``: transposed conv, kernel 2, stride 2; ``"linear"``: (bi/tri)linear ×2
followed by a 1×1(×1) conv that sets the channel count."""


def _require_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _require_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _require_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return str(value)


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture of a segmentation network (see the module docstring for the defaults).

    Attributes:
        architecture: registry name (``"unet3d"`` or ``"unet2d"``; see ``registry.py``).
        spatial_dims: 3 for volumes (N, C, z, y, x); 2 for images (N, C, y, x).
        in_channels: image channels (1 for CT; 3 for completion: CT, sparse label, annotated
            mask). With recurrent refinement the inner network receives
            ``in_channels + out_channels`` channels (the image, then the previous probability).
        out_channels: output logits (1: the CTV).
        channels: feature channels per resolution level, full resolution first; the last entry
            is the bridge. ``len(channels)`` resolution levels, so inputs are padded internally
            to a multiple of ``2 ** (len(channels) - 1)`` voxels per spatial axis.
        residual: each level's two conv modules get an identity skip (a 1×1×1 conv projection
            where the channel count changes).
        se: squeeze-and-excitation on every level block (global average pool over all spatial
            axes, MLP with hidden size ``max(1, channels // se_reduction)``).
        se_reduction: SE reduction ratio (≥ 1).
        recurrent_steps: K refinement steps (Mosinska et al. 2018); 1 = off.
        dropout_p: dropout probability (0 = none); needs ``dropout_where`` other than "none".
        dropout_where: see :data:`DROPOUT_PLACES`.
        dropout_kind: see :data:`DROPOUT_KINDS`.
        norm: ``"batch"`` (thesis), ``"instance"`` (affine) or ``"none"``.
        pad_mode: how inputs are padded up to the size multiple: ``"replicate"`` or ``"zeros"``.
        upsample: see :data:`UPSAMPLE_MODES`.
    """

    architecture: str = "unet3d"
    spatial_dims: int = 3
    in_channels: int = 1
    out_channels: int = 1
    channels: tuple[int, ...] = (16, 32, 64, 96, 128)
    residual: bool = False
    se: bool = False
    se_reduction: int = 4
    recurrent_steps: int = 1
    dropout_p: float = 0.0
    dropout_where: str = "none"
    dropout_kind: str = "element"
    norm: str = "batch"
    pad_mode: str = "replicate"
    upsample: str = "transpose"

    def __post_init__(self) -> None:
        if not isinstance(self.architecture, str) or not self.architecture:
            raise ValueError(f"architecture must be a non-empty name, got {self.architecture!r}")
        if self.spatial_dims not in (2, 3) or isinstance(self.spatial_dims, bool):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims!r}")
        _require_int("in_channels", self.in_channels, 1)
        _require_int("out_channels", self.out_channels, 1)
        if isinstance(self.channels, (str, bytes)) or not hasattr(self.channels, "__iter__"):
            raise ValueError(f"channels must be a list of integers, got {self.channels!r}")
        channels = tuple(self.channels)
        if len(channels) < 2:
            raise ValueError(f"channels needs at least 2 levels, got {list(channels)}")
        for level, count in enumerate(channels):
            _require_int(f"channels[{level}]", count, 1)
        object.__setattr__(self, "channels", channels)
        _require_bool("residual", self.residual)
        _require_bool("se", self.se)
        _require_int("se_reduction", self.se_reduction, 1)
        _require_int("recurrent_steps", self.recurrent_steps, 1)
        if isinstance(self.dropout_p, bool) or not isinstance(self.dropout_p, (int, float)):
            raise ValueError(f"dropout_p must be a number, got {self.dropout_p!r}")
        if not (0.0 <= float(self.dropout_p) < 1.0) or math.isnan(self.dropout_p):
            raise ValueError(f"dropout_p must be in [0, 1), got {self.dropout_p}")
        object.__setattr__(self, "dropout_p", float(self.dropout_p))
        _require_choice("dropout_where", self.dropout_where, DROPOUT_PLACES)
        if self.dropout_p > 0 and self.dropout_where == "none":
            raise ValueError("dropout_p > 0 needs dropout_where 'bottleneck', 'decoder' or 'all'")
        if self.dropout_p == 0 and self.dropout_where != "none":
            raise ValueError(f"dropout_where {self.dropout_where!r} needs dropout_p > 0")
        _require_choice("dropout_kind", self.dropout_kind, DROPOUT_KINDS)
        _require_choice("norm", self.norm, NORMS)
        _require_choice("pad_mode", self.pad_mode, PAD_MODES)
        _require_choice("upsample", self.upsample, UPSAMPLE_MODES)

    @property
    def levels(self) -> int:
        """Number of resolution levels (the bridge included)."""
        return len(self.channels)

    @property
    def size_multiple(self) -> int:
        """Inputs are padded internally to a multiple of this many voxels per spatial axis."""
        return 2 ** (self.levels - 1)

    @property
    def network_in_channels(self) -> int:
        """Channels the (inner) U-Net receives: image, plus previous probability if recurrent."""
        extra = self.out_channels if self.recurrent_steps > 1 else 0
        return self.in_channels + extra

    def replace(self, **changes: Any) -> NetworkConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``channels`` as a list); inverse of :meth:`from_dict`."""
        data = dataclasses.asdict(self)
        data["channels"] = list(self.channels)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkConfig:
        """Build from a dict such as ``to_dict()`` wrote; unknown keys raise ``ValueError``.

        Missing keys take their defaults, so older cards that lack a newer switch still load.
        """
        if not isinstance(data, Mapping):
            raise ValueError(
                f"a network configuration must be a mapping, got {type(data).__name__}"
            )
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown network configuration keys: {', '.join(unknown)}")
        return cls(**dict(data))


def thesis_config(**changes: Any) -> NetworkConfig:
    """The thesis' final model: UNet3D + residual + SE + recurrent refinement (BCE + Dice loss).

    The thesis does not state K or the SE ratio; we use K = 3 steps and ratio 4. Dropout is off
    (switch it on with e.g. ``dropout_p=0.05, dropout_where="all"`` for MC-dropout uncertainty).
    """
    base = NetworkConfig(residual=True, se=True, se_reduction=4, recurrent_steps=3)
    return base.replace(**changes) if changes else base
