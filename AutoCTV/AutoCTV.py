"""AutoCTV: the 3D Slicer module (thin GUI and MRML glue over AutoCTVLib).

All computation lives in ``AutoCTVLib`` (no Slicer imports there). This module converts between
MRML nodes and the library, and shows results. It relies on Slicer 5.8 or newer (Python 3.12).
"""

from __future__ import annotations

import tempfile

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

DISCLAIMER = (
    "The bundled model was trained on synthetic pelvic phantoms only. It is not for clinical use."
)


class AutoCTV(ScriptedLoadableModule):
    """Module description shown by Slicer."""

    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "AutoCTV"
        self.parent.categories = ["Radiotherapy", "Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["AutoCTV developers"]
        self.parent.helpText = (
            "Contours the clinical target volume (CTV) on a radiotherapy planning CT with a 3D "
            "U-Net, shows where the model is unsure, and completes a contour from a few "
            "hand-drawn slices. " + DISCLAIMER
        )
        self.parent.acknowledgementText = (
            "Method after a thesis on deep-learning CTV segmentation for cervical cancer "
            "radiotherapy (3D U-Net with residual, squeeze-and-excitation and recurrent "
            "refinement; quality-aware training on noisy labels) and Çiçek et al., 3D U-Net, 2016."
        )


class AutoCTVWidget(ScriptedLoadableModuleWidget):
    """The module panel. It only binds widgets to the logic."""

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        import qt

        note = qt.QLabel(DISCLAIMER)
        note.wordWrap = True
        self.layout.addWidget(note)
        self.phantomButton = qt.QPushButton("Load synthetic pelvic phantom")
        self.phantomButton.toolTip = "Generate a seeded synthetic pelvic CT and load it."
        self.phantomButton.connect("clicked(bool)", self.onLoadPhantom)
        self.layout.addWidget(self.phantomButton)
        self.layout.addStretch(1)
        self.logic = AutoCTVLogic()

    def onLoadPhantom(self) -> None:
        with slicer.util.tryWithErrorDisplay("Failed to generate the phantom.", waitCursor=True):
            self.logic.loadPhantom(seed=2026)


class AutoCTVLogic(ScriptedLoadableModuleLogic):
    """Everything the panel does, usable from the Python console and the self-test."""

    def loadPhantom(self, seed: int = 2026, size_xyz=None, spacing_xyz_mm=None):
        """Generate a phantom with AutoCTVLib and load its CT as a scalar volume node.

        Returns the volume node. Slicer's own NIfTI reader does the LPS → RAS conversion.
        """
        from AutoCTVLib.phantom import PhantomConfig, generate_phantom, write_phantom

        options = {"seed": seed}
        if size_xyz is not None:
            options["size_xyz"] = tuple(size_xyz)
        if spacing_xyz_mm is not None:
            options["spacing_xyz_mm"] = tuple(spacing_xyz_mm)
        phantom = generate_phantom(PhantomConfig(**options))
        with tempfile.TemporaryDirectory() as folder:
            written = write_phantom(phantom, folder)
            node = slicer.util.loadVolume(str(written["ct"]), {"name": f"Phantom CT {seed}"})
        return node


class AutoCTVTest(ScriptedLoadableModuleTest):
    """Self-test for Slicer's test harness."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_load_phantom()

    def test_load_phantom(self) -> None:
        node = AutoCTVLogic().loadPhantom(seed=7, size_xyz=(64, 64, 24), spacing_xyz_mm=(4, 4, 5))
        array = slicer.util.arrayFromVolume(node)
        self.assertEqual(array.shape, (24, 64, 64))
        self.assertLess(array.min(), -900)  # air around the body
        self.assertGreater(array.max(), 300)  # bone
        self.delayDisplay("AutoCTV phantom test passed")
