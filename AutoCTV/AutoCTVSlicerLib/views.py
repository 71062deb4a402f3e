"""What the slice views show: the uncertainty heat map over the CT, and jumping to a slice.

Everything here works on MRML nodes only (slice composite nodes, slice nodes), so it behaves the
same in the Slicer application and on a bare MRML scene; in the application the views follow
their nodes at once.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk


def _nodes_of_class(scene, class_name: str) -> list:
    return [
        scene.GetNthNodeByClass(index, class_name)
        for index in range(scene.GetNumberOfNodesByClass(class_name))
    ]


def show_heat_map(ct_node, heat_map_node, opacity: float = 0.5) -> int:
    """Show the CT as background and the heat map as foreground layer in every slice view.

    Args:
        ct_node: the CT volume node (background layer).
        heat_map_node: the uncertainty volume node (foreground layer), on the CT's grid.
        opacity: foreground opacity, 0 (invisible) to 1 (opaque); clipped to that range.

    Returns:
        The number of slice views changed.
    """
    opacity = float(min(1.0, max(0.0, opacity)))
    composites = _nodes_of_class(ct_node.GetScene(), "vtkMRMLSliceCompositeNode")
    for composite in composites:
        composite.SetBackgroundVolumeID(ct_node.GetID())
        composite.SetForegroundVolumeID(heat_map_node.GetID())
        composite.SetForegroundOpacity(opacity)
    return len(composites)


def set_heat_map_opacity(scene, heat_map_node, opacity: float) -> int:
    """Change the foreground opacity of the views that show ``heat_map_node``; returns how many."""
    opacity = float(min(1.0, max(0.0, opacity)))
    changed = 0
    for composite in _nodes_of_class(scene, "vtkMRMLSliceCompositeNode"):
        if composite.GetForegroundVolumeID() == heat_map_node.GetID():
            composite.SetForegroundOpacity(opacity)
            changed += 1
    return changed


def hide_heat_map(scene, heat_map_node) -> int:
    """Remove ``heat_map_node`` from the foreground of every view showing it; returns how many."""
    changed = 0
    for composite in _nodes_of_class(scene, "vtkMRMLSliceCompositeNode"):
        if composite.GetForegroundVolumeID() == heat_map_node.GetID():
            composite.SetForegroundVolumeID(None)
            changed += 1
    return changed


def slice_centre_ras(volume_node, k: int) -> np.ndarray:
    """RAS position (mm) of the centre of slice ``k`` (the k index of the (z, y, x) array).

    The centre is voxel index ((nx-1)/2, (ny-1)/2, k) mapped through the node's IJKToRAS and
    its parent transform (if any), so it is correct for oblique and flipped grids.

    Raises:
        IndexError: ``k`` is outside 0 … number of slices - 1.
    """
    size_ijk = volume_node.GetImageData().GetDimensions()
    if not 0 <= int(k) < size_ijk[2]:
        raise IndexError(f"slice {k} is outside 0..{size_ijk[2] - 1} of '{volume_node.GetName()}'")
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(ijk_to_ras)
    index = np.array([(size_ijk[0] - 1) / 2.0, (size_ijk[1] - 1) / 2.0, float(k), 1.0])
    ras = slicer.util.arrayFromVTKMatrix(ijk_to_ras) @ index
    transform_node = volume_node.GetParentTransformNode()
    if transform_node is not None:
        to_world = vtk.vtkGeneralTransform()
        transform_node.GetTransformToWorld(to_world)
        return np.array(to_world.TransformPoint(ras[:3]))
    return ras[:3]


def jump_to_slice(volume_node, k: int) -> np.ndarray:
    """Centre every slice view of the scene on slice ``k`` of ``volume_node``; returns the RAS.

    Uses ``vtkMRMLSliceNode.JumpAllSlices`` (centred jump), which moves each view so that the
    point lies in its plane and in its middle: an axial view then shows slice k.
    """
    ras = slice_centre_ras(volume_node, k)
    slicer.vtkMRMLSliceNode.JumpAllSlices(
        volume_node.GetScene(), *ras, slicer.vtkMRMLSliceNode.CenteredJumpSlice
    )
    return ras
