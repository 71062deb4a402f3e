"""The uncertainty heat map: its volume node, how the slice views show it, and the review list.

Everything here works on MRML nodes only (volume, display, colour-legend, slice composite and
slice nodes), so it behaves the same in the Slicer application, in a browser front end on the
same MRML scene, and on a bare ``slicer-core`` scene.

The heat map is a float volume node on exactly the CT's grid holding the predictive entropy in
bits (0 = sure, 1 = unsure). It is shown as the foreground layer over the CT with a heat colour
table over 0–1 bits; voxels below :data:`TRANSPARENT_BELOW_BITS` are left out by the display
node's threshold, so where the model is sure the CT shows through unchanged. A colour legend
(``vtkMRMLColorLegendDisplayNode``) names the colours. The node carries
``AutoCTV.result_kind = "entropy"``, which is how selectors find heat maps and never offer
the CT (:func:`is_uncertainty_node`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import slicer
import vtk

from .placement import copy_parent_transform, place_beside, remove_with_display_nodes

#: Node attribute (written with the provenance) and value that mark an AutoCTV heat map.
KIND_ATTRIBUTE = "AutoCTV.result_kind"
KIND_ENTROPY = "entropy"
#: The review list: JSON ``[{"k": slice, "score": value}, ...]``, most doubtful first.
REVIEW_ATTRIBUTE = "AutoCTV.review_slices"
SCORE_UNIT_ATTRIBUTE = "AutoCTV.review_score_unit"
CASE_SCORE_ATTRIBUTE = "AutoCTV.case_score"
#: Colour range of the heat map (bits): the binary entropy runs from 0 to 1.
RANGE_BITS = (0.0, 1.0)
#: Voxels below this entropy are transparent (0.1 bits: mean probability above 0.987 or
#: below 0.013).
TRANSPARENT_BELOW_BITS = 0.1
LEGEND_TITLE = "Uncertainty (bits)"

#: Slicer's file colour tables that suit a heat map, in order of preference.
PREFERRED_COLOR_NODE_IDS = (
    "vtkMRMLColorTableNodeFileInferno.txt",
    "vtkMRMLColorTableNodeFileColdToHotRainbow.txt",
)
_OWN_COLOR_ATTRIBUTE = "AutoCTV.colorMap"
# (position 0–1, r, g, b): a dark-to-bright ramp for scenes without Slicer's colour files.
HEAT_POINTS = (
    (0.00, 0.00, 0.00, 0.02),
    (0.25, 0.33, 0.06, 0.43),
    (0.50, 0.73, 0.21, 0.33),
    (0.75, 0.98, 0.55, 0.04),
    (1.00, 0.99, 1.00, 0.75),
)


@dataclass(frozen=True)
class ReviewEntry:
    """One slice of the review list.

    Attributes:
        k: axial slice index of the CT (the z index of its (z, y, x) array).
        position_ras_mm: RAS position (mm) of the slice's centre.
        score: the slice's uncertainty score from the run's report (``None`` if unknown).
        unit: the score's unit ("bits·mm²" for the area-weighted sum, else "bits").
    """

    k: int
    position_ras_mm: tuple[float, float, float]
    score: float | None
    unit: str = ""

    def label(self, rank: int) -> str:
        """The list text, e.g. ``"1. slice 37 (S 112.5 mm), score 1.2e+03 bits·mm²"``."""
        text = f"{rank}. slice {self.k} (S {self.position_ras_mm[2]:.1f} mm)"
        if self.score is not None:
            text += f", score {self.score:.3g} {self.unit}".rstrip()
        return text


def heat_color_node(scene):
    """A heat colour node of ``scene``: a Slicer colour table if present, else AutoCTV's own."""
    for node_id in PREFERRED_COLOR_NODE_IDS:
        node = scene.GetNodeByID(node_id)
        if node is not None:
            return node
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLProceduralColorNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLProceduralColorNode")
        if node.GetAttribute(_OWN_COLOR_ATTRIBUTE) == "heat":
            return node
    color_node = slicer.vtkMRMLProceduralColorNode()
    color_node.SetName("AutoCTV heat")
    color_node.SetAttribute(_OWN_COLOR_ATTRIBUTE, "heat")
    transfer_function = vtk.vtkColorTransferFunction()
    for position, red, green, blue in HEAT_POINTS:
        transfer_function.AddRGBPoint(position, red, green, blue)
    color_node.SetAndObserveColorTransferFunction(transfer_function)
    scene.AddNode(color_node)
    return color_node


def add_heat_map_node(entropy_zyx: np.ndarray, ct_node, name: str):
    """Add the entropy map (bits, (z, y, x) on ``ct_node``'s grid) as a heat-map volume node.

    The node has the CT's IJKToRAS, parent transform and subject hierarchy folder, a heat
    colour table over :data:`RANGE_BITS`, the transparency threshold and a colour legend.

    Raises:
        ValueError: the map's shape is not the CT's (z, y, x) shape.
    """
    size_ijk = ct_node.GetImageData().GetDimensions()
    entropy_zyx = np.asarray(entropy_zyx, dtype=np.float32)
    if entropy_zyx.shape != (size_ijk[2], size_ijk[1], size_ijk[0]):
        raise ValueError(
            f"map shape {entropy_zyx.shape} is not the (z, y, x) shape of '{ct_node.GetName()}'"
        )
    scene = ct_node.GetScene()
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(name))
    try:
        ijk_to_ras = vtk.vtkMatrix4x4()
        ct_node.GetIJKToRASMatrix(ijk_to_ras)
        node.SetIJKToRASMatrix(ijk_to_ras)
        slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(entropy_zyx))
        copy_parent_transform(node, ct_node)
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        display.SetAndObserveColorNodeID(heat_color_node(scene).GetID())
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(*RANGE_BITS)
        display.AutoThresholdOff()
        display.SetThreshold(TRANSPARENT_BELOW_BITS, np.finfo(np.float32).max)
        display.ApplyThresholdOn()
        node.SetAttribute(KIND_ATTRIBUTE, KIND_ENTROPY)
        add_color_legend(node)
        place_beside(node, ct_node)
    except Exception:
        remove_with_display_nodes(node)
        raise
    return node


def add_color_legend(volume_node):
    """The colour legend of ``volume_node`` (made once; shown in the slice views)."""
    display = volume_node.GetDisplayNode()
    for index in range(volume_node.GetNumberOfDisplayNodes()):
        existing = volume_node.GetNthDisplayNode(index)
        if existing is not None and existing.IsA("vtkMRMLColorLegendDisplayNode"):
            return existing
    # Made directly, not by class name: a bare scene has not registered the Colors module's nodes.
    legend = slicer.vtkMRMLColorLegendDisplayNode()
    legend.SetName(f"{volume_node.GetName()} colour legend")
    legend = volume_node.GetScene().AddNode(legend)
    legend.SetTitleText(LEGEND_TITLE)
    legend.SetLabelFormat("%.1f")
    legend.SetAndObservePrimaryDisplayNode(display)
    legend.SetVisibility(True)
    volume_node.AddAndObserveDisplayNodeID(legend.GetID())
    return legend


def is_uncertainty_node(node) -> bool:
    """True for an AutoCTV heat map (never for a CT or any other volume)."""
    return node is not None and node.GetAttribute(KIND_ATTRIBUTE) == KIND_ENTROPY


def _composite_nodes(scene) -> list:
    name = "vtkMRMLSliceCompositeNode"
    return [scene.GetNthNodeByClass(i, name) for i in range(scene.GetNumberOfNodesByClass(name))]


def show_heat_map(ct_node, heat_map_node, opacity: float = 0.5) -> int:
    """CT as background, heat map as foreground (``opacity`` 0–1) in every slice view.

    Returns:
        The number of slice views changed.

    Raises:
        ValueError: ``heat_map_node`` is not an AutoCTV heat map.
    """
    if not is_uncertainty_node(heat_map_node):
        raise ValueError("only an AutoCTV uncertainty map can be shown as the heat map")
    opacity = float(min(1.0, max(0.0, opacity)))
    composites = _composite_nodes(ct_node.GetScene())
    for composite in composites:
        composite.SetBackgroundVolumeID(ct_node.GetID())
        composite.SetForegroundVolumeID(heat_map_node.GetID())
        composite.SetForegroundOpacity(opacity)
    legend = add_color_legend(heat_map_node)
    legend.SetVisibility(True)
    return len(composites)


def _views_showing(heat_map_node) -> list:
    composites = _composite_nodes(heat_map_node.GetScene())
    return [c for c in composites if c.GetForegroundVolumeID() == heat_map_node.GetID()]


def set_heat_map_opacity(heat_map_node, opacity: float) -> int:
    """Change the foreground opacity of the views showing the heat map; returns how many."""
    opacity = float(min(1.0, max(0.0, opacity)))
    views = _views_showing(heat_map_node)
    for composite in views:
        composite.SetForegroundOpacity(opacity)
    return len(views)


def hide_heat_map(heat_map_node) -> int:
    """Take the heat map (and its legend) out of every view showing it; returns how many."""
    views = _views_showing(heat_map_node)
    for composite in views:
        composite.SetForegroundVolumeID(None)
    add_color_legend(heat_map_node).SetVisibility(False)
    return len(views)


def store_review(heat_map_node, report: dict) -> None:
    """Store the report's case score and review slices (with their scores) on the node."""
    uncertainty = report.get("uncertainty") or {}
    scores = uncertainty.get("per_slice_score") or []
    review = []
    for k in uncertainty.get("slices_to_review") or ():
        score = scores[int(k)] if int(k) < len(scores) else None
        review.append({"k": int(k), "score": None if score is None else float(score)})
    heat_map_node.SetAttribute(REVIEW_ATTRIBUTE, json.dumps(review))
    heat_map_node.SetAttribute(
        SCORE_UNIT_ATTRIBUTE, str(uncertainty.get("per_slice_score_unit", ""))
    )
    if uncertainty.get("case_score") is not None:
        heat_map_node.SetAttribute(CASE_SCORE_ATTRIBUTE, f"{float(uncertainty['case_score']):.6g}")


def case_score_of(heat_map_node) -> float | None:
    """The case score stored on a heat map (bits, 0–1), or None."""
    text = heat_map_node.GetAttribute(CASE_SCORE_ATTRIBUTE) if heat_map_node else None
    try:
        return float(text) if text else None
    except ValueError:
        return None


def review_entries(heat_map_node) -> list[ReviewEntry]:
    """The slices to review stored on a heat map, most doubtful first (empty if none)."""
    if not is_uncertainty_node(heat_map_node):
        return []
    try:
        review = json.loads(heat_map_node.GetAttribute(REVIEW_ATTRIBUTE) or "[]")
    except ValueError:
        return []
    unit = heat_map_node.GetAttribute(SCORE_UNIT_ATTRIBUTE) or ""
    depth = heat_map_node.GetImageData().GetDimensions()[2]
    return [
        ReviewEntry(int(e["k"]), tuple(slice_centre_ras(heat_map_node, e["k"])), e["score"], unit)
        for e in review
        if 0 <= int(e["k"]) < depth
    ]


def slice_centre_ras(volume_node, k: int) -> np.ndarray:
    """RAS position (mm) of the centre of slice ``k`` (the k index of the (z, y, x) array).

    The centre is voxel index ((nx-1)/2, (ny-1)/2, k) mapped through the node's IJKToRAS and
    its parent transform (if any), so it is right for oblique and flipped grids.

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
    """Centre every slice view on slice ``k`` of ``volume_node``; returns that point (RAS mm).

    ``vtkMRMLSliceNode.JumpAllSlices`` (centred) moves each view so that the point lies in its
    plane and in its middle: an axial view then shows slice k.
    """
    ras = slice_centre_ras(volume_node, k)
    slicer.vtkMRMLSliceNode.JumpAllSlices(
        volume_node.GetScene(), *ras, slicer.vtkMRMLSliceNode.CenteredJumpSlice
    )
    return ras
