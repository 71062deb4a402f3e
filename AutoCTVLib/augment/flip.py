"""Mirror along spatial axes (exact; a flip applied twice is the identity)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from AutoCTVLib.augment.base import RandomTransform, check_probability
from AutoCTVLib.augment.sample import Sample


def flip(sample: Sample, axes: Sequence[int]) -> Sample:
    """Flip image, label and weight along ``axes``: spatial indices, 0 = z (or y in 2D) …"""
    dims = sample.spatial_dims
    axes = tuple(axes)
    if any(axis not in range(dims) for axis in axes):
        raise ValueError(f"flip axes must be spatial axis indices 0..{dims - 1}, got {axes}")
    if not axes:
        return sample

    def mirrored(array: np.ndarray | None) -> np.ndarray | None:
        if array is None:
            return None
        offset = array.ndim - dims
        return np.ascontiguousarray(np.flip(array, axis=tuple(axis + offset for axis in axes)))

    return sample.replace(
        image=mirrored(sample.image), label=mirrored(sample.label), weight=mirrored(sample.weight)
    )


class RandomFlip(RandomTransform):
    """Flip each of ``axes`` independently with probability ``p`` (thesis: x, y and z).

    Args:
        axes: spatial axis indices (0 = z, 1 = y, 2 = x in 3D; 0 = y, 1 = x in 2D); ``None``
            means every spatial axis.
        p: probability per axis.
    """

    def __init__(self, *, axes: Sequence[int] | None = None, p: float = 0.5) -> None:
        if axes is not None:
            axes = tuple(axes)
            if any(axis not in (0, 1, 2) for axis in axes) or len(set(axes)) != len(axes):
                raise ValueError(f"axes must be distinct spatial indices, got {axes}")
        self.axes = axes
        self.p = check_probability(p)

    def sample_parameters(
        self, rng: np.random.Generator, spatial_dims: int
    ) -> tuple[int, ...] | None:
        candidates = tuple(range(spatial_dims)) if self.axes is None else self.axes
        if any(axis >= spatial_dims for axis in candidates):
            raise ValueError(f"flip axes {candidates} do not exist in {spatial_dims}D")
        chosen = tuple(axis for axis in candidates if rng.random() < self.p)
        return chosen or None

    def apply(self, sample: Sample, parameters: tuple[int, ...]) -> Sample:
        return flip(sample, parameters)
