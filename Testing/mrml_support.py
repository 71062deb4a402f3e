"""Helpers for tests on a real MRML scene from the ``slicer-core`` package.

Importing this module puts the Slicer module folder (``AutoCTV/``) on ``sys.path`` so that the
module's MRML glue package ``AutoCTVSlicerLib`` can be imported, as Slicer does at run time.

:func:`new_scene` gives a fresh ``vtkMRMLScene`` set up the way the Slicer application sets up
its scene at start-up: ``slicer.mrmlScene`` points to it, the Segmentations and Volumes module
logics are created with the scene (this registers the segmentation representation converters),
and ``slicer.modules.<name>.logic()`` returns those logic objects, so that Slicer's own
``slicer.util`` helpers (``arrayFromSegmentBinaryLabelmap``, ...) run unchanged and can serve as
an independent check of AutoCTV's code. Nothing is mocked: every object is Slicer's real class.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

SLICER_MODULE_DIR = Path(__file__).resolve().parents[1] / "AutoCTV"
if str(SLICER_MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(SLICER_MODULE_DIR))


def new_scene():
    """A fresh MRML scene, installed as ``slicer.mrmlScene`` with its module logics."""
    import slicer

    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    segmentations_logic = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentations_logic.SetMRMLScene(scene)
    volumes_logic = slicer.vtkSlicerVolumesLogic()
    volumes_logic.SetMRMLScene(scene)
    slicer.modules = SimpleNamespace(
        segmentations=SimpleNamespace(logic=lambda: segmentations_logic),
        volumes=SimpleNamespace(logic=lambda: volumes_logic),
    )
    return scene


def scene_node_ids(scene) -> list[str]:
    """IDs of all nodes in the scene (to check that an operation left the scene unchanged)."""
    return [scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())]
