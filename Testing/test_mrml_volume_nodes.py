"""The RAS ⇄ LPS boundary: library volumes ⇄ MRML volume nodes on a real MRML scene."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk
from conftest import make_geometry
from mrml_support import new_scene  # also puts the Slicer module folder on sys.path

from AutoCTVLib.errors import GeometryError, InputError
from AutoCTVLib.volume import Volume
from AutoCTVSlicerLib.volume_nodes import add_volume_node, update_node_from_volume, volume_from_node

pytestmark = pytest.mark.mrml


def _ct_volume(kind: str, dtype=np.int16, shape_zyx=(5, 6, 7)) -> Volume:
    rng = np.random.default_rng(7)
    array = rng.integers(-1000, 1500, size=shape_zyx).astype(dtype)
    return Volume(array, make_geometry(kind, shape_zyx=shape_zyx))


def _corner_indices_ijk(shape_zyx) -> np.ndarray:
    """The 8 outer corners of the voxel grid, as continuous (i, j, k) indices."""
    nz, ny, nx = shape_zyx
    return np.array(
        [[i, j, k] for i in (-0.5, nx - 0.5) for j in (-0.5, ny - 0.5) for k in (-0.5, nz - 0.5)]
    )


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_volume_node_volume_round_trip_is_exact(grid_kind: str, dtype) -> None:
    scene = new_scene()
    volume = _ct_volume(grid_kind, dtype)
    node = add_volume_node(volume, "CT", scene)
    back = volume_from_node(node)
    assert back.array.dtype == dtype
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.geometry.shape_zyx == volume.geometry.shape_zyx
    np.testing.assert_allclose(
        back.geometry.spacing_xyz_mm, volume.geometry.spacing_xyz_mm, atol=1e-12
    )
    np.testing.assert_allclose(
        back.geometry.origin_xyz_mm, volume.geometry.origin_xyz_mm, atol=1e-12
    )
    np.testing.assert_allclose(back.geometry.direction, volume.geometry.direction, atol=1e-12)
    assert back.metadata == {"mrml_node_id": node.GetID(), "mrml_node_name": "CT"}


def test_returned_array_is_a_copy() -> None:
    scene = new_scene()
    node = add_volume_node(_ct_volume("oblique"), "CT", scene)
    first = volume_from_node(node)
    first.array[...] = 0
    assert np.any(volume_from_node(node).array != 0)


def test_node_ras_corners_are_lps_corners_with_x_and_y_negated(grid_kind: str) -> None:
    scene = new_scene()
    volume = _ct_volume(grid_kind)
    node = add_volume_node(volume, "CT", scene)
    corners_ijk = _corner_indices_ijk(volume.geometry.shape_zyx)

    image = volume.to_sitk()  # SimpleITK is the LPS reference
    corners_lps = np.array([image.TransformContinuousIndexToPhysicalPoint(p) for p in corners_ijk])
    ijk_to_ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk_to_ras)
    corners_ras = np.array([ijk_to_ras.MultiplyPoint([*p, 1.0])[:3] for p in corners_ijk])
    np.testing.assert_allclose(corners_ras, corners_lps * [-1.0, -1.0, 1.0], atol=1e-9)

    # Slicer's own RAS bounding box of the voxel grid (outer voxel corners) agrees.
    bounds = np.zeros(6)
    node.GetRASBounds(bounds)
    np.testing.assert_allclose(bounds[0::2], corners_ras.min(axis=0), atol=1e-6)
    np.testing.assert_allclose(bounds[1::2], corners_ras.max(axis=0), atol=1e-6)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_slicer_reader_agrees_with_simpleitk(tmp_path, grid_kind: str, suffix: str) -> None:
    """A file read by Slicer's volume reader converts to the Volume SimpleITK reads."""
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(_ct_volume(grid_kind).to_sitk(), str(path))
    expected = Volume.from_sitk(sitk.ReadImage(str(path)))

    scene = new_scene()
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "loaded")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()  # what Slicer's volume reader uses
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    loaded = volume_from_node(node)

    np.testing.assert_array_equal(loaded.array, expected.array)
    assert loaded.geometry.is_close(expected.geometry, atol_mm=1e-6, atol_dir=1e-7)


def test_update_node_replaces_grid_and_voxels() -> None:
    scene = new_scene()
    node = add_volume_node(_ct_volume("axial"), "CT", scene)
    replacement = _ct_volume("oblique", np.float32, shape_zyx=(3, 4, 5))
    update_node_from_volume(replacement, node)
    back = volume_from_node(node)
    np.testing.assert_array_equal(back.array, replacement.array)
    assert back.geometry.is_close(replacement.geometry, atol_mm=1e-9, atol_dir=1e-12)


def test_boolean_labelmap_becomes_uint8_labelmap_node() -> None:
    scene = new_scene()
    mask = np.zeros((4, 5, 6), dtype=bool)
    mask[1:3, 2:4, 1:5] = True
    volume = Volume(mask, make_geometry("flipped", shape_zyx=mask.shape))
    node = add_volume_node(volume, "mask", scene, node_class="vtkMRMLLabelMapVolumeNode")
    assert node.IsA("vtkMRMLLabelMapVolumeNode")
    back = volume_from_node(node)
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, mask.astype(np.uint8))


def test_identity_parent_transform_is_accepted_other_transforms_are_refused() -> None:
    scene = new_scene()
    volume = _ct_volume("oblique")
    node = add_volume_node(volume, "CT", scene)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Registration")
    node.SetAndObserveTransformNodeID(transform.GetID())
    assert volume_from_node(node).geometry.is_close(volume.geometry, atol_mm=1e-9)

    shift = vtk.vtkMatrix4x4()
    shift.SetElement(0, 3, 10.0)
    transform.SetMatrixTransformToParent(shift)
    with pytest.raises(GeometryError, match="harden the transform") as raised:
        volume_from_node(node)
    assert "'Registration'" in str(raised.value)


def test_sheared_grid_is_refused() -> None:
    scene = new_scene()
    node = add_volume_node(_ct_volume("axial"), "CT", scene)
    sheared = np.diag([-1.0, -1.0, 2.0, 1.0])
    sheared[0, 2] = 0.5  # the k axis leans towards x
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(sheared))
    with pytest.raises(GeometryError, match="not perpendicular"):
        volume_from_node(node)


def test_vector_and_empty_volumes_are_refused() -> None:
    scene = new_scene()
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="holds no voxels"):
        volume_from_node(empty)
    rgb = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "photo")
    slicer.util.updateVolumeFromArray(rgb, np.zeros((2, 3, 4, 3), dtype=np.uint8))
    with pytest.raises(InputError, match="3 components"):
        volume_from_node(rgb)
    model = scene.AddNewNodeByClass("vtkMRMLModelNode", "model")
    with pytest.raises(InputError, match="expected a scalar volume"):
        volume_from_node(model)
