"""The AutoCTV module's logic: MRML nodes in, AutoCTV results as MRML nodes out.

:class:`AutoCTVCoreLogic` is everything the panel does, usable without the panel (Slicer's
Python console, the self-test, and the tests on a bare ``slicer-core`` scene). It needs no Qt and
no ``ScriptedLoadableModule``; ``AutoCTV.py``'s ``AutoCTVLogic`` adds the parameter node and the
parts that need the running application (DICOM database, SlicerRT, Segment Editor undo)::

    logic = AutoCTVCoreLogic()
    result = logic.auto_contour(ct_node, AutoContourSettings(mc_samples=20))    # in this process
    job = logic.start_auto_contour(ct_node, settings, on_finished=...)          # child process
    logic.show_uncertainty(ct_node, result.uncertainty_node, opacity=0.5)
    logic.jump_to_slice(ct_node, result.slices_to_review[0])
    logic.export_rtstruct(result.segmentation_node, ct_node, "/path/to/folder")

Results: a segmentation node with one segment "CTV" (CTV colour, coded as Clinical Target
Volume, reference geometry = the CT) and, with uncertainty, a float volume node with the
predictive entropy (bits, 0–1) and a heat colour table, both on the CT's exact grid, placed beside
the CT in the subject hierarchy and carrying their provenance as ``AutoCTV.*`` attributes.
An existing segmentation is changed only when the caller says the user agreed
(``replace_confirmed=True``); otherwise :class:`~AutoCTVLib.errors.OutputError` is raised.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import slicer

from AutoCTVLib import terminology as ctv_codes
from AutoCTVLib.errors import InputError, ModelFileError, OutputError
from AutoCTVLib.volume import Volume

from . import dicom_export, views
from .jobs import (
    CommandJob,
    PredictionOutputs,
    prepare_completion,
    prepare_prediction,
    read_completion_output,
    read_prediction_outputs,
)
from .map_nodes import add_float_map_node
from .placement import remove_with_display_nodes
from .provenance import Provenance, input_identity, write_provenance
from .segmentation_nodes import (
    CTV_COLOR_RGB,
    add_segmentation_node,
    labelmap_from_segment,
    segment_ids,
    set_segment_labelmap,
)
from .volume_nodes import add_volume_node, volume_from_node

logger = logging.getLogger(__name__)

#: The Slicer module folder (holds AutoCTV.py) and the folder that holds AutoCTVLib.
MODULE_DIR = Path(__file__).resolve().parents[1]

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
#: ``AutoCTVLib.completion.METHODS`` (repeated here: importing the library's completion
#: package loads torch, which the panel must not need before the user runs something).
COMPLETION_METHODS = ("learned", "finetune", "interpolate")
#: Completion methods that run a network (child process); "interpolate" runs in this process.
NETWORK_COMPLETION_METHODS = ("learned", "finetune")

ATTRIBUTE_CASE_SCORE = "AutoCTV.case_score"
ATTRIBUTE_REVIEW_SLICES = "AutoCTV.slices_to_review"
ATTRIBUTE_PREVIEW_OF = "AutoCTV.completion_preview_of"
HEAT_MAP_RANGE_BITS = (0.0, 1.0)

ProgressCallback = Callable[[str, float, str], None]


# --------------------------------------------------------------------------- models


#: Stem of the bundled CTV model's files (``AutoCTVLib.models.bundled.BUNDLED_MODEL_STEM``;
#: repeated here because importing ``AutoCTVLib.models`` loads torch, which the panel must not
#: need just to show which model it will use).
BUNDLED_MODEL_STEM = "ctv_pelvis_phantom"


def bundled_model_dirs() -> list[Path]:
    """Where the bundled model may be, in order (the library's own search, then the module's).

    ``<folder holding AutoCTVLib>/Resources/Models`` is the repository root in a source
    checkout and the extension's scripted-module folder once installed.
    """
    candidates = [
        library_root() / "Resources" / "Models",
        library_root() / "AutoCTV" / "Resources" / "Models",
        MODULE_DIR / "Resources" / "Models",
        MODULE_DIR.parent / "Resources" / "Models",
    ]
    unique: list[Path] = []
    for folder in candidates:
        if folder not in unique:
            unique.append(folder)
    return unique


def find_bundled_model(search_dirs: Sequence[Path] | None = None) -> Path:
    """The card (``.json``) of the bundled CTV model, with its weights beside it.

    Raises:
        ModelFileError: the bundled model is not installed.
    """
    folders = list(search_dirs) if search_dirs is not None else bundled_model_dirs()
    for folder in folders:
        card = Path(folder) / f"{BUNDLED_MODEL_STEM}.json"
        if card.is_file() and card.with_suffix(".safetensors").is_file():
            return card
    raise ModelFileError(
        f"the bundled model {BUNDLED_MODEL_STEM} is not installed (looked in "
        f"{Path(folders[0]) if folders else 'Resources/Models'}); choose a model file instead"
    )


def card_path_of(model_path: str | Path) -> Path:
    """The card path of a model given by its card, its weights, or their common stem."""
    path = Path(model_path)
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    return stem.with_name(stem.name + ".json")


def read_card_fields(model_path: str | Path) -> dict[str, Any]:
    """The model card of a CTV model as plain JSON (no torch needed), lightly checked.

    The full check (weights checksum, tensors, architecture) happens when the model is loaded.

    Raises:
        ModelFileError: the card or its weights are missing, the card is not JSON, or it is not
            a CTV model (e.g. a completion model, which takes more than the CT).
    """
    card_path = card_path_of(model_path)
    if not card_path.is_file():
        raise ModelFileError(f"model card {card_path} not found")
    if not card_path.with_suffix(".safetensors").is_file():
        raise ModelFileError(f"model weights {card_path.with_suffix('.safetensors')} not found")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ModelFileError(f"model card {card_path} is not readable JSON: {error}") from error
    if not isinstance(card, dict) or not card.get("name"):
        raise ModelFileError(f"model card {card_path} has no model name")
    if card.get("input_channels") != ["ct"]:
        channels = ", ".join(str(c) for c in card.get("input_channels") or []) or "nothing"
        raise ModelFileError(
            f"{card_path.name} is not a CTV contouring model: it takes {channels} as input, "
            "a CTV model takes the CT alone"
        )
    return card


def library_root() -> Path:
    """The folder that holds the ``AutoCTVLib`` package (what the child process imports)."""
    import AutoCTVLib

    return Path(AutoCTVLib.__file__).resolve().parents[1]


@dataclass(frozen=True)
class AutoContourSettings:
    """How to auto-contour.

    Attributes:
        model_path: model card or weights file; ``None`` uses the bundled model.
        device: "auto" (CUDA, then Apple MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps".
        mc_samples: Monte-Carlo dropout passes for the uncertainty map; 0 for none (else ≥ 2).
    """

    model_path: Path | None = None
    device: str = "auto"
    mc_samples: int = 0

    def __post_init__(self) -> None:
        device = str(self.device).strip().lower()
        if device not in DEVICE_CHOICES and not device.startswith("cuda:"):
            raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {device!r}")
        object.__setattr__(self, "device", device)
        if self.mc_samples != 0 and not 2 <= int(self.mc_samples) <= 1000:
            raise ValueError(f"mc_samples must be 0 (off) or 2–1000, got {self.mc_samples}")
        if self.model_path is not None:
            object.__setattr__(self, "model_path", Path(self.model_path))


@dataclass
class AutoContourResult:
    """The nodes an auto-contour run made or changed.

    Attributes:
        segmentation_node: holds the CTV segment.
        segment_id: ID of the CTV segment in it.
        uncertainty_node: predictive entropy heat map (bits), or None without uncertainty.
        case_score: mean uncertainty over the contour region (bits, 0–1), or None.
        slices_to_review: axial slice indices k of the CT, most doubtful first.
        report: the run's report (model, settings, timings, uncertainty summary).
    """

    segmentation_node: Any
    segment_id: str
    uncertainty_node: Any = None
    case_score: float | None = None
    slices_to_review: tuple[int, ...] = ()
    report: dict[str, Any] = field(default_factory=dict)


def _report_uncertainty(report: Mapping[str, Any]) -> tuple[float | None, tuple[int, ...]]:
    uncertainty = report.get("uncertainty") or {}
    score = uncertainty.get("case_score")
    slices = tuple(int(k) for k in uncertainty.get("slices_to_review") or ())
    return (float(score) if score is not None else None), slices


# --------------------------------------------------------------------------- the logic


class AutoCTVCoreLogic:
    """Auto-contouring, uncertainty review, completion and export on MRML nodes.

    Args:
        python: interpreter for child jobs (default: ``PythonSlicer`` inside Slicer, else the
            current interpreter).
        python_paths: extra ``PYTHONPATH`` folders for child jobs (default: the folder that
            holds ``AutoCTVLib``).
    """

    def __init__(self, python: str | None = None, python_paths: Sequence[str] | None = None):
        self.python = python
        self.python_paths = (
            list(python_paths) if python_paths is not None else [str(library_root())]
        )

    # -- models --------------------------------------------------------------------------

    @staticmethod
    def resolve_model(model_path: str | Path | None) -> Path:
        """The model card path to use: ``model_path``, or the bundled model when None/empty.

        Raises:
            ModelFileError: the files or the bundled model are missing, or the card is not a
                CTV model card.
        """
        if model_path is None or str(model_path) in ("", "."):
            card_path = find_bundled_model()
        else:
            card_path = card_path_of(model_path)
        read_card_fields(card_path)
        return card_path

    @staticmethod
    def model_summary(model_path: str | Path | None) -> str:
        """One line describing a model for the panel: name, version, voxel size, disclaimer."""
        card = read_card_fields(AutoCTVCoreLogic.resolve_model(model_path))
        parts = [f"{card['name']} {card.get('version', '')}".strip()]
        spacing = (card.get("preprocessing") or {}).get("spacing_xyz_mm")
        if spacing:
            parts.append("spacing " + "×".join(f"{float(v):g}" for v in spacing) + " mm")
        if card.get("disclaimer"):
            parts.append(str(card["disclaimer"]))
        return "; ".join(parts)

    # -- output protection ---------------------------------------------------------------

    @staticmethod
    def output_needs_confirmation(segmentation_node) -> bool:
        """True when writing into ``segmentation_node`` could change what a user made.

        A new node (``None``) or an empty segmentation needs no confirmation; one holding any
        segment does (its CTV segment would be replaced, or a CTV segment added).
        """
        return segmentation_node is not None and bool(segment_ids(segmentation_node))

    def _check_output(self, segmentation_node, replace_confirmed: bool) -> None:
        if self.output_needs_confirmation(segmentation_node) and not replace_confirmed:
            raise OutputError(
                f"the segmentation '{segmentation_node.GetName()}' already holds segments; "
                "choose 'Create new segmentation', or confirm that its CTV segment may be "
                "replaced"
            )

    # -- auto-contouring -----------------------------------------------------------------

    def auto_contour(
        self,
        ct_node,
        settings: AutoContourSettings | None = None,
        *,
        output_segmentation=None,
        replace_confirmed: bool = False,
        progress: ProgressCallback | None = None,
        cancel_event: threading.Event | None = None,
    ) -> AutoContourResult:
        """Contour the CTV in this process (blocks; for scripts, the console and the self-test).

        Args:
            ct_node: the CT volume node.
            settings: model, device, Monte-Carlo samples.
            output_segmentation: existing segmentation to write into (None: a new node).
            replace_confirmed: the user agreed to change ``output_segmentation``.
            progress: ``(stage, fraction, message)`` callback.
            cancel_event: set it (from another thread) to stop; raises ``CancelledError``.

        Raises:
            AutoCTVError: bad input, model or device; nothing is added to the scene then.
        """
        settings = settings or AutoContourSettings()
        self._check_output(output_segmentation, replace_confirmed)
        ct = volume_from_node(ct_node, dtype=np.float32)
        model_path = self.resolve_model(settings.model_path)
        outputs = predict_in_process(ct, model_path, settings, progress, cancel_event)
        return self.apply_prediction(
            ct_node, ct, outputs, settings, model_path, output_segmentation=output_segmentation
        )

    def start_auto_contour(
        self,
        ct_node,
        settings: AutoContourSettings | None = None,
        *,
        output_segmentation=None,
        replace_confirmed: bool = False,
        on_progress: ProgressCallback | None = None,
        on_finished: Callable[[AutoContourResult | None, str], None] | None = None,
    ) -> CommandJob:
        """Start contouring in a child ``autoctv predict`` process; returns the running job.

        Drive it with ``job.poll()`` (a ``qt.QTimer`` every 100 ms) or ``job.wait()``. When it
        ends, the result nodes are created in the polling thread and ``on_finished(result, "")``
        is called; on failure ``on_finished(None, message)``; after ``job.cancel()``
        ``on_finished(None, "")`` with the scene unchanged. Temporary files are removed in all
        cases.

        Raises:
            AutoCTVError: bad input or model (raised at once, nothing started).
        """
        settings = settings or AutoContourSettings()
        self._check_output(output_segmentation, replace_confirmed)
        ct = volume_from_node(ct_node, dtype=np.float32)
        model_path = self.resolve_model(settings.model_path)
        ct_node_id = ct_node.GetID()
        scene = ct_node.GetScene()
        output_id = output_segmentation.GetID() if output_segmentation is not None else None

        def read_and_apply(work_dir: Path) -> AutoContourResult:
            outputs = read_prediction_outputs(work_dir / "out", ct.geometry)
            current_ct = scene.GetNodeByID(ct_node_id)
            if current_ct is None:
                raise InputError("the CT was removed from the scene while AutoCTV was running")
            output = scene.GetNodeByID(output_id) if output_id is not None else None
            return self.apply_prediction(
                current_ct, ct, outputs, settings, model_path, output_segmentation=output
            )

        job = CommandJob(
            prepare_prediction(
                ct, model_path=model_path, device=settings.device, mc_samples=settings.mc_samples
            ),
            read_and_apply,
            on_progress=on_progress,
            on_finished=on_finished,
            python_paths=self.python_paths,
            python=self.python,
        )
        job.start()
        return job

    def apply_prediction(
        self,
        ct_node,
        ct: Volume,
        outputs: PredictionOutputs,
        settings: AutoContourSettings,
        model_path: Path,
        *,
        output_segmentation=None,
    ) -> AutoContourResult:
        """Turn prediction arrays into result nodes (segmentation, heat map) with provenance."""
        card = read_card_fields(model_path)
        identity = input_identity(ct_node, ct)
        run_settings = {
            "device": settings.device,
            "mc_samples": int(settings.mc_samples),
            "model_file": Path(model_path).name,
        }
        reported = outputs.report.get("settings") or {}
        for key in ("device", "threshold", "postprocess"):
            if key in reported:
                run_settings["device_used" if key == "device" else key] = reported[key]
        case_score, review = _report_uncertainty(outputs.report)
        provenance = Provenance(
            model_name=str(card["name"]),
            model_version=str(card.get("version", "")),
            model_sha256=str(card.get("weights_sha256", "")),
            settings=run_settings,
            input_identity=identity,
        )
        added = []
        try:
            if output_segmentation is None:
                segmentation_node = add_segmentation_node(
                    outputs.label_zyx, ct_node, node_name=f"{ct_node.GetName()} AutoCTV"
                )
                added.append(segmentation_node)
                segment_id = segmentation_node.GetSegmentation().GetNthSegmentID(0)
            else:
                segmentation_node = output_segmentation
                segment_id = self._write_ctv_segment(segmentation_node, outputs.label_zyx, ct_node)
            write_provenance(segmentation_node, provenance)
            uncertainty_node = None
            if outputs.entropy_zyx is not None:
                uncertainty_node = add_float_map_node(
                    outputs.entropy_zyx,
                    ct_node,
                    f"{ct_node.GetName()} AutoCTV uncertainty",
                    value_range=HEAT_MAP_RANGE_BITS,
                )
                added.append(uncertainty_node)
                write_provenance(uncertainty_node, replace(provenance, result_kind="entropy"))
                if case_score is not None:
                    uncertainty_node.SetAttribute(ATTRIBUTE_CASE_SCORE, f"{case_score:.6g}")
                uncertainty_node.SetAttribute(ATTRIBUTE_REVIEW_SLICES, json.dumps(list(review)))
        except Exception:
            for node in added:
                remove_with_display_nodes(node)
            raise
        return AutoContourResult(
            segmentation_node=segmentation_node,
            segment_id=segment_id,
            uncertainty_node=uncertainty_node,
            case_score=case_score,
            slices_to_review=review,
            report=dict(outputs.report),
        )

    @staticmethod
    def _write_ctv_segment(segmentation_node, labelmap_zyx: np.ndarray, ct_node) -> str:
        """Replace the voxels of the CTV segment of an existing node (added if missing)."""
        segmentation = segmentation_node.GetSegmentation()
        for segment_id in segment_ids(segmentation_node):
            if segmentation.GetSegment(segment_id).GetName() == ctv_codes.CTV_SEGMENT_NAME:
                break
        else:
            segment_id = segmentation.AddEmptySegment(
                "", ctv_codes.CTV_SEGMENT_NAME, [float(c) for c in CTV_COLOR_RGB]
            )
            from AutoCTVLib.io.seg_nrrd import CTV_TERMINOLOGY

            segmentation.GetSegment(segment_id).SetTag(
                slicer.vtkSegment.GetTerminologyEntryTagName(), CTV_TERMINOLOGY.as_tag_value()
            )
        set_segment_labelmap(segmentation_node, segment_id, labelmap_zyx, ct_node)
        return segment_id

    # -- uncertainty review --------------------------------------------------------------

    @staticmethod
    def review_slices_of(heat_map_node) -> list[int]:
        """The slices-to-review list stored on an AutoCTV heat map node (empty if none)."""
        text = heat_map_node.GetAttribute(ATTRIBUTE_REVIEW_SLICES) if heat_map_node else None
        try:
            return [int(k) for k in json.loads(text)] if text else []
        except (ValueError, TypeError):
            return []

    @staticmethod
    def case_score_of(heat_map_node) -> float | None:
        """The case score stored on an AutoCTV heat map node (None if none)."""
        text = heat_map_node.GetAttribute(ATTRIBUTE_CASE_SCORE) if heat_map_node else None
        try:
            return float(text) if text else None
        except ValueError:
            return None

    @staticmethod
    def show_uncertainty(ct_node, heat_map_node, opacity: float = 0.5) -> int:
        """CT as background, heat map as foreground (``opacity`` 0–1) in every slice view."""
        return views.show_heat_map(ct_node, heat_map_node, opacity)

    @staticmethod
    def hide_uncertainty(heat_map_node) -> int:
        """Take the heat map out of the slice views."""
        return views.hide_heat_map(heat_map_node.GetScene(), heat_map_node)

    @staticmethod
    def set_uncertainty_opacity(heat_map_node, opacity: float) -> int:
        """Change the heat map's opacity where it is shown."""
        return views.set_heat_map_opacity(heat_map_node.GetScene(), heat_map_node, opacity)

    @staticmethod
    def jump_to_slice(ct_node, k: int) -> np.ndarray:
        """Centre the slice views on axial slice ``k`` of the CT; returns that point (RAS mm)."""
        return views.jump_to_slice(ct_node, k)

    # -- completion ----------------------------------------------------------------------

    @staticmethod
    def drawn_labelmap(ct_node, segmentation_node, segment_id: str) -> np.ndarray:
        """The hand-drawn segment as a uint8 0/1 labelmap (z, y, x) on the CT grid.

        Raises:
            InputError: the segment is empty.
        """
        labels = labelmap_from_segment(segmentation_node, segment_id, ct_node)
        if not labels.any():
            raise InputError(
                f"the segment {segment_id!r} of '{segmentation_node.GetName()}' is empty; "
                "draw the CTV on a few slices first"
            )
        return labels

    def drawn_slices(self, ct_node, segmentation_node, segment_id: str) -> str:
        """Which slices of the segment count as drawn, in words (e.g. "3 axial (z) slices: …").

        The library infers them from the paint: a drawn slice is one voxel thick along its
        axis (:func:`AutoCTVLib.completion.annotation.infer_annotation`).
        """
        from AutoCTVLib.completion.annotation import infer_annotation

        labels = self.drawn_labelmap(ct_node, segmentation_node, segment_id)
        return infer_annotation(labels.astype(bool)).describe()

    def complete(
        self,
        ct_node,
        segmentation_node,
        segment_id: str,
        method: str = "interpolate",
        *,
        device: str = "auto",
        model_path: str | Path | None = None,
        progress: ProgressCallback | None = None,
        cancel_event: threading.Event | None = None,
    ) -> np.ndarray:
        """Complete the drawn slices in this process; returns a uint8 0/1 labelmap (z, y, x).

        Nothing in the scene changes: show the result with :meth:`add_completion_preview`,
        keep it with :meth:`apply_completion`. The network methods use ``model_path`` (a
        completion model file) or the bundled completion model. Blocks; the panel runs the
        network methods with :meth:`start_completion`.
        """
        _check_method(method)
        ct = volume_from_node(ct_node, dtype=np.float32)
        drawn = self.drawn_labelmap(ct_node, segmentation_node, segment_id)
        return complete_in_process(ct, drawn, method, device, model_path, progress, cancel_event)

    def start_completion(
        self,
        ct_node,
        segmentation_node,
        segment_id: str,
        method: str = "learned",
        *,
        device: str = "auto",
        model_path: str | Path | None = None,
        on_progress: ProgressCallback | None = None,
        on_finished: Callable[[np.ndarray | None, str], None] | None = None,
    ) -> CommandJob:
        """Start completion in a child ``autoctv complete`` process (see ``start_auto_contour``).

        ``on_finished`` receives the completed labelmap (uint8 0/1, z, y, x on the CT grid); no
        node is changed: show it with :meth:`add_completion_preview`, keep it with
        :meth:`apply_completion`.
        """
        _check_method(method)
        ct = volume_from_node(ct_node, dtype=np.float32)
        drawn = self.drawn_labelmap(ct_node, segmentation_node, segment_id)
        job = CommandJob(
            prepare_completion(
                ct,
                drawn,
                method=method,
                model_path=Path(model_path) if model_path else None,
                device=device,
            ),
            read_completion_output(ct.geometry),
            on_progress=on_progress,
            on_finished=on_finished,
            python_paths=self.python_paths,
            python=self.python,
        )
        job.start()
        return job

    @staticmethod
    def add_completion_preview(
        ct_node, completed_zyx: np.ndarray, source_segmentation, segment_id: str, method: str
    ):
        """A separate segmentation node showing a completion (the user's node is untouched)."""
        source_segment = source_segmentation.GetSegmentation().GetSegment(segment_id)
        color = source_segment.GetColor() if source_segment is not None else CTV_COLOR_RGB
        name = source_segment.GetName() if source_segment is not None else "CTV"
        node = add_segmentation_node(
            completed_zyx,
            ct_node,
            segment_name=f"{name} ({method})",
            color_rgb=tuple(color),
            node_name=f"{source_segmentation.GetName()} completion preview",
        )
        node.SetAttribute(ATTRIBUTE_PREVIEW_OF, f"{source_segmentation.GetID()}|{segment_id}")
        return node

    @staticmethod
    def apply_completion(
        segmentation_node,
        segment_id: str,
        completed_zyx: np.ndarray,
        ct_node,
        *,
        method: str = "",
        history=None,
    ):
        """Replace a segment's voxels by a completion, saving the previous state first.

        Args:
            segmentation_node, segment_id: the segment that held the drawn slices.
            completed_zyx: the completion (uint8 0/1, z, y, x on ``ct_node``'s grid).
            ct_node: the CT (reference grid).
            method: recorded in the node's ``AutoCTV.completion_method`` attribute.
            history: a ``vtkSegmentationHistory`` to record the previous state in (the Segment
                Editor keeps its own; from a script pass None to get a new one).

        Returns:
            The ``vtkSegmentationHistory`` holding the state before the change:
            ``history.RestorePreviousState()`` undoes it.
        """
        if history is None:
            history = slicer.vtkSegmentationHistory()
            history.SetSegmentation(segmentation_node.GetSegmentation())
        history.SaveState()
        set_segment_labelmap(segmentation_node, segment_id, completed_zyx, ct_node)
        if method:
            segmentation_node.SetAttribute("AutoCTV.completion_method", method)
        return history

    @staticmethod
    def remove_node(node) -> None:
        """Remove a node made by AutoCTV (e.g. a completion preview) with its display nodes."""
        if node is not None:
            remove_with_display_nodes(node)

    # -- export ----------------------------------------------------------------------------

    @staticmethod
    def export_rtstruct(segmentation_node, ct_node, out_dir, **options):
        """RTSTRUCT through the library; see :func:`.dicom_export.export_rtstruct`."""
        return dicom_export.export_rtstruct(segmentation_node, ct_node, out_dir, **options)

    @staticmethod
    def export_dicom_seg(segmentation_node, ct_node, out_dir, **options):
        """DICOM SEG through the library; see :func:`.dicom_export.export_dicom_seg`."""
        return dicom_export.export_dicom_seg(segmentation_node, ct_node, out_dir, **options)

    # -- trying it out ----------------------------------------------------------------------

    @staticmethod
    def load_phantom(
        scene=None,
        seed: int = 2026,
        size_xyz: tuple[int, int, int] | None = None,
        spacing_xyz_mm: tuple[float, float, float] | None = None,
    ):
        """Generate a synthetic pelvic phantom; returns ``(ct_node, reference CTV array)``.

        The CT (float32 HU) is added as a scalar volume node named "Phantom CT <seed>"; the
        guideline CTV is returned as a uint8 array (z, y, x) on its grid for comparisons.
        """
        from AutoCTVLib.phantom import PhantomConfig, generate_phantom

        options: dict[str, Any] = {"seed": int(seed)}
        if size_xyz is not None:
            options["size_xyz"] = tuple(int(n) for n in size_xyz)
        if spacing_xyz_mm is not None:
            options["spacing_xyz_mm"] = tuple(float(s) for s in spacing_xyz_mm)
        phantom = generate_phantom(PhantomConfig(**options))
        scene = scene if scene is not None else slicer.mrmlScene
        ct_node = add_volume_node(phantom.ct, f"Phantom CT {seed}", scene)
        return ct_node, np.asarray(phantom.ctv_reference.array, dtype=np.uint8)


def _check_method(method: str) -> None:
    if method not in COMPLETION_METHODS:
        raise ValueError(f"completion method must be one of {', '.join(COMPLETION_METHODS)}")


# --------------------------------------------------------------------------- the library


def predict_in_process(
    ct: Volume,
    model_path: Path,
    settings: AutoContourSettings,
    progress: ProgressCallback | None = None,
    cancel_event: threading.Event | None = None,
) -> PredictionOutputs:
    """Run the library's predictor on ``ct``; arrays on the CT grid plus the run's report."""
    from AutoCTVLib.predict import Predictor
    from AutoCTVLib.predict.report import build_report

    predictor = Predictor.from_file(model_path, device=settings.device)
    prediction = predictor.predict(
        ct, mc_samples=settings.mc_samples, progress=progress, cancel=cancel_event
    )
    report = build_report(
        prediction, model_file=str(model_path), disclaimer=predictor.card.disclaimer
    )
    maps = prediction.uncertainty
    return PredictionOutputs(
        label_zyx=(np.asarray(prediction.label.array) != 0).astype(np.uint8),
        probability_zyx=np.asarray(prediction.prob_ctv.array, dtype=np.float32),
        entropy_zyx=None if maps is None else np.asarray(maps.entropy, dtype=np.float32),
        mutual_information_zyx=None
        if maps is None
        else np.asarray(maps.mutual_information, dtype=np.float32),
        report=report,
    )


def complete_in_process(
    ct: Volume,
    drawn_zyx: np.ndarray,
    method: str,
    device: str = "auto",
    model_path: str | Path | None = None,
    progress: ProgressCallback | None = None,
    cancel_event: threading.Event | None = None,
) -> np.ndarray:
    """Run the library's completion on the drawing; uint8 0/1 labelmap (z, y, x) on the CT grid.

    ``model_path``: a completion model file for the network methods (None: the bundled one).
    """
    from AutoCTVLib.completion import complete
    from AutoCTVLib.device import select_device

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress("completion", fraction, message)

    result = complete(
        ct,
        Volume(np.asarray(drawn_zyx, dtype=np.uint8), ct.geometry),
        method=method,
        model=model_path,
        device=select_device(device) if method in NETWORK_COMPLETION_METHODS else "cpu",
        progress=report,
        cancel=cancel_event,
    )
    return (np.asarray(result.mask.array) != 0).astype(np.uint8)
