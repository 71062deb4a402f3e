"""Intensity changes of the CT channel: gain, offset and Gaussian noise.

Only the first image channel (the windowed CT in [0, 1]) changes; further channels (a cascade
locator's probability) and the label and weight stay as they are.
"""

from __future__ import annotations

import math

import numpy as np

from AutoCTVLib.augment.base import RandomTransform, check_probability
from AutoCTVLib.augment.sample import Sample


def adjust_intensity(
    sample: Sample, gain: float, offset: float, noise_sd: float = 0.0, seed: int = 0
) -> Sample:
    """CT channel → ``gain · ct + offset + noise`` (noise: SD ``noise_sd`` from ``seed``)."""
    for name, value in (("gain", gain), ("offset", offset), ("noise_sd", noise_sd)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")
    if noise_sd < 0:
        raise ValueError(f"noise_sd must be non-negative, got {noise_sd}")
    image = np.array(sample.image, dtype=np.float32, copy=True)
    ct = image if image.ndim == sample.spatial_dims else image[0]
    ct *= np.float32(gain)
    ct += np.float32(offset)
    if noise_sd > 0:
        noise = np.random.default_rng(seed).standard_normal(ct.shape, dtype=np.float32)
        ct += np.float32(noise_sd) * noise
    return sample.replace(image=image)


class RandomIntensity(RandomTransform):
    """Gain from [1 − max_gain, 1 + max_gain], offset from ±max_offset, and noise of SD drawn
    from [0, max_noise_sd], on the CT channel (image units: the [0, 1] window)."""

    def __init__(
        self,
        *,
        max_gain: float = 0.1,
        max_offset: float = 0.05,
        max_noise_sd: float = 0.03,
        p: float = 1.0,
    ) -> None:
        for name, value in (
            ("max_gain", max_gain),
            ("max_offset", max_offset),
            ("max_noise_sd", max_noise_sd),
        ):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        if max_gain >= 1:
            raise ValueError(f"max_gain must be below 1, got {max_gain}")
        self.max_gain, self.max_offset = float(max_gain), float(max_offset)
        self.max_noise_sd = float(max_noise_sd)
        self.p = check_probability(p)

    def sample_parameters(
        self, rng: np.random.Generator, spatial_dims: int
    ) -> tuple[float, float, float, int] | None:
        if rng.random() >= self.p:
            return None
        gain = float(rng.uniform(1 - self.max_gain, 1 + self.max_gain))
        offset = float(rng.uniform(-self.max_offset, self.max_offset))
        noise_sd = float(rng.uniform(0.0, self.max_noise_sd))
        return gain, offset, noise_sd, int(rng.integers(0, 2**63 - 1))

    def apply(self, sample: Sample, parameters: tuple[float, float, float, int]) -> Sample:
        return adjust_intensity(sample, *parameters)
