"""Geometry and Volume: index ⇄ LPS mapping, SimpleITK round trips, validation."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import make_geometry

from AutoCTVLib.volume import Geometry, Volume


def test_index_to_physical_matches_simpleitk(grid_kind: str) -> None:
    geometry = make_geometry(grid_kind)
    reference = geometry.to_sitk_reference()
    rng = np.random.default_rng(0)
    ijk = rng.uniform(0, 10, size=(20, 3))
    ours = geometry.index_to_physical(ijk)
    theirs = np.array([reference.TransformContinuousIndexToPhysicalPoint(p) for p in ijk])
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
    np.testing.assert_allclose(geometry.physical_to_index(ours), ijk, atol=1e-9)


def test_volume_sitk_round_trip_is_exact(grid_kind: str) -> None:
    geometry = make_geometry(grid_kind)
    array = np.arange(np.prod(geometry.shape_zyx), dtype=np.float32).reshape(geometry.shape_zyx)
    volume = Volume(array, geometry)
    image = volume.to_sitk()
    assert image.GetSize() == geometry.size_xyz
    back = Volume.from_sitk(image)
    assert back.geometry == geometry
    np.testing.assert_array_equal(back.array, array)
    # Voxel (i, j, k) = (3, 2, 1) holds array[1, 2, 3] in both worlds.
    assert image.GetPixel(3, 2, 1) == array[1, 2, 3]


def test_slice_normal_and_voxel_volume() -> None:
    geometry = make_geometry("flipped", spacing_xyz_mm=(0.5, 2.0, 3.0))
    np.testing.assert_allclose(geometry.slice_normal, [0, 0, -1])
    assert geometry.voxel_volume_ml == pytest.approx(0.003)
    assert geometry.describe() == "48×40×12 voxels at 0.5×2×3 mm"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape_zyx": (0, 4, 4)}, "shape_zyx"),
        ({"spacing_xyz_mm": (1.0, -1.0, 1.0)}, "spacing"),
        ({"spacing_xyz_mm": (1.0, float("nan"), 1.0)}, "spacing"),
        ({"direction": (1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0)}, "orthonormal"),
        ({"direction": (1.0, 0.0, 0.0)}, "9 values"),
    ],
)
def test_geometry_rejects_bad_values(kwargs: dict, message: str) -> None:
    arguments = {"shape_zyx": (2, 3, 4), "spacing_xyz_mm": (1.0, 1.0, 1.0)} | kwargs
    with pytest.raises(ValueError, match=message):
        Geometry(**arguments)


def test_volume_rejects_mismatched_array() -> None:
    with pytest.raises(ValueError, match="does not match"):
        Volume(np.zeros((2, 3, 4)), Geometry((2, 3, 5), (1, 1, 1)))


def test_is_close_tolerates_rounding_only() -> None:
    geometry = make_geometry("oblique")
    nudged = Geometry(
        geometry.shape_zyx,
        geometry.spacing_xyz_mm,
        tuple(np.add(geometry.origin_xyz_mm, 1e-5)),
        geometry.direction,
    )
    moved = Geometry(
        geometry.shape_zyx,
        geometry.spacing_xyz_mm,
        tuple(np.add(geometry.origin_xyz_mm, 0.5)),
        geometry.direction,
    )
    assert geometry.is_close(nudged)
    assert not geometry.is_close(moved)


def test_from_sitk_rejects_2d() -> None:
    with pytest.raises(ValueError, match="3D"):
        Geometry.from_sitk(sitk.Image(4, 4, sitk.sitkUInt8))
