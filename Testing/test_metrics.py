"""Dice and HD95 against hand-computed values and a brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from AutoCTVLib.metrics import (
    dice,
    directed_surface_distances,
    hd95,
    segmentation_metrics,
    summarize,
    surface,
    surface_dice,
    surface_distance_metrics,
)


def cube(shape: tuple[int, int, int], start_zyx: tuple[int, int, int], size: int) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    z, y, x = start_zyx
    mask[z : z + size, y : y + size, x : x + size] = 1
    return mask


def brute_force_hd95(a: np.ndarray, b: np.ndarray, spacing_xyz_mm: tuple[float, ...]) -> float:
    """All pairwise surface distances, no distance transform."""
    scale = np.asarray(spacing_xyz_mm[::-1])
    points_a = np.argwhere(surface(a > 0)) * scale
    points_b = np.argwhere(surface(b > 0)) * scale
    pairwise = np.linalg.norm(points_a[:, None, :] - points_b[None, :, :], axis=-1)
    return max(np.percentile(pairwise.min(axis=1), 95), np.percentile(pairwise.min(axis=0), 95))


@pytest.mark.parametrize(
    ("axis_zyx", "spacing_xyz_mm"),
    [(2, (2.0, 0.5, 3.0)), (1, (2.0, 0.5, 3.0)), (0, (2.0, 0.5, 3.0)), (0, (0.7, 0.7, 5.0))],
)
def test_two_cubes_offset_by_two_voxels(axis_zyx: int, spacing_xyz_mm: tuple) -> None:
    # 3×3×3 cubes, the second shifted by 2 voxels: they share one 3×3 slab of 9 voxels.
    # Dice = 2·9 / (27 + 27) = 1/3. Surface distances of either cube to the other: 9 face voxels
    # at 2 voxels, 8 ring voxels at 1 voxel, 9 voxels at 0 → P95 = 2 voxels along the shift axis.
    shape = (10, 10, 10)
    a = cube(shape, (2, 2, 2), 3)
    start = [2, 2, 2]
    start[axis_zyx] += 2
    b = cube(shape, tuple(start), 3)
    shift_spacing_mm = spacing_xyz_mm[::-1][axis_zyx]
    assert dice(a, b) == pytest.approx(1.0 / 3.0)
    assert hd95(a, b, spacing_xyz_mm) == pytest.approx(2.0 * shift_spacing_mm)
    assert hd95(b, a, spacing_xyz_mm) == pytest.approx(2.0 * shift_spacing_mm)


def test_single_slices_apart_measure_along_slice_spacing() -> None:
    a = np.zeros((8, 6, 6), bool)
    b = np.zeros((8, 6, 6), bool)
    a[2] = True
    b[5] = True
    assert dice(a, b) == 0.0
    assert hd95(a, b, (0.8, 0.8, 2.5)) == pytest.approx(3 * 2.5)


def test_hd95_matches_brute_force_on_random_blobs() -> None:
    rng = np.random.default_rng(7)
    spacing = (0.9, 1.3, 2.7)
    for _ in range(3):
        a = ndimage.binary_dilation(rng.random((12, 14, 16)) > 0.97, iterations=2)
        b = ndimage.binary_dilation(rng.random((12, 14, 16)) > 0.97, iterations=2)
        assert hd95(a, b, spacing) == pytest.approx(brute_force_hd95(a, b, spacing))


def test_identical_masks_and_empty_masks() -> None:
    a = cube((6, 6, 6), (1, 1, 1), 3)
    empty = np.zeros_like(a)
    assert dice(a, a) == 1.0 and hd95(a, a, (1, 1, 1)) == 0.0
    assert dice(empty, empty) == 1.0 and hd95(empty, empty, (1, 1, 1)) == 0.0
    assert dice(a, empty) == 0.0 and math.isinf(hd95(a, empty, (1, 1, 1)))
    assert dice(empty, a) == 0.0 and math.isinf(hd95(empty, a, (1, 1, 1)))
    with pytest.raises(ValueError, match="shapes"):
        dice(a, a[:-1])


def test_segmentation_metrics_and_summary() -> None:
    a = cube((10, 10, 10), (2, 2, 2), 3)
    b = cube((10, 10, 10), (2, 2, 4), 3)
    row = segmentation_metrics(a, b, (2.0, 1.0, 1.0))
    assert row["volume_pred_ml"] == pytest.approx(27 * 2.0 / 1000)
    assert row["hd95_mm"] == pytest.approx(4.0)
    summary = summarize([row, {"dice": 0.0, "hd95_mm": math.inf}, {"dice": 1.0, "hd95_mm": 2.0}])
    assert summary["cases"] == 3
    assert summary["dice_mean"] == pytest.approx((1 / 3 + 0 + 1) / 3)
    assert summary["hd95_mean_mm"] == pytest.approx(3.0)
    assert summary["dice_sd"] == pytest.approx(np.std([1 / 3, 0.0, 1.0], ddof=1))
    assert summary["hd95_sd_mm"] == pytest.approx(np.std([4.0, 2.0], ddof=1))
    assert summary["hd95_infinite_cases"] == 1
    assert summarize([])["dice_mean"] is None
    assert summarize([row])["dice_sd"] is None


@pytest.mark.parametrize("seed", range(8))
def test_surface_distances_on_the_joint_box_equal_those_on_the_whole_grid(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(6, 30, size=3))
    source = ndimage.binary_dilation(rng.random(shape) > 0.995, iterations=2)
    target = ndimage.binary_dilation(rng.random(shape) > 0.995, iterations=1)
    source[0, 0, 0] = target[-1, -1, -1] = True  # masks touching the grid border
    spacing_xyz_mm = (0.7, 1.1, 2.5)
    on_grid = ndimage.distance_transform_edt(~surface(target), sampling=spacing_xyz_mm[::-1])
    expected = on_grid[surface(source)]
    actual = directed_surface_distances(source, target, spacing_xyz_mm)
    np.testing.assert_allclose(actual, expected)


def test_surface_dice_counts_surface_voxels_within_the_tolerance() -> None:
    reference = cube((20, 20, 20), (5, 5, 5), 8)
    assert surface_dice(reference, reference, (1.0, 1.0, 1.0)) == 1.0
    # Shifted by 3 voxels along x at 1 mm: faces parallel to x stay within 2 mm only where the
    # cubes overlap; at 4 mm tolerance every surface voxel is within reach.
    shifted = cube((20, 20, 20), (5, 5, 8), 8)
    spacing = (1.0, 1.0, 1.0)
    brute = surface(shifted > 0), surface(reference > 0)
    scale = np.asarray(spacing[::-1])
    a, b = np.argwhere(brute[0]) * scale, np.argwhere(brute[1]) * scale
    pairwise = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    expected = (
        np.count_nonzero(pairwise.min(axis=1) <= 2.0)
        + np.count_nonzero(pairwise.min(axis=0) <= 2.0)
    ) / (len(a) + len(b))
    assert 0.0 < expected < 1.0
    assert surface_dice(shifted, reference, spacing, 2.0) == pytest.approx(expected)
    assert surface_dice(shifted, reference, spacing, 4.0) == 1.0
    # The tolerance is in mm: at 0.5 mm voxels the same 3-voxel shift is 1.5 mm.
    assert surface_dice(shifted, reference, (0.5, 0.5, 0.5), 2.0) == 1.0


def test_surface_dice_of_empty_masks() -> None:
    empty = np.zeros((5, 5, 5), np.uint8)
    full = cube((5, 5, 5), (1, 1, 1), 2)
    assert surface_dice(empty, empty, (1.0, 1.0, 1.0)) == 1.0
    assert surface_dice(full, empty, (1.0, 1.0, 1.0)) == 0.0
    assert surface_dice(empty, full, (1.0, 1.0, 1.0)) == 0.0


def test_surface_distance_metrics_equal_hd95_and_surface_dice() -> None:
    rng = np.random.default_rng(3)
    a = ndimage.binary_dilation(rng.random((12, 14, 16)) > 0.97, iterations=2)
    b = ndimage.binary_dilation(rng.random((12, 14, 16)) > 0.97, iterations=2)
    spacing = (0.8, 1.1, 2.5)
    both = surface_distance_metrics(a, b, spacing, 2.0)
    assert both["hd95_mm"] == hd95(a, b, spacing)
    assert both["surface_dice"] == surface_dice(a, b, spacing, 2.0)
    empty = np.zeros_like(a)
    assert surface_distance_metrics(a, empty, spacing) == {"hd95_mm": math.inf, "surface_dice": 0.0}
