"""``complete(ct, sparse, ...)``: a full 3D contour from a few drawn slices, by one of 3 methods.

::

    CT + sparse label (same grid)
      │ select the label, settle the annotated slices (given, or inferred per axis)
      ├─ "interpolate": ITK morphological contour interpolation (Slicer's "Fill between slices")
      ├─ "learned":  crop + model grid → completion network, one forward pass → back to the grid
      └─ "finetune": as "learned", after fine-tuning the network on this volume's annotated
                     slices for a bounded time (Çiçek et al. 2016, semi-automatic mode)
      │ network results: nothing beyond the first and last drawn slice when the slices lie
      │ along one axis (``extent``, see :func:`drawn_range`)
      ▼
    mask on the CT's exact grid, with every annotated slice exactly as drawn

The structure can be any structure (CTV, organ, bone): the completion network was trained on
several structures with random sparse annotations.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import torch

from AutoCTVLib.completion.annotation import (
    Annotation,
    axis_index,
    resolve_annotation,
    select_label,
)
from AutoCTVLib.completion.finetune import CancelEvent, FinetuneConfig, finetune_network
from AutoCTVLib.completion.grid import prepare_inputs
from AutoCTVLib.completion.interpolate import interpolate_completion
from AutoCTVLib.completion.learned import predict_probability
from AutoCTVLib.completion.model import (
    CompletionModel,
    bundled_model_available,
    resolve_model,
    untrained_model,
)
from AutoCTVLib.errors import CancelledError, GeometryError, InputError
from AutoCTVLib.io.image_files import describe_grid_difference
from AutoCTVLib.options import COMPLETION_METHODS
from AutoCTVLib.volume import Volume

logger = logging.getLogger(__name__)

METHODS = COMPLETION_METHODS
#: How far a network result may reach along the annotation axis (see :func:`drawn_range`).
EXTENTS = ("auto", "drawn", "free")
#: ``progress(fraction_done, message)``, fraction in [0, 1].
Progress = Callable[[float, str], None]
ModelArg = Union[str, os.PathLike[str], CompletionModel, None]
_PROVENANCE_KEYS = ("model_name", "model_version", "model_sha256")


@dataclass(frozen=True)
class CompletionResult:
    """The completed structure and how it was made.

    Attributes:
        mask: uint8 0/1 on the CT's exact grid (metadata: provenance strings).
        probability: float32 probability on the CT's grid (``None`` for "interpolate"); on
            annotated slices it is the drawing itself (0 or 1).
        annotation: the annotated slices used.
        label: the label value completed in the sparse labelmap.
        method: "learned", "finetune" or "interpolate".
        seconds: wall time of the whole completion.
        details: method specifics (model provenance, fine-tuning steps, ...).
    """

    mask: Volume
    probability: Volume | None
    annotation: Annotation
    label: int
    method: str
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)


def _check_grid(ct: Volume, sparse: Volume) -> None:
    if not sparse.geometry.is_close(ct.geometry):
        difference = describe_grid_difference(sparse.geometry, ct.geometry)
        raise GeometryError(f"the sparse label does not lie on the CT grid: {difference}")


def _check_cancel(cancel: CancelEvent | None) -> None:
    if cancel is not None and cancel.is_set():
        raise CancelledError("completion was cancelled")


def _report(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)


def drawn_range(annotation: Annotation, shape_zyx: Sequence[int], extent: str) -> np.ndarray | None:
    """Where a completed structure may lie, or ``None`` where it may lie anywhere.

    ``"drawn"``: between the first and the last annotated slice of a one-axis annotation, the
    convention of Slicer's "Fill between slices" (a physician who draws every n-th slice draws
    the structure's end slices too, so nothing lies beyond them). ``"free"``: anywhere, for
    drawings that do not close the structure (a few slices in its middle). ``"auto"``:
    ``"drawn"`` for one-axis annotations, ``"free"`` for several axes, whose slices need not
    reach the ends along any axis (Çiçek et al.'s orthogonal slices). A boolean (z, y, x) mask.
    """
    if extent not in EXTENTS:
        raise ValueError(f"extent must be one of {', '.join(EXTENTS)}, got {extent!r}")
    axes = annotation.axes
    if extent == "free" or (extent == "auto" and len(axes) != 1):
        return None
    if len(axes) != 1:
        raise InputError(
            "extent 'drawn' needs slices drawn along one axis only; these lie along "
            f"{', '.join(axes)} (use extent 'free' or 'auto')"
        )
    axis = axis_index(axes[0])
    indices = annotation.slices(axis)
    inside = np.zeros(shape_zyx[axis], dtype=bool)
    inside[indices[0] : indices[-1] + 1] = True
    view = [1, 1, 1]
    view[axis] = -1
    return np.broadcast_to(inside.reshape(view), tuple(shape_zyx))


def _network_completion(
    ct: Volume,
    sparse: np.ndarray,
    annotation: Annotation,
    model: CompletionModel,
    method: str,
    finetune: FinetuneConfig | None,
    device: torch.device,
    progress: Progress | None,
    cancel: CancelEvent | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Probability on the CT grid from the network (fine-tuned first for "finetune")."""
    _report(progress, 0.05, "preparing the model grid")
    inputs = prepare_inputs(ct, sparse, annotation, model.grid)
    _check_cancel(cancel)
    details: dict[str, Any] = {
        **model.provenance(),
        "model_grid": inputs.model_geometry.describe(),
        "model_annotation": inputs.model_annotation.to_dict(),
    }
    network = model.network
    if method == "finetune":
        config = finetune or FinetuneConfig()

        def tuning_progress(fraction: float, message: str) -> None:
            _report(progress, 0.1 + 0.75 * fraction, message)

        network, report = finetune_network(
            network, inputs, config, device=device, progress=tuning_progress, cancel=cancel
        )
        details.update(
            finetune_steps=report.steps,
            finetune_seconds=round(report.seconds, 2),
            finetune_final_loss=report.final_loss,
            finetune_time_budget_s=config.time_budget_s,
        )
    _check_cancel(cancel)
    _report(progress, 0.88, "predicting")
    probability = predict_probability(network, inputs, device)
    return inputs.probability_to_input(probability), details


def complete(
    ct: Volume,
    sparse: Volume,
    *,
    method: str = "learned",
    annotation: Annotation | None = None,
    axes: str | Sequence[str] = "auto",
    extent: str = "auto",
    model: ModelArg = None,
    label: int | None = None,
    finetune: FinetuneConfig | None = None,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    cancel: CancelEvent | None = None,
) -> CompletionResult:
    """Complete a structure drawn on a few slices into a 3D mask on the CT's grid.

    Args:
        ct: the CT (float HU, (z, y, x)).
        sparse: the drawing: a labelmap on the CT's grid (any non-zero value, or ``label``).
        method: "learned", "finetune" or "interpolate".
        annotation: the annotated slices; ``None`` infers them from the drawing with ``axes``.
        axes: "auto", "z", "y", "x" or several (see
            :func:`~AutoCTVLib.completion.annotation.infer_annotation`).
        extent: "auto", "drawn" or "free": whether a network result may reach beyond the first
            and last drawn slice (see :func:`drawn_range`; interpolation never does).
        model: completion model file or loaded :class:`CompletionModel`; ``None`` uses the
            bundled one ("finetune" then starts from scratch when none is installed). For
            "finetune" a CTV model file is accepted too (widened to the four inputs).
        label: the label value to complete (``None``: the only one present).
        finetune: fine-tuning settings (time budget, steps, seed).
        device: torch device for the network methods.
        progress: ``progress(fraction, message)`` callback.
        cancel: an event; when set, the run stops with :class:`CancelledError`.

    Returns:
        A :class:`CompletionResult` whose mask equals the drawing on every annotated slice.

    Raises:
        GeometryError: the sparse label is not on the CT grid.
        InputError: nothing drawn, a single annotated slice, several labels and none chosen,
            or (interpolate) no axis with two annotated slices.
        ModelFileError: "learned" without a usable completion model.
        CancelledError: ``cancel`` was set.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    started = time.perf_counter()
    _check_grid(ct, sparse)
    drawn, label = select_label(sparse.array, label)
    sparse_mask, annotation = resolve_annotation(drawn, annotation, axes)
    allowed = drawn_range(annotation, sparse_mask.shape, extent)
    logger.info("completing label %d by %s from %s", label, method, annotation.describe())
    _check_cancel(cancel)
    details: dict[str, Any] = {}
    probability: np.ndarray | None = None
    if method == "interpolate":
        _report(progress, 0.1, "interpolating between slices")
        mask = interpolate_completion(sparse_mask, annotation)
    else:
        if method == "finetune" and model is None and not bundled_model_available():
            logger.warning("no completion model installed: fine-tuning a fresh network")
            resolved = untrained_model(seed=(finetune or FinetuneConfig()).seed)
        else:
            resolved = resolve_model(model, allow_ctv=method == "finetune")
        probability, details = _network_completion(
            ct,
            sparse_mask,
            annotation,
            resolved,
            method,
            finetune,
            torch.device(device),
            progress,
            cancel,
        )
        if allowed is not None:
            probability = np.where(allowed, probability, np.float32(0.0))
        mask = probability >= 0.5
        details["extent"] = "free" if allowed is None else "drawn"
    known = annotation.known_mask(sparse_mask.shape)
    mask = np.where(known, sparse_mask, mask)
    if probability is not None:
        probability = np.where(known, sparse_mask.astype(np.float32), probability)
    seconds = time.perf_counter() - started
    _report(progress, 1.0, "done")
    metadata = {
        **{key: str(details[key]) for key in _PROVENANCE_KEYS if key in details},
        "completion_method": method,
        "completion_annotation": annotation.describe(),
    }
    return CompletionResult(
        mask=Volume(mask.astype(np.uint8), ct.geometry, metadata),
        probability=None
        if probability is None
        else Volume(probability.astype(np.float32), ct.geometry, dict(metadata)),
        annotation=annotation,
        label=label,
        method=method,
        seconds=seconds,
        details=details,
    )
