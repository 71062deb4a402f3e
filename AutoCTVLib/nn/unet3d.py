"""The thesis' U-Net (3D, or 2D with ``spatial_dims=2``), with residual/SE/dropout switches.

::

    level 0 (C0, full size) : LevelBlock ─────────────────── concat ─ LevelBlock ─ 1×1×1 ─> logits
                                 │ maxpool 2                   ↑ up ×2
    level 1 (C1, 1/2)       :  LevelBlock ───────── concat ─ LevelBlock
                                 │ maxpool 2          ↑ up ×2
      ...                          ...               ...
    level L-1 (bridge, 1/2^(L-1)):        LevelBlock (two conv modules)

    |<──────────── encode(x) ──────────>|<────────────── decode(features) ──────────────>|

With the default channels (16, 32, 64, 96, 128) there are 5 resolution levels: four encoder
levels and the bridge. Inputs of any size work: ``encode`` pads every spatial axis to a
multiple of ``2 ** (L - 1)`` (replicate or zero padding) and ``decode`` crops the logits back,
so ``forward(x)`` has the spatial shape of ``x``.

``encode`` ends *before* the bridge, so with ``dropout_where`` "bottleneck" or "decoder" every
dropout layer lies in ``decode``: Monte-Carlo sampling can run ``encode`` once and ``decode``
N times (``encoder_is_deterministic`` says whether that is exact; it is not for "all").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from AutoCTVLib.nn.blocks import (
    LevelBlock,
    Upsample,
    check_spatial_dims,
    conv_layer,
    max_pool_layer,
)
from AutoCTVLib.nn.config import DROPOUT_KINDS, DROPOUT_PLACES, PAD_MODES, NetworkConfig
from AutoCTVLib.nn.padding import Padding, crop_padding, pad_to_multiple
from AutoCTVLib.nn.registry import register_network


@dataclass(frozen=True)
class UNetFeatures:
    """What :meth:`UNet.encode` hands to :meth:`UNet.decode`.

    Attributes:
        skips: encoder outputs, full resolution first (``levels - 1`` tensors).
        deepest: the pooled last encoder output, input of the bridge.
        padding: the padding ``encode`` added (``decode`` crops it off).
    """

    skips: tuple[torch.Tensor, ...]
    deepest: torch.Tensor
    padding: Padding


@register_network("unet3d")
@register_network("unet2d")
class UNet(nn.Module):
    """U-Net: ``forward(x: (N, C_in, *S)) -> logits (N, C_out, *S)`` for any spatial size ``S``.

    Args (keyword only; see :class:`~AutoCTVLib.nn.config.NetworkConfig` for their meaning):
        spatial_dims, in_channels, out_channels, channels, residual, se, se_reduction,
        dropout_p, dropout_where, dropout_kind, norm, pad_mode, upsample.

    Submodules (their names are the state-dict keys of model files): ``encoder.<i>``
    (level blocks of levels 0..L-2), ``bridge``, ``upsamplers.<i>`` (level i+1 → i),
    ``decoder.<i>`` (level blocks after concatenation at level i), ``head`` (1×1×1 conv).
    """

    def __init__(
        self,
        *,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: tuple[int, ...] = (16, 32, 64, 96, 128),
        residual: bool = False,
        se: bool = False,
        se_reduction: int = 4,
        dropout_p: float = 0.0,
        dropout_where: str = "none",
        dropout_kind: str = "element",
        norm: str = "batch",
        pad_mode: str = "replicate",
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        channels = tuple(channels)
        if len(channels) < 2:
            raise ValueError(f"channels needs at least 2 levels, got {list(channels)}")
        if dropout_where not in DROPOUT_PLACES:
            raise ValueError(f"dropout_where must be one of {', '.join(DROPOUT_PLACES)}")
        if dropout_kind not in DROPOUT_KINDS:
            raise ValueError(f"dropout_kind must be one of {', '.join(DROPOUT_KINDS)}")
        if (dropout_p > 0) != (dropout_where != "none"):
            raise ValueError("dropout_p > 0 and dropout_where other than 'none' go together")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {', '.join(PAD_MODES)}, got {pad_mode!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.channels = channels
        self.pad_mode = pad_mode
        self.dropout_where = dropout_where
        self.size_multiple = 2 ** (len(channels) - 1)

        def block(c_in: int, c_out: int, with_dropout: bool) -> LevelBlock:
            return LevelBlock(
                spatial_dims=spatial_dims,
                in_channels=c_in,
                out_channels=c_out,
                norm=norm,
                residual=residual,
                se=se,
                se_reduction=se_reduction,
                dropout_p=dropout_p if with_dropout else 0.0,
                dropout_kind=dropout_kind,
            )

        encoder_dropout = dropout_where == "all"
        bridge_dropout = dropout_where in ("bottleneck", "decoder", "all")
        decoder_dropout = dropout_where in ("decoder", "all")
        inputs = (in_channels, *channels[:-2])
        self.encoder = nn.ModuleList(
            block(c_in, c_out, encoder_dropout) for c_in, c_out in zip(inputs, channels[:-1])
        )
        self.pool = max_pool_layer(spatial_dims)(kernel_size=2, stride=2)
        self.bridge = block(channels[-2], channels[-1], bridge_dropout)
        self.upsamplers = nn.ModuleList(
            Upsample(
                spatial_dims=spatial_dims,
                in_channels=channels[level + 1],
                out_channels=channels[level],
                mode=upsample,
            )
            for level in range(len(channels) - 1)
        )
        self.decoder = nn.ModuleList(
            block(2 * channels[level], channels[level], decoder_dropout)
            for level in range(len(channels) - 1)
        )
        self.head = conv_layer(spatial_dims)(channels[0], out_channels, kernel_size=1)

    @classmethod
    def from_config(cls, config: NetworkConfig) -> UNet:
        """Build from a config; ``unet3d`` needs spatial_dims 3 and ``unet2d`` needs 2."""
        expected = {"unet3d": 3, "unet2d": 2}.get(config.architecture)
        if expected is not None and config.spatial_dims != expected:
            raise ValueError(
                f"architecture {config.architecture!r} needs spatial_dims {expected}, "
                f"got {config.spatial_dims}"
            )
        network = cls(
            spatial_dims=config.spatial_dims,
            in_channels=config.network_in_channels,
            out_channels=config.out_channels,
            channels=config.channels,
            residual=config.residual,
            se=config.se,
            se_reduction=config.se_reduction,
            dropout_p=config.dropout_p,
            dropout_where=config.dropout_where,
            dropout_kind=config.dropout_kind,
            norm=config.norm,
            pad_mode=config.pad_mode,
            upsample=config.upsample,
        )
        network.config = config
        return network

    @property
    def encoder_is_deterministic(self) -> bool:
        """True when ``encode`` holds no dropout (MC sampling may reuse one ``encode``)."""
        return self.dropout_where != "all"

    def encode(self, x: torch.Tensor) -> UNetFeatures:
        """Pad ``x`` (N, C_in, *S) and run the encoder levels (not the bridge)."""
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(
                f"expected a (N, C, {'z, y, x' if self.spatial_dims == 3 else 'y, x'}) tensor, "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {x.shape[1]}")
        padded, padding = pad_to_multiple(x, self.size_multiple, self.pad_mode)
        skips = []
        current = padded
        for level_block in self.encoder:
            current = level_block(current)
            skips.append(current)
            current = self.pool(current)
        return UNetFeatures(skips=tuple(skips), deepest=current, padding=padding)

    def decode(self, features: UNetFeatures) -> torch.Tensor:
        """Bridge, decoder and head; returns logits cropped to the size ``encode`` received."""
        current = self.bridge(features.deepest)
        for level in reversed(range(len(self.decoder))):
            upsampled = self.upsamplers[level](current)
            current = self.decoder[level](torch.cat([features.skips[level], upsampled], dim=1))
        return crop_padding(self.head(current), features.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def forward_steps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[forward(x)]``: the same interface as the recurrent wrapper (one step)."""
        return [self.forward(x)]
