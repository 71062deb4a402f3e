"""AutoCTV: the 3D Slicer module (thin GUI and MRML glue over AutoCTVLib).

All computation lives in ``AutoCTVLib`` (no Slicer imports there); the MRML glue and the logic
that runs without a panel live in ``AutoCTVSlicerLib`` (tested on a bare MRML scene). This file
holds what needs the running application: the module description, the parameter node, the panel,
the application-only parts of the logic (DICOM database, Segment Editor undo) and the
self-test. It runs in Slicer 5.8 or newer (tested against the 5.8, 5.10 and 5.12 stacks:
Python 3.9–3.12, pydicom 2.4 and 3).
"""

from __future__ import annotations

import logging
import pathlib
import shutil
import tempfile
import traceback
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin


def _add_source_tree_library() -> None:
    """Make ``AutoCTVLib`` importable when the module runs from a source checkout.

    A built extension installs ``AutoCTVLib`` beside this file; during development Slicer loads
    this file from the repository's ``AutoCTV/`` folder (Additional module paths) and the
    library is one level up.
    """
    import importlib.util
    import sys

    if importlib.util.find_spec("AutoCTVLib") is None:
        root = pathlib.Path(__file__).resolve().parents[1]
        if (root / "AutoCTVLib" / "__init__.py").is_file():
            sys.path.append(str(root))


_add_source_tree_library()

from AutoCTVLib.cli.child import POLL_INTERVAL_MS  # noqa: E402
from AutoCTVLib.models.bundled import ctv_model_summary  # noqa: E402
from AutoCTVLib.options import (  # noqa: E402
    COMPLETION_METHODS,
    DEVICE_CHOICES,
    NETWORK_COMPLETION_METHODS,
)
from AutoCTVSlicerLib import dicom_export, heat_map  # noqa: E402
from AutoCTVSlicerLib.logic import AutoContourSettings, AutoCTVCoreLogic  # noqa: E402
from AutoCTVSlicerLib.placement import remove_with_display_nodes  # noqa: E402

logger = logging.getLogger(__name__)

DISCLAIMER = (
    "The bundled model was trained on synthetic pelvic phantoms only. It is not for clinical use."
)
MODEL_SOURCES = ("Bundled model", "Model file")
MINIMUM_SLICER = "5.8"
EXPORT_FORMATS = ("RTSTRUCT", "DICOM SEG")
EXPORT_DESTINATIONS = ("DICOM database", "Folder")


#
# AutoCTV
#


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
            "U-Net, shows where the model is unsure (Monte-Carlo dropout heat map and a list of "
            "slices to review), completes a contour from a few hand-drawn slices, and exports "
            "DICOM RTSTRUCT and SEG. Results are ordinary segments, editable in the Segment "
            f"Editor. Needs Slicer {MINIMUM_SLICER} or newer and the PyTorch extension. <b>"
            + DISCLAIMER
            + "</b>"
        )
        self.parent.acknowledgementText = (
            "Method after a thesis on deep-learning CTV segmentation for cervical cancer "
            "radiotherapy (3D U-Net with residual, squeeze-and-excitation and recurrent "
            "refinement; quality-aware training on noisy labels, 'Pick-and-Learn', MICCAI 2019), "
            "Çiçek et al., 3D U-Net (MICCAI 2016) and Gal and Ghahramani, Monte-Carlo dropout "
            "(ICML 2016). It builds on 3D Slicer, PyTorch (through the PyTorch extension), "
            "SimpleITK, pydicom and highdicom."
        )


#
# AutoCTVParameterNode
#


@parameterNodeWrapper
class AutoCTVParameterNode:
    """The panel's settings, saved with the scene.

    inputVolume - the CT to contour.
    modelSource / modelFile - the bundled model or a model card/weights file.
    device - auto, cpu or cuda.
    outputSegmentation - None: a new segmentation node; else write into this one (asks first).
    computeUncertainty / mcSamples - Monte-Carlo dropout uncertainty and its number of passes.
    uncertaintyVolume / showHeatMap / heatMapOpacity - the heat map and how it is shown.
    completionSegmentation / completionSegmentId / completionMethod - the drawn slices.
    exportSegmentation / exportFormat / exportDestination / exportFolder - DICOM export.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    modelSource: Annotated[str, Choice(list(MODEL_SOURCES))] = MODEL_SOURCES[0]
    modelFile: pathlib.Path
    device: Annotated[str, Choice(list(DEVICE_CHOICES))] = "auto"
    outputSegmentation: vtkMRMLSegmentationNode
    computeUncertainty: bool = True
    mcSamples: Annotated[int, WithinRange(2, 100)] = 20
    uncertaintyVolume: vtkMRMLScalarVolumeNode
    showHeatMap: bool = True
    heatMapOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    completionSegmentation: vtkMRMLSegmentationNode
    completionSegmentId: str = ""
    completionMethod: Annotated[str, Choice(list(COMPLETION_METHODS))] = "learned"
    exportSegmentation: vtkMRMLSegmentationNode
    exportFormat: Annotated[str, Choice(list(EXPORT_FORMATS))] = EXPORT_FORMATS[0]
    exportDestination: Annotated[str, Choice(list(EXPORT_DESTINATIONS))] = EXPORT_DESTINATIONS[0]
    exportFolder: pathlib.Path


#
# AutoCTVWidget
#


class AutoCTVWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel. It binds the widgets to the parameter node and calls the logic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._jobKind = ""
        self._preview = None  # (preview node, completed labelmap, segmentation node, segment ID)
        self._pollTimer = None
        self._shownHeatMap = None  # (CT ID, heat map ID, shown, opacity) last applied to views
        self._modelInfoCache = (None, "")
        self._segSupport = (True, "")

    # -- set-up -----------------------------------------------------------------------------

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/AutoCTV.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = AutoCTVLogic()

        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self.onPollJob)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.autoContourButton.connect("clicked(bool)", self.onAutoContourButton)
        # Only AutoCTV heat maps are offered, never the CT.
        self.ui.uncertaintyVolumeSelector.addAttribute(
            "vtkMRMLScalarVolumeNode", heat_map.KIND_ATTRIBUTE, heat_map.KIND_ENTROPY
        )
        # Clicks and arrow keys both change the current item.
        self.ui.reviewSlicesListWidget.connect(
            "currentItemChanged(QListWidgetItem*,QListWidgetItem*)", self.onReviewSlice
        )
        self.ui.reviewSlicesListWidget.connect("itemClicked(QListWidgetItem*)", self.onReviewSlice)
        self._segSupport = dicom_export.dicom_seg_supported()  # (works, why not)
        self.ui.sparseSegmentSelector.connect(
            "currentNodeChanged(vtkMRMLNode*)", self.onSparseSegmentationChanged
        )
        self.ui.sparseSegmentSelector.connect(
            "currentSegmentChanged(QString)", self.onSparseSegmentChanged
        )
        self.ui.previewCompletionButton.connect("clicked(bool)", self.onPreviewCompletion)
        self.ui.applyCompletionButton.connect("clicked(bool)", self.onApplyCompletion)
        self.ui.discardPreviewButton.connect("clicked(bool)", self.onDiscardPreview)
        self.ui.exportButton.connect("clicked(bool)", self.onExport)
        self.ui.loadPhantomButton.connect("clicked(bool)", self.onLoadPhantom)
        self.ui.progressBar.setVisible(False)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        # Reload or exit during a run: end the child and delete its temporary copy of the CT.
        if self.logic is not None:
            self.logic.cleanup()
        self._job = None
        if self._pollTimer is not None:
            self._pollTimer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUI)

    def onSceneStartClose(self, caller, event) -> None:
        self.logic.cleanup()  # ends a running job and deletes its temporary copy of the CT
        if self._job is not None:
            self._stopPolling()
        self._preview = None
        self._shownHeatMap = None
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            volumes = slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
            cts = [
                v
                for v in volumes
                if not (heat_map.is_uncertainty_node(v) or v.IsA("vtkMRMLLabelMapVolumeNode"))
            ]
            if cts:
                self._parameterNode.inputVolume = cts[0]

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUI)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self._offerDicomSegOnlyWhereSupported()
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUI)
            self.ui.sparseSegmentSelector.setCurrentNode(self._parameterNode.completionSegmentation)
            if self._parameterNode.completionSegmentId:
                self.ui.sparseSegmentSelector.setCurrentSegmentID(
                    self._parameterNode.completionSegmentId
                )
            self.updateGUI()

    # -- reflecting the parameter node ------------------------------------------------------

    def updateGUI(self, caller=None, event=None) -> None:
        node = self._parameterNode
        if node is None:
            return
        running = self._job is not None
        useFile = node.modelSource == MODEL_SOURCES[1]
        self.ui.modelFilePathLineEdit.setEnabled(useFile and not running)
        self.ui.mcSamplesSpinBox.setEnabled(node.computeUncertainty and not running)
        self.ui.modelInfoLabel.text = self._modelInfo()
        if running and self._jobKind == "auto-contour":
            self.ui.autoContourButton.text = "Cancel"
            self.ui.autoContourButton.toolTip = "Stop the running auto-contouring."
            self.ui.autoContourButton.enabled = True
        else:
            self.ui.autoContourButton.text = "Auto-contour"
            self.ui.autoContourButton.toolTip = "Contour the CTV on the input CT."
            self.ui.autoContourButton.enabled = bool(node.inputVolume) and not running
        if running and self._jobKind == "completion":
            self.ui.previewCompletionButton.text = "Cancel"
            self.ui.previewCompletionButton.enabled = True
        else:
            self.ui.previewCompletionButton.text = "Preview"
        self.ui.heatMapOpacitySlider.setEnabled(bool(node.uncertaintyVolume) and node.showHeatMap)
        self._updateHeatMap()
        self._updateReviewList()
        hasDrawing = bool(node.completionSegmentation and node.completionSegmentId)
        if not (running and self._jobKind == "completion"):
            self.ui.previewCompletionButton.enabled = (
                hasDrawing and bool(node.inputVolume) and not running
            )
        self.ui.applyCompletionButton.enabled = self._preview is not None and not running
        self.ui.discardPreviewButton.enabled = self._preview is not None and not running
        toFolder = node.exportDestination == EXPORT_DESTINATIONS[1]
        self.ui.exportFolderPathLineEdit.setEnabled(toFolder)
        segBlocked = node.exportFormat == EXPORT_FORMATS[1] and not self._segSupport[0]
        self.ui.exportButton.toolTip = (
            self._segSupport[1] if segBlocked else "Write the segmentation as DICOM."
        )
        self.ui.exportButton.enabled = (
            not segBlocked
            and bool(node.exportSegmentation and node.inputVolume)
            and (not toFolder or _isSet(node.exportFolder))
            and not running
        )

    def _offerDicomSegOnlyWhereSupported(self) -> None:
        """Grey out the DICOM SEG choice (items are filled by connectGui) and say why."""
        supported, reason = self._segSupport
        combo = self.ui.exportFormatComboBox
        index = combo.findText(EXPORT_FORMATS[1])
        if supported or index < 0:
            return
        combo.setItemData(index, 0, qt.Qt.UserRole - 1)  # item flags: not enabled
        combo.setItemData(index, reason, qt.Qt.ToolTipRole)
        combo.toolTip = f"DICOM SEG is not available here: {reason}"

    def _modelInfo(self) -> str:
        node = self._parameterNode
        modelPath = node.modelFile if node.modelSource == MODEL_SOURCES[1] else None
        if node.modelSource == MODEL_SOURCES[1] and not _isSet(modelPath):
            return "Choose the model's .json card (its .safetensors weights must lie beside it)."
        key = str(modelPath)
        if self._modelInfoCache[0] != key:
            try:
                info = ctv_model_summary(modelPath if _isSet(modelPath) else None)
            except Exception as error:  # a bad file is reported here, not as a pop-up
                info = f"Model not usable: {error}"
            self._modelInfoCache = (key, info)
        return self._modelInfoCache[1]

    def _settings(self) -> AutoContourSettings:
        node = self._parameterNode
        modelPath = node.modelFile if node.modelSource == MODEL_SOURCES[1] else None
        return AutoContourSettings(
            model_path=modelPath if _isSet(modelPath) else None,
            device=node.device,
            mc_samples=node.mcSamples if node.computeUncertainty else 0,
        )

    def _updateHeatMap(self) -> None:
        """Apply the heat map settings to the slice views, only when they changed."""
        node = self._parameterNode
        heatMap = node.uncertaintyVolume
        if not heat_map.is_uncertainty_node(heatMap) or node.inputVolume is None:
            return
        state = (node.inputVolume.GetID(), heatMap.GetID(), node.showHeatMap, node.heatMapOpacity)
        if state == self._shownHeatMap:
            return
        previous = self._shownHeatMap
        if node.showHeatMap and previous is not None and previous[:3] == state[:3]:
            heat_map.set_heat_map_opacity(heatMap, node.heatMapOpacity)
        elif node.showHeatMap:
            heat_map.show_heat_map(node.inputVolume, heatMap, node.heatMapOpacity)
        else:
            heat_map.hide_heat_map(heatMap)
        self._shownHeatMap = state

    def _updateReviewList(self) -> None:
        heatMap = self._parameterNode.uncertaintyVolume
        entries = heat_map.review_entries(heatMap)
        listWidget = self.ui.reviewSlicesListWidget
        listed = [listWidget.item(row).data(qt.Qt.UserRole) for row in range(listWidget.count)]
        if listed != [entry.k for entry in entries]:
            wasBlocked = listWidget.blockSignals(True)
            listWidget.clear()
            for rank, entry in enumerate(entries, start=1):
                item = qt.QListWidgetItem(entry.label(rank))
                item.setData(qt.Qt.UserRole, entry.k)
                listWidget.addItem(item)
            listWidget.blockSignals(wasBlocked)
        score = heat_map.case_score_of(heatMap)
        self.ui.caseScoreLabel.text = (
            "-" if score is None else f"{score:.3f} bits (0 = sure, 1 = unsure)"
        )

    # -- auto-contouring --------------------------------------------------------------------

    def onAutoContourButton(self) -> None:
        if self._job is not None:
            self.ui.statusLabel.text = "Cancelling..."
            self._job.cancel()
            return
        node = self._parameterNode
        output = node.outputSegmentation
        replace = False
        if self.logic.output_needs_confirmation(output):
            replace = slicer.util.confirmOkCancelDisplay(
                f"The segmentation '{output.GetName()}' already holds segments. AutoCTV will "
                "replace its CTV segment (or add one). Continue?",
                "AutoCTV: change an existing segmentation?",
            )
            if not replace:
                self.ui.statusLabel.text = "Not started: the existing segmentation was kept."
                return
        with slicer.util.tryWithErrorDisplay("AutoCTV could not start.", waitCursor=True):
            self.logic.ensure_dependencies(["auto_contour"])
            self._job = self.logic.start_auto_contour(
                node.inputVolume,
                self._settings(),
                output_segmentation=output,
                replace_confirmed=replace,
                on_progress=self.onProgress,
                on_finished=self.onAutoContourFinished,
            )
            self._startPolling("auto-contour", "Starting...")

    def _startPolling(self, kind: str, status: str) -> None:
        self._jobKind = kind
        self.ui.progressBar.setValue(0)
        self.ui.progressBar.setVisible(True)
        self.ui.statusLabel.text = status
        self._pollTimer.start()
        self.updateGUI()

    def _stopPolling(self) -> None:
        self._pollTimer.stop()
        self._job = None
        self._jobKind = ""
        self.ui.progressBar.setVisible(False)
        self.updateGUI()

    def onPollJob(self) -> None:
        if self._job is None:
            self._pollTimer.stop()
            return
        try:
            self._job.poll()
        except Exception as error:
            self._stopPolling()
            _showError("AutoCTV failed while reading the results.", error)

    def onProgress(self, stage: str, fraction: float, message: str) -> None:
        self.ui.progressBar.setValue(round(100 * fraction))
        text = f"{stage}: {message}" if message else stage
        if self._jobKind == "completion":
            self.ui.completionStatusLabel.text = f"{text} ({round(100 * fraction)} %)"
        else:
            self.ui.statusLabel.text = text

    def onAutoContourFinished(self, result, error: str) -> None:
        cancelled = self._job is not None and self._job.cancelled
        self._stopPolling()
        if result is None:
            if cancelled:
                self.ui.statusLabel.text = "Cancelled. Nothing was changed."
            else:
                self.ui.statusLabel.text = "Failed."
                slicer.util.errorDisplay(f"AutoCTV could not contour the CT.\n\n{error}")
            return
        node = self._parameterNode
        node.exportSegmentation = result.segmentation_node
        if result.uncertainty_node is not None:
            node.uncertaintyVolume = result.uncertainty_node
        self.ui.statusLabel.text = "Done: the CTV is ready for review and editing." + (
            " Undo in the Segment Editor (Ctrl+Z) restores the segmentation."
            if result.undo is not None
            else ""
        )
        result.segmentation_node.CreateClosedSurfaceRepresentation()
        self.updateGUI()

    # -- uncertainty review -----------------------------------------------------------------

    def onReviewSlice(self, item, previous=None) -> None:
        node = self._parameterNode
        if node is None or node.uncertaintyVolume is None or item is None:
            return
        # The list is the heat map's (on its CT's grid), whatever CT is selected as input now.
        with slicer.util.tryWithErrorDisplay("Cannot show that slice."):
            heat_map.jump_to_slice(node.uncertaintyVolume, int(item.data(qt.Qt.UserRole)))

    # -- completion -------------------------------------------------------------------------

    def onSparseSegmentationChanged(self, segmentationNode) -> None:
        if self._parameterNode:
            self._parameterNode.completionSegmentation = segmentationNode

    def onSparseSegmentChanged(self, segmentId) -> None:
        node = self._parameterNode
        if not node:
            return
        node.completionSegmentId = segmentId or ""
        self.ui.completionStatusLabel.text = ""
        if node.inputVolume and node.completionSegmentation and segmentId:
            try:
                drawn = self.logic.drawn_slices(
                    node.inputVolume, node.completionSegmentation, segmentId
                )
                self.ui.completionStatusLabel.text = f"Drawn: {drawn}"
            except Exception as error:  # an empty segment is normal while drawing
                self.ui.completionStatusLabel.text = str(error)

    def onPreviewCompletion(self) -> None:
        if self._job is not None and self._jobKind == "completion":
            self.ui.completionStatusLabel.text = "Cancelling..."
            self._job.cancel()
            return
        node = self._parameterNode
        self.onDiscardPreview()
        method = node.completionMethod
        with slicer.util.tryWithErrorDisplay(
            "AutoCTV could not complete the drawing.", waitCursor=True
        ):
            if method in NETWORK_COMPLETION_METHODS:
                self.logic.ensure_dependencies(["auto_contour"])
                self._job = self.logic.start_completion(
                    node.inputVolume,
                    node.completionSegmentation,
                    node.completionSegmentId,
                    method,
                    device=node.device,
                    on_progress=self.onProgress,
                    on_finished=self.onCompletionFinished,
                )
                self._startPolling("completion", "Completing...")
            else:  # Slicer's own Fill between slices: nothing to install
                completed = self.logic.complete(
                    node.inputVolume, node.completionSegmentation, node.completionSegmentId, method
                )
                self._showPreview(completed, method)

    def onCompletionFinished(self, completed, error: str) -> None:
        cancelled = self._job is not None and self._job.cancelled
        method = self._parameterNode.completionMethod
        self._stopPolling()
        if completed is None:
            self.ui.completionStatusLabel.text = "Cancelled." if cancelled else "Failed."
            if not cancelled:
                slicer.util.errorDisplay(f"AutoCTV could not complete the drawing.\n\n{error}")
            return
        self._showPreview(completed, method)

    def _showPreview(self, completed, method: str) -> None:
        node = self._parameterNode
        previewNode = self.logic.add_completion_preview(
            node.inputVolume,
            completed,
            node.completionSegmentation,
            node.completionSegmentId,
            method,
        )
        self._preview = (
            previewNode,
            completed,
            node.completionSegmentation,
            node.completionSegmentId,
        )
        self.ui.completionStatusLabel.text = (
            f"Preview ready ({method}): check it, then Apply to replace the drawn segment."
        )
        self.updateGUI()

    def onApplyCompletion(self) -> None:
        if self._preview is None:
            return
        previewNode, completed, segmentationNode, segmentId = self._preview
        method = self._parameterNode.completionMethod
        with slicer.util.tryWithErrorDisplay("AutoCTV could not apply the completion."):
            self.logic.apply_completion(
                segmentationNode, segmentId, completed, self._parameterNode.inputVolume, method
            )
            remove_with_display_nodes(previewNode)
            self._preview = None
            self.ui.completionStatusLabel.text = (
                "Applied. Undo in the Segment Editor (Ctrl+Z) restores the drawn slices."
            )
        self.updateGUI()

    def onDiscardPreview(self) -> None:
        if self._preview is not None:
            remove_with_display_nodes(self._preview[0])
            self._preview = None
            self.ui.completionStatusLabel.text = ""
        self.updateGUI()

    # -- export -----------------------------------------------------------------------------

    def onExport(self) -> None:
        node = self._parameterNode
        toFolder = node.exportDestination == EXPORT_DESTINATIONS[1]
        with slicer.util.tryWithErrorDisplay("AutoCTV could not export.", waitCursor=True):
            written = self.logic.export_segmentation(
                node.exportSegmentation,
                node.inputVolume,
                node.exportFormat,
                folder=str(node.exportFolder) if toFolder else None,
            )
            where = f"to {node.exportFolder}" if toFolder else "into the DICOM database"
            self.ui.exportStatusLabel.text = f"Exported {node.exportFormat} {where}: {written}"

    # -- trying it out ----------------------------------------------------------------------

    def onLoadPhantom(self) -> None:
        with slicer.util.tryWithErrorDisplay("Failed to generate the phantom.", waitCursor=True):
            ctNode, _ = self.logic.load_phantom(slicer.mrmlScene, seed=2026)
            slicer.util.setSliceViewerLayers(background=ctNode, fit=True)
            self._parameterNode.inputVolume = ctNode


def _isSet(path) -> bool:
    return path is not None and str(path) not in ("", ".")


def _showError(message: str, error: Exception) -> None:
    slicer.util.errorDisplay(f"{message}\n\n{error}", detailedText=traceback.format_exc())


#
# AutoCTVLogic
#


class AutoCTVLogic(ScriptedLoadableModuleLogic, AutoCTVCoreLogic):
    """Everything the panel does, usable from the Python console and the self-test.

    The computation and node handling come from ``AutoCTVSlicerLib.logic.AutoCTVCoreLogic``;
    this class adds the parameter node and what needs the running application::

        logic = slicer.util.getModuleLogic("AutoCTV")
        result = logic.auto_contour(getNode("CT"), AutoContourSettings(mc_samples=20))
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        AutoCTVCoreLogic.__init__(self)

    def getParameterNode(self):
        return AutoCTVParameterNode(super().getParameterNode())

    @staticmethod
    def ensure_dependencies(features) -> None:
        """Install missing packages for ``features`` after asking; never in testing mode."""
        from AutoCTVSlicerLib.dependencies import ensure_in_slicer

        ensure_in_slicer(features)

    def save_undo_state(self, segmentationNode):
        """Save the state in the Segment Editor's own undo history (one snapshot per change:
        Ctrl+Z in the Segment Editor restores it); returns that undo."""
        from AutoCTVSlicerLib.segmentation_nodes import reference_volume

        segmentEditor = slicer.modules.segmenteditor.widgetRepresentation().self()
        # The editor ignores setSegmentationNode without its parameter node, which it drops
        # when the scene closes and selects again only when the module is entered.
        segmentEditor.selectParameterNode()
        editor = segmentEditor.editor
        editor.setSegmentationNode(segmentationNode)
        source = reference_volume(segmentationNode)
        if source is not None:
            editor.setSourceVolumeNode(source)
        editor.saveStateForUndo()
        return editor.undo

    def export_segmentation(self, segmentationNode, ctNode, exportFormat: str, folder=None) -> str:
        """Export as RTSTRUCT or DICOM SEG into ``folder``, or the DICOM database when None.

        Both reference the CT's own DICOM series when it came from the DICOM database (no copy
        of the CT is written then). Returns the written file's name.
        """
        from AutoCTVLib.errors import OutputError

        if exportFormat != "RTSTRUCT":
            supported, reason = dicom_export.dicom_seg_supported()
            if not supported:
                raise OutputError(reason)
        target = (
            pathlib.Path(folder) if folder else pathlib.Path(tempfile.mkdtemp(prefix="AutoCTV-"))
        )
        try:
            if exportFormat == "RTSTRUCT":
                result = dicom_export.export_rtstruct(segmentationNode, ctNode, target)
            else:
                result = dicom_export.export_dicom_seg(segmentationNode, ctNode, target)
            if folder is None:
                self.import_into_dicom_database(target)
            return result.object_file.name
        finally:
            if folder is None:
                shutil.rmtree(target, ignore_errors=True)

    @staticmethod
    def import_into_dicom_database(folder: pathlib.Path) -> None:
        """Copy the DICOM files of ``folder`` into Slicer's DICOM database."""
        from DICOMLib import DICOMUtils

        from AutoCTVLib.errors import OutputError

        database = getattr(slicer, "dicomDatabase", None)
        if database is None or not database.isOpen:
            raise OutputError(
                "Slicer's DICOM database is not open; open the DICOM module once, or export to "
                "a folder"
            )
        if not DICOMUtils.importDicom(str(folder), database, copyFiles=True):
            raise OutputError("the DICOM files could not be imported into the DICOM database")


#
# AutoCTVTest
#


class AutoCTVTest(ScriptedLoadableModuleTest):
    """Self-test for Slicer's test harness: contour, cancel, heat map, completion, undo, export.

    Offline and install-free: when PyTorch or safetensors are missing the test is skipped with
    a message saying so (``ensure_dependencies`` never installs in testing mode, and "Reload and
    Test" shows the skip as a message, not as a failure).
    """

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        """What "Reload and Test" calls: a skip is reported, not raised as an error."""
        import unittest

        self.setUp()
        try:
            self.test_auto_contour_review_complete_export()
        except unittest.SkipTest as reason:
            logging.warning("AutoCTV self-test skipped: %s", reason)
            self.delayDisplay(f"AutoCTV self-test skipped: {reason}")

    def test_auto_contour_review_complete_export(self) -> None:
        """The shared workflow of ``AutoCTVSlicerLib.self_test`` (CI runs it on slicer-core)."""
        from AutoCTVSlicerLib.dependencies import MissingDependencyError
        from AutoCTVSlicerLib.self_test import run_self_test

        logic = AutoCTVLogic()
        try:
            logic.ensure_dependencies(["auto_contour"])
        except MissingDependencyError as error:
            self.skipTest(f"{error} (install the PyTorch extension and run AutoCTV once)")
        try:
            result = run_self_test(logic, slicer.mrmlScene, step=self.delayDisplay)
        finally:
            logic.cleanup()
            slicer.mrmlScene.Clear()
        logging.info("AutoCTV self-test: %s", result)
