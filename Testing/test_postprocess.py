"""Mask clean-up: component filtering by volume and rank, and hole filling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from AutoCTVLib.inference.postprocess import (
    PostprocessConfig,
    component_volumes_ml,
    fill_holes,
    keep_components,
    postprocess_mask,
)
from AutoCTVLib.volume import Geometry


def two_blobs() -> np.ndarray:
    """A 3×3×3 cube (27 voxels), a 2×1×1 bar (2 voxels) and one single voxel, apart."""
    mask = np.zeros((10, 10, 10), dtype=bool)
    mask[1:4, 1:4, 1:4] = True
    mask[7, 7, 7:9] = True
    mask[8, 1, 8] = True
    return mask


def test_minimum_volume_uses_the_voxel_spacing() -> None:
    mask = two_blobs()
    # 2 × 2 × 2 mm voxels: 0.008 mL each → cube 0.216 mL, bar 0.016 mL, dot 0.008 mL
    kept = keep_components(mask, (2.0, 2.0, 2.0), min_volume_ml=0.01)
    assert kept.sum() == 27 + 2 and not kept[8, 1, 8]
    kept = keep_components(mask, (2.0, 2.0, 2.0), min_volume_ml=0.1)
    assert kept.sum() == 27
    # the same threshold on 1 mm voxels removes everything but nothing else changes
    assert keep_components(mask, (1.0, 1.0, 1.0), min_volume_ml=0.1).sum() == 0
    # a Geometry works as the spacing
    geometry = Geometry((10, 10, 10), (2.0, 2.0, 2.0))
    by_geometry = keep_components(mask, geometry, min_volume_ml=0.01)
    assert np.array_equal(by_geometry, keep_components(mask, (2, 2, 2), min_volume_ml=0.01))
    assert component_volumes_ml(mask, geometry) == pytest.approx([0.216, 0.016, 0.008])


def test_keep_largest() -> None:
    mask = two_blobs()
    largest = keep_components(mask, (1.0, 1.0, 1.0), keep_largest=1)
    assert largest.sum() == 27 and largest[2, 2, 2]
    two = keep_components(mask, (1.0, 1.0, 1.0), keep_largest=2)
    assert two.sum() == 29
    # both limits together: the two largest, then the volume threshold
    both = keep_components(mask, (1.0, 1.0, 1.0), keep_largest=2, min_volume_ml=0.01)
    assert both.sum() == 27
    assert not mask[0].any() and mask.sum() == 30  # the input is left alone


def test_connectivity_decides_what_touches() -> None:
    mask = np.zeros((3, 3, 3), dtype=bool)
    mask[0, 0, 0] = mask[1, 1, 1] = True  # corner contact only
    assert keep_components(mask, (1, 1, 1), keep_largest=1, connectivity=26).sum() == 2
    assert keep_components(mask, (1, 1, 1), keep_largest=1, connectivity=6).sum() == 1
    edge = np.zeros((3, 3, 3), dtype=bool)
    edge[0, 0, 0] = edge[0, 1, 1] = True  # edge contact
    assert keep_components(edge, (1, 1, 1), keep_largest=1, connectivity=18).sum() == 2
    assert keep_components(edge, (1, 1, 1), keep_largest=1, connectivity=6).sum() == 1


def test_empty_mask_stays_empty() -> None:
    empty = np.zeros((4, 4, 4), dtype=bool)
    assert not keep_components(empty, (1, 1, 1), keep_largest=1).any()
    assert not fill_holes(empty).any()


def hollow_cube() -> np.ndarray:
    mask = np.zeros((9, 9, 9), dtype=bool)
    mask[1:8, 1:8, 1:8] = True
    mask[3:6, 3:6, 3:6] = False  # an enclosed 27-voxel cavity
    return mask


def tube_along_z() -> np.ndarray:
    mask = np.zeros((6, 9, 9), dtype=bool)
    mask[:, 2:7, 2:7] = True
    mask[:, 4, 4] = False  # a lumen open at both ends of the volume
    return mask


def test_fill_holes_3d_and_per_slice() -> None:
    cube = hollow_cube()
    assert fill_holes(cube, "3d").sum() == 7**3
    assert fill_holes(cube, "none").sum() == 7**3 - 27
    # per slice, the cavity is enclosed on slices 3–5 too
    assert fill_holes(cube, "slice").sum() == 7**3

    tube = tube_along_z()
    # in 3D the lumen reaches the border, so it is not a hole; on each slice it is
    assert fill_holes(tube, "3d").sum() == tube.sum()
    assert fill_holes(tube, "slice").sum() == tube.sum() + 6
    assert fill_holes(tube, "both").sum() == tube.sum() + 6
    with pytest.raises(ValueError):
        fill_holes(tube, "2d")
    with pytest.raises(ValueError):
        fill_holes(np.zeros((4, 4), dtype=bool))


def test_postprocess_config_round_trip_and_application() -> None:
    config = PostprocessConfig(min_component_ml=0.01, keep_largest=1, fill_holes="3d")
    data = config.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert PostprocessConfig.from_dict(data) == config

    mask = np.zeros((12, 12, 12), dtype=bool)
    mask[:9, :9, :9] = hollow_cube()
    mask[11, 11, 11] = mask[11, 0, 11] = True  # two stray voxels away from the cube
    cleaned = postprocess_mask(mask, (1.0, 1.0, 1.0), config)
    assert cleaned.sum() == 7**3 and not cleaned[11, 11, 11] and not cleaned[11, 0, 11]
    assert postprocess_mask(mask, (1.0, 1.0, 1.0), PostprocessConfig(fill_holes="none")).sum() == (
        mask.sum()
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_component_ml": -1.0},
        {"keep_largest": 0},
        {"keep_largest": True},
        {"fill_holes": "2d"},
        {"connectivity": 8},
    ],
)
def test_postprocess_config_validation(kwargs) -> None:
    with pytest.raises(ValueError):
        PostprocessConfig(**kwargs)


def test_keep_components_argument_errors() -> None:
    mask = two_blobs()
    with pytest.raises(ValueError):
        keep_components(mask, (1.0, 1.0), keep_largest=1)
    with pytest.raises(ValueError):
        keep_components(mask, (1.0, 1.0, 1.0), keep_largest=0)
    with pytest.raises(ValueError):
        keep_components(mask, (1.0, 1.0, 1.0), min_volume_ml=-0.5)
    with pytest.raises(ValueError):
        keep_components(mask, (1.0, 1.0, 1.0), connectivity=4)
