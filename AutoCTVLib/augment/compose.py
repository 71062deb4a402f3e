"""Apply transforms in sequence, and the thesis' augmentation set."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from AutoCTVLib.augment.base import RandomTransform
from AutoCTVLib.augment.flip import RandomFlip
from AutoCTVLib.augment.intensity import RandomIntensity
from AutoCTVLib.augment.noise import RandomGaussianNoise
from AutoCTVLib.augment.rotation import RandomRotation
from AutoCTVLib.augment.sample import Sample
from AutoCTVLib.augment.scale import RandomScale
from AutoCTVLib.augment.translation import RandomTranslation


class Compose:
    """Run ``transforms`` in order, all drawing from the one generator passed in."""

    def __init__(self, transforms: Sequence[RandomTransform]) -> None:
        transforms = list(transforms)
        for transform in transforms:
            if not callable(transform):
                raise ValueError(f"{transform!r} is not a transform")
        self.transforms = transforms

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if not isinstance(rng, np.random.Generator):
            raise TypeError("pass a numpy.random.Generator (np.random.default_rng(seed))")
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample


def thesis_augmentation(
    *,
    spacing_xyz_mm: Sequence[float] | None = None,
    max_angle_deg: float = 10.0,
    max_shift_voxels: int = 8,
    noise_variance: float = 0.001,
    flip_axes: Sequence[int] | None = None,
) -> Compose:
    """Rotation ≤ 10° (about z, y and x), flips (p 0.5 per axis), translation ≤ 8 voxels, then
    Gaussian noise of variance 0.001: the thesis' training augmentation.

    ``flip_axes`` (0 = z, 1 = y, 2 = x) limits the flips; ``None`` flips every axis as the
    thesis did. On a reoriented network grid (head up, anterior first, see
    :mod:`AutoCTVLib.preprocess.pipeline`) only the left-right flip (``[2]``) yields anatomy a
    real scan can show.
    """
    return Compose(
        [
            RandomRotation(max_angle_deg=max_angle_deg, spacing_xyz_mm=spacing_xyz_mm),
            RandomFlip(axes=flip_axes, p=0.5),
            RandomTranslation(max_voxels=max_shift_voxels),
            RandomGaussianNoise(variance=noise_variance),
        ]
    )


def segmenter_augmentation(
    *,
    spacing_xyz_mm: Sequence[float] | None = None,
    max_angle_deg: float = 5.0,
    max_scale_change: float = 0.1,
    max_gain: float = 0.1,
    max_offset: float = 0.05,
    max_noise_sd: float = 0.03,
    flip_left_right: bool = True,
) -> Compose:
    """The cascade segmenter's augmentation; each part is switched off by a zero (or false):

    * small rotation ≤ ``max_angle_deg`` about z, y and x (in mm);
    * isotropic zoom by up to ``max_scale_change`` (0.1: ±10 %);
    * intensity of the CT channel: gain ±``max_gain``, offset ±``max_offset``, noise SD up to
      ``max_noise_sd`` (image units, the [0, 1] window);
    * left-right flip (p 0.5; the only flip real anatomy shows on the reoriented grid).
    """
    transforms: list[RandomTransform] = []
    if max_angle_deg > 0:
        transforms.append(
            RandomRotation(max_angle_deg=max_angle_deg, spacing_xyz_mm=spacing_xyz_mm)
        )
    if max_scale_change > 0:
        transforms.append(RandomScale(max_change=max_scale_change))
    if max_gain > 0 or max_offset > 0 or max_noise_sd > 0:
        transforms.append(
            RandomIntensity(max_gain=max_gain, max_offset=max_offset, max_noise_sd=max_noise_sd)
        )
    if flip_left_right:
        transforms.append(RandomFlip(axes=[2], p=0.5))
    return Compose(transforms)
