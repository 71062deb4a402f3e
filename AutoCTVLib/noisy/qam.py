"""The Quality Awareness Module (QAM): a VGG-style network Φ that scores (image, label) pairs.

::

    image (N, C_img, *S) ┐
                          ├ concat ─ [conv 3 ─ norm ─ ReLU] × convs_per_block ─ maxpool 2 ─ ...
    label (N, n,     *S) ┘            (one block per entry of ``channels``; no pool after the
                                       last)  ─ 1×1 conv → 1 channel ─ global average pool ─> (N,)

For ``n`` label classes and a one-channel image the network takes ``n + 1`` channels (thesis:
"VGG with n+1 input channels, the last layer replaced by average pooling"). It returns one raw
score per sample; :mod:`AutoCTVLib.noisy.ocm` bounds the scores and turns them into weights.
The QAM is used only while training; inference uses the segmentation network alone.

Works in 2D (N, C, y, x) and 3D (N, C, z, y, x) (``spatial_dims``). Inputs of any size work:
max pooling floors odd sizes and the global average pool removes the spatial axes, but each
spatial axis must be at least ``2 ** (len(channels) - 1)`` voxels long.
"""

from __future__ import annotations

import torch
from torch import nn

from AutoCTVLib.nn.blocks import check_spatial_dims, conv_layer, max_pool_layer, norm_layer

QAM_NORMS = ("batch", "instance", "none")

#: Default feature channels per block (a slim VGG; the thesis does not give the widths).
DEFAULT_QAM_CHANNELS = (16, 32, 64, 64)


class QualityNetwork(nn.Module):
    """Φ: ``forward(image, label) -> scores (N,)``, one raw quality score per sample.

    Args (keyword only):
        spatial_dims: 2 or 3.
        image_channels: channels of the image (1 for CT or a radiograph).
        label_channels: ``n``, one channel per label class (binary masks or probabilities).
        channels: feature channels of each VGG block (at least one block).
        convs_per_block: 3×3(×3) convs per block (VGG uses 2–3).
        norm: ``"batch"`` (default), ``"instance"`` or ``"none"`` after each conv.
    """

    def __init__(
        self,
        *,
        spatial_dims: int = 2,
        image_channels: int = 1,
        label_channels: int = 1,
        channels: tuple[int, ...] = DEFAULT_QAM_CHANNELS,
        convs_per_block: int = 2,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        for name, value in (
            ("image_channels", image_channels),
            ("label_channels", label_channels),
            ("convs_per_block", convs_per_block),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        channels = tuple(channels)
        if not channels or any(
            isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels
        ):
            raise ValueError(f"channels must be one or more positive integers, got {channels!r}")
        if norm not in QAM_NORMS:
            raise ValueError(f"norm must be one of {', '.join(QAM_NORMS)}, got {norm!r}")
        self.image_channels = image_channels
        self.label_channels = label_channels
        self.channels = channels
        self.min_size = 2 ** (len(channels) - 1)
        conv = conv_layer(spatial_dims)
        layers: list[nn.Module] = []
        c_in = image_channels + label_channels
        for index, c_out in enumerate(channels):
            for _ in range(convs_per_block):
                layers += [
                    conv(c_in, c_out, kernel_size=3, padding=1, bias=norm == "none"),
                    norm_layer(spatial_dims, norm, c_out),
                    nn.ReLU(inplace=True),
                ]
                c_in = c_out
            if index < len(channels) - 1:
                layers.append(max_pool_layer(spatial_dims)(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        self.score = conv(c_in, 1, kernel_size=1)

    def forward(self, image: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Raw scores (N,) for images (N, C_img, *S) and labels (N, n, *S)."""
        expected = self.spatial_dims + 2
        if image.ndim != expected or label.ndim != expected:
            raise ValueError(
                f"image and label must be {expected}-D (N, C, *spatial) tensors, got shapes "
                f"{tuple(image.shape)} and {tuple(label.shape)}"
            )
        if image.shape[0] != label.shape[0] or image.shape[2:] != label.shape[2:]:
            raise ValueError(
                f"image {tuple(image.shape)} and label {tuple(label.shape)} must share the batch "
                "and spatial sizes"
            )
        if image.shape[1] != self.image_channels or label.shape[1] != self.label_channels:
            raise ValueError(
                f"expected {self.image_channels} image and {self.label_channels} label channels, "
                f"got {image.shape[1]} and {label.shape[1]}"
            )
        if min(image.shape[2:]) < self.min_size:
            raise ValueError(
                f"every spatial size must be at least {self.min_size} for this quality network, "
                f"got {tuple(image.shape[2:])}"
            )
        pair = torch.cat([image, label.to(image.dtype)], dim=1)
        score_map = self.score(self.features(pair))
        return score_map.flatten(1).mean(dim=1)


def build_quality_network(
    *,
    spatial_dims: int,
    image_channels: int,
    label_channels: int,
    channels: tuple[int, ...] = DEFAULT_QAM_CHANNELS,
    norm: str = "batch",
    seed: int | None = None,
) -> QualityNetwork:
    """A :class:`QualityNetwork`, initialised from ``seed`` without touching torch's global
    random state (``None``: the global state, as ``torch.nn`` layers normally do)."""

    def build() -> QualityNetwork:
        return QualityNetwork(
            spatial_dims=spatial_dims,
            image_channels=image_channels,
            label_channels=label_channels,
            channels=tuple(channels),
            norm=norm,
        )

    if seed is None:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return build()
