"""The module self-test's workflow, runnable with or without the Slicer application.

``AutoCTVTest`` (Slicer's test harness and ctest) and the slicer-core test suite both call
:func:`run_self_test`, so the workflow a Slicer build checks is the one CI checks. It needs no
network: everything comes with the extension (bundled models) or with Slicer.

1. a synthetic phantom is added on the bundled model's voxel size;
2. a run with many Monte-Carlo samples is cancelled at once: the scene is unchanged and the
   temporary folder gone;
3. the bundled model contours the phantom in a child ``autoctv predict`` process with
   uncertainty; the CTV must match the phantom's reference (Dice ≥ ``min_dice``), the heat map
   lie on the CT's grid, and the segmentation reference the CT (the Segment Editor's source);
4. the heat map is shown: every slice view has the CT behind the heat map, the legend is on,
   certain voxels are transparent; the views jump to the first slice to review;
5. a CTV drawn on every sixth slice is completed by the bundled completion network in a child
   process ("learned", the panel's default) and by Fill between slices ("interpolate"); both
   must beat the drawing alone; the learned one is applied through the logic's undo path (the
   Segment Editor's undo in Slicer) and undone;
6. the auto-contour is exported as RTSTRUCT, and as DICOM SEG where SEG is supported, and both
   are read back.

Failures raise :class:`SelfTestFailure` with a sentence saying what was wrong.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Dice of the bundled model's contour of the self-test phantom must reach this (measured 0.879
#: with model 0.2.0; its held-out mean is 0.836 ± 0.025).
MIN_DICE = 0.8
#: The phantom generator's field of view (x, y, z) in mm.
PHANTOM_EXTENT_MM = (500.0, 500.0, 300.0)
#: Phantom seed (outside the training and test seeds of benchmarks/ctv_data.py).
PHANTOM_SEED = 17
#: Every how many axial slices the "drawn" CTV has a slice for the completion step.
DRAWN_EVERY = 6


class SelfTestFailure(AssertionError):
    """A self-test check did not hold."""


@dataclass(frozen=True)
class SelfTestResult:
    """What the self-test measured (Dice values against the phantom's reference CTV)."""

    ctv_dice: float
    sparse_dice: float
    learned_dice: float
    interpolated_dice: float
    slices_to_review: tuple[int, ...]
    views_showing_heat_map: int
    exported: tuple[str, ...]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SelfTestFailure(message)


def _node_ids(scene) -> list[str]:
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


def run_self_test(
    logic,
    scene,
    *,
    step: Callable[[str], None] = lambda message: None,
    mc_samples: int = 4,
    timeout_s: float = 900.0,
    min_dice: float = MIN_DICE,
) -> SelfTestResult:
    """Run the self-test workflow on ``scene`` with ``logic`` (an ``AutoCTVCoreLogic``).

    Args:
        logic: the module logic (core logic, or the application's subclass, whose
            ``save_undo_state`` uses the Segment Editor).
        scene: the MRML scene to work in; the nodes made are left in it.
        step: called with a short message before each step (``delayDisplay`` in Slicer).
        mc_samples: MC-dropout samples of the auto-contour.
        timeout_s: longest wait for each child process (s).
        min_dice: least Dice of the auto-contour against the phantom's reference.

    Raises:
        SelfTestFailure: a check failed.
    """
    import pydicom

    from AutoCTVLib.metrics import dice
    from AutoCTVLib.models.bundled import resolve_ctv_model
    from AutoCTVSlicerLib import dicom_export, heat_map
    from AutoCTVSlicerLib.logic import AutoContourSettings
    from AutoCTVSlicerLib.segmentation_nodes import (
        add_segmentation_node,
        labelmap_from_segment,
        reference_volume,
    )

    step("Generating a synthetic phantom on the bundled model's voxel size")
    _, card = resolve_ctv_model(None)
    spacing = tuple(float(s) for s in card.preprocessing["spacing_xyz_mm"])
    size = tuple(round(PHANTOM_EXTENT_MM[axis] / spacing[axis]) for axis in range(3))
    ct_node, reference = logic.load_phantom(scene, PHANTOM_SEED, size, spacing)

    step("Cancelling a run at once")
    before, finished = _node_ids(scene), []
    job = logic.start_auto_contour(
        ct_node,
        AutoContourSettings(device="cpu", mc_samples=100),
        on_finished=lambda *outcome: finished.append(outcome),
    )
    work_dir = job.work_dir
    job.cancel(grace_s=2.0)
    job.wait(timeout_s=60)
    _check(finished == [(None, "")], f"a cancelled run reported {finished}")
    _check(_node_ids(scene) == before, "a cancelled run changed the scene")
    _check(not work_dir.exists(), f"a cancelled run left {work_dir} behind")

    step("Auto-contouring with uncertainty in a child process")
    job = logic.start_auto_contour(
        ct_node, AutoContourSettings(device="cpu", mc_samples=mc_samples)
    )
    result = job.wait(timeout_s=timeout_s)
    _check(result is not None, f"auto-contouring failed: {job.error_message}")
    segmentation = result.segmentation_node
    predicted = labelmap_from_segment(segmentation, result.segment_id, ct_node)
    ctv_dice = dice(predicted, reference)
    _check(ctv_dice >= min_dice, f"CTV Dice {ctv_dice:.3f} is below {min_dice}")
    name = segmentation.GetSegmentation().GetSegment(result.segment_id).GetName()
    _check(name == "CTV", f"the segment is called {name!r}, not CTV")
    _check(reference_volume(segmentation) is ct_node, "the segmentation does not reference the CT")
    heat = result.uncertainty_node
    _check(heat is not None, "no uncertainty map was made")
    heat_dims, ct_dims = heat.GetImageData().GetDimensions(), ct_node.GetImageData().GetDimensions()
    _check(heat_dims == ct_dims, f"the heat map has dimensions {heat_dims}, the CT {ct_dims}")

    step("Showing the heat map and jumping to the first slice to review")
    views = heat_map.show_heat_map(ct_node, heat, 0.4)
    _check(views > 0, "no slice view shows the heat map")
    composites = [scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode") for i in range(views)]
    for composite in composites:
        shown = (composite.GetBackgroundVolumeID(), composite.GetForegroundVolumeID())
        _check(shown == (ct_node.GetID(), heat.GetID()), f"a view shows {shown}")
    display = heat.GetDisplayNode()
    _check(bool(display.GetApplyThreshold()), "certain voxels are not transparent")
    _check(heat_map.add_color_legend(heat).GetVisibility() == 1, "the colour legend is hidden")
    entries = heat_map.review_entries(heat)
    _check(len(entries) > 0, "the review list is empty")
    _check(entries[0].score is not None, "the review list has no scores")
    heat_map.jump_to_slice(ct_node, entries[0].k)

    step(f"Completing a CTV drawn on every {DRAWN_EVERY}th slice")
    sparse = np.zeros_like(reference)
    sparse[::DRAWN_EVERY] = reference[::DRAWN_EVERY]
    drawn = add_segmentation_node(sparse, ct_node, node_name="drawn")
    drawn_id = drawn.GetSegmentation().GetNthSegmentID(0)
    job = logic.start_completion(ct_node, drawn, drawn_id, "learned", device="cpu")
    learned = job.wait(timeout_s=timeout_s)
    _check(learned is not None, f"learned completion failed: {job.error_message}")
    interpolated = logic.complete(ct_node, drawn, drawn_id, "interpolate")
    sparse_dice = dice(sparse, reference)
    learned_dice, interpolated_dice = dice(learned, reference), dice(interpolated, reference)
    for method, value in (("learned", learned_dice), ("interpolate", interpolated_dice)):
        _check(value > sparse_dice, f"{method} did not help: Dice {value:.3f} vs {sparse_dice:.3f}")
    undo = logic.apply_completion(drawn, drawn_id, learned, ct_node, "learned")
    applied = labelmap_from_segment(drawn, drawn_id, ct_node)
    _check(np.array_equal(applied, learned), "the applied completion differs from the preview")
    undo()
    restored = labelmap_from_segment(drawn, drawn_id, ct_node)
    _check(np.array_equal(restored, sparse), "undo did not restore the drawn slices")

    exported = []
    folder = Path(tempfile.mkdtemp(prefix="AutoCTVTest-"))
    try:
        step("Exporting RTSTRUCT")
        written = dicom_export.export_rtstruct(segmentation, ct_node, folder / "rt")
        dataset = pydicom.dcmread(written.object_file)
        rois = tuple(str(roi.ROIName) for roi in dataset.StructureSetROISequence)
        _check(rois == ("CTV",), f"the RTSTRUCT holds {rois}, not the CTV alone")
        exported.append("RTSTRUCT")
        supported, reason = dicom_export.dicom_seg_supported()
        step("Exporting DICOM SEG" if supported else f"Not exporting DICOM SEG: {reason}")
        if supported:
            written = dicom_export.export_dicom_seg(segmentation, ct_node, folder / "seg")
            dataset = pydicom.dcmread(written.object_file)
            _check(dataset.Modality == "SEG", f"the SEG export is a {dataset.Modality}")
            label = str(dataset.SegmentSequence[0].SegmentLabel)
            _check(label == "CTV", f"the SEG segment is {label!r}")
            exported.append("SEG")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    step("AutoCTV self-test passed")
    return SelfTestResult(
        ctv_dice=ctv_dice,
        sparse_dice=sparse_dice,
        learned_dice=learned_dice,
        interpolated_dice=interpolated_dice,
        slices_to_review=tuple(result.slices_to_review),
        views_showing_heat_map=views,
        exported=tuple(exported),
    )
