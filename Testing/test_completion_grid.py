"""Sparse-slice completion: crop and model grid, how drawn slices reach it, and the way back."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_geometry

from AutoCTVLib.completion.annotation import Annotation
from AutoCTVLib.completion.grid import (
    INPUT_CHANNELS,
    CompletionGridConfig,
    crop_box_for,
    prepare_inputs,
)
from AutoCTVLib.completion.prior import shape_prior
from AutoCTVLib.completion.sampling import every_nth_slice
from AutoCTVLib.metrics import dice
from AutoCTVLib.preprocess.resample import resample_to_geometry
from AutoCTVLib.volume import Volume

SHAPE = (20, 48, 52)
SPACING = (0.9, 0.9, 3.0)  # in-plane finer than the model grid, slices as thick as it


def ellipsoid(shape=SHAPE, radii=(7.0, 15.0, 17.0)) -> np.ndarray:
    grid = np.indices(shape, dtype=float)
    centre = [(n - 1) / 2.0 for n in shape]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0


def case(kind: str, spacing=SPACING, shape=SHAPE) -> tuple[Volume, np.ndarray]:
    geometry = make_geometry(kind, shape_zyx=shape, spacing_xyz_mm=spacing)
    mask = ellipsoid(shape)
    ct = np.where(mask, 40.0, -90.0).astype(np.float32)
    return Volume(ct, geometry), mask


def test_annotated_slices_land_on_model_planes(grid_kind: str) -> None:
    ct, mask = case(grid_kind)
    annotation = every_nth_slice(mask, "z", 3, phase=1)
    sparse = mask & annotation.known_mask(SHAPE)
    inputs = prepare_inputs(ct, sparse, annotation)
    model = inputs.model_geometry
    assert model.spacing_xyz_mm == CompletionGridConfig().spacing_xyz_mm
    assert np.allclose(model.direction, ct.geometry.direction)
    # Same slice spacing: one model plane per annotated slice, at the slice's exact position.
    assert len(inputs.model_annotation.z) == len(annotation.z)
    assert not inputs.model_annotation.y and not inputs.model_annotation.x
    normal = ct.geometry.slice_normal
    for k, m in zip(annotation.z, inputs.model_annotation.z):
        input_plane = ct.geometry.index_to_physical(np.array([0.0, 0.0, k])) @ normal
        model_plane = model.index_to_physical(np.array([0.0, 0.0, m])) @ normal
        assert input_plane == pytest.approx(model_plane, abs=1e-6)
    # In-plane resampling keeps the drawn area (within a few per cent).
    drawn_mm2 = sparse.sum() * SPACING[0] * SPACING[1]
    model_mm2 = inputs.sparse.sum() * model.spacing_xyz_mm[0] * model.spacing_xyz_mm[1]
    assert model_mm2 == pytest.approx(drawn_mm2, rel=0.08)
    # The plane holds the drawn slice itself, in-plane resampled: what resampling the full
    # structure gives exactly at that plane (nothing comes from neighbouring slices).
    cropped = inputs.crop_box.crop(ct.with_array(mask.astype(np.uint8)))
    full = resample_to_geometry(cropped, model, "label_linear").array
    for m in inputs.model_annotation.z:
        assert np.mean(full[m] == inputs.sparse[m]) > 0.99
    known = inputs.known > 0
    assert known[list(inputs.model_annotation.z)].all()
    assert known.sum() == len(annotation.z) * model.shape_zyx[1] * model.shape_zyx[2]
    assert not inputs.sparse[~known].any()
    stacked = inputs.stacked()
    assert stacked.shape == (len(INPUT_CHANNELS), *model.shape_zyx)
    assert stacked.dtype == np.float32
    assert 0.0 <= stacked[0].min() and stacked[0].max() <= 1.0


def test_orthogonal_slices_each_reach_their_own_plane(grid_kind: str) -> None:
    ct, mask = case(grid_kind)
    annotation = Annotation(z=(9,), y=(20, 28), x=(26,))
    inputs = prepare_inputs(ct, mask & annotation.known_mask(SHAPE), annotation)
    assert inputs.model_annotation.counts() == (1, 2, 1)
    for name in ("z", "y", "x"):
        for plane in inputs.model_annotation.slices(name):
            window = [slice(None)] * 3
            window["zyx".index(name)] = plane
            assert (inputs.known[tuple(window)] == 1).all()
            assert inputs.sparse[tuple(window)].any()


def test_the_interpolation_channel_fills_between_the_model_planes(grid_kind: str) -> None:
    ct, mask = case(grid_kind)
    annotation = every_nth_slice(mask, "z", 5)
    inputs = prepare_inputs(ct, mask & annotation.known_mask(SHAPE), annotation)
    prior = inputs.stacked()[INPUT_CHANNELS.index("interpolation")] > 0
    spacing_zyx = inputs.model_geometry.spacing_xyz_mm[::-1]
    expected = shape_prior(inputs.sparse > 0, inputs.model_annotation, spacing_zyx)
    np.testing.assert_array_equal(prior, expected)
    known = inputs.known > 0
    np.testing.assert_array_equal(prior[known], inputs.sparse[known] > 0)
    # It fills the gaps: far closer to the whole structure than the drawn planes alone.
    cropped = inputs.crop_box.crop(ct.with_array(mask.astype(np.uint8)))
    whole = resample_to_geometry(cropped, inputs.model_geometry, "label_linear").array > 0
    assert dice(prior, whole) > 0.85 > 0.6 > dice(inputs.sparse > 0, whole)
    # One slice per axis: nothing to interpolate between, the channel is the drawing itself.
    single = Annotation(z=(10,), y=(24,), x=(26,))
    inputs = prepare_inputs(ct, mask & single.known_mask(SHAPE), single)
    np.testing.assert_array_equal(inputs.prior, inputs.sparse)


def test_probability_goes_back_onto_the_exact_input_grid(grid_kind: str) -> None:
    ct, mask = case(grid_kind)
    annotation = every_nth_slice(mask, "z", 4)
    inputs = prepare_inputs(ct, mask & annotation.known_mask(SHAPE), annotation)
    cropped = inputs.crop_box.crop(ct.with_array(mask.astype(np.uint8)))
    on_model = resample_to_geometry(cropped, inputs.model_geometry, "label_linear").array
    back = inputs.probability_to_input(on_model.astype(np.float32))
    assert back.shape == SHAPE
    assert dice(back >= 0.5, mask) > 0.9
    with pytest.raises(ValueError):
        inputs.probability_to_input(np.zeros((2, 2, 2), dtype=np.float32))


def test_crop_covers_drawing_annotated_slices_and_margin() -> None:
    _, mask = case("axial")
    annotation = Annotation(z=(3, 9, 16))
    sparse = mask & annotation.known_mask(SHAPE)
    box = crop_box_for(sparse, annotation, SPACING, margin_mm=6.0)
    points = np.argwhere(sparse)
    assert box.start_zyx[0] == max(0, 3 - 2) and box.stop_zyx[0] == min(SHAPE[0], 16 + 2 + 1)
    margin = math.ceil(6.0 / SPACING[0])
    for axis in (1, 2):
        assert box.start_zyx[axis] == max(0, points[:, axis].min() - margin)
        assert box.stop_zyx[axis] == min(SHAPE[axis], points[:, axis].max() + margin + 1)
    # An annotated slice left empty still widens the crop.
    wider = crop_box_for(sparse, Annotation(z=(3, 9, 16, 19)), SPACING, margin_mm=6.0)
    assert wider.stop_zyx[0] == SHAPE[0]


def test_slices_finer_than_the_model_spacing_are_merged() -> None:
    ct, mask = case("axial", spacing=(1.5, 1.5, 1.0), shape=(40, 48, 52))
    annotation = Annotation(z=tuple(range(6, 34, 2)))
    sparse = mask & annotation.known_mask(mask.shape)
    inputs = prepare_inputs(ct, sparse, annotation)
    planes = inputs.model_annotation.z
    assert len(planes) < len(annotation.z)
    assert np.all(np.diff(planes) >= 1)
    assert not inputs.sparse[inputs.known == 0].any()


def test_grid_config_round_trip_and_checks() -> None:
    config = CompletionGridConfig(spacing_xyz_mm=(2.5, 2.5, 3.0), hu_window=(-100, 300))
    assert CompletionGridConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["task"] == "completion"
    with pytest.raises(ValueError):
        CompletionGridConfig(spacing_xyz_mm=(0.0, 3.0, 3.0))
    with pytest.raises(ValueError):
        CompletionGridConfig(margin_mm=-1.0)
    with pytest.raises(ValueError):
        CompletionGridConfig.from_dict({"spacing": [3, 3, 3]})
