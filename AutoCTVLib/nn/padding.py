"""Pad a tensor's spatial axes up to a multiple (what a U-Net with pooling needs) and crop back.

Padding is split evenly between both ends of each axis (the extra voxel, if odd, at the end),
so a flipped input gives a flipped output. Tensors are (N, C, *spatial) with 2 or 3 spatial
axes ordered (z, y, x) or (y, x).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional

from AutoCTVLib.nn.config import PAD_MODES


@dataclass(frozen=True)
class Padding:
    """What :func:`pad_to_multiple` added: ``(before, after)`` voxels per spatial axis."""

    before_after: tuple[tuple[int, int], ...]

    @property
    def is_empty(self) -> bool:
        return all(before == 0 and after == 0 for before, after in self.before_after)


def padding_for(spatial_shape: tuple[int, ...], multiple: int) -> Padding:
    """The padding that brings every axis of ``spatial_shape`` up to a multiple of ``multiple``."""
    if multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple}")
    pairs = []
    for size in spatial_shape:
        total = (-size) % multiple
        pairs.append((total // 2, total - total // 2))
    return Padding(tuple(pairs))


def pad_to_multiple(
    x: torch.Tensor, multiple: int, mode: str = "replicate"
) -> tuple[torch.Tensor, Padding]:
    """Pad the spatial axes of ``x`` (N, C, *S) to multiples of ``multiple``.

    Args:
        x: tensor with 2 or 3 spatial axes after batch and channel.
        multiple: e.g. ``2 ** (levels - 1)`` for a U-Net with that many levels.
        mode: ``"replicate"`` (edge values) or ``"zeros"``.

    Returns:
        The padded tensor (``x`` itself when nothing is needed) and the :class:`Padding` to
        undo with :func:`crop_padding`.
    """
    if mode not in PAD_MODES:
        raise ValueError(f"mode must be one of {', '.join(PAD_MODES)}, got {mode!r}")
    if x.ndim not in (4, 5):
        raise ValueError(
            f"expected a (N, C, *spatial) tensor with 2 or 3 spatial axes, got {x.ndim}D"
        )
    padding = padding_for(tuple(x.shape[2:]), multiple)
    if padding.is_empty:
        return x, padding
    # functional.pad takes pairs for the last axis first.
    flat = [amount for pair in reversed(padding.before_after) for amount in pair]
    if mode == "zeros":
        return functional.pad(x, flat, mode="constant", value=0.0), padding
    return functional.pad(x, flat, mode="replicate"), padding


def crop_padding(x: torch.Tensor, padding: Padding) -> torch.Tensor:
    """Undo :func:`pad_to_multiple` on a tensor with the padded spatial size (a view)."""
    if padding.is_empty:
        return x
    slices = [slice(None), slice(None)]
    for (before, after), size in zip(padding.before_after, x.shape[2:]):
        slices.append(slice(before, size - after))
    return x[tuple(slices)]
