"""MC-dropout uncertainty maps, case/slice scores, the review list and calibration metrics."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from AutoCTVLib.inference.calibration import (
    auroc,
    average_ranks,
    brier_score,
    error_detection_auroc,
    expected_calibration_error,
    reliability_bins,
    uncertainty_error_overlap,
)
from AutoCTVLib.inference.review import separation_in_slices, slices_to_review
from AutoCTVLib.inference.uncertainty import (
    MCAccumulator,
    binary_entropy,
    boundary_band,
    summarise_uncertainty,
    uncertainty_from_samples,
)
from AutoCTVLib.volume import Geometry


def h_bits(p: float) -> float:
    """Binary entropy in bits, written out by hand."""
    return -sum(q * math.log2(q) for q in (p, 1 - p) if q > 0)


def random_samples(t: int = 7, shape=(4, 5, 6), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.beta(0.7, 0.7, size=(t, *shape)).astype(np.float32)


# ------------------------------------------------------------------ entropy and maps


def test_binary_entropy_values_and_maximum() -> None:
    assert binary_entropy(np.array([0.0, 1.0])).tolist() == [0.0, 0.0]
    assert float(binary_entropy(np.array(0.5))) == pytest.approx(1.0)
    assert float(binary_entropy(np.array(0.5), unit="nats")) == pytest.approx(math.log(2))
    grid = np.linspace(0, 1, 1001)
    values = binary_entropy(grid)
    assert np.all(values >= 0)
    assert grid[int(np.argmax(values))] == pytest.approx(0.5)
    np.testing.assert_allclose(values, values[::-1], atol=1e-6)  # H(p) = H(1 − p)
    np.testing.assert_allclose(values[200], h_bits(0.2), rtol=1e-6)
    with pytest.raises(ValueError):
        binary_entropy(grid, unit="bans")


def test_two_samples_by_hand() -> None:
    # voxel 0: samples 0.2 and 0.8; voxel 1: 0 and 1; voxel 2: both 0.3
    samples = np.array([[0.2, 0.0, 0.3], [0.8, 1.0, 0.3]], dtype=np.float32).reshape(2, 1, 1, 3)
    maps = uncertainty_from_samples(samples)
    mean = maps.mean_prob.ravel()
    np.testing.assert_allclose(mean, [0.5, 0.5, 0.3], atol=1e-7)
    np.testing.assert_allclose(maps.entropy.ravel(), [1.0, 1.0, h_bits(0.3)], rtol=1e-6)
    expected = [h_bits(0.2), 0.0, h_bits(0.3)]
    np.testing.assert_allclose(maps.expected_entropy.ravel(), expected, rtol=1e-6, atol=1e-7)
    mi = [1.0 - h_bits(0.2), 1.0, 0.0]
    np.testing.assert_allclose(maps.mutual_information.ravel(), mi, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps.variance.ravel(), [0.09, 0.25, 0.0], atol=1e-7)
    assert maps.n_samples == 2 and maps.unit == "bits"

    nats = uncertainty_from_samples(samples, unit="nats")
    np.testing.assert_allclose(
        nats.mutual_information.ravel(), np.array(mi) * math.log(2), rtol=1e-5, atol=1e-6
    )


def test_no_mutual_information_when_all_samples_agree() -> None:
    one = random_samples(1, seed=3)[0]
    maps = uncertainty_from_samples(np.stack([one] * 5))
    assert np.all(maps.mutual_information == 0.0)
    assert np.all(maps.variance <= 1e-12)
    np.testing.assert_allclose(maps.entropy, maps.expected_entropy, atol=1e-6)
    np.testing.assert_allclose(maps.entropy, binary_entropy(one), atol=1e-6)


def test_bounds_on_random_samples() -> None:
    maps = uncertainty_from_samples(random_samples(9, shape=(6, 7, 8), seed=1))
    assert np.all(maps.entropy >= 0) and np.all(maps.entropy <= 1.0 + 1e-6)
    assert np.all(maps.mutual_information >= 0)
    assert np.all(maps.mutual_information <= maps.entropy)
    assert np.all(maps.expected_entropy <= maps.entropy)
    assert np.all(maps.variance >= 0) and np.all(maps.variance <= 0.25 + 1e-6)
    assert maps.mean_prob.dtype == np.float32
    assert maps.mutual_information.max() > 0.05  # the samples disagree, so MI is not all zero


def test_accumulator_equals_batch_formula() -> None:
    samples = random_samples(11, shape=(5, 6, 7), seed=2)
    accumulator = MCAccumulator()
    for index, sample in enumerate(samples):
        # numpy and torch samples both work
        accumulator.add(torch.from_numpy(sample) if index % 2 else sample)
    streamed = accumulator.result()
    batch = uncertainty_from_samples(samples)
    assert streamed.n_samples == batch.n_samples == 11
    for name in ("mean_prob", "entropy", "expected_entropy", "mutual_information", "variance"):
        np.testing.assert_allclose(
            getattr(streamed, name), getattr(batch, name), atol=2e-6, err_msg=name
        )
    # result() does not end the accumulation
    accumulator.add(samples[0])
    assert accumulator.result().n_samples == 12


def test_accumulator_rejects_bad_input() -> None:
    accumulator = MCAccumulator()
    with pytest.raises(ValueError, match="no MC samples"):
        accumulator.result()
    accumulator.add(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="differs"):
        accumulator.add(np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match="within"):
        accumulator.add(np.full((2, 3, 4), 1.5))
    with pytest.raises(ValueError, match="within"):
        accumulator.add(np.full((2, 3, 4), np.nan))
    with pytest.raises(ValueError, match="shaped"):
        accumulator.add(np.zeros((3, 4)))
    with pytest.raises(ValueError):
        MCAccumulator(unit="decibans")


# ------------------------------------------------------------------ scores and review


def ball_prob(shape, centre, radius_mm, spacing_zyx, width_mm) -> np.ndarray:
    """Foreground probability of a ball with a logistic edge ``width_mm`` wide."""
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    dist = np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing_zyx)))
    return (1.0 / (1.0 + np.exp((dist - radius_mm) / width_mm))).astype(np.float32)


def test_boundary_band_lies_on_both_sides_of_the_contour() -> None:
    spacing_xyz = (1.0, 1.0, 2.0)
    prob = ball_prob((15, 30, 30), (7, 15, 15), 8.0, (2.0, 1.0, 1.0), 0.3)
    band = boundary_band(prob, spacing_xyz, band_mm=2.0)
    inside = prob >= 0.5
    assert band.any() and (band & inside).any() and (band & ~inside).any()
    assert not band[7, 15, 15]  # the centre is 8 mm from the contour
    assert not band[0, 0, 0]  # far outside
    # the same as distance transforms over the whole volume, also when the CTV touches the edge
    for shifted in (prob, np.roll(prob, (7, 15), axis=(0, 1))):
        fg = shifted >= 0.5
        inside = ndimage.distance_transform_edt(fg, sampling=(2.0, 1.0, 1.0))
        outside = ndimage.distance_transform_edt(~fg, sampling=(2.0, 1.0, 1.0))
        reference = (fg & (inside <= 2.0 + 1e-6)) | (~fg & (outside <= 2.0 + 1e-6))
        assert np.array_equal(boundary_band(shifted, spacing_xyz, band_mm=2.0), reference)
    assert not boundary_band(np.zeros((3, 4, 5)), spacing_xyz).any()
    assert not boundary_band(np.ones((3, 4, 5)), spacing_xyz).any()


def test_case_score_grows_with_uncertainty_and_ignores_size() -> None:
    geometry = Geometry((15, 40, 40), (1.0, 1.0, 2.0))
    spacing_zyx = (2.0, 1.0, 1.0)

    def score(radius, width) -> float:
        prob = ball_prob(geometry.shape_zyx, (7, 20, 20), radius, spacing_zyx, width)
        maps = uncertainty_from_samples(prob[None])
        return summarise_uncertainty(maps, geometry).case_score

    sharp, blurred = score(10.0, 0.2), score(10.0, 2.0)
    assert 0.0 <= sharp < blurred <= 1.0
    # a CTV twice the size, equally sharp, scores about the same
    assert score(14.0, 2.0) == pytest.approx(blurred, rel=0.15)
    empty = uncertainty_from_samples(np.zeros((2, 5, 6, 7), dtype=np.float32))
    summary = summarise_uncertainty(empty, geometry.spacing_xyz_mm)
    assert summary.case_score == 0.0 and summary.region_voxels == 0
    assert not summary.per_slice_score.any()


def planted_samples(doubt_mm: dict[int, float], n_slices: int = 24) -> np.ndarray:
    """MC samples of a cylinder along z whose radius varies between samples by up to
    ± ``doubt_mm[k]`` on planted slices k, and by 0.9 of that on their neighbours."""
    y, x = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    dist = np.hypot(y - 15.5, x - 15.5)
    amplitude = np.zeros(n_slices)
    for k, doubt in doubt_mm.items():
        amplitude[k - 1] = amplitude[k + 1] = 0.9 * doubt
        amplitude[k] = doubt
    offsets = np.linspace(-1.0, 1.0, 8)
    samples = np.zeros((8, n_slices, 32, 32), dtype=np.float32)
    for t, offset in enumerate(offsets):
        for k in range(n_slices):
            radius = 8.0 + offset * amplitude[k]
            samples[t, k] = 1.0 / (1.0 + np.exp((dist - radius) / 0.3))
    return samples


def test_review_list_finds_the_planted_slices() -> None:
    planted = (4, 11, 18)
    accumulator = MCAccumulator()
    for sample in planted_samples({4: 4.0, 11: 3.0, 18: 2.5}):
        accumulator.add(sample)
    summary = summarise_uncertainty(accumulator.result(), (1.0, 1.0, 3.0))
    assert summary.per_slice_score.shape == (24,)
    chosen = slices_to_review(summary.per_slice_score, k=3, min_separation=3)
    assert sorted(chosen) == list(planted)
    # the list is ordered from most to least doubtful
    assert list(summary.per_slice_score[chosen]) == sorted(
        summary.per_slice_score[chosen], reverse=True
    )
    # without suppression the neighbours of one planted slice crowd the list
    crowded = slices_to_review(summary.per_slice_score, k=3, min_separation=1)
    assert sorted(crowded) == [3, 4, 5]

    # the per-slice mean saturates (it says how doubtful, not how much), but still separates
    # the doubtful slices from the confident ones
    mean_summary = summarise_uncertainty(accumulator.result(), (1.0, 1.0, 3.0), reduction="mean")
    doubtful = np.zeros(24, dtype=bool)
    for k in planted:
        doubtful[k - 1 : k + 2] = True
    assert (
        mean_summary.per_slice_score[doubtful].min() > mean_summary.per_slice_score[~doubtful].max()
    )
    mi_summary = summarise_uncertainty(
        accumulator.result(), (1.0, 1.0, 3.0), measure="mutual_information"
    )
    assert sorted(slices_to_review(mi_summary.per_slice_score, k=3)) == list(planted)
    assert summary.to_dict()["measure"] == "entropy"


def test_slices_to_review_rules() -> None:
    scores = np.array([0.0, 5.0, 4.9, 1.0, 0.0, 3.0, 3.0, -1.0, 2.0])
    assert slices_to_review(scores, k=10, min_separation=2) == [1, 5, 8, 3]
    # ties go to the lower index; zero or negative scores are never listed
    assert slices_to_review(scores, k=10, min_separation=1) == [1, 2, 5, 6, 8, 3]
    assert slices_to_review(scores, k=2, min_separation=3) == [1, 5]
    assert slices_to_review(np.zeros(5)) == []
    assert slices_to_review(scores, k=0) == []
    with pytest.raises(ValueError):
        slices_to_review(scores, min_separation=0)
    with pytest.raises(ValueError):
        slices_to_review(np.array([1.0, np.nan]))
    with pytest.raises(ValueError):
        slices_to_review(np.zeros((2, 2)))
    assert separation_in_slices(10.0, 2.5) == 4
    assert separation_in_slices(10.0, 3.0) == 4
    assert separation_in_slices(0.0, 3.0) == 1


# ------------------------------------------------------------------ calibration metrics


def brute_force_auroc(scores, labels) -> float:
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auroc_known_values() -> None:
    labels = np.array([0, 0, 1, 1])
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert auroc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert auroc(np.full(4, 0.3), labels) == 0.5
    # one tie between a positive and a negative: (1 + 0.5 + 1 + 1) / 4
    assert auroc(np.array([0.1, 0.5, 0.5, 0.9]), np.array([0, 1, 0, 1])) == 0.875
    assert math.isnan(auroc(np.array([0.1, 0.2]), np.array([1, 1])))
    np.testing.assert_array_equal(average_ranks(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1, 3.5, 2])


def test_auroc_matches_pairwise_count_with_many_ties() -> None:
    rng = np.random.default_rng(11)
    scores = np.round(rng.random(300), 1)  # 11 distinct values: many ties
    labels = rng.random(300) < scores * 0.8
    assert auroc(scores, labels) == pytest.approx(brute_force_auroc(scores, labels), abs=1e-12)
    random_scores = rng.random(20000)
    random_labels = rng.random(20000) < 0.3
    assert auroc(random_scores, random_labels) == pytest.approx(0.5, abs=0.02)


def test_error_detection_auroc() -> None:
    target = np.zeros((2, 3, 4), dtype=bool)
    target[0, :2, :2] = True
    prediction = target.copy()
    prediction[1, 0, 0] = True  # a false positive
    prediction[0, 0, 0] = False  # a false negative
    uncertainty = np.full(target.shape, 0.1)
    uncertainty[1, 0, 0] = uncertainty[0, 0, 0] = 0.9
    assert error_detection_auroc(uncertainty, prediction, target) == 1.0
    assert error_detection_auroc(-uncertainty, prediction, target) == 0.0
    region = np.zeros(target.shape, dtype=bool)
    region[1] = True
    region[0, 1, 1] = True
    assert error_detection_auroc(uncertainty, prediction, target, region=region) == 1.0
    assert math.isnan(error_detection_auroc(uncertainty, target, target))


def test_expected_calibration_error_and_brier_by_hand() -> None:
    prob = np.array([0.05, 0.05, 0.95, 0.95])
    target = np.array([0, 0, 1, 1])
    assert expected_calibration_error(prob, target, n_bins=10) == pytest.approx(0.05)
    # ten voxels at p = 0.3 of which three are foreground: perfectly calibrated
    calibrated = np.full(10, 0.3)
    assert expected_calibration_error(calibrated, np.arange(10) < 3) == pytest.approx(0.0)
    # over-confident: p = 0.9 on voxels that are foreground half of the time
    assert expected_calibration_error(np.full(4, 0.9), np.array([1, 0, 1, 0])) == pytest.approx(0.4)
    # p = 1.0 falls in the last bin
    bins = reliability_bins(np.array([1.0, 0.0]), np.array([1, 0]), n_bins=4)
    assert bins.counts.tolist() == [1, 0, 0, 1]
    assert math.isnan(bins.mean_prob[1])
    # region restriction
    region = np.array([True, True, False, False])
    assert expected_calibration_error(prob, target, region=region) == pytest.approx(0.05)
    assert brier_score(np.array([0.2, 0.7]), np.array([0, 1])) == pytest.approx(0.065)
    assert brier_score(prob, target, region=np.array([False, False, True, False])) == (
        pytest.approx(0.0025)
    )
    with pytest.raises(ValueError):
        expected_calibration_error(np.array([1.2]), np.array([1]))
    with pytest.raises(ValueError):
        brier_score(prob, target, region=np.zeros(4, dtype=bool))


def test_uncertainty_error_overlap_by_hand() -> None:
    target = np.zeros(10, dtype=bool)
    prediction = target.copy()
    prediction[[0, 1]] = True  # two wrong voxels
    uncertainty = np.zeros(10)
    uncertainty[[0, 1, 2, 3]] = 0.8  # four uncertain voxels, two of them wrong
    assert uncertainty_error_overlap(uncertainty, prediction, target) == pytest.approx(2 * 2 / 6)
    assert uncertainty_error_overlap(uncertainty, prediction, target, threshold=0.9) == 0.0
    assert uncertainty_error_overlap(np.zeros(10), target, target) == 1.0
    region = np.zeros(10, dtype=bool)
    region[[0, 1]] = True
    assert uncertainty_error_overlap(uncertainty, prediction, target, region=region) == 1.0
