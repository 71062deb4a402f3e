"""The MRML boundary for volumes: the one RAS ⇄ LPS conversion of AutoCTV.

Slicer stores a volume node's grid as a 4×4 ``IJKToRAS`` matrix that maps homogeneous voxel
indices (i, j, k, 1) to RAS millimetres (x right, y anterior, z superior). The library's
:class:`~AutoCTVLib.volume.Volume` uses LPS millimetres (DICOM patient coordinates), as
SimpleITK does. RAS and LPS differ only by the sign of the first two axes, so::

    IJKToLPS = diag(-1, -1, 1, 1) @ IJKToRAS        (and back the same way)

From ``IJKToLPS`` the columns of the upper-left 3×3 block are ``direction[:, c] * spacing[c]``,
hence spacing = column norms, direction = normalised columns and origin = the translation
column (the LPS centre of voxel (0, 0, 0)). Voxel arrays are indexed (k, j, i) = (z, y, x) on
both sides, so they are copied without reordering.

Parent transforms: a volume node under a non-identity transform is *refused* with a
:class:`~AutoCTVLib.errors.GeometryError` that tells the user to harden or remove the
transform. Silently using the untransformed grid would put results in a different place
than the CT shown on screen, and hardening behind the user's back would modify their data.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk

from AutoCTVLib.errors import GeometryError, InputError
from AutoCTVLib.volume import Geometry, Volume

#: Multiplying by this 4×4 matrix (its own inverse) converts RAS ⇄ LPS.
RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])

_ORTHONORMAL_TOLERANCE = 1e-4


def ijk_to_ras_from_geometry(geometry: Geometry) -> np.ndarray:
    """The 4×4 IJKToRAS matrix (voxel index (i, j, k, 1) → RAS mm) of an LPS grid."""
    return RAS_FROM_LPS @ geometry.index_to_physical_matrix()


def geometry_from_ijk_to_ras(ijk_to_ras: np.ndarray, shape_zyx: tuple[int, int, int]) -> Geometry:
    """The LPS :class:`Geometry` of a grid given by its 4×4 IJKToRAS matrix and array shape.

    Raises:
        GeometryError: the matrix has a zero-length axis or non-perpendicular (sheared) axes.
    """
    ijk_to_lps = RAS_FROM_LPS @ np.asarray(ijk_to_ras, dtype=float)
    scaled_axes = ijk_to_lps[:3, :3]
    spacing_xyz_mm = np.linalg.norm(scaled_axes, axis=0)
    if not np.all(np.isfinite(spacing_xyz_mm)) or np.any(spacing_xyz_mm <= 0):
        raise GeometryError(
            f"the volume has an invalid voxel spacing {tuple(spacing_xyz_mm.round(6))} mm"
        )
    direction = scaled_axes / spacing_xyz_mm[None, :]
    if not np.allclose(direction.T @ direction, np.eye(3), atol=_ORTHONORMAL_TOLERANCE):
        raise GeometryError(
            "the volume's voxel axes are not perpendicular (sheared grid); "
            "resample it to a regular grid first"
        )
    return Geometry(
        shape_zyx=tuple(int(n) for n in shape_zyx),
        spacing_xyz_mm=tuple(spacing_xyz_mm),
        origin_xyz_mm=tuple(ijk_to_lps[:3, 3]),
        direction=tuple(direction.ravel()),
    )


def node_ijk_to_ras(volume_node) -> np.ndarray:
    """The node's own 4×4 IJKToRAS matrix (without any parent transform)."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def check_no_parent_transform(volume_node) -> None:
    """Refuse a node that is placed under a transform that moves it.

    An identity linear transform is accepted. Anything else raises :class:`GeometryError`
    asking the user to harden or remove the transform.
    """
    transform_node = volume_node.GetParentTransformNode()
    if transform_node is None:
        return
    if transform_node.IsTransformToWorldLinear():
        to_world = vtk.vtkMatrix4x4()
        transform_node.GetMatrixTransformToWorld(to_world)
        if np.allclose(slicer.util.arrayFromVTKMatrix(to_world), np.eye(4), atol=1e-9):
            return
    raise GeometryError(
        f"the volume '{volume_node.GetName()}' is under the transform "
        f"'{transform_node.GetName()}'; harden the transform (Data module: right-click the "
        "volume, 'Harden transform') or remove it, then run again"
    )


def volume_from_node(volume_node, dtype: np.dtype | type | None = None) -> Volume:
    """Copy a scalar volume node into a library :class:`Volume` (array (z, y, x), LPS mm).

    Args:
        volume_node: a ``vtkMRMLScalarVolumeNode`` (or labelmap volume node) with voxels.
        dtype: convert the voxel array to this type; ``None`` keeps the node's scalar type.

    Returns:
        A volume whose array is a copy (changing it does not touch the node) and whose
        ``metadata`` names the node (``mrml_node_id``, ``mrml_node_name``).

    Raises:
        InputError: the node is not a single-component scalar volume or has no voxels.
        GeometryError: the node is under a moving transform or its grid is sheared.
    """
    if volume_node is None or not volume_node.IsA("vtkMRMLScalarVolumeNode"):
        kind = "nothing" if volume_node is None else volume_node.GetClassName()
        raise InputError(f"expected a scalar volume (a CT), got {kind}")
    name = volume_node.GetName()
    image_data = volume_node.GetImageData()
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        raise InputError(f"the volume '{name}' holds no voxels")
    if image_data.GetNumberOfScalarComponents() != 1:
        raise InputError(
            f"the volume '{name}' has {image_data.GetNumberOfScalarComponents()} components per "
            "voxel (a colour or vector image); choose a single-channel CT"
        )
    check_no_parent_transform(volume_node)
    array_zyx = np.array(slicer.util.arrayFromVolume(volume_node), dtype=dtype, copy=True)
    geometry = geometry_from_ijk_to_ras(node_ijk_to_ras(volume_node), array_zyx.shape)
    metadata = {"mrml_node_id": volume_node.GetID() or "", "mrml_node_name": name or ""}
    return Volume(array_zyx, geometry, metadata)


def set_node_geometry(node, geometry: Geometry) -> None:
    """Give a volume (or any node with ``SetIJKToRASMatrix``) the grid of an LPS geometry."""
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras_from_geometry(geometry)))


def update_node_from_volume(volume: Volume, volume_node) -> None:
    """Replace a volume node's voxels and grid by those of ``volume`` (the array is copied)."""
    array_zyx = np.asarray(volume.array)
    if array_zyx.dtype == np.bool_:
        array_zyx = array_zyx.astype(np.uint8)
    set_node_geometry(volume_node, volume.geometry)
    slicer.util.updateVolumeFromArray(volume_node, np.ascontiguousarray(array_zyx))


def add_volume_node(
    volume: Volume,
    name: str,
    scene,
    node_class: str = "vtkMRMLScalarVolumeNode",
):
    """Add a new volume node holding ``volume`` to ``scene`` and return it.

    Args:
        volume: array (z, y, x) on an LPS grid.
        name: node name shown in Slicer (made unique by the scene if needed).
        scene: the ``vtkMRMLScene`` to add to.
        node_class: ``vtkMRMLScalarVolumeNode`` or ``vtkMRMLLabelMapVolumeNode``.
    """
    volume_node = scene.AddNewNodeByClass(node_class, scene.GenerateUniqueName(name))
    update_node_from_volume(volume, volume_node)
    volume_node.CreateDefaultDisplayNodes()
    return volume_node
