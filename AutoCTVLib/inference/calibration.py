"""How trustworthy the probabilities and uncertainty maps are: metrics for the benchmark.

All functions take voxel arrays of one shape (any number of dimensions; volumes are (z, y, x))
and an optional boolean ``region`` of that shape that restricts the evaluation (for example the
body, or a band around the reference contour). Nothing here needs scikit-learn.

* :func:`expected_calibration_error` — reliability of the foreground probability ``p``: voxels are
  put into ``n_bins`` equal-width bins of p over [0, 1] (the last bin includes 1.0); in each bin
  the mean p is compared with the observed fraction of foreground voxels;
  ``ECE = Σ_b (n_b / N) · |fraction_b − mean_p_b|``. This is the reliability diagram of the
  binary CTV probability (not the "max-class confidence" variant).
* :func:`brier_score` — mean of ``(p − y)²`` over voxels, y ∈ {0, 1}.
* :func:`auroc` — area under the ROC curve from ranks (the Mann–Whitney U statistic); tied
  scores receive their average rank, so a tie between a positive and a negative counts ½.
  ``nan`` when only one class is present (the area is undefined).
* :func:`error_detection_auroc` — AUROC of the uncertainty as a score for "this voxel's predicted
  label is wrong" (prediction ≠ reference): 1 = every wrong voxel is more uncertain than every
  right one, 0.5 = no better than chance.
* :func:`uncertainty_error_overlap` — Dice between the voxels whose uncertainty exceeds a
  threshold and the wrong voxels (the U-E overlap of Jungo & Reyes, MICCAI 2019). The threshold
  is in the units of the uncertainty map; the default 0.5 suits binary entropy in bits (range
  0–1): it marks voxels whose mean probability lies between about 0.11 and 0.89. Pass another
  threshold for other maps (for mutual information, which rarely exceeds 0.3 bits, a lower
  one). 1.0 when there is neither an error nor an uncertain voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ReliabilityBins:
    """Equal-width bins of the foreground probability (for a reliability diagram).

    ``edges`` has ``n_bins + 1`` values; the other arrays hold one value per bin (``nan`` for
    the mean probability and observed fraction of an empty bin).
    """

    edges: np.ndarray
    counts: np.ndarray
    mean_prob: np.ndarray
    observed_fraction: np.ndarray


def reliability_bins(
    prob: np.ndarray, target: np.ndarray, n_bins: int = 10, region: np.ndarray | None = None
) -> ReliabilityBins:
    """Bin voxels by predicted foreground probability and count how often they are foreground."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    p, y = _select(prob, target, region)
    _check_prob(p)
    y = y.astype(bool)
    bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins).astype(np.int64)
    prob_sums = np.bincount(bins, weights=p, minlength=n_bins)
    positive = np.bincount(bins, weights=y.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.where(counts > 0, prob_sums / counts, np.nan)
        observed = np.where(counts > 0, positive / counts, np.nan)
    return ReliabilityBins(np.linspace(0.0, 1.0, n_bins + 1), counts, mean_prob, observed)


def expected_calibration_error(
    prob: np.ndarray, target: np.ndarray, n_bins: int = 10, region: np.ndarray | None = None
) -> float:
    """Expected calibration error of ``prob`` against the binary ``target`` (0 = calibrated)."""
    bins = reliability_bins(prob, target, n_bins, region)
    total = int(bins.counts.sum())
    if total == 0:
        raise ValueError("no voxels to evaluate (the region is empty)")
    filled = bins.counts > 0
    gaps = np.abs(bins.observed_fraction[filled] - bins.mean_prob[filled])
    return float(np.sum(bins.counts[filled] / total * gaps))


def brier_score(prob: np.ndarray, target: np.ndarray, region: np.ndarray | None = None) -> float:
    """Mean squared difference between ``prob`` and the binary ``target`` (0 = perfect)."""
    p, y = _select(prob, target, region)
    _check_prob(p)
    if p.size == 0:
        raise ValueError("no voxels to evaluate (the region is empty)")
    return float(np.mean((p - y.astype(np.float64)) ** 2))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` (flattened); tied values share the mean of their ranks."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    last = np.cumsum(counts).astype(np.float64)
    first = last - counts + 1.0
    return ((first + last) / 2.0)[inverse.ravel()]


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the binary ``labels`` (ties count ½).

    Returns ``nan`` when ``labels`` has no positives or no negatives.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in size: {s.size} vs {y.size}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(s)
    u_statistic = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_statistic / (n_pos * n_neg))


def error_detection_auroc(
    uncertainty: np.ndarray,
    prediction: np.ndarray,
    target: np.ndarray,
    region: np.ndarray | None = None,
) -> float:
    """AUROC of ``uncertainty`` for detecting voxels where ``prediction`` ≠ ``target``."""
    errors = _error_mask(prediction, target)
    u, e = _select(uncertainty, errors, region)
    return auroc(u, e)


def uncertainty_error_overlap(
    uncertainty: np.ndarray,
    prediction: np.ndarray,
    target: np.ndarray,
    threshold: float = 0.5,
    region: np.ndarray | None = None,
) -> float:
    """Dice between ``uncertainty > threshold`` and the error mask (see the module docstring)."""
    errors = _error_mask(prediction, target)
    u, e = _select(uncertainty, errors, region)
    uncertain = u > threshold
    e = e.astype(bool)
    denominator = int(uncertain.sum()) + int(e.sum())
    if denominator == 0:
        return 1.0
    return float(2.0 * np.count_nonzero(uncertain & e) / denominator)


def _error_mask(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    pred = np.asarray(prediction).astype(bool)
    ref = np.asarray(target).astype(bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    return pred != ref


def _select(
    values: np.ndarray, other: np.ndarray, region: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Flatten two same-shaped arrays, keeping the voxels inside ``region`` when given."""
    a = np.asarray(values)
    b = np.asarray(other)
    if a.shape != b.shape:
        raise ValueError(f"arrays differ in shape: {a.shape} vs {b.shape}")
    if region is None:
        return a.astype(np.float64).ravel(), b.ravel()
    keep = np.asarray(region).astype(bool)
    if keep.shape != a.shape:
        raise ValueError(f"region {keep.shape} does not match the arrays {a.shape}")
    return a[keep].astype(np.float64), b[keep]


def _check_prob(p: np.ndarray) -> None:
    if p.size and (not np.isfinite(p).all() or p.min() < 0.0 or p.max() > 1.0):
        raise ValueError("probabilities must be finite and within [0, 1]")
