"""Additive Gaussian noise on the image (label and weight untouched)."""

from __future__ import annotations

import math

import numpy as np

from AutoCTVLib.augment.base import RandomTransform, check_probability
from AutoCTVLib.augment.sample import Sample


def add_gaussian_noise(sample: Sample, variance: float, seed: int) -> Sample:
    """Add zero-mean Gaussian noise of ``variance`` (image units²) drawn from ``seed``.

    The thesis used variance 0.001 on the [0, 1]-scaled CT (standard deviation ≈ 0.032).
    """
    if not math.isfinite(variance) or variance < 0:
        raise ValueError(f"variance must be a non-negative number, got {variance}")
    if variance == 0:
        return sample
    noise_rng = np.random.default_rng(seed)
    noise = noise_rng.standard_normal(sample.image.shape, dtype=np.float32)
    noisy = sample.image.astype(np.float32) + np.float32(math.sqrt(variance)) * noise
    return sample.replace(image=noisy)


class RandomGaussianNoise(RandomTransform):
    """Add noise of fixed ``variance`` with probability ``p``; the noise seed comes from ``rng``."""

    def __init__(self, *, variance: float = 0.001, p: float = 1.0) -> None:
        if isinstance(variance, bool) or not isinstance(variance, (int, float)):
            raise ValueError(f"variance must be a number, got {variance!r}")
        if not math.isfinite(variance) or variance < 0:
            raise ValueError(f"variance must be a non-negative number, got {variance}")
        self.variance = float(variance)
        self.p = check_probability(p)

    def sample_parameters(
        self, rng: np.random.Generator, spatial_dims: int
    ) -> tuple[float, int] | None:
        if rng.random() >= self.p:
            return None
        return self.variance, int(rng.integers(0, 2**63 - 1))

    def apply(self, sample: Sample, parameters: tuple[float, int]) -> Sample:
        variance, seed = parameters
        return add_gaussian_noise(sample, variance, seed)
