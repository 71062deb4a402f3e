"""Side-by-side compare: two contours of one CT in two linked axial views.

The "Side by side" layout has the usual axial view (``Red``) on the left and a second axial
view (``Compare``) on the right; both follow the slice slider. The left view (and every other
view) shows the current, possibly edited CTV; the right one only the comparison contour: the
reference uploaded with the CT (green) when there is one, else the model's contour before
any edit (its own node, made from the model's labelmap). Other layouts show both contours
overlaid as before (the reference behind its checkbox).
"""

from __future__ import annotations

from typing import Any

SIDE_BY_SIDE = "Side by side"
COMPARE_VIEW = "Compare"
BEFORE_EDIT_COLOR_RGB = (0.35, 0.6, 1.0)


def side_by_side_layout() -> Any:
    """The trame-slicer layout: two axial views, left ``Red`` and right ``Compare``."""
    from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

    return Layout(
        LayoutDirection.Horizontal,
        [
            ViewLayoutDefinition.axial_view(),
            ViewLayoutDefinition.slice_view("Axial", label=COMPARE_VIEW, color="#4A9DF3"),
        ],
    )


def _view_node_ids(scene: Any) -> tuple[list[str], list[str]]:
    """IDs of the compare view's slice node(s) and of every other slice and 3D view node."""
    compare: list[str] = []
    others: list[str] = []
    for class_name in ("vtkMRMLSliceNode", "vtkMRMLViewNode"):
        for index in range(scene.GetNumberOfNodesByClass(class_name)):
            node = scene.GetNthNodeByClass(index, class_name)
            tag = node.GetSingletonTag() or ""
            (compare if tag == COMPARE_VIEW else others).append(node.GetID())
    return compare, others


def before_edit_node(case: Any) -> Any:
    """The model's contour before any edit as its own segmentation node (made once per case)."""
    from AutoCTVSlicerLib.segmentation_nodes import add_segmentation_node

    if getattr(case, "before_edit_node", None) is None:
        case.before_edit_node = add_segmentation_node(
            case.label_zyx,
            case.ct_node,
            segment_name="Model CTV (before edits)",
            color_rgb=BEFORE_EDIT_COLOR_RGB,
            terminology=None,
            node_name=f"Model before edits {case.case_id[:8]}",
        )
    return case.before_edit_node


def apply_compare(case: Any, side_by_side: bool, show_reference: bool) -> str:
    """Route each contour to its views; returns the right view's title ("" when overlaid)."""
    scene = case.ct_node.GetScene()
    compare_ids, other_ids = _view_node_ids(scene)
    current = case.segmentation_node.GetDisplayNode()
    reference = case.reference_node
    if side_by_side:
        right = reference if reference is not None else before_edit_node(case)
        current.RemoveAllViewNodeIDs()
        for node_id in other_ids:
            current.AddViewNodeID(node_id)
        for node in (reference, getattr(case, "before_edit_node", None)):
            if node is not None and node is not right:
                node.SetDisplayVisibility(False)
        display = right.GetDisplayNode()
        display.RemoveAllViewNodeIDs()
        for node_id in compare_ids:
            display.AddViewNodeID(node_id)
        right.SetDisplayVisibility(True)
        if reference is not None:
            return "Right: reference CTV (green); left: current CTV"
        return "Right: model CTV before edits (blue); left: current (edited) CTV"
    current.RemoveAllViewNodeIDs()  # no IDs: shown in every view
    if getattr(case, "before_edit_node", None) is not None:
        case.before_edit_node.SetDisplayVisibility(False)
    if reference is not None:
        reference.GetDisplayNode().RemoveAllViewNodeIDs()
        reference.SetDisplayVisibility(bool(show_reference))
    return ""
