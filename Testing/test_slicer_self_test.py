"""The module's self-test workflow (what ``AutoCTVTest`` runs in Slicer) on slicer-core.

It cancels a run, contours with the bundled model in a real child ``autoctv predict`` process,
checks the heat map in three slice views, completes drawn slices with the bundled completion
network (child process) and with Fill between slices, applies and undoes, and exports RTSTRUCT
and, where highdicom is usable, DICOM SEG. Nothing is downloaded.
"""

from __future__ import annotations

import time

import pytest
from mrml_support import new_scene

from AutoCTVSlicerLib.dicom_export import dicom_seg_supported
from AutoCTVSlicerLib.logic import AutoCTVCoreLogic
from AutoCTVSlicerLib.self_test import MIN_DICE, SelfTestFailure, run_self_test

pytestmark = pytest.mark.mrml


def test_self_test_workflow_passes_with_the_bundled_models():
    scene = new_scene()
    for _ in range(3):
        scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    steps: list[str] = []
    started = time.perf_counter()
    result = run_self_test(AutoCTVCoreLogic(), scene, step=steps.append)
    print(
        f"self-test in {time.perf_counter() - started:.0f} s: CTV Dice {result.ctv_dice:.3f}, "
        f"drawn {result.sparse_dice:.3f}, learned {result.learned_dice:.3f}, "
        f"interpolated {result.interpolated_dice:.3f}"
    )
    assert result.ctv_dice >= MIN_DICE
    assert result.learned_dice > result.sparse_dice
    assert result.interpolated_dice > result.sparse_dice
    assert result.views_showing_heat_map == 3
    expected = ("RTSTRUCT", "SEG") if dicom_seg_supported()[0] else ("RTSTRUCT",)
    assert result.exported == expected
    assert steps[-1] == "AutoCTV self-test passed"


def test_self_test_reports_a_failed_check_in_words():
    scene = new_scene()
    with pytest.raises(SelfTestFailure, match=r"CTV Dice 0\.\d{3} is below 1\.01"):
        run_self_test(AutoCTVCoreLogic(), scene, min_dice=1.01)
