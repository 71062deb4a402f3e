"""Completion from hand-drawn slices through the Slicer module's logic (slicer-core scene).

"interpolate" runs Slicer's own Fill between slices filter (vtkITK, in slicer-core); it is
compared with the library's ITK Python run of the same filter.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import make_geometry
from mrml_support import new_scene, scene_node_ids

from AutoCTVLib.volume import Volume
from AutoCTVSlicerLib.logic import AutoCTVCoreLogic
from AutoCTVSlicerLib.segmentation_nodes import add_segmentation_node
from AutoCTVSlicerLib.volume_nodes import add_volume_node

pytestmark = pytest.mark.mrml

SHAPE_ZYX = (12, 20, 22)


def _ct_and_target() -> tuple[Volume, np.ndarray]:
    geometry = make_geometry("oblique", shape_zyx=SHAPE_ZYX, spacing_xyz_mm=(2.0, 2.0, 3.0))
    z, y, x = np.indices(SHAPE_ZYX, dtype=float)
    target = ((z - 6) / 4.5) ** 2 + ((y - 10) / 6) ** 2 + ((x - 11) / 7) ** 2 < 1
    ct_hu = np.where(target, 60.0, 20.0) + np.random.default_rng(2).normal(0, 5, SHAPE_ZYX)
    return Volume(ct_hu.astype(np.float32), geometry), target.astype(np.uint8)


def _library_interpolation(drawn: np.ndarray, tmp_path) -> np.ndarray:
    """The library's "interpolate" (ITK Python) on ``drawn``, in a separate interpreter: ITK
    Python and Slicer's vtkITK in one process crash it at exit."""
    np.save(tmp_path / "drawn.npy", drawn)
    code = (
        "import sys, numpy as np\n"
        "from AutoCTVLib.completion.annotation import resolve_annotation\n"
        "from AutoCTVLib.completion.interpolate import interpolate_completion\n"
        "sparse, annotation = resolve_annotation(np.load(sys.argv[1]).astype(bool))\n"
        "np.save(sys.argv[2], interpolate_completion(sparse, annotation))\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "drawn.npy"), str(tmp_path / "itk.npy")],
        check=True,
        timeout=300,
    )
    return np.load(tmp_path / "itk.npy")


def test_interpolation_uses_slicers_fill_between_slices(tmp_path, monkeypatch):
    from AutoCTVLib.completion import interpolate
    from AutoCTVLib.metrics import dice

    def itk_python(*args):
        raise AssertionError("the Slicer module must not run ITK Python")

    monkeypatch.setattr(interpolate, "interpolate_along", itk_python)

    scene = new_scene()
    ct, target = _ct_and_target()
    ct_node = add_volume_node(ct, "CT", scene)
    drawn = np.zeros_like(target)
    drawn[::2] = target[::2]
    node = add_segmentation_node(drawn, ct_node, node_name="drawn by hand")
    segment_id = node.GetSegmentation().GetNthSegmentID(0)
    before = scene_node_ids(scene)
    progress = []
    completed = AutoCTVCoreLogic().complete(
        ct_node, node, segment_id, "interpolate", progress=lambda *event: progress.append(event)
    )
    assert scene_node_ids(scene) == before  # nothing changed until applied
    painted = drawn.any(axis=(1, 2))
    assert np.array_equal(completed[painted], drawn[painted])  # drawn slices kept as drawn
    assert dice(completed, target) > dice(drawn, target) + 0.1
    assert progress and progress[-1][1] == 1.0
    # The same filter, built by ITK Python for the library: the same result.
    assert np.array_equal(completed, _library_interpolation(drawn, tmp_path))
    with pytest.raises(ValueError, match="completion method"):
        AutoCTVCoreLogic().complete(ct_node, node, segment_id, "magic")


def test_child_completion_reports_a_wrong_model_and_cleans_up(tmp_path):
    """A real ``autoctv complete`` child: inputs written, arguments accepted, the library's
    one-line error delivered, the work folder removed and the scene left as it was."""
    import torch

    from AutoCTVLib.models import SYNTHETIC_DISCLAIMER, ModelCard, ctv_label, save_model
    from AutoCTVLib.nn import build_network, thesis_config

    config = thesis_config(channels=(4, 8), recurrent_steps=1)
    network = build_network(config, seed=0).eval()
    card = ModelCard(
        name="not-a-completion-model",
        version="1",
        architecture=config.to_dict(),
        preprocessing={"spacing_xyz_mm": [4.0, 4.0, 4.0], "hu_window": [-1000.0, 1600.0]},
        labels=(ctv_label(),),
        training_data={},
        metrics={},
        intended_use="tests",
        disclaimer=SYNTHETIC_DISCLAIMER,
    )
    with torch.no_grad():
        save_model(network, card, tmp_path / "ctv")
    scene = new_scene()
    ct, target = _ct_and_target()
    ct_node = add_volume_node(ct, "CT", scene)
    drawn = np.zeros_like(target)
    drawn[::3] = target[::3]
    node = add_segmentation_node(drawn, ct_node)
    before = scene_node_ids(scene)
    finished = []
    job = AutoCTVCoreLogic().start_completion(
        ct_node,
        node,
        node.GetSegmentation().GetNthSegmentID(0),
        "learned",
        device="cpu",
        model_path=tmp_path / "ctv.json",
        on_finished=lambda result, error: finished.append((result, error)),
    )
    work_dir = job.work_dir
    assert (work_dir / "ct.nrrd").is_file() and (work_dir / "sparse.nrrd").is_file()
    assert job.wait(timeout_s=120) is None
    assert len(finished) == 1 and finished[0][0] is None
    assert "completion model" in finished[0][1] and "\n" not in finished[0][1]
    assert not work_dir.exists()
    assert scene_node_ids(scene) == before
