"""Result nodes on a real MRML scene: CTV segmentation, uncertainty map, placement, provenance."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import slicer
import vtk
from conftest import make_geometry
from mrml_support import new_scene, scene_node_ids

from AutoCTVLib import terminology as ctv_codes
from AutoCTVLib.io.seg_nrrd import CTV_TERMINOLOGY
from AutoCTVLib.volume import Volume
from AutoCTVSlicerLib.heat_map import add_heat_map_node
from AutoCTVSlicerLib.provenance import (
    ATTRIBUTE_PREFIX,
    Provenance,
    clear_provenance,
    input_identity,
    provenance_fields,
    provenance_from_fields,
    read_provenance,
    write_provenance,
)
from AutoCTVSlicerLib.segmentation_nodes import (
    add_segmentation_node,
    labelmap_from_segment,
    segment_ids,
    set_segment_labelmap,
)
from AutoCTVSlicerLib.volume_nodes import add_volume_node, node_ijk_to_ras

pytestmark = pytest.mark.mrml

SHAPE_ZYX = (6, 9, 11)


def _ct_node(scene, kind: str = "oblique"):
    ct_hu = np.random.default_rng(3).normal(0.0, 50.0, SHAPE_ZYX).astype(np.float32)
    return add_volume_node(Volume(ct_hu, make_geometry(kind, shape_zyx=SHAPE_ZYX)), "CT", scene)


def _asymmetric_labelmap() -> np.ndarray:
    """A blob with no mirror symmetry, touching the grid's first and last voxels."""
    labelmap = np.zeros(SHAPE_ZYX, dtype=np.uint8)
    labelmap[1:4, 2:7, 3:9] = 1
    labelmap[4, 2:4, 3:5] = 1
    labelmap[0, 0, 0] = 1
    labelmap[-1, -1, -1] = 1
    return labelmap


def _terminology_tag(segmentation_node, segment_id: str) -> str:
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    tag = vtk.reference("")
    assert segment.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), tag)
    return str(tag)


def test_segmentation_holds_the_labelmap_voxel_for_voxel(grid_kind: str) -> None:
    scene = new_scene()
    ct_node = _ct_node(scene, grid_kind)
    labelmap = _asymmetric_labelmap()
    segmentation_node = add_segmentation_node(labelmap, ct_node)
    (segment_id,) = segment_ids(segmentation_node)

    ours = labelmap_from_segment(segmentation_node, segment_id, ct_node)
    np.testing.assert_array_equal(ours, labelmap)
    # Slicer's own helper (independent of our reading code) sees the same voxels.
    theirs = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation_node, segment_id, ct_node)
    np.testing.assert_array_equal(theirs, labelmap)


def test_labelmap_written_by_slicer_helper_reads_back_identically() -> None:
    scene = new_scene()
    ct_node = _ct_node(scene)
    segmentation_node = add_segmentation_node(np.zeros(SHAPE_ZYX, bool), ct_node)
    (segment_id,) = segment_ids(segmentation_node)
    labelmap = _asymmetric_labelmap()
    slicer.util.updateSegmentBinaryLabelmapFromArray(
        labelmap, segmentation_node, segment_id, ct_node
    )
    np.testing.assert_array_equal(
        labelmap_from_segment(segmentation_node, segment_id, ct_node), labelmap
    )


def test_segment_name_colour_and_terminology() -> None:
    scene = new_scene()
    ct_node = _ct_node(scene)
    segmentation_node = add_segmentation_node(_asymmetric_labelmap(), ct_node)
    assert segmentation_node.GetName() == "CT AutoCTV"
    (segment_id,) = segment_ids(segmentation_node)
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    assert segment.GetName() == "CTV"
    np.testing.assert_allclose(
        segment.GetColor(), np.array(ctv_codes.CTV_COLOR_RGB) / 255.0, atol=1e-6
    )

    # The tag is the string the .seg.nrrd writer stores, and Slicer's own terminology logic
    # reads the DICOM codes back from it.
    tag = _terminology_tag(segmentation_node, segment_id)
    assert tag == CTV_TERMINOLOGY.as_tag_value()
    entry = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(tag, entry)
    category, type_ = entry.GetCategoryObject(), entry.GetTypeObject()
    assert (
        category.GetCodingSchemeDesignator(),
        category.GetCodeValue(),
        category.GetCodeMeaning(),
    ) == ("DCM", "130041", "RT Target")
    assert (type_.GetCodingSchemeDesignator(), type_.GetCodeValue(), type_.GetCodeMeaning()) == (
        "SCT",
        "228792002",
        "Clinical Target Volume",
    )
    assert slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(entry) == tag


def test_custom_segment_name_colour_and_no_terminology() -> None:
    scene = new_scene()
    ct_node = _ct_node(scene)
    segmentation_node = add_segmentation_node(
        _asymmetric_labelmap(),
        ct_node,
        segment_name="CTV completed",
        color_rgb=(0.2, 0.4, 0.9),
        terminology=None,
        node_name="Completion",
    )
    assert segmentation_node.GetName() == "Completion"
    segment = segmentation_node.GetSegmentation().GetNthSegment(0)
    assert segment.GetName() == "CTV completed"
    np.testing.assert_allclose(segment.GetColor(), (0.2, 0.4, 0.9), atol=1e-6)
    # Without a terminology the segment keeps whatever Slicer gives new segments.
    tag = vtk.reference("")
    segment.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), tag)
    assert "228792002" not in str(tag)


def test_segmentation_reference_geometry_is_the_volume_geometry() -> None:
    scene = new_scene()
    ct_node = _ct_node(scene)
    segmentation_node = add_segmentation_node(_asymmetric_labelmap(), ct_node)

    role = slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()
    assert segmentation_node.GetNodeReference(role) is ct_node
    parameter_name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    geometry_text = segmentation_node.GetSegmentation().GetConversionParameter(parameter_name)
    reference_image = slicer.vtkOrientedImageData()
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(geometry_text, reference_image)
    image_to_world = vtk.vtkMatrix4x4()
    reference_image.GetImageToWorldMatrix(image_to_world)
    np.testing.assert_allclose(
        slicer.util.arrayFromVTKMatrix(image_to_world), node_ijk_to_ras(ct_node), atol=1e-9
    )
    extent = reference_image.GetExtent()
    assert (extent[1] + 1, extent[3] + 1, extent[5] + 1) == SHAPE_ZYX[::-1]


def test_labelmap_shape_mismatch_is_refused_and_leaves_scene_unchanged() -> None:
    scene = new_scene()
    ct_node = _ct_node(scene)
    before = scene_node_ids(scene)
    with pytest.raises(ValueError, match="does not match"):
        add_segmentation_node(np.zeros((6, 9, 10), np.uint8), ct_node)
    assert scene_node_ids(scene) == before


def test_set_segment_labelmap_replaces_voxels() -> None:
    scene = new_scene()
    ct_node = _ct_node(scene)
    segmentation_node = add_segmentation_node(_asymmetric_labelmap(), ct_node)
    (segment_id,) = segment_ids(segmentation_node)
    replacement = np.zeros(SHAPE_ZYX, bool)
    replacement[2:5, 4:8, 1:3] = True
    set_segment_labelmap(segmentation_node, segment_id, replacement, ct_node)
    np.testing.assert_array_equal(
        labelmap_from_segment(segmentation_node, segment_id, ct_node), replacement.astype(np.uint8)
    )


def test_reading_leaves_no_temporary_nodes() -> None:
    scene = new_scene()
    ct_node = _ct_node(scene)
    segmentation_node = add_segmentation_node(_asymmetric_labelmap(), ct_node)
    before = scene_node_ids(scene)
    labelmap_from_segment(segmentation_node, segment_ids(segmentation_node)[0], ct_node)
    assert scene_node_ids(scene) == before


def test_uncertainty_map_lies_on_the_ct_grid_with_a_heat_colour_map() -> None:
    scene = new_scene()
    ct_node = _ct_node(scene)
    entropy = np.random.default_rng(5).uniform(0.0, 0.69, SHAPE_ZYX)
    map_node = add_heat_map_node(entropy, ct_node, "CT entropy")

    np.testing.assert_allclose(node_ijk_to_ras(map_node), node_ijk_to_ras(ct_node), atol=0)
    np.testing.assert_allclose(slicer.util.arrayFromVolume(map_node), entropy.astype(np.float32))
    display_node = map_node.GetDisplayNode()
    color_node = display_node.GetColorNode()
    assert color_node.GetName() == "AutoCTV heat"
    assert not display_node.GetAutoWindowLevel()
    # The colours span the whole entropy range (bits), whatever this map's own range.
    assert display_node.GetWindowLevelMin() == pytest.approx(0.0)
    assert display_node.GetWindowLevelMax() == pytest.approx(1.0)
    # A second map reuses the colour node.
    second = add_heat_map_node(np.full(SHAPE_ZYX, 0.5), ct_node, "CT entropy 2")
    assert second.GetDisplayNode().GetColorNode() is color_node
    with pytest.raises(ValueError, match="shape"):
        add_heat_map_node(np.zeros((2, 2, 2)), ct_node, "wrong")


def test_slicer_colour_table_is_preferred_when_loaded() -> None:
    scene = new_scene()
    ct_node = _ct_node(scene)
    inferno = slicer.vtkMRMLColorTableNode()
    inferno.SetTypeToUser()
    inferno.SetName("Inferno")
    inferno.SetSingletonTag("FileInferno.txt")  # as Slicer's colour logic loads Inferno.txt
    scene.AddNode(inferno)
    assert scene.GetNodeByID("vtkMRMLColorTableNodeFileInferno.txt") is inferno
    map_node = add_heat_map_node(np.zeros(SHAPE_ZYX), ct_node, "CT entropy")
    assert map_node.GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeFileInferno.txt"


def test_results_are_placed_in_the_study_of_the_ct() -> None:
    scene = new_scene()
    ct_node = _ct_node(scene)
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient 1")
    study = hierarchy.CreateStudyItem(patient, "Planning CT study")
    hierarchy.CreateItem(study, ct_node)

    segmentation_node = add_segmentation_node(_asymmetric_labelmap(), ct_node)
    map_node = add_heat_map_node(np.zeros(SHAPE_ZYX), ct_node, "CT entropy")
    for node in (segmentation_node, map_node):
        item = hierarchy.GetItemByDataNode(node)
        assert item != hierarchy.GetInvalidItemID()
        assert hierarchy.GetItemParent(item) == study


def test_results_of_a_ct_outside_any_study_go_to_the_top_level() -> None:
    scene = new_scene()
    ct_node = _ct_node(scene)
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    segmentation_node = add_segmentation_node(_asymmetric_labelmap(), ct_node)
    item = hierarchy.GetItemByDataNode(segmentation_node)
    assert hierarchy.GetItemParent(item) == hierarchy.GetSceneItemID()


def test_results_observe_the_parent_transform_of_the_ct() -> None:
    scene = new_scene()
    ct_node = _ct_node(scene)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Couch")
    ct_node.SetAndObserveTransformNodeID(transform.GetID())
    segmentation_node = add_segmentation_node(_asymmetric_labelmap(), ct_node)
    map_node = add_heat_map_node(np.zeros(SHAPE_ZYX), ct_node, "CT entropy")
    assert segmentation_node.GetTransformNodeID() == transform.GetID()
    assert map_node.GetTransformNodeID() == transform.GetID()


# -- provenance ------------------------------------------------------------------------------


def _provenance(input_identity: dict) -> Provenance:
    return Provenance(
        model_name="autoctv-pelvis-ctv",
        model_version="1.2.0",
        model_sha256="ab" * 32,
        settings={
            "device": "cpu",
            "mc_samples": 20,
            "threshold": 0.5,
            "spacing_mm": [1.0, 1.0, 3.0],
        },
        input_identity=input_identity,
        result_kind="entropy",
    )


def test_provenance_round_trips_on_segmentation_and_map_nodes() -> None:
    scene = new_scene()
    ct_node = _ct_node(scene)
    identity = input_identity(ct_node)
    segmentation_node = add_segmentation_node(_asymmetric_labelmap(), ct_node)
    map_node = add_heat_map_node(np.zeros(SHAPE_ZYX), ct_node, "CT entropy")
    provenance = _provenance(identity)
    for node in (segmentation_node, map_node):
        assert read_provenance(node) is None
        write_provenance(node, provenance)
        assert read_provenance(node) == provenance

    # Plain strings stay readable; nested values are JSON; every key is namespaced.
    assert segmentation_node.GetAttribute("AutoCTV.model_name") == "autoctv-pelvis-ctv"
    assert json.loads(segmentation_node.GetAttribute("AutoCTV.settings"))["mc_samples"] == 20
    names = segmentation_node.GetAttributeNames()
    assert all(name.startswith(ATTRIBUTE_PREFIX) for name in names)
    assert len(names) == 9


def test_provenance_is_saved_with_the_scene(tmp_path) -> None:
    scene = new_scene()
    ct_node = _ct_node(scene)
    segmentation_node = add_segmentation_node(_asymmetric_labelmap(), ct_node)
    provenance = _provenance(input_identity(ct_node))
    write_provenance(segmentation_node, provenance)
    scene_path = tmp_path / "case.mrml"
    scene.SetRootDirectory(str(tmp_path))
    assert scene.Commit(str(scene_path))

    reopened = slicer.vtkMRMLScene()
    reopened.SetURL(str(scene_path))
    assert reopened.Connect()
    reloaded = reopened.GetFirstNodeByName(segmentation_node.GetName())
    assert reloaded is not None
    assert read_provenance(reloaded) == provenance


def test_rewriting_provenance_replaces_it_and_bad_values_are_refused() -> None:
    scene = new_scene()
    ct_node = _ct_node(scene)
    node = add_heat_map_node(np.zeros(SHAPE_ZYX), ct_node, "CT entropy")
    write_provenance(node, _provenance({"kind": "scene"}))
    newer = _provenance({"kind": "file", "file_path": "ct.nrrd"})
    write_provenance(node, newer)
    assert read_provenance(node) == newer

    with pytest.raises(ValueError, match="not JSON-serialisable"):
        write_provenance(node, _provenance({"array": np.zeros(2)}))
    assert read_provenance(node) == newer  # a refused write changes nothing

    node.RemoveAttribute("AutoCTV.model_sha256")
    with pytest.raises(ValueError, match=r"missing AutoCTV\.model_sha256"):
        read_provenance(node)
    write_provenance(node, newer)
    node.SetAttribute("AutoCTV.settings", "{not json")
    with pytest.raises(ValueError, match=r"AutoCTV\.settings is not JSON"):
        read_provenance(node)
    clear_provenance(node)
    assert read_provenance(node) is None


def test_input_identity_names_file_dicom_series_and_voxel_content(tmp_path) -> None:
    scene = new_scene()
    ct_node = _ct_node(scene)
    identity = input_identity(ct_node)
    assert identity["kind"] == "scene"
    assert identity["node_name"] == "CT"
    assert len(identity["voxel_sha256"]) == 64

    # Any voxel change changes the content hash.
    voxels = slicer.util.arrayFromVolume(ct_node)
    voxels[0, 0, 0] += 1.0
    slicer.util.arrayFromVolumeModified(ct_node)
    assert input_identity(ct_node)["voxel_sha256"] != identity["voxel_sha256"]

    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(tmp_path / "ct.nrrd"))
    ct_node.SetAndObserveStorageNodeID(storage.GetID())
    from_file = input_identity(ct_node)
    assert from_file["kind"] == "file"
    assert from_file["file_path"] == str(tmp_path / "ct.nrrd")

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    dicom = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName()
    study = hierarchy.CreateStudyItem(hierarchy.GetSceneItemID(), "Study")
    hierarchy.SetItemUID(study, dicom, "1.2.826.0.1.3680043.8.498.1")
    series = hierarchy.CreateItem(study, ct_node)
    hierarchy.SetItemUID(series, dicom, "1.2.826.0.1.3680043.8.498.2")
    from_dicom = input_identity(ct_node)
    assert from_dicom["kind"] == "dicom"
    assert from_dicom["series_instance_uid"] == "1.2.826.0.1.3680043.8.498.2"
    assert from_dicom["study_instance_uid"] == "1.2.826.0.1.3680043.8.498.1"


def test_provenance_fields_are_plain_strings_that_round_trip() -> None:
    provenance = _provenance({"kind": "dicom", "series_instance_uid": "1.2.3"})
    fields = provenance_fields(provenance)
    assert all(isinstance(value, str) and "\n" not in value for value in fields.values())
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+", key) for key in fields)  # header-safe keys
    assert provenance_from_fields(fields) == provenance
    assert provenance_from_fields({"unrelated": "x"}) is None
    with pytest.raises(ValueError, match="unknown AutoCTV provenance version 99"):
        provenance_from_fields({**fields, "provenance_version": "99"})
