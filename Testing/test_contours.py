"""Mask ⇄ polygon conversion: exact round trips, hole handling and even-odd rasterisation."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_geometry
from scipy import ndimage

from AutoCTVLib.io.contours import (
    SlicePolygon,
    lps_to_index,
    mask_to_polygons,
    mask_volume_to_polygons,
    polygons_to_lps,
    polygons_to_mask,
    signed_area,
)


def roundtrip(mask: np.ndarray, saddle_cut: float = 0.1) -> np.ndarray:
    polygons = mask_to_polygons(mask, saddle_cut=saddle_cut)
    return polygons_to_mask([p.points_ij for p in polygons], mask.shape)


def reference_even_odd(polygons: list[np.ndarray], shape_yx: tuple[int, int]) -> np.ndarray:
    """Slow, obviously correct ray casting (ray towards -i) at every pixel centre."""
    jj, ii = np.mgrid[: shape_yx[0], : shape_yx[1]].astype(float)
    inside = np.zeros(shape_yx, dtype=bool)
    for points in polygons:
        for (x0, y0), (x1, y1) in zip(points, np.roll(points, -1, axis=0)):
            straddles = (y0 <= jj) != (y1 <= jj)
            with np.errstate(divide="ignore", invalid="ignore"):
                x_cross = x0 + (jj - y0) * (x1 - x0) / (y1 - y0)
            inside ^= straddles & (x_cross <= ii)
    return inside


def random_blobs(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.random(shape), sigma=rng.uniform(0.6, 2.5))
    return noise > np.quantile(noise, rng.uniform(0.3, 0.8))


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("saddle_cut", [0.0, 0.1])
def test_random_blobs_round_trip_exactly(seed: int, saddle_cut: float) -> None:
    rng = np.random.default_rng(seed)
    mask = random_blobs(rng, (37, 53))
    assert mask.any() and not mask.all()
    np.testing.assert_array_equal(roundtrip(mask, saddle_cut), mask)


@pytest.mark.parametrize("seed", range(6))
def test_salt_and_pepper_round_trips_exactly(seed: int) -> None:
    """Isolated pixels and many diagonal contacts: the hardest case for tracing."""
    mask = np.random.default_rng(seed).random((24, 31)) < 0.5
    np.testing.assert_array_equal(roundtrip(mask), mask)


def test_mask_touching_the_image_border_round_trips() -> None:
    mask = np.ones((5, 7), dtype=bool)
    mask[2, 3] = False
    np.testing.assert_array_equal(roundtrip(mask), mask)
    polygons = mask_to_polygons(mask)
    outer = next(p for p in polygons if not p.is_hole)
    assert outer.points_ij[:, 0].min() == -0.5 and outer.points_ij[:, 0].max() == 6.5


def test_square_gives_four_corner_vertices() -> None:
    mask = np.zeros((8, 9), dtype=bool)
    mask[2:5, 3:7] = True  # j 2..4, i 3..6
    (polygon,) = mask_to_polygons(mask)
    assert not polygon.is_hole
    assert len(polygon.points_ij) == 4
    assert sorted(map(tuple, polygon.points_ij.tolist())) == [
        (2.5, 1.5),
        (2.5, 4.5),
        (6.5, 1.5),
        (6.5, 4.5),
    ]
    assert polygon.signed_area_px == pytest.approx(12.0)  # counter-clockwise outline


def test_annulus_gives_outline_and_hole() -> None:
    jj, ii = np.mgrid[:30, :30]
    radius = np.hypot(jj - 14.5, ii - 15.2)
    ring = (radius < 11) & (radius >= 5)
    polygons = mask_to_polygons(ring)
    assert [p.is_hole for p in polygons] == [False, True]
    outline, hole = polygons
    assert outline.signed_area_px > 0 > hole.signed_area_px
    # Pixel-edge outlines enclose exactly the pixel counts.
    assert outline.signed_area_px == pytest.approx((radius < 11).sum())
    assert -hole.signed_area_px == pytest.approx((radius < 5).sum())
    np.testing.assert_array_equal(roundtrip(ring), ring)


def test_two_islands_and_an_island_inside_a_hole() -> None:
    mask = np.zeros((20, 30), dtype=bool)
    mask[2:6, 2:8] = True  # island A
    mask[8:19, 12:28] = True  # island B with a hole ...
    mask[10:17, 14:26] = False
    mask[12:15, 17:22] = True  # ... holding island C
    polygons = mask_to_polygons(mask)
    assert sorted(p.is_hole for p in polygons) == [False, False, False, True]
    areas = sorted(round(p.signed_area_px) for p in polygons)
    assert areas == [-7 * 12, 3 * 5, 4 * 6, 11 * 16]
    np.testing.assert_array_equal(roundtrip(mask), mask)


def test_diagonally_touching_pixels_become_separate_disjoint_polygons() -> None:
    mask = np.zeros((6, 6), dtype=bool)
    mask[1, 1] = mask[2, 2] = True
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 2 and not any(p.is_hole for p in polygons)
    first, second = (p.points_ij for p in polygons)
    gaps = np.linalg.norm(first[:, None, :] - second[None, :, :], axis=-1)
    assert gaps.min() > 0.1  # cut back at the shared corner: no common point
    np.testing.assert_array_equal(roundtrip(mask), mask)
    # Without the cut both polygons share the corner (1.5, 1.5).
    shared = mask_to_polygons(mask, saddle_cut=0.0)
    corners = [{tuple(v) for v in p.points_ij.tolist()} for p in shared]
    assert corners[0] & corners[1] == {(1.5, 1.5)}


def test_polygon_never_passes_a_point_twice() -> None:
    """A ring closed only by a diagonal contact is one island whose outline meets itself."""
    mask = np.zeros((7, 7), dtype=bool)
    mask[1, 1:5] = True
    mask[1:5, 1] = True
    mask[4, 1:4] = True
    mask[2:4, 4] = True  # (3, 4) touches (4, 3) only at a corner
    _, n_islands = ndimage.label(mask)  # 4-connected, like the tracer
    assert n_islands == 1
    (polygon,) = mask_to_polygons(mask)  # the enclosed pixels leak out through the corner
    assert not polygon.is_hole
    assert polygon.signed_area_px == pytest.approx(mask.sum(), abs=0.05)
    vertices = [tuple(v) for v in polygon.points_ij.tolist()]
    assert len(vertices) == len(set(vertices))
    np.testing.assert_array_equal(roundtrip(mask), mask)


def test_vertices_sit_on_pixel_corners_and_are_never_collinear() -> None:
    mask = random_blobs(np.random.default_rng(3), (30, 30))
    for polygon in mask_to_polygons(mask, saddle_cut=0.0):
        points = polygon.points_ij
        np.testing.assert_array_equal(points % 1.0, np.full_like(points, 0.5))
        before = points - np.roll(points, 1, axis=0)
        after = np.roll(points, -1, axis=0) - points
        cross = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
        assert np.all(cross != 0)


def test_empty_mask_gives_no_polygons_and_bad_input_is_refused() -> None:
    assert mask_to_polygons(np.zeros((4, 4), dtype=bool)) == []
    with pytest.raises(ValueError, match="2D"):
        mask_to_polygons(np.zeros((2, 3, 4), dtype=bool))
    with pytest.raises(ValueError, match="saddle_cut"):
        mask_to_polygons(np.ones((2, 2), dtype=bool), saddle_cut=0.5)


def test_hand_made_square_fills_the_centres_it_encloses() -> None:
    square = np.array([[1.2, 1.2], [5.8, 1.2], [5.8, 4.1], [1.2, 4.1]])
    mask = polygons_to_mask([square], (8, 9))
    assert mask.sum() == 4 * 3
    assert mask[2:5, 2:6].all()


def test_centres_on_edges_follow_the_left_bottom_rule() -> None:
    """Vertices exactly on pixel centres: left/bottom edges fill, right/top edges do not."""
    square = np.array([[2.0, 1.0], [6.0, 1.0], [6.0, 4.0], [2.0, 4.0]])
    mask = polygons_to_mask([square], (8, 9))
    expected = np.zeros((8, 9), dtype=bool)
    expected[1:4, 2:6] = True
    np.testing.assert_array_equal(mask, expected)
    # Two squares sharing the edge i = 4 fill every pixel once.
    left = np.array([[2.0, 1.0], [4.0, 1.0], [4.0, 4.0], [2.0, 4.0]])
    right = np.array([[4.0, 1.0], [6.0, 1.0], [6.0, 4.0], [4.0, 4.0]])
    np.testing.assert_array_equal(
        polygons_to_mask([left], (8, 9)) ^ polygons_to_mask([right], (8, 9)), expected
    )
    # Rounding noise from a trip through millimetres does not move the result.
    noisy = square + np.random.default_rng(0).uniform(-1e-9, 1e-9, square.shape)
    np.testing.assert_array_equal(polygons_to_mask([noisy], (8, 9)), expected)


def test_ring_by_even_odd_regardless_of_orientation() -> None:
    outer = np.array([[0.6, 0.6], [10.4, 0.6], [10.4, 10.4], [0.6, 10.4]])  # centres 1..10
    inner = np.array([[3.5, 3.5], [7.5, 3.5], [7.5, 7.5], [3.5, 7.5]])  # centres 4..7
    ring = polygons_to_mask([outer, inner], (12, 12))
    assert ring.sum() == 10 * 10 - 4 * 4
    assert not ring[4:8, 4:8].any()
    np.testing.assert_array_equal(polygons_to_mask([outer, inner[::-1]], (12, 12)), ring)
    # Overlapping polygons combine by XOR.
    shifted = outer + np.array([5.0, 0.0])
    xor = polygons_to_mask([outer, shifted], (12, 20))
    np.testing.assert_array_equal(
        xor, polygons_to_mask([outer], (12, 20)) ^ polygons_to_mask([shifted], (12, 20))
    )


def test_polygons_beyond_the_image_are_clipped() -> None:
    big = np.array([[-5.0, -5.0], [50.0, -5.0], [50.0, 2.5], [-5.0, 2.5]])
    mask = polygons_to_mask([big], (6, 7))
    assert mask[:3].all() and not mask[3:].any()
    assert not polygons_to_mask([big + np.array([0.0, 100.0])], (6, 7)).any()
    assert not polygons_to_mask([], (6, 7)).any()


@pytest.mark.parametrize("seed", range(5))
def test_random_polygons_match_slow_ray_casting(seed: int) -> None:
    rng = np.random.default_rng(seed)
    polygons = [rng.uniform(-3, 28, size=(rng.integers(3, 12), 2)) for _ in range(3)]
    # Include vertices exactly on pixel centres.
    polygons[0][:2] = np.round(polygons[0][:2])
    np.testing.assert_array_equal(
        polygons_to_mask(polygons, (25, 27)), reference_even_odd(polygons, (25, 27))
    )


def test_signed_area_sign_follows_orientation() -> None:
    triangle = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 3.0]])
    assert signed_area(triangle) == pytest.approx(6.0)
    assert signed_area(triangle[::-1]) == pytest.approx(-6.0)
    assert SlicePolygon(triangle, is_hole=False).signed_area_px == pytest.approx(6.0)


def test_volume_polygons_map_to_millimetres_and_back(grid_kind: str) -> None:
    geometry = make_geometry(grid_kind)
    mask = np.zeros(geometry.shape_zyx, dtype=bool)
    mask[3, 5:9, 6:12] = True
    mask[7, 20:30, 10:14] = True
    by_slice = mask_volume_to_polygons(mask)
    assert sorted(by_slice) == [3, 7]
    for k, polygons in by_slice.items():
        for polygon in polygons:
            points_lps_mm = polygons_to_lps(polygon.points_ij, k, geometry)
            ijk = lps_to_index(points_lps_mm, geometry)
            np.testing.assert_allclose(ijk[:, :2], polygon.points_ij, atol=1e-9)
            np.testing.assert_allclose(ijk[:, 2], k, atol=1e-9)
    with pytest.raises(ValueError, match="3D"):
        mask_volume_to_polygons(mask[0])
