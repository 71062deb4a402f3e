"""Building blocks of the U-Net: conv module, squeeze-and-excitation, level block, upsampler.

All blocks work for 2D (N, C, y, x) and 3D (N, C, z, y, x) tensors (``spatial_dims``), take
explicit keyword arguments and raise ``ValueError`` on bad ones when constructed. Every conv
is followed by ELU then normalisation, as in the thesis (3×3×3 conv → ELU → BatchNorm).

Dropout: a dropout layer (if any) comes last in a conv module, after the normalisation, so in
MC-dropout mode (norm in eval mode, dropout active) the normalisation statistics are those of
training and only the dropout masks vary. ``"element"`` dropout (``nn.Dropout``) is the
default because its MC maps are smoother than whole-channel dropout (``nn.Dropout3d``).
"""

from __future__ import annotations

import torch
from torch import nn

from AutoCTVLib.nn.config import DROPOUT_KINDS, NORMS, UPSAMPLE_MODES

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_TRANSPOSED_CONV = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_BATCH_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCE_NORM = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_CHANNEL_DROPOUT = {2: nn.Dropout2d, 3: nn.Dropout3d}
_MAX_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}


def check_spatial_dims(spatial_dims: int) -> int:
    """Return ``spatial_dims`` if it is 2 or 3, else raise ``ValueError``."""
    if isinstance(spatial_dims, bool) or spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return spatial_dims


def _check_channels(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_dropout(dropout_p: float, dropout_kind: str) -> None:
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)):
        raise ValueError(f"dropout_p must be a number, got {dropout_p!r}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    if dropout_kind not in DROPOUT_KINDS:
        raise ValueError(f"dropout_kind must be one of {', '.join(DROPOUT_KINDS)}")


def conv_layer(spatial_dims: int) -> type[nn.Module]:
    """``nn.Conv2d`` or ``nn.Conv3d``."""
    return _CONV[check_spatial_dims(spatial_dims)]


def max_pool_layer(spatial_dims: int) -> type[nn.Module]:
    """``nn.MaxPool2d`` or ``nn.MaxPool3d``."""
    return _MAX_POOL[check_spatial_dims(spatial_dims)]


def norm_layer(spatial_dims: int, norm: str, channels: int) -> nn.Module:
    """BatchNorm, affine InstanceNorm, or identity for ``norm`` = "batch" / "instance" / "none"."""
    check_spatial_dims(spatial_dims)
    if norm == "batch":
        return _BATCH_NORM[spatial_dims](channels)
    if norm == "instance":
        return _INSTANCE_NORM[spatial_dims](channels, affine=True)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


def dropout_layer(spatial_dims: int, dropout_p: float, dropout_kind: str = "element") -> nn.Module:
    """``nn.Dropout`` (element) or ``nn.Dropout2d/3d`` (channel); identity when p is 0."""
    check_spatial_dims(spatial_dims)
    _check_dropout(dropout_p, dropout_kind)
    if dropout_p == 0:
        return nn.Identity()
    if dropout_kind == "element":
        return nn.Dropout(p=float(dropout_p))
    return _CHANNEL_DROPOUT[spatial_dims](p=float(dropout_p))


class ConvModule(nn.Sequential):
    """One conv module: conv (k×k×k, 'same' padding, bias) → ELU → norm → [dropout].

    ::

        x (N, C_in, *S) ─ Conv k³ ─ ELU ─ Norm ─ [Dropout] ─> (N, C_out, *S)

    Spatial size ``S`` is preserved (odd ``kernel_size`` only). Parameters:
    ``C_in·C_out·k^d + C_out`` (conv) + ``2·C_out`` (affine batch/instance norm).
    """

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        norm: str = "batch",
        dropout_p: float = 0.0,
        dropout_kind: str = "element",
    ) -> None:
        check_spatial_dims(spatial_dims)
        _check_channels("in_channels", in_channels)
        _check_channels("out_channels", out_channels)
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
            raise ValueError(f"kernel_size must be a positive integer, got {kernel_size!r}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the size, got {kernel_size}")
        _check_dropout(dropout_p, dropout_kind)
        layers: dict[str, nn.Module] = {
            "conv": conv_layer(spatial_dims)(
                in_channels, out_channels, kernel_size, padding=kernel_size // 2
            ),
            "act": nn.ELU(inplace=True),
            "norm": norm_layer(spatial_dims, norm, out_channels),
        }
        if dropout_p > 0:
            layers["dropout"] = dropout_layer(spatial_dims, dropout_p, dropout_kind)
        super().__init__()
        for name, layer in layers.items():
            self.add_module(name, layer)


class SqueezeExcitation(nn.Module):
    """Channel attention (Hu et al. 2018): rescale each channel by a learned gate in (0, 1).

    ::

        x (N, C, *S) ──────────────────────────────────────────┐
          └─ mean over all spatial axes → (N, C)                (×) ─> (N, C, *S)
             └─ Linear C→H ─ ReLU ─ Linear H→C ─ Sigmoid ───────┘

    ``H = max(1, C // reduction)``. Parameters: ``C·H + H + H·C + C``.
    """

    def __init__(self, *, spatial_dims: int, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        _check_channels("channels", channels)
        if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
            raise ValueError(f"reduction must be a positive integer, got {reduction!r}")
        hidden = max(1, channels // reduction)
        self.excitation = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial_axes = tuple(range(2, 2 + self.spatial_dims))
        squeezed = x.mean(dim=spatial_axes)
        gate = self.excitation(squeezed)
        return x * gate.reshape(*gate.shape, *([1] * self.spatial_dims))


class LevelBlock(nn.Module):
    """The work of one resolution level: two conv modules, optional residual skip and SE.

    ::

        plain:     x ─ ConvModule ─ ConvModule ─ [SE] ─────────────> y
        residual:  x ─ ConvModule ─ ConvModule ─ [SE] ─ (+) ────────> y
                   └─ identity, or 1×1×1 conv if C_in ≠ C_out ─┘

    Shapes: (N, C_in, *S) → (N, C_out, *S). The residual projection, when present, has
    ``C_in·C_out + C_out`` parameters. Dropout (if ``dropout_p`` > 0) follows each conv module.
    """

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        norm: str = "batch",
        residual: bool = False,
        se: bool = False,
        se_reduction: int = 4,
        dropout_p: float = 0.0,
        dropout_kind: str = "element",
    ) -> None:
        super().__init__()
        if not isinstance(residual, bool) or not isinstance(se, bool):
            raise ValueError("residual and se must be true or false")
        if isinstance(se_reduction, bool) or not isinstance(se_reduction, int) or se_reduction < 1:
            raise ValueError(f"se_reduction must be a positive integer, got {se_reduction!r}")
        common = {
            "spatial_dims": spatial_dims,
            "norm": norm,
            "dropout_p": dropout_p,
            "dropout_kind": dropout_kind,
        }
        self.conv1 = ConvModule(in_channels=in_channels, out_channels=out_channels, **common)
        self.conv2 = ConvModule(in_channels=out_channels, out_channels=out_channels, **common)
        self.se = (
            SqueezeExcitation(
                spatial_dims=spatial_dims, channels=out_channels, reduction=se_reduction
            )
            if se
            else None
        )
        self.residual = residual
        self.projection: nn.Module | None = None
        if residual and in_channels != out_channels:
            self.projection = conv_layer(spatial_dims)(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        if self.se is not None:
            y = self.se(y)
        if self.residual:
            y = y + (x if self.projection is None else self.projection(x))
        return y


class Upsample(nn.Module):
    """Double the spatial size and set the channel count (decoder side).

    ::

        "transpose": x (N, C_in, *S) ─ ConvTranspose k=2 s=2 ─────────> (N, C_out, *2S)
        "linear":    x (N, C_in, *S) ─ ×2 (tri)linear ─ Conv 1×1×1 ───> (N, C_out, *2S)

    Parameters: ``C_in·C_out·2^d + C_out`` (transpose) or ``C_in·C_out + C_out`` (linear).
    """

    def __init__(
        self, *, spatial_dims: int, in_channels: int, out_channels: int, mode: str = "transpose"
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        _check_channels("in_channels", in_channels)
        _check_channels("out_channels", out_channels)
        if mode not in UPSAMPLE_MODES:
            raise ValueError(f"mode must be one of {', '.join(UPSAMPLE_MODES)}, got {mode!r}")
        self.mode = mode
        if mode == "transpose":
            self.conv = _TRANSPOSED_CONV[spatial_dims](
                in_channels, out_channels, kernel_size=2, stride=2
            )
        else:
            self.conv = conv_layer(spatial_dims)(in_channels, out_channels, kernel_size=1)
        self._interpolation = "trilinear" if spatial_dims == 3 else "bilinear"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "transpose":
            return self.conv(x)
        doubled = nn.functional.interpolate(
            x, scale_factor=2.0, mode=self._interpolation, align_corners=False
        )
        return self.conv(doubled)
