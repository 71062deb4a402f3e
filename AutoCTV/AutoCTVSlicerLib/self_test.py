"""The module self-test's workflow, runnable with or without the Slicer application.

``AutoCTVTest`` (Slicer's test harness and ctest) and the slicer-core test suite both call
:func:`run_self_test`, so the workflow a Slicer build checks is the one CI checks:

1. a synthetic phantom is added to the scene on the bundled model's voxel size;
2. the bundled model contours it in a child ``autoctv predict`` process with MC-dropout
   uncertainty; the CTV segment must match the phantom's reference (Dice ≥ ``min_dice``) and the
   heat map must lie on the CT's grid;
3. the heat map is shown in the slice views and the views jump to the first slice to review;
4. a CTV drawn on every sixth slice is completed ("interpolate": it needs no network), applied
   to its segment and undone;
5. the auto-contour is exported as RTSTRUCT and read back.

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
    """What the self-test measured."""

    ctv_dice: float
    sparse_dice: float
    completed_dice: float
    slices_to_review: tuple[int, ...]
    views_showing_heat_map: int
    rtstruct_rois: tuple[str, ...]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SelfTestFailure(message)


def run_self_test(
    logic,
    scene,
    *,
    step: Callable[[str], None] = lambda message: None,
    export_rtstruct: Callable[[object, object, Path], str] | None = None,
    mc_samples: int = 4,
    timeout_s: float = 900.0,
    min_dice: float = MIN_DICE,
) -> SelfTestResult:
    """Run the self-test workflow on ``scene`` with ``logic`` (an ``AutoCTVCoreLogic``).

    Args:
        logic: the module logic (core logic, or the application's subclass).
        scene: the MRML scene to work in; the nodes made are left in it.
        step: called with a short message before each step (``delayDisplay`` in Slicer).
        export_rtstruct: ``(segmentation_node, ct_node, folder) -> file name``; default: the
            library's RTSTRUCT writer through ``logic.export_rtstruct``.
        mc_samples: MC-dropout samples of the auto-contour.
        timeout_s: longest wait for the child process (s).
        min_dice: least Dice of the auto-contour against the phantom's reference.

    Raises:
        SelfTestFailure: a check failed.
    """
    import pydicom

    from AutoCTVLib.metrics import dice
    from AutoCTVSlicerLib.logic import AutoContourSettings, read_card_fields
    from AutoCTVSlicerLib.segmentation_nodes import add_segmentation_node, labelmap_from_segment

    step("Generating a synthetic phantom on the bundled model's voxel size")
    card = read_card_fields(logic.resolve_model(None))
    spacing = tuple(float(s) for s in card["preprocessing"]["spacing_xyz_mm"])
    size = tuple(round(extent / s) for extent, s in zip(PHANTOM_EXTENT_MM, spacing))
    ct_node, reference = logic.load_phantom(scene, PHANTOM_SEED, size, spacing)

    step("Auto-contouring with uncertainty in a child process")
    job = logic.start_auto_contour(
        ct_node, AutoContourSettings(device="cpu", mc_samples=mc_samples)
    )
    result = job.wait(timeout_s=timeout_s)
    _check(result is not None, f"auto-contouring failed: {job.error_message}")
    predicted = labelmap_from_segment(result.segmentation_node, result.segment_id, ct_node)
    ctv_dice = dice(predicted, reference)
    _check(ctv_dice >= min_dice, f"CTV Dice {ctv_dice:.3f} is below {min_dice}")
    segment = result.segmentation_node.GetSegmentation().GetSegment(result.segment_id)
    _check(segment.GetName() == "CTV", f"the segment is called {segment.GetName()!r}, not CTV")
    _check(result.uncertainty_node is not None, "no uncertainty map was made")
    heat_dims = result.uncertainty_node.GetImageData().GetDimensions()
    ct_dims = ct_node.GetImageData().GetDimensions()
    _check(heat_dims == ct_dims, f"the heat map has dimensions {heat_dims}, the CT {ct_dims}")

    step("Showing the heat map and jumping to the first slice to review")
    views = logic.show_uncertainty(ct_node, result.uncertainty_node, 0.4)
    _check(len(result.slices_to_review) > 0, "the review list is empty")
    logic.jump_to_slice(ct_node, result.slices_to_review[0])

    step(f"Completing a CTV drawn on every {DRAWN_EVERY}th slice")
    sparse = np.zeros_like(reference)
    sparse[::DRAWN_EVERY] = reference[::DRAWN_EVERY]
    drawn = add_segmentation_node(sparse, ct_node, node_name="drawn")
    drawn_id = drawn.GetSegmentation().GetNthSegmentID(0)
    completed = logic.complete(ct_node, drawn, drawn_id, "interpolate")
    sparse_dice, completed_dice = dice(sparse, reference), dice(completed, reference)
    _check(
        completed_dice > sparse_dice,
        f"completion did not help: Dice {completed_dice:.3f} vs {sparse_dice:.3f} drawn only",
    )
    history = logic.apply_completion(drawn, drawn_id, completed, ct_node)
    applied = labelmap_from_segment(drawn, drawn_id, ct_node)
    _check(np.array_equal(applied, completed), "the applied completion differs from the preview")
    history.RestorePreviousState()
    restored = labelmap_from_segment(drawn, drawn_id, ct_node)
    _check(np.array_equal(restored, sparse), "undo did not restore the drawn slices")

    step("Exporting RTSTRUCT")
    if export_rtstruct is None:

        def export_rtstruct(segmentation_node, ct, folder: Path) -> str:
            return logic.export_rtstruct(segmentation_node, ct, folder).object_file.name

    folder = Path(tempfile.mkdtemp(prefix="AutoCTVTest-"))
    try:
        name = export_rtstruct(result.segmentation_node, ct_node, folder)
        dataset = pydicom.dcmread(next(folder.rglob(name)))
        _check(dataset.Modality == "RTSTRUCT", f"the export is a {dataset.Modality}")
        rois = tuple(str(roi.ROIName) for roi in dataset.StructureSetROISequence)
        _check("CTV" in rois, f"the RTSTRUCT holds {rois}, no CTV")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    step("AutoCTV self-test passed")
    return SelfTestResult(
        ctv_dice=ctv_dice,
        sparse_dice=sparse_dice,
        completed_dice=completed_dice,
        slices_to_review=tuple(result.slices_to_review),
        views_showing_heat_map=views,
        rtstruct_rois=rois,
    )
