"""Isotropic zoom about the array centre (in millimetres when the voxel spacing is given).

A factor above 1 enlarges the anatomy (the output shows a smaller region), below 1 shrinks it.
Interpolation as :mod:`.rotation`: image linear (edge values continue outside the field of
view), label linear then thresholded at 0.5 and 0 outside, weight map nearest neighbour and 0
(unknown) outside the field of view.
"""

from __future__ import annotations

import math

import numpy as np

from AutoCTVLib.augment.affine import resample_sample
from AutoCTVLib.augment.base import RandomTransform, check_probability
from AutoCTVLib.augment.sample import Sample


def scale(sample: Sample, factor: float) -> Sample:
    """Zoom every array of ``sample`` (spatial axes last) by ``factor`` about the grid centre.

    The same factor applies to every axis in millimetres, so anisotropic grids stay undistorted
    (a zoom in mm is the same zoom in voxels along each axis).
    """
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a positive number, got {factor}")
    if factor == 1.0:
        return sample
    dims = sample.spatial_dims
    matrix = np.eye(dims) / factor
    centre = (np.asarray(sample.spatial_shape, dtype=float) - 1.0) / 2.0
    offset = centre - matrix @ centre

    return resample_sample(sample, matrix, offset)


class RandomScale(RandomTransform):
    """Zoom by a factor drawn log-uniformly from [1 / (1 + max_change), 1 + max_change].

    Args:
        max_change: 0.1 zooms by at most ±10 %.
        p: probability of zooming at all.
    """

    def __init__(self, *, max_change: float = 0.1, p: float = 1.0) -> None:
        if not (isinstance(max_change, (int, float)) and 0.0 <= max_change < 1.0):
            raise ValueError(f"max_change must be in [0, 1), got {max_change!r}")
        self.max_change = float(max_change)
        self.p = check_probability(p)

    def sample_parameters(self, rng: np.random.Generator, spatial_dims: int) -> float | None:
        if rng.random() >= self.p or self.max_change == 0.0:
            return None
        bound = math.log1p(self.max_change)
        return float(math.exp(rng.uniform(-bound, bound)))

    def apply(self, sample: Sample, parameters: float) -> Sample:
        return scale(sample, parameters)
