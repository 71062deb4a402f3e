"""The module's self-test workflow (what ``AutoCTVTest`` runs in Slicer) on slicer-core.

It uses the bundled model in a real child ``autoctv predict`` process, shows the heat map in
three slice views, completes drawn slices, undoes, and exports RTSTRUCT.
"""

from __future__ import annotations

import pytest
from mrml_support import new_scene

from AutoCTVSlicerLib.logic import AutoCTVCoreLogic
from AutoCTVSlicerLib.self_test import MIN_DICE, SelfTestFailure, run_self_test

pytestmark = pytest.mark.mrml


def test_self_test_workflow_passes_with_the_bundled_model():
    scene = new_scene()
    for _ in range(3):
        scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    steps: list[str] = []
    result = run_self_test(AutoCTVCoreLogic(), scene, step=steps.append)
    print(f"self-test CTV Dice {result.ctv_dice:.3f}")
    assert result.ctv_dice >= MIN_DICE
    assert result.completed_dice > result.sparse_dice
    assert result.views_showing_heat_map == 3
    assert result.rtstruct_rois == ("CTV",)
    assert steps[-1] == "AutoCTV self-test passed"


def test_self_test_reports_a_failed_check_in_words():
    scene = new_scene()
    with pytest.raises(SelfTestFailure, match=r"CTV Dice 0\.\d{3} is below 1\.01"):
        run_self_test(AutoCTVCoreLogic(), scene, min_dice=1.01)
