"""Float maps (probability, entropy, mutual information) as heat-map volume nodes on the CT grid.

The map is a scalar volume node with exactly the reference CT's IJKToRAS matrix, so it overlays
the CT voxel for voxel (as foreground layer in the slice views). Its display node gets a heat
colour map: Slicer's "Inferno" (or "ColdToHotRainbow") colour table when the application has
loaded its colour files, otherwise a procedural black → purple → red → yellow → white table that
AutoCTV creates once per scene.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk

from .placement import copy_parent_transform, place_beside, remove_with_display_nodes

#: Slicer's file colour tables that suit an uncertainty heat map, in order of preference.
PREFERRED_HEAT_COLOR_NODE_IDS = (
    "vtkMRMLColorTableNodeFileInferno.txt",
    "vtkMRMLColorTableNodeFileColdToHotRainbow.txt",
)

HEAT_COLOR_NODE_NAME = "AutoCTV heat"
_HEAT_ATTRIBUTE = "AutoCTV.colorMap"

# (position 0–1, r, g, b): a perceptually increasing dark-to-bright ramp.
_HEAT_POINTS = (
    (0.00, 0.00, 0.00, 0.02),
    (0.25, 0.33, 0.06, 0.43),
    (0.50, 0.73, 0.21, 0.33),
    (0.75, 0.98, 0.55, 0.04),
    (1.00, 0.99, 1.00, 0.75),
)


def heat_color_node(scene):
    """A heat colour node of ``scene``: a Slicer colour table if present, else AutoCTV's own."""
    for node_id in PREFERRED_HEAT_COLOR_NODE_IDS:
        node = scene.GetNodeByID(node_id)
        if node is not None:
            return node
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLProceduralColorNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLProceduralColorNode")
        if node.GetAttribute(_HEAT_ATTRIBUTE) == "heat":
            return node
    color_node = slicer.vtkMRMLProceduralColorNode()
    color_node.SetName(HEAT_COLOR_NODE_NAME)
    color_node.SetAttribute(_HEAT_ATTRIBUTE, "heat")
    color_node.SetAttribute("Category", "AutoCTV")
    transfer_function = vtk.vtkColorTransferFunction()
    for position, red, green, blue in _HEAT_POINTS:
        transfer_function.AddRGBPoint(position, red, green, blue)
    color_node.SetAndObserveColorTransferFunction(transfer_function)
    scene.AddNode(color_node)
    return color_node


def add_float_map_node(
    map_zyx: np.ndarray,
    reference_node,
    name: str,
    *,
    color_node=None,
    value_range: tuple[float, float] | None = None,
):
    """Add a float32 scalar volume node holding ``map_zyx`` on the reference CT's grid.

    Args:
        map_zyx: array indexed (z, y, x) with the reference volume's shape (any real dtype;
            stored as float32).
        reference_node: the CT volume node whose IJKToRAS, parent transform and subject
            hierarchy folder the new node takes.
        name: node name (made unique in the scene).
        color_node: colour node for display; default :func:`heat_color_node`.
        value_range: (min, max) mapped to the ends of the colour map; default the data range.

    Returns:
        The new ``vtkMRMLScalarVolumeNode``.
    """
    image_data = reference_node.GetImageData()
    if image_data is None:
        raise ValueError(f"reference volume '{reference_node.GetName()}' has no voxels")
    size_ijk = image_data.GetDimensions()
    shape_zyx = (size_ijk[2], size_ijk[1], size_ijk[0])
    map_zyx = np.asarray(map_zyx)
    if map_zyx.shape != shape_zyx:
        raise ValueError(
            f"map shape {map_zyx.shape} does not match the (z, y, x) shape {shape_zyx} "
            f"of '{reference_node.GetName()}'"
        )
    scene = reference_node.GetScene()
    volume_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(name))
    try:
        ijk_to_ras = vtk.vtkMatrix4x4()
        reference_node.GetIJKToRASMatrix(ijk_to_ras)
        volume_node.SetIJKToRASMatrix(ijk_to_ras)
        slicer.util.updateVolumeFromArray(volume_node, np.ascontiguousarray(map_zyx, np.float32))
        copy_parent_transform(volume_node, reference_node)
        volume_node.CreateDefaultDisplayNodes()
        display_node = volume_node.GetDisplayNode()
        display_node.SetAndObserveColorNodeID((color_node or heat_color_node(scene)).GetID())
        low, high = value_range if value_range is not None else _finite_range(map_zyx)
        if not high > low:
            high = low + 1.0
        display_node.AutoWindowLevelOff()
        display_node.SetWindowLevelMinMax(float(low), float(high))
        place_beside(volume_node, reference_node)
    except Exception:
        remove_with_display_nodes(volume_node)
        raise
    return volume_node


def _finite_range(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (0.0, 1.0)
    return (float(finite.min()), float(finite.max()))
