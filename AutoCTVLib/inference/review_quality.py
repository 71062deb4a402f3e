"""Does the uncertainty point at what a physician will edit? Metrics near the contour and per slice.

Whole-body voxel scores are dominated by air, bone and muscle far from the CTV, which every model
gets right with near-zero uncertainty; they say little about review. These helpers measure it
where the edits happen. All volumes are (z, y, x) arrays on one grid; spacings are (x, y, z) mm.

* :func:`contour_band` — the evaluation band: voxels within ``radius`` of the reference or the
  predicted CTV (the union of both masks dilated by a Euclidean ball), interiors included. The
  radius is in voxels of the grid (``spacing_xyz_mm=None``: a ball in index units, so 7 voxels
  is 7 × the in-plane pixel size in-plane and 7 slices across) or in mm (physical ball).
* :func:`per_slice_error_area_mm2` — per axial slice k, the area (mm²) where the prediction and
  the reference disagree: the area a physician has to add or remove on that slice.
* :func:`per_slice_perimeter_mm` — per axial slice, the length (mm) of a mask's in-plane outline,
  counted as pixel edges between inside and outside (a staircase length: about 4/π times the
  length of a smooth outline; good for comparing slices, not as a true length).
* :func:`spearman`, :func:`partial_spearman` — rank correlation, and rank correlation with a
  third variable (e.g. slice size) held fixed: the Pearson correlation of the residuals of the
  ranks after a linear fit on the control's ranks.
* :func:`review_hits` — of the slices a review list names, how many are among the slices with
  the largest error area (optionally picked as distinct places, like the list itself).
* :func:`false_positive_components` — predicted components (26-connected) that do not touch the
  reference CTV: stray islands, each with the axial slices it lies on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from AutoCTVLib.inference.calibration import average_ranks


def contour_band(
    reference: np.ndarray,
    prediction: np.ndarray,
    radius: float = 7.0,
    spacing_xyz_mm: Sequence[float] | None = None,
) -> np.ndarray:
    """Voxels (bool, z, y, x) within ``radius`` of ``reference`` ∪ ``prediction``.

    Args:
        reference, prediction: masks (anything > 0 is inside), same shape.
        radius: ball radius; voxels when ``spacing_xyz_mm`` is ``None``, else mm.
        spacing_xyz_mm: voxel size (x, y, z) in mm for a physical ball.

    Returns:
        The union dilated by the ball (empty when both masks are empty).
    """
    ref = np.asarray(reference) > 0
    pred = np.asarray(prediction) > 0
    if ref.shape != pred.shape or ref.ndim != 3:
        raise ValueError(f"masks must be 3-D and of one shape, got {ref.shape} and {pred.shape}")
    if not (math.isfinite(radius) and radius >= 0):
        raise ValueError(f"radius must be a non-negative number, got {radius}")
    sampling = (1.0, 1.0, 1.0) if spacing_xyz_mm is None else _spacing_zyx(spacing_xyz_mm)
    union = ref | pred
    band = np.zeros(union.shape, dtype=bool)
    if not union.any():
        return band
    box = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(union.any(axis=others))
        margin = math.ceil(radius / sampling[axis]) + 1
        box.append(slice(max(0, present[0] - margin), present[-1] + margin + 1))
    crop = union[tuple(box)]
    distance = ndimage.distance_transform_edt(~crop, sampling=sampling)
    band[tuple(box)] = distance <= radius + 1e-6
    return band


def per_slice_error_area_mm2(
    prediction: np.ndarray, reference: np.ndarray, spacing_xyz_mm: Sequence[float]
) -> np.ndarray:
    """Area (mm²) of ``prediction`` ≠ ``reference`` on each axial slice k, shape (Z,)."""
    pred, ref = _masks(prediction, reference)
    spacing = _spacing_zyx(spacing_xyz_mm)
    return (pred != ref).sum(axis=(1, 2)).astype(np.float64) * (spacing[1] * spacing[2])


def per_slice_perimeter_mm(mask: np.ndarray, spacing_xyz_mm: Sequence[float]) -> np.ndarray:
    """In-plane outline length (mm) of ``mask`` on each axial slice, shape (Z,).

    Counts pixel edges between inside and outside (the grid border counts as outside): an edge
    between two x-neighbours is ``spacing_y`` long, one between two y-neighbours ``spacing_x``.
    """
    inside = np.pad(np.asarray(mask) > 0, ((0, 0), (1, 1), (1, 1)))
    spacing = _spacing_zyx(spacing_xyz_mm)
    edges_x = (inside[:, :, 1:] != inside[:, :, :-1]).sum(axis=(1, 2))
    edges_y = (inside[:, 1:, :] != inside[:, :-1, :]).sum(axis=(1, 2))
    return edges_x * spacing[1] + edges_y * spacing[2]


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation (ties share average ranks); ``nan`` if either is constant."""
    x, y = _paired(a, b)
    return _pearson(average_ranks(x), average_ranks(y))


def partial_spearman(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    control: Sequence[float] | np.ndarray,
) -> float:
    """Rank correlation of ``a`` and ``b`` with ``control`` held fixed (see the module docstring).

    ``nan`` when a residual is constant (e.g. ``a`` is a linear function of the control's rank).
    """
    x, y = _paired(a, b)
    _, z = _paired(a, control)
    rx, ry, rz = average_ranks(x), average_ranks(y), average_ranks(z)
    return _pearson(_residual(rx, rz), _residual(ry, rz))


@dataclass(frozen=True)
class ReviewHits:
    """How well a review list matches the slices with the most error.

    Attributes:
        listed: the review list (slice indices, most doubtful first).
        top_error_slices: the ``len(listed)`` slices with the largest error area (ties: lower
            index first; see :func:`review_hits` for the separation rule).
        hits: listed slices that are among ``top_error_slices``.
        near_hits: listed slices within ``tolerance`` slices of one of ``top_error_slices``.
    """

    listed: tuple[int, ...]
    top_error_slices: tuple[int, ...]
    hits: int
    near_hits: int

    @property
    def hit_rate(self) -> float:
        return self.hits / len(self.listed) if self.listed else math.nan

    @property
    def near_hit_rate(self) -> float:
        return self.near_hits / len(self.listed) if self.listed else math.nan


def review_hits(
    listed: Sequence[int],
    error_area: Sequence[float] | np.ndarray,
    tolerance: int = 0,
    min_separation: int = 1,
) -> ReviewHits:
    """Compare a review list with the per-slice error areas (see :class:`ReviewHits`).

    The top slices are the ``len(listed)`` slices with the largest positive error area, picked
    like the review list itself (:func:`AutoCTVLib.inference.review.slices_to_review`): with
    ``min_separation`` > 1, at least that many slices apart, so that each is a distinct place.
    A listed slice is a near hit when ``|listed − top| <= tolerance`` for some top slice.
    """
    from AutoCTVLib.inference.review import slices_to_review

    area = np.asarray(error_area, dtype=np.float64)
    if area.ndim != 1:
        raise ValueError(f"error_area must be one value per slice, got shape {area.shape}")
    chosen = tuple(int(k) for k in listed)
    if any(k < 0 or k >= area.size for k in chosen):
        raise ValueError(f"listed slices {chosen} lie outside 0..{area.size - 1}")
    top = tuple(slices_to_review(area, len(chosen), min_separation))
    hits = sum(k in top for k in chosen)
    near = sum(any(abs(k - t) <= tolerance for t in top) for k in chosen)
    return ReviewHits(chosen, top, hits, near)


@dataclass(frozen=True)
class StrayComponent:
    """A predicted component that does not touch the reference CTV.

    Attributes:
        voxels: its size in voxels.
        slices: the axial slices k it lies on, ascending.
    """

    voxels: int
    slices: tuple[int, ...]


def false_positive_components(
    prediction: np.ndarray, reference: np.ndarray
) -> list[StrayComponent]:
    """Predicted 26-connected components with no voxel in ``reference`` (largest first)."""
    pred, ref = _masks(prediction, reference)
    labels, count = ndimage.label(pred, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return []
    touching = np.zeros(count + 1, dtype=bool)
    touching[np.unique(labels[ref & pred])] = True
    found = []
    for index, window in enumerate(ndimage.find_objects(labels), start=1):
        if window is None or touching[index]:
            continue
        part = labels[window] == index
        present = np.flatnonzero(part.any(axis=(1, 2))) + window[0].start
        found.append(StrayComponent(int(part.sum()), tuple(int(k) for k in present)))
    return sorted(found, key=lambda component: -component.voxels)


# --------------------------------------------------------------------------- helpers


def _masks(prediction: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(prediction) > 0
    ref = np.asarray(reference) > 0
    if pred.shape != ref.shape or pred.ndim != 3:
        raise ValueError(f"masks must be 3-D and of one shape, got {pred.shape} and {ref.shape}")
    return pred, ref


def _spacing_zyx(spacing_xyz_mm: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(s) for s in spacing_xyz_mm)
    if len(values) != 3 or min(values) <= 0:
        raise ValueError(f"spacing must be three positive numbers (x, y, z) in mm, got {values}")
    return (values[2], values[1], values[0])


def _paired(a: object, b: object) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired values differ in length: {x.size} vs {y.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("values must be finite")
    return x, y


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x = x - x.mean() if x.size else x
    y = y - y.mean() if y.size else y
    denominator = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    if x.size < 2 or denominator <= 1e-12 * max(1.0, float(x.size)):
        return math.nan
    return float(np.dot(x, y) / denominator)


def _residual(values: np.ndarray, control: np.ndarray) -> np.ndarray:
    """``values`` minus their least-squares line on ``control``."""
    centred = control - control.mean()
    scale = float(np.dot(centred, centred))
    slope = float(np.dot(centred, values - values.mean())) / scale if scale > 0 else 0.0
    return values - values.mean() - slope * centred
