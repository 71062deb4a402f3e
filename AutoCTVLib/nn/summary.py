"""Parameter counts and a one-line architecture description (for model cards and ``model info``)."""

from __future__ import annotations

from torch import nn

from AutoCTVLib.nn.config import NetworkConfig


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers such as BatchNorm running statistics excluded)."""
    return sum(
        parameter.numel()
        for parameter in module.parameters()
        if parameter.requires_grad or not trainable_only
    )


def describe_config(config: NetworkConfig) -> str:
    """A short human-readable summary, e.g. ``UNet3D 16-32-64-96-128, residual, SE/4, K=3``."""
    dims = "3D" if config.spatial_dims == 3 else "2D"
    parts = [f"U-Net {dims} ({config.architecture}) {'-'.join(map(str, config.channels))}"]
    parts.append(f"in {config.in_channels} / out {config.out_channels}")
    parts.append(f"{config.norm} norm")
    if config.residual:
        parts.append("residual")
    if config.se:
        parts.append(f"SE (ratio {config.se_reduction})")
    if config.recurrent_steps > 1:
        parts.append(f"recurrent refinement K={config.recurrent_steps}")
    if config.dropout_p > 0:
        parts.append(
            f"{config.dropout_kind} dropout p={config.dropout_p:g} ({config.dropout_where})"
        )
    parts.append(f"{config.upsample} upsampling, {config.pad_mode} padding")
    return ", ".join(parts)
