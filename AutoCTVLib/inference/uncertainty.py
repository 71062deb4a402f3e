"""Voxel uncertainty from Monte-Carlo dropout samples of a binary (CTV / background) model.

Each MC sample t gives a foreground probability ``p_t`` per voxel. With ``p̄ = mean_t p_t`` and
the binary entropy ``H(p) = −p log p − (1 − p) log(1 − p)`` (0 log 0 = 0):

* ``mean_prob``          p̄, the probability the segmentation is thresholded on.
* ``entropy``            predictive entropy H(p̄): total uncertainty.
* ``expected_entropy``   mean_t H(p_t): the part every sample agrees is ambiguous (aleatoric).
* ``mutual_information`` H(p̄) − mean_t H(p_t): disagreement between samples (epistemic,
  the BALD score). H is concave, so 0 ≤ MI ≤ H(p̄); float round-off is clipped into that range.
* ``variance``           mean_t (p_t − p̄)²: population variance (divides by T, 0 for T = 1).

Entropies are in **bits** by default (log base 2): a binary entropy then lies in [0, 1], 1 at
p = 0.5, so maps of different cases and models share one colour scale. ``unit="nats"``
(natural log, maximum ln 2 ≈ 0.693) is available.

All maps are float32 arrays indexed (z, y, x) on the grid the samples were given on.
:class:`MCAccumulator` computes them in one pass with memory for a few volumes, whatever the
number of samples (Welford's running mean and variance plus a running mean of H(p_t)).

Summaries (see :func:`summarise_uncertainty`):

* **boundary band**: voxels whose centre lies within ``band_mm`` (default 2 mm) of a voxel on
  the other side of the p̄ = 0.5 surface, i.e. both sides of the predicted CTV contour.
* **review region** R = boundary band ∪ {voxels with 0.05 < p̄ < 0.95}; the second part
  catches doubtful areas away from the contour (a possible extra lobe, a missed one).
* **case score** = mean uncertainty (entropy by default, bits) over R, in [0, 1]; 0 when R is
  empty (nothing predicted and nothing doubtful). A mean over a region tied to the contour does
  not grow with CTV size, so cases are comparable; it grows when the probability falls off
  slowly across the contour or when samples disagree.
* **per-slice score** = for each axial slice k of the grid, the uncertainty summed over R ∩ slice
  k times the pixel area (mm²): an entropy-weighted area of doubtful contour, which ranks slices
  by how much of their contour a reviewer is likely to correct. ``reduction="mean"`` gives the
  mean over R ∩ slice k instead (favours small, very doubtful slices such as the CTV's ends).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import xlogy

from AutoCTVLib.volume import Geometry

ENTROPY_UNITS = ("bits", "nats")
MEASURES = ("entropy", "mutual_information", "expected_entropy", "variance")
_PROB_TOLERANCE = 1e-4


def binary_entropy(prob: np.ndarray, unit: str = "bits") -> np.ndarray:
    """Binary entropy of foreground probabilities ``prob`` (any shape), float32, 0 at p ∈ {0, 1}."""
    scale = np.float32(_log_scale(unit))
    p = np.clip(np.asarray(prob, dtype=np.float32), 0.0, 1.0)
    q = np.float32(1.0) - p
    nats = -(xlogy(p, p) + xlogy(q, q))
    return np.maximum(nats, 0.0, dtype=np.float32) * scale


@dataclass(frozen=True)
class UncertaintyMaps:
    """Per-voxel MC-dropout statistics, float32 arrays (z, y, x); see the module docstring."""

    mean_prob: np.ndarray
    entropy: np.ndarray
    expected_entropy: np.ndarray
    mutual_information: np.ndarray
    variance: np.ndarray
    n_samples: int
    unit: str = "bits"

    def measure(self, name: str) -> np.ndarray:
        """The map called ``name`` (one of :data:`MEASURES`)."""
        if name not in MEASURES:
            raise ValueError(f"unknown uncertainty measure {name!r}; choose one of {MEASURES}")
        return getattr(self, name)

    def to_dict(self) -> dict[str, object]:
        """Provenance of how the maps were made (no arrays)."""
        return {
            "n_samples": self.n_samples,
            "entropy_unit": self.unit,
            "variance": "population (divides by the number of samples)",
        }


class MCAccumulator:
    """Streaming MC statistics: ``add`` one probability map per sample, then ``result()``.

    Memory holds three float32 running volumes (mean, sum of squared deviations, mean
    entropy) plus per-sample temporaries, independent of the number of samples.
    """

    def __init__(self, unit: str = "bits") -> None:
        _log_scale(unit)
        self.unit = unit
        self._count = 0
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None
        self._mean_entropy: np.ndarray | None = None

    @property
    def n_samples(self) -> int:
        return self._count

    def add(self, prob_sample: object) -> None:
        """Add one sample's foreground probabilities (array or tensor, (z, y, x), in [0, 1])."""
        sample = _as_prob_array(prob_sample)
        if self._mean is None:
            self._mean = np.zeros(sample.shape, dtype=np.float32)
            self._m2 = np.zeros(sample.shape, dtype=np.float32)
            self._mean_entropy = np.zeros(sample.shape, dtype=np.float32)
        elif sample.shape != self._mean.shape:
            raise ValueError(
                f"sample shape {sample.shape} differs from earlier samples {self._mean.shape}"
            )
        assert self._m2 is not None and self._mean_entropy is not None
        self._count += 1
        delta = sample - self._mean
        self._mean += delta / self._count
        self._m2 += delta * (sample - self._mean)
        self._mean_entropy += (binary_entropy(sample, self.unit) - self._mean_entropy) / (
            self._count
        )

    def result(self) -> UncertaintyMaps:
        """The maps for the samples added so far (the accumulator can keep going afterwards)."""
        if self._mean is None or self._m2 is None or self._mean_entropy is None:
            raise ValueError("no MC samples were added")
        mean_prob = np.clip(self._mean, 0.0, 1.0)
        variance = np.maximum(self._m2 / self._count, 0.0).astype(np.float32)
        return _finish(mean_prob, self._mean_entropy.copy(), variance, self._count, self.unit)


def uncertainty_from_samples(samples: object, unit: str = "bits") -> UncertaintyMaps:
    """The same maps from all samples at once, ``samples`` shaped (T, z, y, x) (reference
    implementation; uses T times the memory of :class:`MCAccumulator`)."""
    stack = _as_prob_array(samples, ndim=4).astype(np.float64)
    if stack.shape[0] < 1:
        raise ValueError("no MC samples were given")
    mean_prob = stack.mean(axis=0)
    variance = stack.var(axis=0)
    expected_entropy = binary_entropy(stack, unit).astype(np.float64).mean(axis=0)
    return _finish(
        mean_prob.astype(np.float32),
        expected_entropy.astype(np.float32),
        variance.astype(np.float32),
        stack.shape[0],
        unit,
    )


def _finish(
    mean_prob: np.ndarray,
    expected_entropy: np.ndarray,
    variance: np.ndarray,
    n_samples: int,
    unit: str,
) -> UncertaintyMaps:
    entropy = binary_entropy(mean_prob, unit)
    mutual_information = np.clip(entropy - expected_entropy, 0.0, entropy).astype(np.float32)
    expected_entropy = np.minimum(expected_entropy, entropy).astype(np.float32)
    return UncertaintyMaps(
        mean_prob=mean_prob.astype(np.float32),
        entropy=entropy,
        expected_entropy=expected_entropy,
        mutual_information=mutual_information,
        variance=variance.astype(np.float32),
        n_samples=int(n_samples),
        unit=unit,
    )


# --------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class UncertaintySummary:
    """Case and per-slice scores (see the module docstring for the definitions).

    Attributes:
        case_score: mean ``measure`` over the review region (entropy: bits, in [0, 1]).
        per_slice_score: one value per axial slice k (length Z); mm²-weighted sum by default.
        region_voxels: size of the review region R in voxels.
        measure, reduction, band_mm, prob_range: the settings used.
    """

    case_score: float
    per_slice_score: np.ndarray
    region_voxels: int
    measure: str
    reduction: str
    band_mm: float
    prob_range: tuple[float, float]

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly summary for provenance and reports."""
        return {
            "case_score": self.case_score,
            "per_slice_score": [float(v) for v in self.per_slice_score],
            "region_voxels": self.region_voxels,
            "measure": self.measure,
            "reduction": self.reduction,
            "band_mm": self.band_mm,
            "prob_range": list(self.prob_range),
        }


def boundary_band(
    mean_prob: np.ndarray,
    spacing_xyz_mm: Geometry | Sequence[float],
    band_mm: float = 2.0,
    threshold: float = 0.5,
) -> np.ndarray:
    """Voxels (bool, z, y, x) within ``band_mm`` of the ``threshold`` iso-surface, both sides.

    A voxel belongs to the band when the centre of a voxel on the other side of the threshold
    lies within ``band_mm`` of its centre. ``band_mm`` is raised to the smallest voxel spacing
    so the voxels touching the surface are always included. Empty when no voxel or every
    voxel is above the threshold (there is no contour).
    """
    spacing_zyx = _spacing_zyx(spacing_xyz_mm)
    if band_mm < 0:
        raise ValueError(f"band_mm must not be negative, got {band_mm}")
    foreground = np.asarray(mean_prob) >= threshold
    if not foreground.any() or foreground.all():
        return np.zeros(foreground.shape, dtype=bool)
    reach = max(float(band_mm), min(spacing_zyx)) + 1e-6
    # Distances only matter within ``reach`` of the foreground: work on its bounding box plus a
    # margin (identical result, much less work for a small CTV in a large CT).
    box = []
    for axis, spacing in enumerate(spacing_zyx):
        other_axes = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(foreground.any(axis=other_axes))
        margin = math.ceil(reach / spacing) + 1
        box.append(slice(max(0, present[0] - margin), present[-1] + margin + 1))
    crop = foreground[tuple(box)]
    inside = ndimage.distance_transform_edt(crop, sampling=spacing_zyx)
    outside = ndimage.distance_transform_edt(~crop, sampling=spacing_zyx)
    band = np.zeros(foreground.shape, dtype=bool)
    band[tuple(box)] = (crop & (inside <= reach)) | (~crop & (outside <= reach))
    return band


def review_region(
    mean_prob: np.ndarray,
    spacing_xyz_mm: Geometry | Sequence[float],
    band_mm: float = 2.0,
    prob_range: tuple[float, float] = (0.05, 0.95),
) -> np.ndarray:
    """Boundary band ∪ {prob_range[0] < p̄ < prob_range[1]} (bool, z, y, x)."""
    low, high = prob_range
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"prob_range must satisfy 0 <= low < high <= 1, got {prob_range}")
    prob = np.asarray(mean_prob)
    return boundary_band(prob, spacing_xyz_mm, band_mm) | ((prob > low) & (prob < high))


def summarise_uncertainty(
    maps: UncertaintyMaps,
    spacing_xyz_mm: Geometry | Sequence[float],
    *,
    measure: str = "entropy",
    reduction: str = "sum",
    band_mm: float = 2.0,
    prob_range: tuple[float, float] = (0.05, 0.95),
) -> UncertaintySummary:
    """Case score and per-axial-slice scores of ``maps`` (see the module docstring).

    Args:
        maps: the MC statistics on a grid with voxel size ``spacing_xyz_mm``.
        spacing_xyz_mm: a :class:`Geometry` or the voxel size (x, y, z) in mm.
        measure: which map is scored (default the predictive entropy).
        reduction: per-slice "sum" (× pixel area, mm²) or "mean".
        band_mm: half-width of the boundary band in mm.
        prob_range: open interval of mean probability counted as doubtful.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    measured = maps.measure(measure)
    region = review_region(maps.mean_prob, spacing_xyz_mm, band_mm, prob_range)
    # Work on the region's bounding box only (the rest adds nothing): for a CTV in a large CT
    # this avoids float64 copies of the whole volume.
    box = _bounding_box(region)
    values = measured[box].astype(np.float64)
    region_in_box = region[box]
    region_voxels = int(region_in_box.sum())
    case_score = float(values[region_in_box].mean()) if region_voxels else 0.0
    per_slice_sum = np.zeros(region.shape[0], dtype=np.float64)
    per_slice_sum[box[0]] = np.where(region_in_box, values, 0.0).sum(axis=(1, 2))
    if reduction == "sum":
        spacing_zyx = _spacing_zyx(spacing_xyz_mm)
        per_slice = per_slice_sum * (spacing_zyx[1] * spacing_zyx[2])
    else:
        counts = region.sum(axis=(1, 2))
        per_slice = np.divide(
            per_slice_sum, counts, out=np.zeros_like(per_slice_sum), where=counts > 0
        )
    return UncertaintySummary(
        case_score=case_score,
        per_slice_score=per_slice,
        region_voxels=region_voxels,
        measure=measure,
        reduction=reduction,
        band_mm=float(band_mm),
        prob_range=(float(prob_range[0]), float(prob_range[1])),
    )


# --------------------------------------------------------------------------- helpers


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice]:
    """Slices (z, y, x) of the smallest box holding every true voxel (empty slices if none)."""
    box = []
    for axis in range(mask.ndim):
        other_axes = tuple(a for a in range(mask.ndim) if a != axis)
        present = np.flatnonzero(mask.any(axis=other_axes))
        box.append(slice(int(present[0]), int(present[-1]) + 1) if present.size else slice(0, 0))
    return tuple(box)  # type: ignore[return-value]


def _log_scale(unit: str) -> float:
    if unit == "bits":
        return 1.0 / math.log(2.0)
    if unit == "nats":
        return 1.0
    raise ValueError(f"entropy unit must be one of {ENTROPY_UNITS}, got {unit!r}")


def _spacing_zyx(spacing: Geometry | Sequence[float]) -> tuple[float, float, float]:
    spacing_xyz = spacing.spacing_xyz_mm if isinstance(spacing, Geometry) else tuple(spacing)
    if len(spacing_xyz) != 3 or min(float(s) for s in spacing_xyz) <= 0:
        raise ValueError(f"spacing must be three positive numbers (x, y, z) in mm, got {spacing}")
    return (float(spacing_xyz[2]), float(spacing_xyz[1]), float(spacing_xyz[0]))


def _as_prob_array(data: object, ndim: int = 3) -> np.ndarray:
    """float32 numpy copy of an array or tensor of probabilities, checked for shape and range."""
    if hasattr(data, "detach"):  # a torch tensor, on any device
        data = data.detach().float().cpu().numpy()  # type: ignore[attr-defined]
    array = np.array(data, dtype=np.float32, copy=True)
    if array.ndim != ndim:
        axes = "(z, y, x)" if ndim == 3 else "(samples, z, y, x)"
        raise ValueError(f"probabilities must be shaped {axes}, got shape {array.shape}")
    if array.size and (
        not np.isfinite(array).all()
        or array.min() < -_PROB_TOLERANCE
        or array.max() > 1 + _PROB_TOLERANCE
    ):
        raise ValueError("probabilities must be finite and within [0, 1]")
    return np.clip(array, 0.0, 1.0)
