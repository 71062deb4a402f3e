"""Joint image + label (+ weight map) augmentation for training (numpy/scipy, CPU).

Each random transform draws its parameters from a ``numpy.random.Generator`` and calls a
deterministic twin, so the same seed gives the same result and the twins can be tested alone:

============================  ===============================  ===========================
random transform              parameters                       deterministic twin
============================  ===============================  ===========================
:class:`RandomRotation`       angles in degrees                :func:`rotate`
:class:`RandomFlip`           spatial axes to flip             :func:`flip`
:class:`RandomTranslation`    integer voxel shifts             :func:`translate`
:class:`RandomGaussianNoise`  variance and a noise seed        :func:`add_gaussian_noise`
:class:`RandomScale`          zoom factor                      :func:`scale`
:class:`RandomIntensity`      gain, offset, noise SD, seed     :func:`adjust_intensity`
============================  ===============================  ===========================

:func:`thesis_augmentation` composes the thesis' set: rotation ≤ 10°, flips on x, y and z,
translation ≤ 8 voxels, Gaussian noise of variance 0.001 on the [0, 1]-scaled image.
:func:`segmenter_augmentation` composes the cascade segmenter's set (small rotation, zoom,
CT-channel intensity, left-right flip), each part switchable for an ablation.

For sparse-slice completion augment the CT, the full label and the annotation mask as the
weight map, and build the extra input channels (sparse label = label × mask, mask) afterwards.
"""

from __future__ import annotations

from AutoCTVLib.augment.compose import Compose, segmenter_augmentation, thesis_augmentation
from AutoCTVLib.augment.flip import RandomFlip, flip
from AutoCTVLib.augment.intensity import RandomIntensity, adjust_intensity
from AutoCTVLib.augment.noise import RandomGaussianNoise, add_gaussian_noise
from AutoCTVLib.augment.rotation import RandomRotation, rotate, rotation_matrix
from AutoCTVLib.augment.sample import Sample
from AutoCTVLib.augment.scale import RandomScale, scale
from AutoCTVLib.augment.translation import RandomTranslation, translate

__all__ = [
    "Compose",
    "RandomFlip",
    "RandomGaussianNoise",
    "RandomIntensity",
    "RandomRotation",
    "RandomScale",
    "RandomTranslation",
    "Sample",
    "add_gaussian_noise",
    "adjust_intensity",
    "flip",
    "rotate",
    "rotation_matrix",
    "scale",
    "segmenter_augmentation",
    "thesis_augmentation",
    "translate",
]
