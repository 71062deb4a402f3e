"""Label-noise simulation: labels drawn systematically too wide or too tight.

Thesis chapter 3 simulates annotator disagreement by dilating or eroding a clean label by ``n``
pixels, ``n`` drawn uniformly from a range (1–8 "low", 5–13 "high"), on 25 / 50 / 75 % of the
training samples. Here:

* :func:`shift_boundary` moves one mask's boundary outwards (``shift > 0``, dilation) or
  inwards (``shift < 0``, erosion) by ``|shift|`` pixels, or millimetres when a spacing is
  given: a background voxel joins the mask when its centre lies within ``|shift|`` of a mask
  voxel's centre (Euclidean distance), and a mask voxel leaves it when its centre lies within
  ``|shift|`` of a background voxel's centre. An integer shift in pixels equals ``n`` binary
  dilations (erosions) with a disc of radius ``n``. The array border is not treated as
  background (a mask touching it is not eroded from outside).
* :func:`simulate_label_noise` picks exactly ``round(share · N)`` samples of a batch of labels
  (seeded), and moves every class of each picked sample by one signed shift drawn for it
  (dilation or erosion with equal probability, size uniform in the range).
* :func:`annotator_style_plan` assigns phantom annotator styles ("wide", "tight", ...) to a
  share of cases, for 3D experiments with :class:`~AutoCTVLib.phantom.PhantomConfig`
  (its ``ctv`` is the styled label, ``ctv_reference`` the standard one).

Arrays are (y, x) or (z, y, x); spacings are given x first (``spacing_xyz_mm``), like the rest of
the library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: The thesis' noise ranges, in pixels of its 256 × 256 images.
THESIS_NOISE_RANGES_PX = {"low": (1, 8), "high": (5, 13)}
THESIS_IMAGE_SIZE = 256


def _sampling(ndim: int, spacing_xyz_mm: Sequence[float] | None) -> tuple[float, ...] | None:
    if spacing_xyz_mm is None:
        return None
    spacing = tuple(float(s) for s in spacing_xyz_mm)
    if len(spacing) != ndim or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(
            f"spacing_xyz_mm must hold {ndim} positive numbers for a {ndim}-D mask, got {spacing}"
        )
    return spacing[::-1]


def shift_boundary(
    mask: np.ndarray, shift: float, spacing_xyz_mm: Sequence[float] | None = None
) -> np.ndarray:
    """Dilate (``shift > 0``) or erode (``shift < 0``) a binary mask by ``|shift|``.

    Args:
        mask: (y, x) or (z, y, x); anything > 0 is inside.
        shift: signed distance in pixels (``spacing_xyz_mm`` None) or mm.
        spacing_xyz_mm: voxel spacing, x first (one entry per axis).

    Returns:
        A ``uint8`` 0/1 mask of the same shape. An empty mask stays empty; a mask without any
        background voxel cannot grow (nor be eroded from outside).
    """
    inside = np.asarray(mask) > 0
    sampling = _sampling(inside.ndim, spacing_xyz_mm)
    if not np.isfinite(shift):
        raise ValueError(f"shift must be a finite number, got {shift}")
    radius = abs(float(shift))
    if radius == 0 or not inside.any() or inside.all():
        return inside.astype(np.uint8)
    if shift > 0:
        distance_to_mask = ndimage.distance_transform_edt(~inside, sampling=sampling)
        return (inside | (distance_to_mask <= radius)).astype(np.uint8)
    distance_to_background = ndimage.distance_transform_edt(inside, sampling=sampling)
    return (inside & (distance_to_background > radius)).astype(np.uint8)


def scaled_noise_range(
    thesis_range_px: tuple[int, int], image_size: int, thesis_size: int = THESIS_IMAGE_SIZE
) -> tuple[int, int]:
    """A thesis pixel range (on 256-pixel images) expressed in pixels of ``image_size`` images.

    The ends are scaled and rounded inwards (at least 1 px): at 128 px, 1–8 becomes 1–4 and
    5–13 becomes 3–6 (2.5–6.5).
    """
    low, high = thesis_range_px
    if not 1 <= low <= high:
        raise ValueError(f"a noise range needs 1 <= low <= high, got {thesis_range_px}")
    scale = float(image_size) / float(thesis_size)
    scaled_low = max(1, int(np.ceil(low * scale - 1e-9)))
    scaled_high = max(scaled_low, int(np.floor(high * scale + 1e-9)))
    return scaled_low, scaled_high


@dataclass(frozen=True)
class NoisyLabels:
    """Result of :func:`simulate_label_noise`.

    Attributes:
        labels: ``uint8`` (N, n, *S), the labels with noise (clean samples copied unchanged).
        noisy: boolean (N,), True where the label was moved.
        shifts: float (N,), the signed shift applied (pixels or mm; 0 for clean samples).
    """

    labels: np.ndarray
    noisy: np.ndarray
    shifts: np.ndarray


def simulate_label_noise(
    labels: np.ndarray,
    share: float,
    shift_range: tuple[float, float],
    rng: np.random.Generator,
    *,
    spacing_xyz_mm: Sequence[float] | None = None,
    integer: bool = True,
) -> NoisyLabels:
    """Dilate or erode the labels of a share of samples (thesis chapter 3).

    Args:
        labels: (N, n, *S) binary labels, ``n`` classes per sample, S = (y, x) or (z, y, x).
        share: fraction of samples to corrupt, in [0, 1]; exactly ``round(share · N)`` are.
        shift_range: ``(low, high)`` size of the shift, pixels or mm, ``0 < low <= high``.
        rng: the random generator (which samples, how far, which direction).
        spacing_xyz_mm: voxel spacing for shifts in mm (``None``: pixels).
        integer: draw whole numbers ``low..high`` (inclusive, as the thesis' pixel counts);
            otherwise a uniform real number in ``[low, high]``.
    """
    labels = np.asarray(labels)
    if labels.ndim not in (4, 5):
        raise ValueError(f"labels must be (N, n, y, x) or (N, n, z, y, x), got {labels.shape}")
    if not 0.0 <= float(share) <= 1.0:
        raise ValueError(f"the noisy share must be in [0, 1], got {share}")
    low, high = (float(v) for v in shift_range)
    if not 0 < low <= high:
        raise ValueError(f"shift_range needs 0 < low <= high, got {shift_range}")
    count = len(labels)
    n_noisy = round(float(share) * count)
    chosen = np.sort(rng.choice(count, size=n_noisy, replace=False)) if n_noisy else []
    noisy = np.zeros(count, dtype=bool)
    shifts = np.zeros(count, dtype=np.float64)
    result = (labels > 0).astype(np.uint8)
    for index in chosen:
        if integer:
            size = float(rng.integers(int(np.ceil(low)), int(np.floor(high)) + 1))
        else:
            size = float(rng.uniform(low, high))
        sign = 1.0 if rng.random() < 0.5 else -1.0
        shifts[index] = sign * size
        noisy[index] = True
        for channel in range(labels.shape[1]):
            result[index, channel] = shift_boundary(
                labels[index, channel], shifts[index], spacing_xyz_mm
            )
    return NoisyLabels(labels=result, noisy=noisy, shifts=shifts)


def annotator_style_plan(
    n_cases: int,
    noisy_share: float,
    rng: np.random.Generator,
    styles: Sequence[str] = ("wide", "tight"),
) -> list[str]:
    """Annotator style per case: ``round(noisy_share · n_cases)`` cases get one of ``styles``
    (in turn, so wide and tight are balanced), the others "standard"; which cases is seeded."""
    if n_cases < 0 or not 0.0 <= float(noisy_share) <= 1.0:
        raise ValueError(f"need n_cases >= 0 and a share in [0, 1], got {n_cases}, {noisy_share}")
    if not styles:
        raise ValueError("at least one annotator style is needed")
    plan = ["standard"] * n_cases
    n_styled = round(float(noisy_share) * n_cases)
    chosen = np.sort(rng.choice(n_cases, size=n_styled, replace=False)) if n_styled else []
    for order, index in enumerate(chosen):
        plan[int(index)] = styles[order % len(styles)]
    return plan
