"""The completion network's interpolation channel: shape-based interpolation between slices."""

from __future__ import annotations

import numpy as np
import pytest

from AutoCTVLib.completion.annotation import Annotation
from AutoCTVLib.completion.prior import interpolate_axis, shape_prior, signed_distance_mm

SHAPE = (11, 40, 40)
SPACING_ZYX = (3.0, 1.5, 1.5)


def disc(radius_mm: float, centre=(19.5, 19.5)) -> np.ndarray:
    y, x = np.indices(SHAPE[1:], dtype=float)
    return ((y - centre[0]) ** 2 + (x - centre[1]) ** 2) * 1.5**2 <= radius_mm**2


def test_signed_distance_is_negative_inside_in_millimetres() -> None:
    mask = disc(12.0)
    distance = signed_distance_mm(mask, SPACING_ZYX[1:])
    assert (distance[mask] < 0).all() and (distance[~mask] > 0).all()
    # The centre lies about one radius deep; a pixel 6 mm outside the rim is about 6 mm out.
    assert distance[19, 19] == pytest.approx(-12.0, abs=1.6)
    assert distance[19, int(19.5 + 18.0 / 1.5)] == pytest.approx(6.0, abs=1.6)
    assert signed_distance_mm(np.zeros((4, 4), bool), (1.0, 1.0)) is None


def test_two_discs_blend_into_a_cone_and_nothing_lies_beyond_the_ends() -> None:
    sparse = np.zeros(SHAPE, dtype=bool)
    sparse[2], sparse[8] = disc(6.0), disc(18.0)
    result = interpolate_axis(sparse, 0, [2, 8], SPACING_ZYX)
    np.testing.assert_array_equal(result[[2, 8]], sparse[[2, 8]])
    assert not result[:2].any() and not result[9:].any()
    areas = result.sum(axis=(1, 2))[2:9]
    assert (np.diff(areas) > 0).all()
    # Halfway the radius is halfway between 6 and 18 mm.
    expected = disc(12.0).sum()
    assert areas[3] == pytest.approx(expected, rel=0.1)


def test_an_empty_annotated_slice_closes_the_shape_halfway() -> None:
    sparse = np.zeros(SHAPE, dtype=bool)
    sparse[1] = disc(12.0)
    result = shape_prior(sparse, Annotation(z=(1, 9)), SPACING_ZYX)
    areas = result.sum(axis=(1, 2))
    assert areas[1] == sparse[1].sum() and areas[9] == 0
    assert areas[2] > 0 and areas[5] == 0 and (np.diff(areas[1:6]) <= 0).all()


def test_axes_unite_and_single_slices_contribute_their_drawing() -> None:
    z, y, x = np.indices(SHAPE)
    ball = (z - 5) ** 2 * 9.0 + ((y - 19.5) ** 2 + (x - 19.5) ** 2) * 2.25 <= 13.0**2
    annotation = Annotation(z=(3, 7), y=(19,))
    sparse = ball & annotation.known_mask(SHAPE)
    result = shape_prior(sparse, annotation, SPACING_ZYX)
    along_z = interpolate_axis(sparse, 0, [3, 7], SPACING_ZYX)
    np.testing.assert_array_equal(result, along_z | (annotation.known_mask(SHAPE) & sparse))
    known = annotation.known_mask(SHAPE)
    np.testing.assert_array_equal(result[known], sparse[known])
    assert (result & ~ball).sum() <= 0.1 * ball.sum()
