"""Which axial slices a physician should look at first: the review list.

Given one uncertainty score per axial slice k of the input grid (see
:func:`AutoCTVLib.inference.uncertainty.summarise_uncertainty`), the review list holds the k
highest-scoring slices, picked greedily with non-maximum suppression: a slice is taken only if
it lies at least ``min_separation`` slices from every slice already taken, so one doubtful region
spanning several neighbouring slices yields one entry, and the list points at distinct places.
Slices with a score of 0 or less (nothing doubtful) are never listed, so the list may be shorter
than k. Ties go to the lower slice index.

For an oblique or flipped scan k is still the acquisition slice index (the z index of the
(z, y, x) array), which is what the viewer pages through.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def slices_to_review(
    per_slice_score: Sequence[float] | np.ndarray, k: int = 5, min_separation: int = 3
) -> list[int]:
    """Indices of up to ``k`` slices with the highest score, at least ``min_separation`` apart.

    Args:
        per_slice_score: one finite score per axial slice (higher = more doubtful).
        k: how many slices to list at most.
        min_separation: smallest allowed ``|i − j|`` between two listed slices (1 = no
            suppression, neighbours allowed).

    Returns:
        Slice indices, most doubtful first.
    """
    scores = np.asarray(per_slice_score, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"per_slice_score must be one value per slice, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("per_slice_score must be finite")
    if k < 0:
        raise ValueError(f"k must not be negative, got {k}")
    if min_separation < 1:
        raise ValueError(f"min_separation must be at least 1, got {min_separation}")
    # Stable sort on the negated score: highest first, lower index first among equals.
    order = np.argsort(-scores, kind="stable")
    chosen: list[int] = []
    for index in order:
        if len(chosen) >= k or scores[index] <= 0:
            break
        if all(abs(int(index) - other) >= min_separation for other in chosen):
            chosen.append(int(index))
    return chosen


def separation_in_slices(distance_mm: float, slice_spacing_mm: float) -> int:
    """The ``min_separation`` (in slices) that keeps listed slices ``distance_mm`` apart."""
    if distance_mm < 0 or slice_spacing_mm <= 0:
        raise ValueError("distance_mm must be >= 0 and slice_spacing_mm > 0")
    return max(1, math.ceil(distance_mm / slice_spacing_mm - 1e-9))
