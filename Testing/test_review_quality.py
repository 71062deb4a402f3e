"""Review-quality metrics on synthetic cases whose answers are known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from AutoCTVLib.inference.review_quality import (
    contour_band,
    false_positive_components,
    partial_spearman,
    per_slice_error_area_mm2,
    per_slice_perimeter_mm,
    review_hits,
    spearman,
)


def _box(shape=(9, 40, 40), z=(2, 7), y=(10, 20), x=(10, 30)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[z[0] : z[1], y[0] : y[1], x[0] : x[1]] = True
    return mask


def test_band_in_voxels_is_a_ball_around_the_union() -> None:
    reference = np.zeros((21, 21, 21), dtype=bool)
    reference[10, 10, 10] = True
    band = contour_band(reference, np.zeros_like(reference), radius=3)
    assert band[10, 10, 13] and band[10, 13, 10] and band[13, 10, 10]
    assert not band[10, 10, 14]
    assert band[12, 12, 10] and not band[13, 13, 10]  # √8 ≤ 3 < √18
    # The prediction adds its own neighbourhood.
    prediction = np.zeros_like(reference)
    prediction[10, 10, 2] = True
    both = contour_band(reference, prediction, radius=3)
    assert both[10, 10, 0] and both[10, 10, 5] and not both[10, 10, 6]


def test_band_in_mm_uses_the_spacing() -> None:
    reference = np.zeros((21, 21, 21), dtype=bool)
    reference[10, 10, 10] = True
    # x spacing 1 mm, z spacing 3 mm: a 6 mm ball reaches 6 voxels in x, 2 slices in z.
    band = contour_band(reference, reference, radius=6.0, spacing_xyz_mm=(1.0, 1.0, 3.0))
    assert band[10, 10, 16] and not band[10, 10, 17]
    assert band[12, 10, 10] and not band[13, 10, 10]


def test_band_is_empty_without_masks_and_checks_arguments() -> None:
    empty = np.zeros((5, 5, 5), dtype=bool)
    assert not contour_band(empty, empty).any()
    with pytest.raises(ValueError):
        contour_band(empty, empty, radius=-1)
    with pytest.raises(ValueError):
        contour_band(empty, empty[:4])


def test_error_area_and_perimeter_per_slice() -> None:
    reference = _box()
    prediction = reference.copy()
    prediction[3, 10:20, 30:35] = True  # 10 × 5 pixels added on slice 3
    prediction[5, 10:12, 10:30] = False  # 2 × 20 pixels missed on slice 5
    area = per_slice_error_area_mm2(prediction, reference, (0.5, 2.0, 3.0))
    assert area[3] == pytest.approx(50 * 1.0)
    assert area[5] == pytest.approx(40 * 1.0)
    assert area[[0, 1, 2, 4, 6, 7, 8]].sum() == 0
    perimeter = per_slice_perimeter_mm(reference, (0.5, 2.0, 3.0))
    # A 10 (y) × 20 (x) rectangle: 2×10 edges between x-neighbours (2 mm each, the y size) and
    # 2×20 between y-neighbours (0.5 mm each, the x size).
    assert perimeter[4] == pytest.approx(2 * 10 * 2.0 + 2 * 20 * 0.5)
    assert perimeter[0] == 0


def test_spearman_and_partial_spearman() -> None:
    size = np.arange(1.0, 21.0)
    assert spearman(size, size**3) == pytest.approx(1.0)
    assert spearman(size, -size) == pytest.approx(-1.0)
    assert math.isnan(spearman(size, np.ones_like(size)))
    # Both grow with size, each with its own noise: size explains the raw correlation, and
    # with size held fixed nothing is left.
    rng = np.random.default_rng(0)
    big = np.arange(200.0)
    score = big * 10 + rng.uniform(-15, 15, big.size)
    error = big * 10 + rng.uniform(-15, 15, big.size)
    assert spearman(score, error) > 0.95
    assert abs(partial_spearman(score, error, big)) < 0.2
    # An error that follows the score's own wiggles keeps the partial correlation.
    assert partial_spearman(score, score + 1e-3, big) == pytest.approx(1.0)
    assert partial_spearman(score, -score, big) == pytest.approx(-1.0)


def test_review_hits_counts_listed_slices_among_the_largest_errors() -> None:
    area = np.array([0, 5, 9, 1, 0, 7, 0, 0, 3, 0], dtype=float)
    hits = review_hits([2, 5, 8], area)
    assert hits.top_error_slices == (2, 5, 1)
    assert (hits.hits, hits.hit_rate) == (2, pytest.approx(2 / 3))
    near = review_hits([3, 6, 9], area, tolerance=1)
    assert near.hits == 0 and near.near_hits == 2  # 3 is next to 2, 6 next to 5; 9 is far
    assert math.isnan(review_hits([], area).hit_rate)
    # As distinct places (at least 3 slices apart): 2, 5 and 8 are the places with most error.
    places = review_hits([8, 5, 1], area, tolerance=2, min_separation=3)
    assert places.top_error_slices == (2, 5, 8)
    assert (places.hits, places.near_hits) == (2, 3)
    with pytest.raises(ValueError):
        review_hits([10], area)


def test_stray_islands_are_components_that_miss_the_reference() -> None:
    reference = _box()
    prediction = reference.copy()
    prediction[0, 30:33, 30:33] = True  # an island on slice 0, far from the reference
    prediction[7:9, 2:4, 2:4] = True  # a second island on slices 7 and 8
    prediction[4, 20, 15] = True  # touches the reference: part of the main component
    islands = false_positive_components(prediction, reference)
    assert [(i.voxels, i.slices) for i in islands] == [(9, (0,)), (8, (7, 8))]
    assert false_positive_components(reference, reference) == []


def _band_benchmark():
    """The benchmark module (benchmarks/ is not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(
        "uncertainty_band", folder / "uncertainty_band.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_band_benchmark_scores_a_case_whose_answer_is_known() -> None:
    from AutoCTVLib.inference.uncertainty import binary_entropy

    benchmark = _band_benchmark()
    reference = np.zeros((12, 40, 40), dtype=bool)
    reference[2:10, 10:30, 10:30] = True
    label = reference.copy()
    label[6, 10:30, 10:14] = False  # 80 pixels missed on slice 6
    label[4, 10:30, 10:12] = False  # 40 pixels missed on slice 4
    label[0, 1:9, 1:9] = True  # a stray island on slice 0
    prob = np.where(label, 0.97, 0.02).astype(np.float32)
    prob[label != reference] = 0.45  # the model doubts exactly its errors ...
    prob[0, 1:9, 1:9] = 0.5  # ... and the island
    entropy = binary_entropy(prob)
    arrays = {
        "mean_prob": prob,
        "entropy": entropy,
        "mutual_information": entropy / 2,
        "label": label,
        "reference": reference,
        "spacing_xyz_mm": np.array([1.0, 1.0, 3.0]),
        "product_review": np.array([6, 0]),
        "seconds": np.array(1.0),
        "n_samples": np.array(20),
    }
    result = benchmark.evaluate(arrays, review_count=2)
    assert result["band_7vox"]["auroc_entropy"] == pytest.approx(1.0)
    assert result["band_7mm"]["auroc_mi"] == pytest.approx(1.0)
    assert result["errors"]["silent_share"] == 0.0
    assert result["per_slice"]["contour_slices"] == 9
    assert result["per_slice"]["spearman"] > 0.5
    review = result["review"]
    assert review["listed"] == [6, 0] and review["matches_product"]
    assert review["top_error_slices"] == [6, 0]  # the 64-pixel island outweighs slice 4's 40
    assert review["hit_rate"] == pytest.approx(1.0)
    assert [island["listed"] for island in review["stray_islands"]] == [True]
    # Errors the map does not see (entropy 0 on them) are counted as silent and drop the AUROC.
    missed = (label != reference) & (np.arange(12) != 0)[:, None, None]
    arrays["entropy"] = np.where(missed, 0.0, entropy).astype(np.float32)
    blind = benchmark.evaluate(arrays, review_count=2)
    assert blind["band_7vox"]["auroc_entropy"] < 0.6
    assert blind["errors"]["silent_share"] == pytest.approx(120 / 184, abs=1e-3)
    assert blind["errors"]["zero_entropy_share"] == pytest.approx(120 / 184, abs=1e-3)
