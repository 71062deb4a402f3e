"""Decoder passes for Monte-Carlo dropout with the mask-independent work done once.

With dropout in the bridge and decoder only, every sampled decode of a U-Net
(:meth:`AutoCTVLib.nn.unet3d.UNet.decode`) starts from the same encoder features. Part of each
decoder block does not depend on the dropout masks either: its first convolution and its 1×1×1
residual projection act on ``cat(skip, upsampled)``, and a convolution is linear in its input
channels, so

    conv(cat(skip, up); W, b) = conv(skip; W_skip, b) + conv(up; W_up)

The ``skip`` half (half of that convolution's multiply-adds, and the concatenation) is computed
once per feature set (:class:`SampledDecoder`); each sample computes the ``up`` half. In the
bridge, everything before its first dropout layer (conv, ELU, norm) and its residual projection
are computed once as well. The samples' distribution is unchanged: the dropout layers are called
in the same order and on the same shapes as in ``decode``, so under the same seed they draw the
same masks; the only difference from ``decode`` is float rounding (the order of the sums),
measured in ``Testing/test_predict_mc_decoder.py``.

Given a generator (:func:`AutoCTVLib.predict.mc_masks.mask_generator`), the element-dropout
layers draw their masks from it (:func:`~AutoCTVLib.predict.mc_masks.element_dropout`) instead
of torch's global generator. Sampling threads then each own their generator, and the result
does not depend on which thread ran which batch.

For the 2 × 2 × 3 mm segmenter of the CTV cascade (16–128 channels, 5 levels) the precomputed
halves are about a third of a decode's convolution work (the first decoder convolutions take
``2C → C`` channels, the second ``C → C``).

Tensors are (N, C, z, y, x) (or (N, C, y, x) for a 2D U-Net).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from AutoCTVLib.nn.blocks import LevelBlock
from AutoCTVLib.nn.mc_dropout import is_dropout
from AutoCTVLib.nn.padding import crop_padding
from AutoCTVLib.nn.unet3d import UNet, UNetFeatures
from AutoCTVLib.predict.mc_masks import MaskGenerator, element_dropout


def can_split_decoder(unet: UNet) -> bool:
    """True when :class:`SampledDecoder` applies: every bridge and decoder block a
    :class:`LevelBlock` whose first module is conv (zero padding, one group) → act → norm → ..."""
    for block in (unet.bridge, *unet.decoder):
        if not isinstance(block, LevelBlock):
            return False
        names = [name for name, _ in block.conv1.named_children()]
        conv = getattr(block.conv1, "conv", None)
        if names[:3] != ["conv", "act", "norm"] or not isinstance(conv, (nn.Conv2d, nn.Conv3d)):
            return False
        if conv.padding_mode != "zeros" or conv.groups != 1:
            return False
    return True


def has_only_element_dropout(unet: UNet) -> bool:
    """True when every dropout layer of ``unet`` is ``nn.Dropout`` (element dropout), the kind
    :class:`SampledDecoder` can draw from a generator."""
    return all(type(module) is nn.Dropout for module in unet.modules() if is_dropout(module))


@dataclass(frozen=True)
class _Level:
    """One decoder level's precomputed parts.

    Attributes:
        skip_term: first convolution of the skip half, bias included, (1, C, *S).
        weight_up: first convolution's weight for the upsampled half.
        residual_skip: residual projection of the skip half, bias included (or ``None``).
        projection_up: residual projection's weight for the upsampled half (or ``None``).
    """

    skip_term: torch.Tensor
    weight_up: torch.Tensor
    residual_skip: torch.Tensor | None
    projection_up: torch.Tensor | None


class SampledDecoder:
    """``unet.decode(features)`` for sampling: call it once per batch of samples.

    Args:
        unet: the U-Net (its modules are used as they are; dropout and SE hooks apply).
        features: the encoder output (whole or cropped, batch 1).
    """

    def __init__(self, unet: UNet, features: UNetFeatures) -> None:
        if not can_split_decoder(unet):
            raise ValueError("this U-Net's decoder cannot be split (see can_split_decoder)")
        if features.deepest.shape[0] != 1:
            raise ValueError("SampledDecoder precomputes one feature set (batch 1)")
        self.unet = unet
        self.padding = features.padding
        self.skips = features.skips
        first = unet.bridge.conv1
        # the bridge's first module up to its dropout layer: the same for every sample
        self.bridge_first = first.norm(first.act(first.conv(features.deepest)))
        self.bridge_residual: torch.Tensor | None = None
        if unet.bridge.residual:
            projection = unet.bridge.projection
            deepest = features.deepest
            self.bridge_residual = deepest if projection is None else projection(deepest)
        self.levels: list[_Level] = []
        for level, block in enumerate(unet.decoder):
            skip = features.skips[level]
            channels = int(skip.shape[1])
            conv = block.conv1.conv
            residual_skip = projection_up = None
            projection = block.projection
            if block.residual and projection is not None:
                residual_skip = _conv(
                    projection, skip, _part(projection.weight, 0, channels), projection.bias
                )
                projection_up = _part(projection.weight, channels, None)
            self.levels.append(
                _Level(
                    skip_term=_conv(conv, skip, _part(conv.weight, 0, channels), conv.bias),
                    weight_up=_part(conv.weight, channels, None),
                    residual_skip=residual_skip,
                    projection_up=projection_up,
                )
            )

    def __call__(self, count: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """Logits of ``count`` sampled decodes, (count, out_channels, *S) unpadded.

        Dropout layers in train mode (:func:`~AutoCTVLib.nn.mc_dropout.mc_dropout`) draw from
        ``generator`` when given (element dropout only), else from torch's global generator.
        """
        if generator is not None and not has_only_element_dropout(self.unet):
            raise ValueError("a dropout generator needs element dropout (nn.Dropout) layers")
        unet = self.unet
        bridge = unet.bridge
        current = _layers_after(bridge.conv1, "norm", _expand(self.bridge_first, count), generator)
        current = _layers_after(bridge.conv2, None, current, generator)
        if bridge.se is not None:
            current = bridge.se(current)
        if self.bridge_residual is not None:
            current = current + self.bridge_residual
        for level in reversed(range(len(unet.decoder))):
            block = unet.decoder[level]
            parts = self.levels[level]
            upsampled = unet.upsamplers[level](current)
            first = _conv(block.conv1.conv, upsampled, parts.weight_up, None)
            z = _layers_after(block.conv1, "conv", first.add_(parts.skip_term), generator)
            y = _layers_after(block.conv2, None, z, generator)
            if block.se is not None:
                y = block.se(y)
            if block.residual:
                if parts.projection_up is None:  # identity shortcut: needs the concatenation
                    y = y + torch.cat([_expand(self.skips[level], count), upsampled], dim=1)
                else:
                    assert block.projection is not None and parts.residual_skip is not None
                    shortcut = _conv(block.projection, upsampled, parts.projection_up, None)
                    y = y + shortcut.add_(parts.residual_skip)
            current = y
        return crop_padding(unet.head(current), self.padding)


def _layers_after(
    module: nn.Module, after: str | None, x: torch.Tensor, generator: MaskGenerator | None
) -> torch.Tensor:
    """Run the layers of a :class:`~AutoCTVLib.nn.blocks.ConvModule` that follow ``after``
    (all of them for ``None``); active dropout layers draw from ``generator`` when given."""
    names = [name for name, _ in module.named_children()]
    start = 0 if after is None else names.index(after) + 1
    for name in names[start:]:
        layer = getattr(module, name)
        if generator is not None and is_dropout(layer) and layer.training:
            x = element_dropout(x, float(layer.p), generator)
        else:
            x = layer(x)
    return x


def _expand(tensor: torch.Tensor, count: int) -> torch.Tensor:
    return tensor if count == 1 else tensor.expand(count, *tensor.shape[1:])


def _part(weight: torch.Tensor, start: int, stop: int | None) -> torch.Tensor:
    """Input channels ``start:stop`` of a conv weight, dense, in the weight's memory layout."""
    return weight[:, start:stop].contiguous(memory_format=_layout_of(weight))


def _layout_of(tensor: torch.Tensor) -> torch.memory_format:
    """channels-last when ``tensor`` is stored channels-last (and not also plainly contiguous)."""
    if tensor.is_contiguous():
        return torch.contiguous_format
    if tensor.ndim == 5 and tensor.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    if tensor.ndim == 4 and tensor.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _conv(
    module: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``module``'s convolution (stride, padding, dilation) with another weight and bias."""
    assert isinstance(module, (nn.Conv2d, nn.Conv3d))
    function = F.conv3d if isinstance(module, nn.Conv3d) else F.conv2d
    return function(x, weight, bias, module.stride, module.padding, module.dilation, module.groups)
