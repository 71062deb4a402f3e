"""Padding helpers: grow a (z, y, x) array to a minimum shape or to a multiple of a stride.

A U-Net with L resolution levels needs every spatial size divisible by ``2 ** (L - 1)``; the
padding is split evenly (extra voxel at the end) and :func:`unpad_slices` gives the slices that
cut the original region back out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

PadWidths = tuple[tuple[int, int], ...]


def pad_widths_to_shape(shape: Sequence[int], min_shape: Sequence[int]) -> PadWidths:
    """(before, after) per axis so that every axis reaches at least ``min_shape``."""
    if len(shape) != len(min_shape):
        raise ValueError(f"shape {tuple(shape)} and minimum {tuple(min_shape)} differ in length")
    widths = []
    for size, minimum in zip(shape, min_shape):
        missing = max(0, int(minimum) - int(size))
        widths.append((missing // 2, missing - missing // 2))
    return tuple(widths)


def pad_widths_to_multiple(shape: Sequence[int], multiple: int | Sequence[int]) -> PadWidths:
    """(before, after) per axis so that every size becomes a multiple of ``multiple``."""
    multiples = [int(multiple)] * len(shape) if isinstance(multiple, int) else list(multiple)
    if len(multiples) != len(shape) or min(multiples) < 1:
        raise ValueError(f"multiple must be positive integers for each axis, got {multiple}")
    target = [math.ceil(int(size) / m) * m for size, m in zip(shape, multiples)]
    return pad_widths_to_shape(shape, target)


def pad_array(array: np.ndarray, widths: PadWidths, value: float = 0.0) -> np.ndarray:
    """Constant padding of the last ``len(widths)`` axes (leading axes are left alone)."""
    full = ((0, 0),) * (array.ndim - len(widths)) + tuple(widths)
    if not any(a or b for a, b in full):
        return array
    return np.pad(array, full, mode="constant", constant_values=value)


def unpad_slices(widths: PadWidths) -> tuple[slice, ...]:
    """Slices of the padded trailing axes that hold the original array."""
    return tuple(slice(before, -after if after else None) for before, after in widths)
