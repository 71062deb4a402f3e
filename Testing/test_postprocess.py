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
    keep_near_largest,
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
        {"near_largest_mm": -1.0},
        {"near_largest_mm": float("inf")},
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


def ctv_with_parts() -> np.ndarray:
    """A 6×6×6 'CTV', a small part 3 voxels beside it, and an island 20 voxels away."""
    mask = np.zeros((10, 30, 40), dtype=bool)
    mask[2:8, 2:8, 2:8] = True  # the CTV (largest)
    mask[3:5, 3:5, 11:13] = True  # gap of 3 voxels along x (the centres are 4 voxels apart)
    mask[4:6, 20:22, 30:32] = True  # far island
    return mask


@pytest.mark.parametrize(
    ("spacing_xyz", "distance_mm", "kept_parts"),
    [
        ((1.0, 1.0, 1.0), 4.0, 2),  # the near part is 4 mm away between voxel centres
        ((1.0, 1.0, 1.0), 3.9, 1),
        ((0.5, 1.0, 1.0), 2.0, 2),  # x spacing halves the distance
        ((1.0, 1.0, 1.0), 100.0, 3),
        ((1.0, 1.0, 1.0), 0.0, 1),
    ],
)
def test_keep_near_largest_measures_the_gap_in_mm(spacing_xyz, distance_mm, kept_parts) -> None:
    mask = ctv_with_parts()
    kept = keep_near_largest(mask, spacing_xyz, distance_mm)
    assert kept[2:8, 2:8, 2:8].all()
    assert kept[3:5, 3:5, 11:13].all() == (kept_parts >= 2)
    assert kept[4:6, 20:22, 30:32].all() == (kept_parts == 3)
    assert not kept[~mask].any()


def test_keep_near_largest_edge_cases() -> None:
    empty = np.zeros((4, 4, 4), dtype=bool)
    assert not keep_near_largest(empty, (1.0, 1.0, 1.0), 5.0).any()
    single = empty.copy()
    single[1, 1, 1] = True
    assert np.array_equal(keep_near_largest(single, (1.0, 1.0, 1.0), 5.0), single)
    with pytest.raises(ValueError):
        keep_near_largest(single, (1.0, 1.0, 1.0), -1.0)


def test_one_connected_ctv_config_drops_islands_and_fills_holes() -> None:
    mask = np.zeros((12, 30, 30), dtype=bool)
    mask[:9, :9, :9] = hollow_cube()
    mask[2:4, 2:4, 12:14] = True  # a part 5 mm away (voxel centres): kept
    mask[10, 25, 25] = True  # stray voxel
    mask[5:8, 20:28, 20:28] = True  # a big stray island (192 voxels)
    config = PostprocessConfig(near_largest_mm=5.0, fill_holes="3d")
    cleaned = postprocess_mask(mask, Geometry((12, 30, 30), (1.0, 1.0, 1.0)), config)
    assert cleaned[:9, :9, :9].sum() == 7**3  # hole filled
    assert cleaned[2:4, 2:4, 12:14].all()
    assert not cleaned[10, 25, 25] and not cleaned[5:8, 20:28, 20:28].any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_working_in_the_mask_box_equals_the_whole_grid(seed: int) -> None:
    from AutoCTVLib.inference.postprocess import _postprocess_box

    rng = np.random.default_rng(seed)
    mask = np.zeros((14, 30, 26), dtype=bool)
    mask[3:11, 6:20, 4:18] = rng.random((8, 14, 14)) < 0.55  # ragged parts with holes
    mask[0, 0, 0] = mask[13, 29, 25] = seed == 2  # parts on the grid's corners
    for config in (
        PostprocessConfig(near_largest_mm=2.0, fill_holes="both"),
        PostprocessConfig(min_component_ml=0.004, fill_holes="slice", connectivity=6),
        PostprocessConfig(keep_largest=2, fill_holes="3d", connectivity=18),
    ):
        spacing = (1.0, 0.8, 2.0)
        whole = _postprocess_box(mask, spacing, config)
        assert np.array_equal(postprocess_mask(mask, spacing, config), whole)
