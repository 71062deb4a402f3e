"""Preprocessing: resampling geometry, HU window, body crop, the pipeline and its way back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import feet_first_twin, make_geometry

from AutoCTVLib.preprocess import (
    CropBox,
    PreprocessConfig,
    apply_hu_window,
    body_mask,
    canonical_axes,
    find_body_box,
    grid_for_spacing,
    preprocess,
    resample_to_geometry,
    resample_to_spacing,
)
from AutoCTVLib.preprocess.padding import pad_array, pad_widths_to_multiple, unpad_slices
from AutoCTVLib.volume import Geometry, Volume

TARGET_SPACING = (2.0, 1.7, 3.4)


def physical_points(geometry: Geometry) -> np.ndarray:
    """LPS mm of every voxel centre, shape (z, y, x, 3)."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in geometry.shape_zyx), indexing="ij")
    return geometry.index_to_physical(np.stack([i, j, k], axis=-1))


def sphere_phantom(kind: str) -> tuple[Volume, Volume, np.ndarray]:
    """CT (HU) with a body ellipsoid and a spherical 'CTV' defined in physical space."""
    geometry = make_geometry(kind, shape_zyx=(16, 40, 44))
    points = physical_points(geometry)
    centre = geometry.index_to_physical(np.array([21.5, 19.5, 7.5]))
    offset = points - centre
    body = (offset[..., 0] / 16.0) ** 2 + (offset[..., 1] / 13.0) ** 2 + (offset[..., 2] / 40) ** 2
    ct_hu = np.where(body <= 1.0, 40.0, -1000.0).astype(np.float32)
    label = (np.linalg.norm(offset - np.array([2.0, -1.0, 0.0]), axis=-1) <= 8.0).astype(np.uint8)
    return Volume(ct_hu, geometry), Volume(label, geometry), centre


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def centroid_lps(volume: Volume) -> np.ndarray:
    return physical_points(volume.geometry)[volume.array > 0].mean(axis=0)


def test_grid_for_spacing_keeps_direction_centre_and_extent(grid_kind: str) -> None:
    geometry = make_geometry(grid_kind)
    target = grid_for_spacing(geometry, TARGET_SPACING)
    assert target.direction == geometry.direction
    assert target.spacing_xyz_mm == TARGET_SPACING
    old_centre = geometry.index_to_physical((np.array(geometry.size_xyz) - 1) / 2)
    new_centre = target.index_to_physical((np.array(target.size_xyz) - 1) / 2)
    np.testing.assert_allclose(new_centre, old_centre, atol=1e-6)
    old_extent = np.array(geometry.size_xyz) * geometry.spacing_xyz_mm
    new_extent = np.array(target.size_xyz) * np.array(TARGET_SPACING)
    assert np.all(np.abs(new_extent - old_extent) <= np.array(TARGET_SPACING) / 2 + 1e-9)


def test_reoriented_grid_points_along_lps_and_keeps_centre_and_extent(grid_kind: str) -> None:
    geometry = make_geometry(grid_kind)
    target = grid_for_spacing(geometry, TARGET_SPACING, reorient=True)
    order, signs = canonical_axes(geometry.direction_matrix)
    np.testing.assert_allclose(
        target.direction_matrix, geometry.direction_matrix[:, list(order)] * signs
    )
    assert np.all(np.diag(target.direction_matrix) > 0.9)
    old_centre = geometry.index_to_physical((np.array(geometry.size_xyz) - 1) / 2)
    new_centre = target.index_to_physical((np.array(target.size_xyz) - 1) / 2)
    np.testing.assert_allclose(new_centre, old_centre, atol=1e-6)
    old_extent = (np.array(geometry.size_xyz) * geometry.spacing_xyz_mm)[list(order)]
    new_extent = np.array(target.size_xyz) * np.array(TARGET_SPACING)
    assert np.all(np.abs(new_extent - old_extent) <= np.array(TARGET_SPACING) / 2 + 1e-9)


def test_canonical_axes_undoes_axis_swaps_and_mirrors() -> None:
    # A sagittal acquisition stored feet first: i runs P→A, j runs S→I, k runs R→L.
    sagittal = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    order, signs = canonical_axes(sagittal)
    assert order == (2, 0, 1)
    np.testing.assert_array_equal(signs, [1.0, -1.0, -1.0])
    np.testing.assert_allclose(sagittal[:, list(order)] * signs, np.eye(3))


def test_mirrored_scan_reaches_the_network_like_its_head_first_twin() -> None:
    ct, _, _ = sphere_phantom("axial")
    twin = feet_first_twin(ct)
    config = PreprocessConfig(spacing_xyz_mm=TARGET_SPACING, crop_margin_mm=3.0)
    straight, flipped = preprocess(ct, config), preprocess(twin, config)
    assert flipped.network_geometry.is_close(straight.network_geometry)
    np.testing.assert_allclose(flipped.image, straight.image, atol=1e-5)
    kept = preprocess(twin, PreprocessConfig(spacing_xyz_mm=TARGET_SPACING, reorient=False))
    assert kept.network_geometry.direction == twin.geometry.direction


def test_grid_for_spacing_rejects_bad_spacing() -> None:
    with pytest.raises(ValueError, match="positive"):
        grid_for_spacing(make_geometry(), (1.0, 0.0, 1.0))


@pytest.mark.parametrize("interpolation", ["label_linear", "nearest"])
def test_label_there_and_back_keeps_geometry_and_position(
    grid_kind: str, interpolation: str
) -> None:
    _, label, _ = sphere_phantom(grid_kind)
    coarse = resample_to_spacing(label, TARGET_SPACING, interpolation)
    assert coarse.array.dtype == np.uint8
    assert coarse.geometry.spacing_xyz_mm == TARGET_SPACING
    # The sphere stays where it is in the patient (a direction mistake would move it).
    np.testing.assert_allclose(centroid_lps(coarse), centroid_lps(label), atol=1.0)
    back = resample_to_geometry(coarse, label.geometry, interpolation)
    assert back.geometry == label.geometry
    assert back.array.shape == label.array.shape
    assert dice(back.array, label.array) > 0.85
    np.testing.assert_allclose(centroid_lps(back), centroid_lps(label), atol=1.0)


def test_linear_ct_resampling_is_float_and_fills_outside_with_given_value(grid_kind: str) -> None:
    ct, _, _ = sphere_phantom(grid_kind)
    shifted = Geometry(
        ct.geometry.shape_zyx,
        ct.geometry.spacing_xyz_mm,
        tuple(np.array(ct.geometry.origin_xyz_mm) + 1000.0),
        ct.geometry.direction,
    )
    outside = resample_to_geometry(ct, shifted, "linear", default_value=-1024.0)
    assert outside.array.dtype == np.float32
    assert np.all(outside.array == -1024.0)
    same = resample_to_geometry(ct, ct.geometry, "linear")
    np.testing.assert_allclose(same.array, ct.array, atol=1e-3)


def test_resample_rejects_unknown_interpolation() -> None:
    volume = Volume(np.zeros((2, 3, 4), np.float32), Geometry((2, 3, 4), (1, 1, 1)))
    with pytest.raises(ValueError, match="interpolation"):
        resample_to_geometry(volume, volume.geometry, "cubic")  # type: ignore[arg-type]


def test_hu_window_maps_lo_to_zero_hi_to_one_and_clips() -> None:
    ct_hu = np.array([-3000.0, -1000.0, -200.0, 300.0, 1600.0, 4000.0])
    scaled = apply_hu_window(ct_hu, (-1000.0, 1600.0))
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, [0.0, 0.0, 800 / 2600, 1300 / 2600, 1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(apply_hu_window(np.array([-50.0]), (-100.0, 0.0)), [0.5])
    with pytest.raises(ValueError, match="lo < hi"):
        apply_hu_window(ct_hu, (100.0, 100.0))


def body_with_couch(kind: str) -> Volume:
    geometry = make_geometry(kind, shape_zyx=(14, 40, 48), spacing_xyz_mm=(1.0, 2.0, 2.5))
    ct_hu = np.full(geometry.shape_zyx, -1000.0, np.float32)
    ct_hu[3:11, 8:26, 10:37] = 30.0  # body
    ct_hu[3:11, 14:18, 20:30] = -700.0  # air pocket inside (below threshold)
    ct_hu[:, 36:39, 5:45] = 200.0  # couch: separate, smaller than the body
    return Volume(ct_hu, geometry)


def test_body_mask_keeps_largest_component_only() -> None:
    ct = body_with_couch("axial")
    mask = body_mask(ct.array, -500.0)
    assert mask[5, 10, 15] and not mask[5, 37, 20] and not mask[5, 15, 25]
    assert not body_mask(np.full((3, 3, 3), -1000.0)).any()


def test_body_box_has_margin_in_mm_and_maps_back(grid_kind: str) -> None:
    ct = body_with_couch(grid_kind)
    box = find_body_box(ct, -500.0, margin_mm=4.0)
    # margin 4 mm → z: ceil(4 / 2.5) = 2, y: 4 / 2 = 2, x: 4 / 1 = 4 voxels
    assert box.start_zyx == (1, 6, 6)
    assert box.stop_zyx == (13, 28, 41)
    cropped = box.crop(ct)
    assert cropped.array.shape == box.shape_zyx
    # voxel (0, 0, 0) of the crop sits where voxel `start` of the input sits
    start_ijk = np.array(box.start_zyx[::-1], dtype=float)
    np.testing.assert_allclose(
        cropped.geometry.index_to_physical(np.zeros(3)), ct.geometry.index_to_physical(start_ijk)
    )
    pasted = box.paste(cropped.array, fill_value=-1000.0)
    body_only = np.where(body_mask(ct.array), ct.array, -1000.0)
    np.testing.assert_array_equal(np.where(body_mask(pasted), pasted, -1000.0), body_only)
    assert CropBox.from_dict(json.loads(json.dumps(box.to_dict()))) == box


def test_body_box_is_clipped_and_falls_back_to_full_grid() -> None:
    ct = body_with_couch("axial")
    assert find_body_box(ct, -500.0, margin_mm=100.0).stop_zyx == ct.geometry.shape_zyx
    empty = ct.with_array(np.full(ct.geometry.shape_zyx, -1000.0, np.float32))
    assert find_body_box(empty) == CropBox.full(ct.geometry.shape_zyx)
    with pytest.raises(ValueError, match="margin"):
        find_body_box(ct, margin_mm=-1.0)


def test_crop_box_rejects_boxes_outside_the_grid() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        CropBox((0, 0, 0), (5, 5, 5), (4, 5, 5))


def test_preprocess_round_trip_onto_input_grid(grid_kind: str) -> None:
    ct, label, _ = sphere_phantom(grid_kind)
    config = PreprocessConfig(spacing_xyz_mm=TARGET_SPACING, crop_margin_mm=3.0)
    case = preprocess(ct, config)
    assert case.image.dtype == np.float32
    assert case.image.shape == case.network_geometry.shape_zyx
    assert 0.0 <= case.image.min() and case.image.max() <= 1.0
    assert case.crop_box.shape_zyx != ct.geometry.shape_zyx  # the crop did something
    network_axes = case.network_geometry.direction_matrix
    assert np.all(np.diag(network_axes) > 0.9)  # reoriented: i, j, k along L, P, S
    label_net = case.label_to_network(label)
    assert label_net.dtype == np.uint8 and label_net.shape == case.network_geometry.shape_zyx
    probability = case.to_input_grid(label_net.astype(np.float32), kind="probability")
    assert probability.shape == ct.geometry.shape_zyx and probability.dtype == np.float32
    assert dice(probability >= 0.5, label.array) > 0.85
    as_label = case.to_input_grid(label_net, kind="label")
    assert as_label.dtype == np.uint8 and dice(as_label, label.array) > 0.8
    outside = np.ones(ct.geometry.shape_zyx, bool)
    outside[case.crop_box.slices] = False
    assert not probability[outside].any()


def test_preprocess_without_crop_covers_whole_grid() -> None:
    ct, _, _ = sphere_phantom("axial")
    case = preprocess(ct, PreprocessConfig(spacing_xyz_mm=(0.9, 0.9, 2.5), body_crop=False))
    assert case.crop_box == CropBox.full(ct.geometry.shape_zyx)
    assert case.network_geometry.is_close(ct.geometry)
    np.testing.assert_allclose(case.image, apply_hu_window(ct.array, (-1000, 1600)), atol=1e-5)


def test_label_to_network_rejects_label_on_another_grid() -> None:
    ct, label, _ = sphere_phantom("axial")
    case = preprocess(ct, PreprocessConfig(spacing_xyz_mm=TARGET_SPACING))
    other = Volume(label.array, make_geometry("flipped", shape_zyx=label.geometry.shape_zyx))
    with pytest.raises(ValueError, match="grid"):
        case.label_to_network(other)


def test_preprocess_config_round_trips_through_json_and_validates() -> None:
    config = PreprocessConfig(spacing_xyz_mm=(1.5, 1.5, 3.0), hu_window=(-200, 300))
    again = PreprocessConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    with pytest.raises(ValueError, match="unknown"):
        PreprocessConfig.from_dict({"spacing": [1, 1, 1]})
    with pytest.raises(ValueError, match="label_interpolation"):
        PreprocessConfig(label_interpolation="cubic")
    with pytest.raises(ValueError, match="spacing"):
        PreprocessConfig(spacing_xyz_mm=(1.0, -1.0, 1.0))


def test_padding_to_multiple_and_back() -> None:
    array = np.arange(3 * 5 * 7, dtype=np.float32).reshape(1, 3, 5, 7)
    widths = pad_widths_to_multiple(array.shape[1:], 4)
    padded = pad_array(array, widths, value=-1.0)
    assert padded.shape == (1, 4, 8, 8)
    assert widths == ((0, 1), (1, 2), (0, 1))
    np.testing.assert_array_equal(padded[(slice(None), *unpad_slices(widths))], array)
    assert (padded == -1.0).sum() == padded.size - array.size
