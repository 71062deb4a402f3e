"""Shift by whole voxels (exact, no interpolation).

Voxels shifted in from outside the field of view take the edge value in the image, 0 in the
label and 0 (unknown) in the weight map.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from AutoCTVLib.augment.base import RandomTransform, check_probability
from AutoCTVLib.augment.sample import Sample


def _shift(array: np.ndarray, shifts: Sequence[int], edge: bool) -> np.ndarray:
    """Shift the last ``len(shifts)`` axes; a positive shift moves content to higher indices."""
    offset = array.ndim - len(shifts)
    kept = [slice(None)] * array.ndim
    widths = [(0, 0)] * array.ndim
    for axis, shift in enumerate(shifts, start=offset):
        size = array.shape[axis]
        shift = max(-size, min(size, int(shift)))
        if shift > 0:
            kept[axis] = slice(0, size - shift)
            widths[axis] = (shift, 0)
        elif shift < 0:
            kept[axis] = slice(-shift, size)
            widths[axis] = (0, -shift)
    cropped = array[tuple(kept)]
    if edge and all(n > 0 for n in cropped.shape):
        return np.pad(cropped, widths, mode="edge")
    return np.pad(cropped, widths, mode="constant", constant_values=0)


def translate(sample: Sample, shift_voxels: Sequence[int]) -> Sample:
    """Shift every array by ``shift_voxels`` (integers, (z, y, x) or (y, x))."""
    dims = sample.spatial_dims
    shifts = tuple(shift_voxels)
    if len(shifts) != dims or not all(isinstance(s, (int, np.integer)) for s in shifts):
        raise ValueError(f"shift_voxels needs {dims} integers, got {shift_voxels}")
    if not any(shifts):
        return sample
    return sample.replace(
        image=_shift(sample.image, shifts, edge=True),
        label=None if sample.label is None else _shift(sample.label, shifts, edge=False),
        weight=None if sample.weight is None else _shift(sample.weight, shifts, edge=False),
    )


class RandomTranslation(RandomTransform):
    """Shift by integers drawn uniformly from [-max_voxels, max_voxels] per axis (thesis: 8).

    Args:
        max_voxels: largest shift per axis, in voxels.
        p: probability of shifting at all.
    """

    def __init__(self, *, max_voxels: int = 8, p: float = 1.0) -> None:
        if isinstance(max_voxels, bool) or not isinstance(max_voxels, int) or max_voxels < 0:
            raise ValueError(f"max_voxels must be a non-negative integer, got {max_voxels!r}")
        self.max_voxels = max_voxels
        self.p = check_probability(p)

    def sample_parameters(
        self, rng: np.random.Generator, spatial_dims: int
    ) -> tuple[int, ...] | None:
        if rng.random() >= self.p:
            return None
        shifts = rng.integers(-self.max_voxels, self.max_voxels, size=spatial_dims, endpoint=True)
        return tuple(int(s) for s in shifts)

    def apply(self, sample: Sample, parameters: tuple[int, ...]) -> Sample:
        return translate(sample, parameters)
