"""Labelmaps ⇄ segmentation nodes, on the exact grid of a reference CT volume node.

A labelmap here is a numpy array indexed (z, y, x) = (k, j, i) on the reference volume's voxel
grid (same shape, same IJKToRAS). Writing builds a ``vtkOrientedImageData`` with the reference
grid and hands it to ``vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment``; reading
uses ``vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode`` with the reference
geometry. These are the calls behind ``slicer.util.updateSegmentBinaryLabelmapFromArray`` and
``slicer.util.arrayFromSegmentBinaryLabelmap``; using the static logic functions directly keeps
the code independent of ``slicer.modules`` and of the global ``slicer.mrmlScene``.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk
from vtk.util.numpy_support import numpy_to_vtk, vtk_to_numpy

from AutoCTVLib import terminology as ctv_codes
from AutoCTVLib.io.seg_nrrd import CTV_TERMINOLOGY, Terminology

from .placement import copy_parent_transform, place_beside, remove_with_display_nodes

#: Display colour of the CTV segment (RGB, 0–1): the library's one CTV colour.
CTV_COLOR_RGB = tuple(component / 255.0 for component in ctv_codes.CTV_COLOR_RGB)

_TEMP_NAME = "__AutoCTV_temporary_labelmap__"


def _segmentations_logic():
    return slicer.vtkSlicerSegmentationsModuleLogic


def _require_labelmap_representation() -> None:
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    if factory.ConstructRepresentationObjectByRepresentation(name) is None:
        raise RuntimeError(
            "segmentation converters are not registered: the Segmentations module logic has "
            "not been given a scene (the Slicer application does this at start-up)"
        )


def _reference_shape_zyx(reference_node) -> tuple[int, int, int]:
    image_data = reference_node.GetImageData()
    if image_data is None:
        raise ValueError(f"reference volume '{reference_node.GetName()}' has no voxels")
    size_ijk = image_data.GetDimensions()
    return (size_ijk[2], size_ijk[1], size_ijk[0])


def oriented_labelmap(labelmap_zyx: np.ndarray, reference_node):
    """A ``vtkOrientedImageData`` (uint8, 0/1) holding ``labelmap_zyx`` on the reference grid.

    Raises:
        ValueError: the labelmap's shape is not the reference volume's (z, y, x) shape.
    """
    shape_zyx = _reference_shape_zyx(reference_node)
    labelmap_zyx = np.asarray(labelmap_zyx)
    if labelmap_zyx.shape != shape_zyx:
        raise ValueError(
            f"labelmap shape {labelmap_zyx.shape} does not match the (z, y, x) shape "
            f"{shape_zyx} of '{reference_node.GetName()}'"
        )
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(shape_zyx[2], shape_zyx[1], shape_zyx[0])
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    ijk_to_ras = vtk.vtkMatrix4x4()
    reference_node.GetIJKToRASMatrix(ijk_to_ras)
    image.SetImageToWorldMatrix(ijk_to_ras)
    voxels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape_zyx)
    voxels[...] = labelmap_zyx != 0
    return image


def set_segment_labelmap(
    segmentation_node, segment_id: str, labelmap_zyx: np.ndarray, reference_node
) -> None:
    """Replace a segment's voxels by ``labelmap_zyx`` (non-zero = inside) on the reference grid.

    A segmentation without a reference image gets ``reference_node`` as its reference.
    """
    _require_labelmap_representation()
    image = oriented_labelmap(labelmap_zyx, reference_node)
    logic = _segmentations_logic()
    if not logic.SetBinaryLabelmapToSegment(
        image, segmentation_node, segment_id, logic.MODE_REPLACE
    ):
        raise RuntimeError(f"could not write the labelmap into segment '{segment_id}'")
    if reference_volume(segmentation_node) is None:
        set_reference_volume(segmentation_node, reference_node)


def add_segment(
    segmentation_node,
    segment_name: str = ctv_codes.CTV_SEGMENT_NAME,
    color_rgb: tuple[float, float, float] = CTV_COLOR_RGB,
    terminology: Terminology | None = CTV_TERMINOLOGY,
) -> str:
    """Add an empty segment (colour components 0–1; ``terminology`` stored in Slicer's
    ``TerminologyEntry`` tag, ``None`` keeps Slicer's default); returns its ID."""
    segmentation = segmentation_node.GetSegmentation()
    segment_id = segmentation.AddEmptySegment("", segment_name, [float(c) for c in color_rgb])
    if terminology is not None:
        segmentation.GetSegment(segment_id).SetTag(
            slicer.vtkSegment.GetTerminologyEntryTagName(), terminology.as_tag_value()
        )
    return segment_id


def add_segmentation_node(
    labelmap_zyx: np.ndarray,
    reference_node,
    *,
    segment_name: str = ctv_codes.CTV_SEGMENT_NAME,
    color_rgb: tuple[float, float, float] = CTV_COLOR_RGB,
    terminology: Terminology | None = CTV_TERMINOLOGY,
    node_name: str | None = None,
):
    """Create a segmentation node with one segment holding ``labelmap_zyx``.

    Args:
        labelmap_zyx: bool/uint8 array indexed (z, y, x) on ``reference_node``'s grid;
            non-zero voxels are inside the segment.
        reference_node: the CT volume node; it defines the segmentation's reference geometry,
            its subject hierarchy folder (the new node becomes its sibling) and parent transform.
        segment_name: name of the segment shown in the Segment Editor.
        color_rgb: segment colour, each component in 0–1.
        terminology: coded meaning stored in the segment's ``TerminologyEntry`` tag, in
            Slicer's serialised form (default: the CTV codes of :mod:`AutoCTVLib.terminology`,
            the same string the ``.seg.nrrd`` writer stores); ``None`` keeps Slicer's default.
        node_name: name of the segmentation node (default: "<reference name> AutoCTV").

    Returns:
        The new ``vtkMRMLSegmentationNode``; its segment ID is
        ``node.GetSegmentation().GetNthSegmentID(0)``.
    """
    _require_labelmap_representation()
    scene = reference_node.GetScene()
    name = node_name or f"{reference_node.GetName()} AutoCTV"
    segmentation_node = scene.AddNewNodeByClass(
        "vtkMRMLSegmentationNode", scene.GenerateUniqueName(name)
    )
    try:
        segmentation_node.CreateDefaultDisplayNodes()
        copy_parent_transform(segmentation_node, reference_node)  # before the reference grid
        set_reference_volume(segmentation_node, reference_node)
        segment_id = add_segment(segmentation_node, segment_name, color_rgb, terminology)
        set_segment_labelmap(segmentation_node, segment_id, labelmap_zyx, reference_node)
        place_beside(segmentation_node, reference_node)
    except Exception:
        remove_with_display_nodes(segmentation_node)
        raise
    return segmentation_node


def labelmap_from_segment(segmentation_node, segment_id: str, reference_node) -> np.ndarray:
    """The segment's voxels as a uint8 0/1 array (z, y, x) on ``reference_node``'s grid."""
    _require_labelmap_representation()
    shape_zyx = _reference_shape_zyx(reference_node)
    if segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
        raise ValueError(
            f"segmentation '{segmentation_node.GetName()}' has no segment {segment_id}"
        )
    scene = segmentation_node.GetScene()
    segment_ids = vtk.vtkStringArray()
    segment_ids.InsertNextValue(segment_id)
    color_node_ids_before = _color_node_ids(scene)
    labelmap_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", _TEMP_NAME)
    labelmap_node.SetHideFromEditors(True)
    try:
        if not _segmentations_logic().ExportSegmentsToLabelmapNode(
            segmentation_node,
            segment_ids,
            labelmap_node,
            reference_node,
            slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY,
        ):
            raise RuntimeError(f"could not export segment '{segment_id}' to a labelmap")
        labels = np.array(slicer.util.arrayFromVolume(labelmap_node), copy=True)
    finally:
        # The export gives the temporary labelmap a colour table of its own: remove it too.
        display_node = labelmap_node.GetDisplayNode()
        color_node = display_node.GetColorNode() if display_node else None
        if color_node is not None and color_node.GetID() not in color_node_ids_before:
            scene.RemoveNode(color_node)
        remove_with_display_nodes(labelmap_node)
    if labels.shape != shape_zyx:
        raise RuntimeError(f"exported labelmap {labels.shape} is not on the reference grid")
    return (labels != 0).astype(np.uint8)


def _color_node_ids(scene) -> set[str]:
    count = scene.GetNumberOfNodesByClass("vtkMRMLColorNode")
    return {scene.GetNthNodeByClass(n, "vtkMRMLColorNode").GetID() for n in range(count)}


def segment_ids(segmentation_node) -> list[str]:
    """IDs of all segments of a segmentation node, in display order."""
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())]


def set_reference_volume(segmentation_node, volume_node) -> None:
    """Make ``volume_node`` the segmentation's reference image.

    ``SetReferenceImageGeometryParameterFromVolumeNode`` stores the volume's grid as the
    segmentation's reference geometry *and* the node reference (role
    ``GetReferenceImageGeometryReferenceRole()``) from which the Segment Editor takes its source
    volume when the segmentation is selected: Paint and Threshold then work on the CT at once.
    """
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)


def reference_volume(segmentation_node):
    """The segmentation's reference image volume node, or None."""
    role = segmentation_node.GetReferenceImageGeometryReferenceRole()
    return segmentation_node.GetNodeReference(role)


def fill_between_slices_along(sparse_zyx: np.ndarray, axis: int, slice_indices) -> np.ndarray:
    """Slicer's *Fill between slices* filter along one array axis; boolean (z, y, x).

    ``vtkITKMorphologicalContourInterpolator`` (shipped with Slicer, also in slicer-core) with
    the settings of :func:`AutoCTVLib.completion.interpolate.interpolate_along`. It reads every
    non-empty slice along the axis, so only the listed slices are passed to it.
    """
    try:
        import vtkITK  # the Slicer application

        interpolator = vtkITK.vtkITKMorphologicalContourInterpolator()
    except ImportError:  # slicer-core exposes the class on the slicer package
        interpolator = slicer.vtkITKMorphologicalContourInterpolator()
    only_these = np.zeros(sparse_zyx.shape, dtype=np.uint8)
    window = [slice(None)] * 3
    window[axis] = list(slice_indices)
    only_these[tuple(window)] = np.asarray(sparse_zyx, dtype=bool)[tuple(window)]
    image = vtk.vtkImageData()
    image.SetDimensions(only_these.shape[2], only_these.shape[1], only_these.shape[0])
    scalars = numpy_to_vtk(only_these.ravel(), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR)
    image.GetPointData().SetScalars(scalars)
    interpolator.SetInputData(image)
    interpolator.SetLabel(1)
    interpolator.SetAxis(2 - axis)  # VTK orders axes (i, j, k)
    interpolator.SetHeuristicAlignment(True)
    interpolator.SetUseDistanceTransform(False)
    interpolator.SetUseBallStructuringElement(False)
    interpolator.Update()
    output = vtk_to_numpy(interpolator.GetOutput().GetPointData().GetScalars())
    return output.reshape(only_these.shape) > 0
