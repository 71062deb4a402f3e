"""The Slicer module's logic on a real MRML scene (slicer-core): no widget, nothing mocked.

Every CT here lies on a non-axis-aligned (oblique) grid, so a RAS/LPS or axis-order slip in the
glue shows up as a voxel mismatch. Auto-contouring runs the library's real predictor, in this
process and as a real ``autoctv predict`` child process with a tiny model file made here;
exports are read back with pydicom and the library's RTSTRUCT reader.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import slicer
import torch
import vtk
from conftest import make_geometry
from mrml_support import new_scene, scene_node_ids

from AutoCTVLib import terminology as ctv_codes
from AutoCTVLib.cli.jobs import PredictionOutputs
from AutoCTVLib.errors import AutoCTVError, ModelFileError, OutputError, ReferenceMismatchError
from AutoCTVLib.io.ct_reader import read_ct
from AutoCTVLib.io.dicom_ct_write import write_ct_series
from AutoCTVLib.io.rtstruct_read import rasterise_roi, read_rtstruct
from AutoCTVLib.io.seg_nrrd import CTV_TERMINOLOGY
from AutoCTVLib.models import SYNTHETIC_DISCLAIMER, ModelCard, ctv_label, save_model
from AutoCTVLib.models.bundled import ctv_model_summary, resolve_ctv_model
from AutoCTVLib.nn import build_network, thesis_config
from AutoCTVLib.volume import Volume
from AutoCTVSlicerLib import dicom_export
from AutoCTVSlicerLib import heat_map as heat_map_module
from AutoCTVSlicerLib.logic import AutoContourSettings, AutoCTVCoreLogic
from AutoCTVSlicerLib.provenance import read_provenance
from AutoCTVSlicerLib.segmentation_nodes import (
    add_segmentation_node,
    labelmap_from_segment,
    segment_ids,
)
from AutoCTVSlicerLib.volume_nodes import add_volume_node, node_ijk_to_ras, volume_from_node

pytestmark = pytest.mark.mrml

SHAPE_ZYX = (10, 24, 28)
SPACING_XYZ_MM = (3.0, 3.0, 4.0)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def scene():
    return new_scene()


def _phantom_ct(seed: int = 1) -> tuple[Volume, np.ndarray]:
    """A small oblique CT: air, a soft-tissue body, a brighter ellipsoid 'CTV' inside."""
    geometry = make_geometry("oblique", shape_zyx=SHAPE_ZYX, spacing_xyz_mm=SPACING_XYZ_MM)
    z, y, x = np.indices(SHAPE_ZYX, dtype=float)
    body = ((y - 12) / 10) ** 2 + ((x - 14) / 12) ** 2 < 1
    target = ((z - 5) / 3.5) ** 2 + ((y - 12) / 5) ** 2 + ((x - 15) / 6) ** 2 < 1
    noise = np.random.default_rng(seed).normal(0.0, 10.0, SHAPE_ZYX)
    ct_hu = np.where(body, 40.0, -1000.0) + np.where(target, 60.0, 0.0) + noise
    return Volume(ct_hu.astype(np.float32), geometry), target.astype(np.uint8)


@pytest.fixture
def ct_node(scene):
    """The CT inside a patient → study folder of the subject hierarchy, as DICOM loads it."""
    ct, _ = _phantom_ct()
    node = add_volume_node(ct, "Pelvis CT", scene)
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient")
    study = hierarchy.CreateStudyItem(patient, "Planning study")
    hierarchy.CreateItem(study, node)
    return node


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny CTV network with MC-dropout layers, fitted for a moment to the test phantom (so it
    draws a real, partial contour), saved as safetensors + card."""
    from AutoCTVLib.preprocess import PreprocessConfig, preprocess

    config = thesis_config(
        channels=(4, 8), recurrent_steps=1, dropout_p=0.2, dropout_where="decoder"
    )
    preprocessing = {"spacing_xyz_mm": [6.0, 6.0, 8.0], "hu_window": [-1000.0, 1600.0]}
    network = build_network(config, seed=3)
    ct, target = _phantom_ct()
    case = preprocess(ct, PreprocessConfig.from_dict(preprocessing))
    image = torch.from_numpy(case.image)[None, None]
    label = torch.from_numpy(case.label_to_network(ct.with_array(target)).astype(np.float32))
    optimiser = torch.optim.Adam(network.parameters(), lr=0.05)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is many times faster
    try:
        network.train()
        for _ in range(40):
            optimiser.zero_grad()
            logits = network(image)[0, 0]
            torch.nn.functional.binary_cross_entropy_with_logits(logits, label).backward()
            optimiser.step()
    finally:
        torch.set_num_threads(threads)
    network.eval()
    card = ModelCard(
        name="ctv-tiny-test",
        version="0.0.1",
        architecture=config.to_dict(),
        preprocessing=preprocessing,
        labels=(ctv_label(),),
        training_data={"cases": 1, "source": "one synthetic test phantom"},
        metrics={},
        intended_use="tests of the Slicer module",
        disclaimer=SYNTHETIC_DISCLAIMER,
    )
    folder = tmp_path_factory.mktemp("model")
    save_model(network, card, folder / "ctv-tiny-test")
    return folder / "ctv-tiny-test.json"


def _outputs(label: np.ndarray, with_uncertainty: bool = True) -> PredictionOutputs:
    rng = np.random.default_rng(7)
    entropy = rng.uniform(0, 1, label.shape).astype(np.float32) if with_uncertainty else None
    scores = [float(k) * 10.0 for k in range(label.shape[0])]
    report = {
        "uncertainty": {
            "case_score": 0.25,
            "slices_to_review": [6, 2],
            "per_slice_score": scores,
            "per_slice_score_unit": "bits·mm²",
        }
    }
    return PredictionOutputs(
        label_zyx=label, entropy_zyx=entropy, report=report if with_uncertainty else {}
    )


def _terminology_tag(segmentation_node, segment_id: str) -> str:
    tag = vtk.reference("")
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    assert segment.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), tag)
    return str(tag)


def _hierarchy_parent(node) -> str:
    """Name of the subject hierarchy folder holding ``node``."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(node.GetScene())
    return hierarchy.GetItemName(hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)))


# --------------------------------------------------------------------------- settings, models


def test_settings_are_validated():
    from AutoCTVLib.options import DEVICE_CHOICES

    assert AutoContourSettings(device="CPU").device == "cpu"
    assert AutoContourSettings(device="cuda:1").device == "cuda:1"
    assert AutoContourSettings(model_path="").model_path is None  # the panel's empty path
    for device in DEVICE_CHOICES:  # every choice the panel offers is accepted
        assert AutoContourSettings(device=device).device == device
    with pytest.raises(ValueError, match="device"):
        AutoContourSettings(device="tpu")
    with pytest.raises(ValueError, match="mc_samples"):
        AutoContourSettings(mc_samples=1)


def test_model_cards_are_read_without_loading_the_model(tmp_path, tiny_model):
    from AutoCTVLib.models.bundled import find_bundled_model

    card_path, card = resolve_ctv_model(None)
    assert card_path == find_bundled_model().with_suffix(".json")
    assert card.input_channels == ("ct",)
    for given in (tiny_model, tiny_model.with_suffix(".safetensors"), tiny_model.with_suffix("")):
        assert resolve_ctv_model(given)[0] == tiny_model
    summary = ctv_model_summary(tiny_model)
    assert "ctv-tiny-test 0.0.1" in summary and "6×6×8 mm" in summary
    assert "not for clinical use" in summary
    # A completion model (CT + drawing inputs) is not a contouring model.
    card = json.loads(tiny_model.read_text())
    card["input_channels"] = ["ct", "sparse_label", "annotated_mask", "interpolation"]
    (tmp_path / "completion.json").write_text(json.dumps(card))
    (tmp_path / "completion.safetensors").write_bytes(b"")
    with pytest.raises(ModelFileError, match="not a CTV contouring model"):
        resolve_ctv_model(tmp_path / "completion.json")
    (tmp_path / "no_weights.json").write_bytes(tiny_model.read_bytes())
    with pytest.raises(ModelFileError, match=r"weights .* not found"):
        resolve_ctv_model(tmp_path / "no_weights.json")
    with pytest.raises(ModelFileError, match="not found"):
        resolve_ctv_model(tmp_path / "missing.json")


# --------------------------------------------------------------------------- result nodes


def test_prediction_becomes_a_named_coloured_coded_segment_on_the_ct_grid(
    scene, ct_node, tiny_model
):
    ct = volume_from_node(ct_node, dtype=np.float32)
    _, label = _phantom_ct()
    label[0, 0, 0] = label[-1, -1, -1] = 1  # corners catch flips and offsets
    result = AutoCTVCoreLogic().apply_prediction(
        ct_node, ct, _outputs(label), AutoContourSettings(mc_samples=8), tiny_model
    )
    segmentation = result.segmentation_node
    segment = segmentation.GetSegmentation().GetSegment(result.segment_id)
    assert segment.GetName() == ctv_codes.CTV_SEGMENT_NAME
    assert np.allclose(segment.GetColor(), np.array(ctv_codes.CTV_COLOR_RGB) / 255.0)
    assert _terminology_tag(segmentation, result.segment_id) == CTV_TERMINOLOGY.as_tag_value()
    assert np.array_equal(labelmap_from_segment(segmentation, result.segment_id, ct_node), label)
    assert (
        segmentation.GetNodeReferenceID(segmentation.GetReferenceImageGeometryReferenceRole())
        == ct_node.GetID()
    )
    assert _hierarchy_parent(segmentation) == _hierarchy_parent(ct_node) == "Planning study"

    provenance = read_provenance(segmentation)
    assert provenance.model_name == "ctv-tiny-test" and provenance.model_version == "0.0.1"
    assert provenance.settings["mc_samples"] == 8
    assert len(provenance.model_sha256) == 64
    assert provenance.input_identity["voxel_sha256"]

    heat_map = result.uncertainty_node
    assert np.array_equal(node_ijk_to_ras(heat_map), node_ijk_to_ras(ct_node))
    assert np.array_equal(slicer.util.arrayFromVolume(heat_map), _outputs(label).entropy_zyx)
    assert heat_map.GetDisplayNode().GetColorNode() is not None
    assert read_provenance(heat_map).result_kind == "entropy"
    assert result.case_score == pytest.approx(0.25)
    assert result.slices_to_review == (6, 2)
    assert result.undo is None  # a new node: nothing to undo
    assert heat_map_module.case_score_of(heat_map) == pytest.approx(0.25)


def test_existing_segmentation_is_changed_only_when_confirmed(scene, ct_node, tiny_model):
    logic = AutoCTVCoreLogic()
    ct = volume_from_node(ct_node, dtype=np.float32)
    bladder = np.zeros(SHAPE_ZYX, np.uint8)
    bladder[2:4, 3:8, 3:8] = 1
    existing = add_segmentation_node(bladder, ct_node, segment_name="Bladder", terminology=None)
    assert logic.output_needs_confirmation(existing)
    assert not logic.output_needs_confirmation(None)
    before = scene_node_ids(scene)
    with pytest.raises(OutputError, match="already holds segments"):
        logic.auto_contour(
            ct_node, AutoContourSettings(model_path=tiny_model), output_segmentation=existing
        )
    with pytest.raises(OutputError, match="already holds segments"):
        logic.start_auto_contour(
            ct_node, AutoContourSettings(model_path=tiny_model), output_segmentation=existing
        )
    assert scene_node_ids(scene) == before

    _, label = _phantom_ct()
    result = logic.apply_prediction(
        ct_node,
        ct,
        _outputs(label, with_uncertainty=False),
        AutoContourSettings(),
        tiny_model,
        output_segmentation=existing,
    )
    assert result.segmentation_node is existing and result.uncertainty_node is None
    names = [existing.GetSegmentation().GetSegment(i).GetName() for i in segment_ids(existing)]
    assert names == ["Bladder", "CTV"]
    bladder_id = segment_ids(existing)[0]
    assert np.array_equal(labelmap_from_segment(existing, bladder_id, ct_node), bladder)
    assert np.array_equal(labelmap_from_segment(existing, result.segment_id, ct_node), label)
    # A second run replaces the CTV segment instead of adding another one.
    label2 = np.zeros_like(label)
    label2[4:6, 10:14, 10:14] = 1
    again = logic.apply_prediction(
        ct_node,
        ct,
        _outputs(label2, False),
        AutoContourSettings(),
        tiny_model,
        output_segmentation=existing,
    )
    assert again.segment_id == result.segment_id and len(segment_ids(existing)) == 2
    assert np.array_equal(labelmap_from_segment(existing, again.segment_id, ct_node), label2)
    # Each write saved the state before it: undo restores the user's segmentation.
    again.undo()
    assert np.array_equal(labelmap_from_segment(existing, again.segment_id, ct_node), label)
    result.undo()
    assert segment_ids(existing) == [bladder_id]
    assert np.array_equal(labelmap_from_segment(existing, bladder_id, ct_node), bladder)


def test_segment_editor_takes_the_ct_as_source_volume(scene, ct_node, tiny_model):
    """The Segment Editor selects a segmentation's reference-image node reference as its source
    volume (qMRMLSegmentEditorWidget::updateWidgetFromMRML reads the role
    ``GetReferenceImageGeometryReferenceRole()``): AutoCTV's nodes and a user's node written
    into by AutoCTV must carry it."""
    from AutoCTVSlicerLib.segmentation_nodes import reference_volume

    ct = volume_from_node(ct_node, dtype=np.float32)
    _, label = _phantom_ct()
    role = slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()
    result = AutoCTVCoreLogic().apply_prediction(
        ct_node, ct, _outputs(label), AutoContourSettings(), tiny_model
    )
    assert result.segmentation_node.GetNodeReferenceID(role) == ct_node.GetID()
    # A segmentation made by hand without a source volume gets the CT when AutoCTV writes to it.
    by_hand = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    by_hand.GetSegmentation().AddEmptySegment("", "Rectum", [0.5, 0.3, 0.2])
    assert reference_volume(by_hand) is None
    AutoCTVCoreLogic().apply_prediction(
        ct_node,
        ct,
        _outputs(label, False),
        AutoContourSettings(),
        tiny_model,
        output_segmentation=by_hand,
    )
    assert by_hand.GetNodeReferenceID(role) == ct_node.GetID()
    # The Segment Editor's parameter node accepts it as source volume.
    editor = scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    editor.SetAndObserveSegmentationNode(by_hand)
    editor.SetAndObserveSourceVolumeNode(reference_volume(by_hand))
    assert editor.GetSourceVolumeNode() is ct_node


# --------------------------------------------------------------------------- review


def _heat_map(ct_node, tiny_model):
    ct = volume_from_node(ct_node, dtype=np.float32)
    _, label = _phantom_ct()
    result = AutoCTVCoreLogic().apply_prediction(
        ct_node, ct, _outputs(label), AutoContourSettings(mc_samples=4), tiny_model
    )
    return result.uncertainty_node


def test_heat_map_is_transparent_where_certain_and_has_a_legend(scene, ct_node, tiny_model):
    heat_map = _heat_map(ct_node, tiny_model)
    display = heat_map.GetDisplayNode()
    assert display.GetApplyThreshold() and not display.GetAutoThreshold()
    assert display.GetLowerThreshold() == pytest.approx(heat_map_module.TRANSPARENT_BELOW_BITS)
    assert display.GetUpperThreshold() >= 1.0  # everything above stays coloured
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == (0.0, 1.0)
    legends = [
        heat_map.GetNthDisplayNode(n)
        for n in range(heat_map.GetNumberOfDisplayNodes())
        if heat_map.GetNthDisplayNode(n).IsA("vtkMRMLColorLegendDisplayNode")
    ]
    assert len(legends) == 1
    legend = legends[0]
    assert legend.GetPrimaryDisplayNode() is display
    assert legend.GetTitleText() == "Uncertainty (bits)" and legend.GetVisibility()
    assert heat_map_module.add_color_legend(heat_map) is legend  # made once


def test_only_autoctv_heat_maps_count_as_uncertainty_volumes(scene, ct_node, tiny_model):
    heat_map = _heat_map(ct_node, tiny_model)
    assert heat_map_module.is_uncertainty_node(heat_map)
    assert not heat_map_module.is_uncertainty_node(ct_node)
    assert not heat_map_module.is_uncertainty_node(None)
    # The panel's selector filters on exactly this attribute and value.
    assert heat_map.GetAttribute(heat_map_module.KIND_ATTRIBUTE) == heat_map_module.KIND_ENTROPY
    assert ct_node.GetAttribute(heat_map_module.KIND_ATTRIBUTE) is None
    with pytest.raises(ValueError, match="only an AutoCTV uncertainty map"):
        heat_map_module.show_heat_map(ct_node, ct_node)
    assert heat_map_module.review_entries(ct_node) == []


def test_heat_map_overlay_opacity_and_hiding(scene, ct_node, tiny_model):
    composites = [scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode") for _ in range(3)]
    heat_map = _heat_map(ct_node, tiny_model)
    assert heat_map_module.show_heat_map(ct_node, heat_map, opacity=1.7) == 3
    for composite in composites:
        assert composite.GetBackgroundVolumeID() == ct_node.GetID()
        assert composite.GetForegroundVolumeID() == heat_map.GetID()
        assert composite.GetForegroundOpacity() == 1.0  # clipped
    composites[0].SetForegroundVolumeID(ct_node.GetID())  # a view showing something else
    assert heat_map_module.set_heat_map_opacity(heat_map, 0.3) == 2
    assert composites[1].GetForegroundOpacity() == pytest.approx(0.3)
    assert composites[0].GetForegroundOpacity() == 1.0
    assert heat_map_module.hide_heat_map(heat_map) == 2
    assert composites[1].GetForegroundVolumeID() is None
    assert composites[0].GetForegroundVolumeID() == ct_node.GetID()
    assert not heat_map_module.add_color_legend(heat_map).GetVisibility()


def test_review_list_gives_slice_position_and_score(scene, ct_node, tiny_model):
    heat_map = _heat_map(ct_node, tiny_model)
    entries = heat_map_module.review_entries(heat_map)
    assert [entry.k for entry in entries] == [6, 2]
    for entry in entries:
        expected = node_ijk_to_ras(ct_node) @ [
            (SHAPE_ZYX[2] - 1) / 2,
            (SHAPE_ZYX[1] - 1) / 2,
            entry.k,
            1,
        ]
        assert np.allclose(entry.position_ras_mm, expected[:3])
        assert entry.score == pytest.approx(entry.k * 10.0)  # the report's per-slice score
    label = entries[0].label(1)
    assert label == (f"1. slice 6 (S {entries[0].position_ras_mm[2]:.1f} mm), score 60 bits·mm²")
    # The panel jumps with the heat map itself (its list's source): the same point as its CT.
    for entry in entries:
        assert np.allclose(heat_map_module.jump_to_slice(heat_map, entry.k), entry.position_ras_mm)


def test_jump_to_slice_centres_the_views_on_that_slice(scene, ct_node):
    views = []
    for name, orientation in (("Red", "Axial"), ("Green", "Coronal")):
        slice_node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
        slice_node.SetLayoutName(name)
        slice_node.SetOrientation(orientation)
        views.append(slice_node)
    k = 7
    ras = heat_map_module.jump_to_slice(ct_node, k)
    # The point is the centre of slice k: IJKToRAS of ((nx-1)/2, (ny-1)/2, k).
    expected = node_ijk_to_ras(ct_node) @ [(SHAPE_ZYX[2] - 1) / 2, (SHAPE_ZYX[1] - 1) / 2, k, 1]
    assert np.allclose(ras, expected[:3])
    for slice_node in views:
        slice_to_ras = slicer.util.arrayFromVTKMatrix(slice_node.GetSliceToRAS())
        assert np.allclose(slice_to_ras[:3, 3], ras)
    with pytest.raises(IndexError):
        heat_map_module.jump_to_slice(ct_node, SHAPE_ZYX[0])


# --------------------------------------------------------------------------- completion


def _drawn(scene, ct_node, every: int = 3):
    _, target = _phantom_ct()
    drawn = np.zeros_like(target)
    drawn[::every] = target[::every]
    node = add_segmentation_node(drawn, ct_node, node_name="drawn by hand")
    return node, node.GetSegmentation().GetNthSegmentID(0), drawn, target


def test_drawn_slices_are_recognised(scene, ct_node):
    node, segment_id, drawn, _ = _drawn(scene, ct_node)
    logic = AutoCTVCoreLogic()
    assert np.array_equal(logic.drawn_labelmap(ct_node, node, segment_id), drawn)
    painted = [int(k) for k in np.flatnonzero(drawn.any(axis=(1, 2)))]
    assert len(painted) >= 2
    expected = f"{len(painted)} axial (z) slices: " + ", ".join(str(k) for k in painted)
    assert logic.drawn_slices(ct_node, node, segment_id) == expected
    empty = add_segmentation_node(np.zeros(SHAPE_ZYX, np.uint8), ct_node)
    with pytest.raises(AutoCTVError, match="empty"):
        logic.drawn_labelmap(ct_node, empty, empty.GetSegmentation().GetNthSegmentID(0))


def test_completion_preview_apply_and_undo_with_one_saved_state(scene, ct_node):
    node, segment_id, drawn, target = _drawn(scene, ct_node)
    preview = AutoCTVCoreLogic.add_completion_preview(
        ct_node, target, node, segment_id, "interpolate"
    )
    assert preview is not node
    assert np.array_equal(labelmap_from_segment(node, segment_id, ct_node), drawn)  # untouched
    preview_id = preview.GetSegmentation().GetNthSegmentID(0)
    assert np.array_equal(labelmap_from_segment(preview, preview_id, ct_node), target)
    assert _hierarchy_parent(preview) == _hierarchy_parent(ct_node)

    histories = []

    class Logic(AutoCTVCoreLogic):
        """Records every saved state (the Segment Editor's undo stack in Slicer)."""

        def save_undo_state(self, segmentation_node):
            history = slicer.vtkSegmentationHistory()
            history.SetSegmentation(segmentation_node.GetSegmentation())
            history.SaveState()
            histories.append(history)
            return history.RestorePreviousState

    undo = Logic().apply_completion(node, segment_id, target, ct_node, "interpolate")
    assert len(histories) == 1 and histories[0].GetNumberOfStates() == 1  # one snapshot
    assert np.array_equal(labelmap_from_segment(node, segment_id, ct_node), target)
    assert node.GetAttribute("AutoCTV.completion_method") == "interpolate"
    undo()
    assert np.array_equal(labelmap_from_segment(node, segment_id, ct_node), drawn)
    # Without a Segment Editor the logic keeps its own history.
    undo = AutoCTVCoreLogic().apply_completion(node, segment_id, target, ct_node)
    assert np.array_equal(labelmap_from_segment(node, segment_id, ct_node), target)
    undo()
    assert np.array_equal(labelmap_from_segment(node, segment_id, ct_node), drawn)


# --------------------------------------------------------------------------- export


def _ctv_segmentation(ct_node, label: np.ndarray, tiny_model: Path):
    ct = volume_from_node(ct_node, dtype=np.float32)
    return (
        AutoCTVCoreLogic()
        .apply_prediction(ct_node, ct, _outputs(label, False), AutoContourSettings(), tiny_model)
        .segmentation_node
    )


def test_rtstruct_export_of_a_scene_ct_writes_the_ct_series_too(
    scene, ct_node, tiny_model, tmp_path
):
    _, label = _phantom_ct()
    segmentation = _ctv_segmentation(ct_node, label, tiny_model)
    bladder = np.zeros_like(label)
    bladder[6:9, 16:20, 4:9] = 1
    bladder_id = segmentation.GetSegmentation().AddEmptySegment("", "Bladder", [1.0, 1.0, 0.0])
    from AutoCTVSlicerLib.segmentation_nodes import set_segment_labelmap

    set_segment_labelmap(segmentation, bladder_id, bladder, ct_node)
    result = dicom_export.export_rtstruct(segmentation, ct_node, tmp_path)
    assert result.ct_series_written

    dataset = pydicom.dcmread(result.object_file)
    assert dataset.Modality == "RTSTRUCT"
    observations = {
        item.ReferencedROINumber: item.RTROIInterpretedType
        for item in dataset.RTROIObservationsSequence
    }
    names = {item.ROINumber: item.ROIName for item in dataset.StructureSetROISequence}
    assert {names[n]: t for n, t in observations.items()} == {"CTV": "CTV", "Bladder": "ORGAN"}
    assert "ctv-tiny-test" in dataset.StructureSetDescription  # provenance

    loaded = read_ct(result.files[1].parent)
    assert loaded.identity.series_instance_uid == result.ct_series_instance_uid
    geometry = volume_from_node(ct_node).geometry
    assert loaded.volume.geometry.is_close(geometry)
    structure_set = read_rtstruct(result.object_file)
    assert structure_set.referenced_series_uids == (result.ct_series_instance_uid,)
    assert np.array_equal(rasterise_roi(structure_set, "CTV", geometry), label.astype(bool))
    assert np.array_equal(rasterise_roi(structure_set, "Bladder", geometry), bladder.astype(bool))

    again = dicom_export.export_rtstruct(segmentation, ct_node, tmp_path)
    assert again.ct_series_instance_uid == result.ct_series_instance_uid
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 1  # the CT series is reused


def _dicom_ct_node(scene, tmp_path):
    """A CT node as Slicer's DICOM import leaves it: voxels plus DICOM.instanceUIDs."""
    ct, label = _phantom_ct()
    (tmp_path / "database").mkdir()
    identity = write_ct_series(ct, tmp_path / "database" / "ct", uid_seed="slicer-logic-test")
    loaded = read_ct(tmp_path / "database" / "ct")
    node = add_volume_node(loaded.volume, "CT from DICOM", scene)
    node.SetAttribute(
        dicom_export.DICOM_INSTANCE_UIDS_ATTRIBUTE,
        " ".join(ref.sop_instance_uid for ref in identity.slices),
    )
    files = {}
    for path in (tmp_path / "database" / "ct").iterdir():
        files[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = str(path)
    return node, label, identity, files


def test_rtstruct_of_a_dicom_ct_references_its_original_series(scene, tmp_path, tiny_model):
    node, label, identity, files = _dicom_ct_node(scene, tmp_path)
    segmentation = _ctv_segmentation(node, label, tiny_model)
    out = tmp_path / "export"
    result = dicom_export.export_rtstruct(segmentation, node, out, file_for_instance=files.get)
    assert not result.ct_series_written and result.files == (result.object_file,)
    assert result.ct_series_instance_uid == identity.series_instance_uid
    structure_set = read_rtstruct(result.object_file)
    assert structure_set.referenced_series_uids == (identity.series_instance_uid,)
    assert set(structure_set.referenced_sop_instance_uids) == set(files)
    geometry = volume_from_node(node).geometry
    assert np.array_equal(rasterise_roi(structure_set, "CTV", geometry, identity), label > 0)


def test_export_refuses_a_dicom_ct_that_was_resampled(scene, tmp_path, tiny_model):
    node, label, _, files = _dicom_ct_node(scene, tmp_path)
    segmentation = _ctv_segmentation(node, label, tiny_model)
    matrix = node_ijk_to_ras(node)
    matrix[:3, 3] += 5.0  # moved by 5 mm: no longer where the DICOM images are
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(matrix))
    with pytest.raises(ReferenceMismatchError, match="no longer lies on the grid"):
        dicom_export.export_rtstruct(
            segmentation, node, tmp_path / "out", file_for_instance=files.get
        )
    missing = {uid: "" for uid in files}
    with pytest.raises(AutoCTVError, match="not in the DICOM database"):
        dicom_export.export_rtstruct(
            segmentation, node, tmp_path / "out", file_for_instance=missing.get
        )


def test_dicom_seg_export_is_readable(scene, tmp_path, tiny_model):
    node, label, identity, files = _dicom_ct_node(scene, tmp_path)
    segmentation = _ctv_segmentation(node, label, tiny_model)
    result = dicom_export.export_dicom_seg(
        segmentation, node, tmp_path / "seg", file_for_instance=files.get
    )
    dataset = pydicom.dcmread(result.object_file)
    assert dataset.Modality == "SEG"
    assert dataset.ReferencedSeriesSequence[0].SeriesInstanceUID == identity.series_instance_uid
    item = dataset.SegmentSequence[0]
    assert item.SegmentLabel == "CTV"
    assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == ctv_codes.CTV_TYPE.value
    frames = dataset.pixel_array.reshape(-1, *SHAPE_ZYX[1:])
    assert int(frames.sum()) == int(label.sum())


def test_export_of_empty_segments_is_refused(scene, ct_node, tmp_path):
    empty = add_segmentation_node(np.zeros(SHAPE_ZYX, np.uint8), ct_node)
    with pytest.raises(OutputError, match="empty"):
        dicom_export.export_rtstruct(empty, ct_node, tmp_path)
    with pytest.raises(OutputError, match="empty"):
        dicom_export.export_dicom_seg(empty, ct_node, tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even the CT


# --------------------------------------------------------------------------- auto-contouring


def _library_prediction(tiny_model: Path, mc_samples: int):
    """The library's own prediction on the test CT, built without any MRML node."""
    from AutoCTVLib.predict import Predictor

    ct, _ = _phantom_ct()
    return Predictor.from_file(tiny_model, device="cpu").predict(ct, mc_samples=mc_samples)


def test_auto_contour_matches_the_library_voxel_for_voxel(scene, ct_node, tiny_model):
    expected = _library_prediction(tiny_model, mc_samples=3)
    label = expected.label.array
    assert 0 < label.sum() < label.size  # the tiny network draws something, not everything
    events = []
    result = AutoCTVCoreLogic().auto_contour(
        ct_node,
        AutoContourSettings(model_path=tiny_model, device="cpu", mc_samples=3),
        progress=lambda *event: events.append(event),
    )
    seg, segment_id = result.segmentation_node, result.segment_id
    assert np.array_equal(labelmap_from_segment(seg, segment_id, ct_node), label)
    heat_map = slicer.util.arrayFromVolume(result.uncertainty_node)
    # Same model, same seeded dropout masks: equal up to float32 summation order.
    assert np.allclose(heat_map, expected.uncertainty.entropy, atol=1e-5)
    assert heat_map.max() > 0.1  # a real map, not zeros
    assert result.slices_to_review == expected.slices_to_review
    assert result.case_score == pytest.approx(expected.summary.case_score)
    assert read_provenance(seg).settings["device_used"] == "cpu"
    assert {stage for stage, _, _ in events} >= {"preprocess", "network", "uncertainty"}


def _wait_for(job, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not job.poll():
        assert time.monotonic() < deadline, "the child process did not finish in time"
        time.sleep(0.05)


def test_child_process_auto_contour_gives_the_same_nodes(scene, ct_node, tiny_model):
    expected = _library_prediction(tiny_model, mc_samples=3)
    progress, finished = [], []
    job = AutoCTVCoreLogic().start_auto_contour(
        ct_node,
        AutoContourSettings(model_path=tiny_model, device="cpu", mc_samples=3),
        on_progress=lambda *event: progress.append(event),
        on_finished=lambda result, error: finished.append((result, error)),
    )
    work_dir = job.work_dir
    assert (work_dir / "ct.nrrd").is_file()
    assert job.running
    _wait_for(job)  # the way a QTimer drives it
    assert len(finished) == 1
    result, error = finished[0]
    assert error == "" and result is not None, error
    labels = labelmap_from_segment(result.segmentation_node, result.segment_id, ct_node)
    assert np.array_equal(labels, expected.label.array)
    heat_map = slicer.util.arrayFromVolume(result.uncertainty_node)
    assert np.allclose(heat_map, expected.uncertainty.entropy, atol=1e-5)
    assert result.slices_to_review == expected.slices_to_review
    assert result.report["model"]["name"] == "ctv-tiny-test"
    fractions = [fraction for _, fraction, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {stage for stage, _, _ in progress} >= {"read", "network", "uncertainty", "done"}
    assert not work_dir.exists()  # temporaries removed


def test_cancel_kills_the_child_and_leaves_the_scene_unchanged(scene, ct_node, tiny_model):
    before = scene_node_ids(scene)
    finished = []
    job = AutoCTVCoreLogic().start_auto_contour(
        ct_node,
        AutoContourSettings(model_path=tiny_model, device="cpu", mc_samples=50),
        on_finished=lambda result, error: finished.append((result, error)),
    )
    pid, work_dir = job.pid, job.work_dir
    job.cancel(grace_s=2.0)
    _wait_for(job, timeout_s=30)
    assert job.cancelled and finished == [(None, "")]
    assert scene_node_ids(scene) == before
    assert not work_dir.exists()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            break
        if state in ("Z", "X"):
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"child process {pid} still runs after cancel")


def _process_ended(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_reload_or_scene_close_during_a_run_removes_the_temporary_ct(scene, ct_node, tiny_model):
    """``logic.cleanup()`` (called by the panel's cleanup() on reload/exit and on scene close)
    ends the child and deletes the AutoCTV-* folder holding the copy of the patient's CT; so
    does the interpreter-exit hook, ``close_all_jobs``."""
    from AutoCTVLib.cli.jobs import close_all_jobs

    logic = AutoCTVCoreLogic()
    before = scene_node_ids(scene)
    finished = []
    settings = AutoContourSettings(model_path=tiny_model, device="cpu", mc_samples=200)
    job = logic.start_auto_contour(
        ct_node, settings, on_finished=lambda *outcome: finished.append(outcome)
    )
    work_dir, pid = job.work_dir, job.pid
    assert work_dir.name.startswith("AutoCTV-") and (work_dir / "ct.nrrd").is_file()
    assert logic.jobs == [job]
    logic.cleanup()
    assert not work_dir.exists() and logic.jobs == []
    assert _process_ended(pid), f"child process {pid} still runs after cleanup"
    job.poll()
    assert finished == [] and scene_node_ids(scene) == before  # nothing delivered later
    other = logic.start_auto_contour(ct_node, settings)
    assert other.work_dir.exists()
    assert close_all_jobs() == 1
    assert not other.work_dir.exists() and _process_ended(other.pid)


def test_child_process_errors_arrive_as_one_line(scene, ct_node, tiny_model, tmp_path):
    weights = tmp_path / "broken.safetensors"
    weights.write_bytes(tiny_model.with_suffix(".safetensors").read_bytes()[:-10])  # damaged
    (tmp_path / "broken.json").write_bytes(tiny_model.read_bytes())
    before = scene_node_ids(scene)
    finished = []
    job = AutoCTVCoreLogic().start_auto_contour(
        ct_node,
        AutoContourSettings(model_path=tmp_path / "broken.json", device="cpu"),
        on_finished=lambda result, error: finished.append((result, error)),
    )
    _wait_for(job)
    assert finished[0][0] is None
    assert "do not match their card" in finished[0][1] and "\n" not in finished[0][1]
    assert scene_node_ids(scene) == before


def test_load_phantom_adds_a_ct_and_returns_its_reference_ctv(scene):
    from AutoCTVLib.phantom import PhantomConfig, generate_phantom

    size, spacing = (40, 40, 20), (10.0, 10.0, 12.0)
    node, reference = AutoCTVCoreLogic.load_phantom(scene, 5, size, spacing)
    phantom = generate_phantom(PhantomConfig(seed=5, size_xyz=size, spacing_xyz_mm=spacing))
    assert node.GetName() == "Phantom CT 5"
    assert np.array_equal(slicer.util.arrayFromVolume(node), phantom.ct.array)
    assert volume_from_node(node).geometry.is_close(phantom.ct.geometry)
    assert np.array_equal(reference, phantom.ctv_reference.array) and reference.any()
