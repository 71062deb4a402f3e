"""The AutoCTV module's logic: MRML nodes in, AutoCTV results as MRML nodes out.

:class:`AutoCTVCoreLogic` is everything the panel does, usable without it (Slicer's Python
console, the self-test, a browser front end on the same scene, and the tests on a bare
``slicer-core`` scene). It needs no Qt and no ``ScriptedLoadableModule``; ``AutoCTV.py``'s
``AutoCTVLogic`` adds the parameter node and the parts that need the running application
(DICOM database, Segment Editor undo)::

    logic = AutoCTVCoreLogic()
    result = logic.auto_contour(ct_node, AutoContourSettings(mc_samples=20))    # in this process
    job = logic.start_auto_contour(ct_node, settings, on_finished=...)          # child process
    heat_map.show_heat_map(ct_node, result.uncertainty_node, opacity=0.5)
    heat_map.jump_to_slice(ct_node, result.slices_to_review[0])
    dicom_export.export_rtstruct(result.segmentation_node, ct_node, "/path/to/folder")

Results: a segmentation node with one segment "CTV" (CTV colour, coded as Clinical Target
Volume, reference image = the CT) and, with uncertainty, a heat-map volume node (predictive
entropy, bits; see :mod:`.heat_map`), both on the CT's exact grid, beside the CT in the subject
hierarchy and carrying their provenance as ``AutoCTV.*`` attributes. An existing segmentation
is changed only when the caller says the user agreed (``replace_confirmed=True``), and only
after its state was saved for undo.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import slicer

from AutoCTVLib import terminology as ctv_codes
from AutoCTVLib.cli.jobs import (
    CommandJob,
    PredictionOutputs,
    prepare_completion,
    prepare_prediction,
    read_completion_output,
    read_prediction_outputs,
)
from AutoCTVLib.errors import InputError, OutputError
from AutoCTVLib.models.bundled import resolve_ctv_model
from AutoCTVLib.options import (
    NETWORK_COMPLETION_METHODS,
    ProgressCallback,
    check_completion_method,
    check_device,
)
from AutoCTVLib.volume import Volume

from . import heat_map
from .placement import remove_with_display_nodes
from .provenance import Provenance, input_identity, write_provenance
from .segmentation_nodes import (
    CTV_COLOR_RGB,
    add_segment,
    add_segmentation_node,
    fill_between_slices_along,
    labelmap_from_segment,
    segment_ids,
    set_segment_labelmap,
)
from .volume_nodes import add_volume_node, volume_from_node

#: Saves a segmentation's state before AutoCTV changes it; returns the action that undoes it.
UndoSaver = Callable[[Any], Callable[[], None]]


def library_root() -> Path:
    """The folder that holds the ``AutoCTVLib`` package (what the child process imports)."""
    import AutoCTVLib

    return Path(AutoCTVLib.__file__).resolve().parents[1]


@dataclass(frozen=True)
class AutoContourSettings:
    """How to auto-contour.

    Attributes:
        model_path: model card or weights file; ``None`` uses the bundled model.
        device: one of ``AutoCTVLib.options.DEVICE_CHOICES`` or "cuda:N".
        mc_samples: Monte-Carlo dropout passes for the uncertainty map; 0 for none (else ≥ 2).
    """

    model_path: Path | None = None
    device: str = "auto"
    mc_samples: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", check_device(self.device))
        if self.mc_samples != 0 and not 2 <= int(self.mc_samples) <= 1000:
            raise ValueError(f"mc_samples must be 0 (off) or 2–1000, got {self.mc_samples}")
        if self.model_path is not None and str(self.model_path) not in ("", "."):
            object.__setattr__(self, "model_path", Path(self.model_path))
        else:
            object.__setattr__(self, "model_path", None)


@dataclass
class AutoContourResult:
    """The nodes an auto-contour run made or changed.

    Attributes:
        segmentation_node: holds the CTV segment.
        segment_id: ID of the CTV segment in it.
        uncertainty_node: entropy heat map (bits), or None without uncertainty.
        case_score: mean uncertainty over the contour region (bits, 0–1), or None.
        slices_to_review: axial slice indices k of the CT, most doubtful first.
        report: the run's report (model, settings, timings, uncertainty summary).
        undo: restores the segmentation written into (None for a new node).
    """

    segmentation_node: Any
    segment_id: str
    uncertainty_node: Any = None
    case_score: float | None = None
    slices_to_review: tuple[int, ...] = ()
    report: dict[str, Any] = field(default_factory=dict)
    undo: Callable[[], None] | None = None


def history_undo_saver(segmentation_node) -> Callable[[], None]:
    """Save the segmentation's state in a ``vtkSegmentationHistory``; returns its undo.

    The default without the Segment Editor (scripts, tests, a browser front end); the Slicer
    application uses the Segment Editor's own undo instead (one saved state per change).
    """
    history = slicer.vtkSegmentationHistory()
    history.SetSegmentation(segmentation_node.GetSegmentation())
    history.SaveState()

    def undo() -> None:
        history.RestorePreviousState()

    return undo


class AutoCTVCoreLogic:
    """Auto-contouring, uncertainty review and completion on MRML nodes.

    Args:
        python: interpreter for child jobs (default:
            :func:`AutoCTVLib.cli.child.child_python`, ``PythonSlicer`` in Slicer).
        python_paths: extra ``PYTHONPATH`` folders for child jobs (default: the folder that
            holds ``AutoCTVLib``).
    """

    #: How a change to an existing segmentation is made undoable (see :func:`history_undo_saver`).
    save_undo_state: UndoSaver = staticmethod(history_undo_saver)

    def __init__(self, python: str | None = None, python_paths: Sequence[str] | None = None):
        self.python = python
        self.python_paths = (
            list(python_paths) if python_paths is not None else [str(library_root())]
        )
        self.jobs: list[CommandJob] = []

    # -- jobs ------------------------------------------------------------------------------

    def _start(self, job: CommandJob) -> CommandJob:
        self.jobs = [j for j in self.jobs if not j.finished]
        job.start()
        self.jobs.append(job)
        return job

    def cleanup(self) -> None:
        """End every running child job and delete its temporary folder (module reload, scene
        close, application exit): no copy of the patient's CT stays behind."""
        for job in self.jobs:
            job.close()
        self.jobs = []

    # -- auto-contouring -------------------------------------------------------------------

    @staticmethod
    def output_needs_confirmation(segmentation_node) -> bool:
        """True when writing into ``segmentation_node`` could change what a user made (it holds
        any segment); a new node (``None``) or an empty segmentation needs no confirmation."""
        return segmentation_node is not None and bool(segment_ids(segmentation_node))

    def _prepare_run(self, ct_node, settings, output_segmentation, replace_confirmed):
        settings = settings or AutoContourSettings()
        if self.output_needs_confirmation(output_segmentation) and not replace_confirmed:
            raise OutputError(
                f"the segmentation '{output_segmentation.GetName()}' already holds segments; "
                "choose 'Create new segmentation', or confirm that its CTV segment may be "
                "replaced"
            )
        model_path, _ = resolve_ctv_model(settings.model_path)
        return settings, volume_from_node(ct_node, dtype=np.float32), model_path

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
        """Contour the CTV in this process (blocks; for scripts, the console and tests).

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
        from AutoCTVLib.predict import Predictor, build_report

        settings, ct, model_path = self._prepare_run(
            ct_node, settings, output_segmentation, replace_confirmed
        )
        predictor = Predictor.from_file(model_path, device=settings.device)
        prediction = predictor.predict(
            ct, mc_samples=settings.mc_samples, progress=progress, cancel=cancel_event
        )
        report = build_report(
            prediction, model_file=str(model_path), disclaimer=predictor.card.disclaimer
        )
        maps = prediction.uncertainty
        outputs = PredictionOutputs(
            label_zyx=(np.asarray(prediction.label.array) != 0).astype(np.uint8),
            entropy_zyx=None if maps is None else np.asarray(maps.entropy, dtype=np.float32),
            report=report,
        )
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

        Drive it with ``job.poll()`` (a timer every 100 ms) or ``job.wait()``. When it ends,
        the result nodes are made in the polling thread and ``on_finished(result, "")`` is
        called; on failure ``on_finished(None, message)``; after ``job.cancel()``
        ``on_finished(None, "")`` with the scene unchanged. The temporary folder is removed in
        every case (and by :meth:`cleanup`).

        Raises:
            AutoCTVError: bad input or model (raised at once, nothing started).
        """
        settings, ct, model_path = self._prepare_run(
            ct_node, settings, output_segmentation, replace_confirmed
        )
        scene, ct_id = ct_node.GetScene(), ct_node.GetID()
        output_id = output_segmentation.GetID() if output_segmentation is not None else None

        def read_and_apply(work_dir: Path) -> AutoContourResult:
            outputs = read_prediction_outputs(work_dir / "out", ct.geometry)
            current_ct = scene.GetNodeByID(ct_id)
            if current_ct is None:
                raise InputError("the CT was removed from the scene while AutoCTV was running")
            output = scene.GetNodeByID(output_id) if output_id is not None else None
            return self.apply_prediction(
                current_ct, ct, outputs, settings, model_path, output_segmentation=output
            )

        prepare = prepare_prediction(
            ct, model_path=model_path, device=settings.device, mc_samples=settings.mc_samples
        )
        return self._start(
            CommandJob(
                prepare,
                read_and_apply,
                on_progress=on_progress,
                on_finished=on_finished,
                python_paths=self.python_paths,
                python=self.python,
            )
        )

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
        """Turn prediction arrays into result nodes (segmentation, heat map) with provenance.

        Writing into ``output_segmentation`` saves its state first (:attr:`save_undo_state`)
        and replaces only its CTV segment (added when it has none).
        """
        _, card = resolve_ctv_model(model_path)
        run_settings: dict[str, Any] = {
            "device": settings.device,
            "mc_samples": int(settings.mc_samples),
            "model_file": Path(model_path).name,
        }
        reported = outputs.report.get("settings") or {}
        for key in ("device", "threshold", "postprocess"):
            if key in reported:
                run_settings["device_used" if key == "device" else key] = reported[key]
        uncertainty = outputs.report.get("uncertainty") or {}
        provenance = Provenance(
            model_name=card.name,
            model_version=card.version,
            model_sha256=card.weights_sha256,
            settings=run_settings,
            input_identity=input_identity(ct_node, ct),
        )
        added, undo = [], None
        try:
            if output_segmentation is None:
                segmentation_node = add_segmentation_node(
                    outputs.label_zyx, ct_node, node_name=f"{ct_node.GetName()} AutoCTV"
                )
                added.append(segmentation_node)
                segment_id = segmentation_node.GetSegmentation().GetNthSegmentID(0)
            else:
                segmentation_node = output_segmentation
                undo = self.save_undo_state(segmentation_node)
                segment_id = _write_ctv_segment(segmentation_node, outputs.label_zyx, ct_node)
            write_provenance(segmentation_node, provenance)
            uncertainty_node = None
            if outputs.entropy_zyx is not None:
                uncertainty_node = heat_map.add_heat_map_node(
                    outputs.entropy_zyx, ct_node, f"{ct_node.GetName()} AutoCTV uncertainty"
                )
                added.append(uncertainty_node)
                write_provenance(uncertainty_node, replace(provenance, result_kind="entropy"))
                heat_map.store_review(uncertainty_node, outputs.report)
        except Exception:
            for node in added:
                remove_with_display_nodes(node)
            if undo is not None:
                undo()
            raise
        score = uncertainty.get("case_score")
        return AutoContourResult(
            segmentation_node=segmentation_node,
            segment_id=segment_id,
            uncertainty_node=uncertainty_node,
            case_score=None if score is None else float(score),
            slices_to_review=tuple(int(k) for k in uncertainty.get("slices_to_review") or ()),
            report=dict(outputs.report),
            undo=undo,
        )

    # -- completion ------------------------------------------------------------------------

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

        A drawn slice is one voxel thick along its axis
        (:func:`AutoCTVLib.completion.annotation.infer_annotation`; needs no torch).
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
        """Complete the drawn slices in this process; uint8 0/1 labelmap (z, y, x).

        "interpolate" runs Slicer's own *Fill between slices* filter (vtkITK: no ITK Python,
        no torch); the network methods run the library in this process (blocks; the panel runs
        them with :meth:`start_completion`). Nothing in the scene changes: show the result
        with :meth:`add_completion_preview`, keep it with :meth:`apply_completion`.
        """
        check_completion_method(method)
        drawn = self.drawn_labelmap(ct_node, segmentation_node, segment_id)
        if method not in NETWORK_COMPLETION_METHODS:
            from AutoCTVLib.completion.annotation import resolve_annotation
            from AutoCTVLib.completion.interpolate import interpolate_completion

            sparse, annotation = resolve_annotation(drawn.astype(bool))
            if progress is not None:
                progress("completion", 0.1, "filling between slices")
            filled = interpolate_completion(sparse, annotation, along=fill_between_slices_along)
            if progress is not None:
                progress("completion", 1.0, "done")
            return filled.astype(np.uint8)
        from AutoCTVLib.completion import complete
        from AutoCTVLib.device import select_device

        ct = volume_from_node(ct_node, dtype=np.float32)
        result = complete(
            ct,
            Volume(drawn, ct.geometry),
            method=method,
            model=model_path,
            device=select_device(device),
            progress=None if progress is None else lambda f, m: progress("completion", f, m),
            cancel=cancel_event,
        )
        return (np.asarray(result.mask.array) != 0).astype(np.uint8)

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
        """Start a network completion in a child ``autoctv complete`` process.

        ``on_finished`` receives the completed labelmap (uint8 0/1, z, y, x on the CT grid)
        or None and the error (see :meth:`start_auto_contour`); no node is changed.
        """
        check_completion_method(method)
        ct = volume_from_node(ct_node, dtype=np.float32)
        drawn = self.drawn_labelmap(ct_node, segmentation_node, segment_id)
        prepare = prepare_completion(
            ct,
            drawn,
            method=method,
            model_path=Path(model_path) if model_path else None,
            device=check_device(device),
        )
        return self._start(
            CommandJob(
                prepare,
                read_completion_output(ct.geometry),
                on_progress=on_progress,
                on_finished=on_finished,
                python_paths=self.python_paths,
                python=self.python,
            )
        )

    @staticmethod
    def add_completion_preview(
        ct_node, completed_zyx: np.ndarray, source_segmentation, segment_id: str, method: str
    ):
        """A separate segmentation node showing a completion (the user's node is untouched)."""
        segment = source_segmentation.GetSegmentation().GetSegment(segment_id)
        node = add_segmentation_node(
            completed_zyx,
            ct_node,
            segment_name=f"{segment.GetName() if segment else 'CTV'} ({method})",
            color_rgb=tuple(segment.GetColor()) if segment else CTV_COLOR_RGB,
            node_name=f"{source_segmentation.GetName()} completion preview",
        )
        node.SetAttribute("AutoCTV.completion_preview_of", source_segmentation.GetID())
        return node

    def apply_completion(
        self, segmentation_node, segment_id: str, completed_zyx: np.ndarray, ct_node, method=""
    ) -> Callable[[], None]:
        """Replace a segment's voxels by a completion, saving the state for undo first.

        One state is saved (:attr:`save_undo_state`: the Segment Editor's undo in Slicer, a
        ``vtkSegmentationHistory`` elsewhere). Returns the action that undoes the change.
        """
        undo = self.save_undo_state(segmentation_node)
        set_segment_labelmap(segmentation_node, segment_id, completed_zyx, ct_node)
        if method:
            segmentation_node.SetAttribute("AutoCTV.completion_method", method)
        return undo

    # -- trying it out ---------------------------------------------------------------------

    @staticmethod
    def load_phantom(scene=None, seed: int = 2026, size_xyz=None, spacing_xyz_mm=None):
        """Generate a synthetic pelvic phantom; returns ``(ct_node, reference CTV array)``.

        The CT (float32 HU) is added as a scalar volume node named "Phantom CT <seed>"; the
        guideline CTV is returned as a uint8 array (z, y, x) on its grid. ``size_xyz``
        (voxels) and ``spacing_xyz_mm`` default to the generator's.
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


def _write_ctv_segment(segmentation_node, labelmap_zyx: np.ndarray, ct_node) -> str:
    """Replace the voxels of the CTV segment of an existing node (added if missing)."""
    segmentation = segmentation_node.GetSegmentation()
    ctv_ids = [
        segment_id
        for segment_id in segment_ids(segmentation_node)
        if segmentation.GetSegment(segment_id).GetName() == ctv_codes.CTV_SEGMENT_NAME
    ]
    segment_id = ctv_ids[0] if ctv_ids else add_segment(segmentation_node)
    set_segment_labelmap(segmentation_node, segment_id, labelmap_zyx, ct_node)
    return segment_id
