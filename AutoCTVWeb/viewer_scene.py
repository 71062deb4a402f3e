"""A case on trame-slicer's MRML scene, through the Slicer module's own MRML glue.

Everything that turns arrays into nodes is ``AutoCTVSlicerLib`` (``volume_nodes``,
``segmentation_nodes``, ``heat_map``): the browser shows exactly the nodes the Slicer module
would create. This module only reads a case's files with the library and calls that glue.
Imports slicer-core and VTK: used by the viewer only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from AutoCTVLib.io.ct_reader import read_ct
from AutoCTVLib.io.image_files import read_labelmap

from .slicer_glue import SLICER_MODULE_DIR  # noqa: F401 - puts AutoCTVSlicerLib on the path

#: Colour of the reference contour (0–1 RGB): green beside the CTV's orange.
REFERENCE_COLOR_RGB = (0.2, 0.85, 0.35)

#: Window presets: name → (window, level) in HU.
WINDOW_PRESETS = {
    "soft tissue": (400.0, 40.0),
    "pelvis bone": (1500.0, 300.0),
    "lung": (1500.0, -600.0),
    "wide": (2000.0, 0.0),
}


@dataclass
class LoadedCase:
    """The nodes of one case in the scene and what the page needs to navigate it.

    Attributes:
        ct_node: the CT volume node (scalar, HU).
        segmentation_node: the CTV segmentation node (one segment).
        heat_map_node: the entropy heat map node, or None without uncertainty.
        label_zyx: the model's CTV labelmap (uint8, z, y, x), before any edit.
        saved_zyx: the CTV as last saved: the edited contour when one was saved (the
            segmentation node starts from it), else the model's.
        review: the review list (``[{"k", "score", "label"}]``), most uncertain first.
        reference_node / reference_zyx: the reference CTV uploaded with the CT (green
            segmentation node, and its uint8 (z, y, x) labelmap), or None.
    """

    case_id: str
    ct_node: Any
    segmentation_node: Any
    heat_map_node: Any | None
    label_zyx: np.ndarray
    slices: int
    review: list[dict[str, Any]] = field(default_factory=list)
    reference_node: Any | None = None
    reference_zyx: np.ndarray | None = None
    before_edit_node: Any | None = None  # side-by-side compare, made when first needed
    ct_volume: Any | None = None  # the CT as the library's Volume (sparse-slice completion)
    saved_zyx: np.ndarray | None = None  # the CTV as last saved (edited, else the model's)


def load_case(scene: Any, case_dir: Path, input_path: str, series_uid: str = "") -> LoadedCase:
    """Read a finished case (its input and ``out/``) into ``scene`` as the module would.

    Raises:
        AutoCTVError: the input or the results cannot be read.
    """
    from AutoCTVLib.cli.jobs import read_float_map_on
    from AutoCTVSlicerLib.heat_map import add_heat_map_node, review_entries, store_review
    from AutoCTVSlicerLib.segmentation_nodes import add_segmentation_node
    from AutoCTVSlicerLib.volume_nodes import add_volume_node

    loaded = read_ct(case_dir / input_path, series_uid=series_uid or None)
    ct = loaded.volume
    ct_node = add_volume_node(ct, f"CT {case_dir.name[:8]}", scene)
    out = case_dir / "out"
    label = (read_labelmap(out / "ctv.nii.gz", reference=ct.geometry).array != 0).astype(np.uint8)
    saved = label
    edited_path = out / "edited" / "ctv.nii.gz"  # "Save edited contour" wrote it: show that
    if edited_path.is_file():
        edited = read_labelmap(edited_path, reference=ct.geometry).array != 0
        saved = edited.astype(np.uint8)
    segmentation_node = add_segmentation_node(saved, ct_node)
    heat_map_node = None
    review: list[dict[str, Any]] = []
    entropy_path = out / "uncertainty_entropy.nii.gz"
    if entropy_path.is_file():
        entropy = read_float_map_on(entropy_path, ct.geometry)
        heat_map_node = add_heat_map_node(entropy, ct_node, f"Uncertainty {case_dir.name[:8]}")
        report_path = out / "report.json"
        if report_path.is_file():
            store_review(heat_map_node, json.loads(report_path.read_text(encoding="utf-8")))
        review = [
            {"k": entry.k, "score": entry.score, "label": entry.label(rank)}
            for rank, entry in enumerate(review_entries(heat_map_node), start=1)
        ]
    reference_node = reference = None
    reference_path = case_dir / "reference" / "ctv_reference.nii.gz"
    if reference_path.is_file():
        reference = (read_labelmap(reference_path, reference=ct.geometry).array != 0).astype(
            np.uint8
        )
        reference_node = add_segmentation_node(
            reference,
            ct_node,
            segment_name="Reference CTV",
            color_rgb=REFERENCE_COLOR_RGB,
            terminology=None,
            node_name=f"Reference {case_dir.name[:8]}",
        )
    return LoadedCase(
        reference_node=reference_node,
        reference_zyx=reference,
        ct_volume=ct,
        case_id=case_dir.name,
        ct_node=ct_node,
        segmentation_node=segmentation_node,
        heat_map_node=heat_map_node,
        label_zyx=label,
        saved_zyx=saved,
        slices=int(label.shape[0]),
        review=review,
    )


def legend_gradient(heat_map_node: Any, stops: int = 8) -> str:
    """A CSS ``linear-gradient`` of the heat map's colours from 0 to 1 bit (its display range)."""
    color_node = heat_map_node.GetDisplayNode().GetColorNode()
    colors = color_node.GetScalarsToColors()
    low, high = colors.GetRange()
    parts = []
    for index in range(stops):
        fraction = index / (stops - 1)
        red, green, blue = colors.GetColor(low + fraction * (high - low))[:3]
        parts.append(f"rgb({red * 255:.0f},{green * 255:.0f},{blue * 255:.0f}) {fraction:.0%}")
    return "linear-gradient(to right, " + ", ".join(parts) + ")"


def current_label(case: LoadedCase) -> np.ndarray:
    """The CTV as it is now in the scene (after edits), uint8 (z, y, x) on the CT grid."""
    from AutoCTVSlicerLib.segmentation_nodes import labelmap_from_segment

    segment_id = case.segmentation_node.GetSegmentation().GetNthSegmentID(0)
    return labelmap_from_segment(case.segmentation_node, segment_id, case.ct_node)


def volume_dice(first_zyx: np.ndarray, second_zyx: np.ndarray) -> float | None:
    """Dice of two masks over the whole volume (None if both are empty)."""
    a, b = first_zyx != 0, second_zyx != 0
    total = int(a.sum()) + int(b.sum())
    return None if total == 0 else round(2.0 * int((a & b).sum()) / total, 4)


def slice_dice(first_zyx: np.ndarray, second_zyx: np.ndarray) -> list[float | None]:
    """Dice of two masks on every axial slice k (None where both are empty)."""
    values: list[float | None] = []
    for a, b in zip(first_zyx != 0, second_zyx != 0):
        total = int(a.sum()) + int(b.sum())
        values.append(None if total == 0 else round(2.0 * int((a & b).sum()) / total, 4))
    return values


def drop_slice_models(app_logic: Any) -> int:
    """Remove the slice views' "slice models" (the planes a 3D view can show); how many.

    Each slice view's logic keeps a model node of its plane, moved with the plane. Every slice
    view's model displayable manager watches all model nodes, so moving the axial plane made
    the coronal and sagittal views render again although they draw nothing of it. The viewer
    never shows slice planes in 3D, so it removes these nodes (after every scene clear and
    layout change: the logics make them again) and an axial slice change renders only the
    axial views.
    """
    logics = app_logic.GetSliceLogics()
    dropped = 0
    for index in range(logics.GetNumberOfItems()):
        logic = logics.GetItemAsObject(index)
        if logic is not None and logic.GetSliceModelNode() is not None:
            logic.DeleteSliceModel()
            dropped += 1
    return dropped


def move_axial_views(volume_node: Any, k: int) -> int:
    """Show slice ``k`` (z index) of ``volume_node`` in the axial slice views only.

    Unlike the module's ``jump_to_slice`` (which centres every slice view on the point, so the
    coronal, sagittal and 3D views re-render too), this only offsets the axial views' planes
    through the slice's centre (RAS mm) without panning: a slice change then re-renders just
    the axial view. Returns how many slice nodes were moved.
    """
    from AutoCTVSlicerLib.heat_map import slice_centre_ras

    ras = slice_centre_ras(volume_node, k)
    scene = volume_node.GetScene()
    moved = 0
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLSliceNode")
        if node.GetOrientation() == "Axial":
            node.JumpSliceByOffsetting(*ras)
            moved += 1
    return moved
