"""The interface shared by the random transforms."""

from __future__ import annotations

from typing import Any

import numpy as np

from AutoCTVLib.augment.sample import Sample


class RandomTransform:
    """Draw parameters with :meth:`sample_parameters`, then apply them with :meth:`apply`.

    ``transform(sample, rng)`` does both. ``sample_parameters`` returns ``None`` when the
    transform is skipped for this draw (probability ``1 - p``).
    """

    def sample_parameters(self, rng: np.random.Generator, spatial_dims: int) -> Any:
        raise NotImplementedError

    def apply(self, sample: Sample, parameters: Any) -> Sample:
        raise NotImplementedError

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if not isinstance(rng, np.random.Generator):
            raise TypeError("pass a numpy.random.Generator (np.random.default_rng(seed))")
        parameters = self.sample_parameters(rng, sample.spatial_dims)
        if parameters is None:
            return sample
        return self.apply(sample, parameters)


def check_probability(p: float) -> float:
    """Return ``p`` as a float in [0, 1] or raise ``ValueError``."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"probability p must be in [0, 1], got {p!r}")
    return float(p)
