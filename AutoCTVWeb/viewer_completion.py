"""Sparse-slice completion in the viewer: draw a structure on a few slices, complete it in 3D.

"New structure" adds an empty segment to the case's segmentation (beside the CTV) and makes it
the segment editor's active segment; the user paints it on a few axial slices; "Complete"
runs one of the product's completion methods, as ``autoctv complete`` and the Slicer module
offer them, without ever blocking the server's event loop (the page stays usable):

* ``learned`` (default): the bundled completion network in a child ``autoctv complete``
  process, the Slicer module's own :class:`~AutoCTVLib.cli.jobs.CommandJob` (progress lines,
  Cancel ends the process tree, the temporary folder holding the CT is always removed);
* ``interpolate``: the library's morphological contour interpolation (Slicer's "Fill between
  slices") in a worker thread; it needs no network and takes a second or two.

The result replaces the drawn segment's voxels (shown as Slicer shows any segment) and is
stored with the case (:mod:`.structures`: files under ``out/structures/<n>/``, a row in the
SQLite ``structures`` table), so it can be downloaded from the API, the cases page and the
viewer. Fine-tuning (``finetune``, tens of seconds of training) stays with ``autoctv complete``
and the Slicer module.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

STRUCTURE_COLOR_RGB = (0.3, 0.75, 1.0)
#: Completion methods the page offers (first: the default).
WEB_COMPLETION_METHODS = ("learned", "interpolate")
#: The page draws on axial slices: the annotation axis is z.
DRAWN_AXES = "z"
POLL_S = 0.1


@dataclass(frozen=True)
class Completed:
    """A finished completion: the 3D mask (uint8 0/1, z, y, x on the CT grid) and its story."""

    mask_zyx: np.ndarray
    method: str
    drawn: str
    drawn_slices: int
    seconds: float
    model: str


def add_structure(editor: Any, number: int) -> str:
    """Add the empty segment ``Structure <number>`` and make it the one painted; its ID."""
    return editor.add_empty_segment(
        segment_name=f"Structure {number}", segment_color=list(STRUCTURE_COLOR_RGB)
    )


def drawn_labelmap(case: Any, segment_id: str) -> np.ndarray:
    """The structure as drawn so far: uint8 0/1 (z, y, x) on the CT grid."""
    from AutoCTVSlicerLib.segmentation_nodes import labelmap_from_segment

    drawn = labelmap_from_segment(case.segmentation_node, segment_id, case.ct_node)
    return (np.asarray(drawn) != 0).astype(np.uint8)


def describe_drawing(drawn_zyx: np.ndarray) -> tuple[str, int]:
    """("2 axial (z) slices: 20, 24", 2): the drawn axial slices in words, and how many.

    Raises:
        InputError: nothing is drawn.
    """
    from AutoCTVLib.completion.annotation import infer_annotation

    annotation = infer_annotation(drawn_zyx.astype(bool), axes=DRAWN_AXES)
    slices = int((drawn_zyx.reshape(drawn_zyx.shape[0], -1) != 0).any(axis=1).sum())
    return annotation.describe(), slices


def interpolate(ct_volume: Any, drawn_zyx: np.ndarray) -> np.ndarray:
    """Interpolation between the drawn axial slices (the library's ``complete``); blocks.

    Raises:
        AutoCTVError: the library refuses the drawing (e.g. a single slice).
    """
    from AutoCTVLib.completion.complete import complete
    from AutoCTVLib.volume import Volume

    sparse = Volume(drawn_zyx, ct_volume.geometry)
    result = complete(ct_volume, sparse, method="interpolate", axes=DRAWN_AXES)
    return (np.asarray(result.mask.array) != 0).astype(np.uint8)


def completion_model_summary() -> str:
    """ "name version sha256" of the bundled completion model (read from its card)."""
    from AutoCTVLib.completion.model import bundled_model_path

    card_path = Path(bundled_model_path()).with_suffix(".json")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "bundled completion model (card not readable)"
    return f"{card.get('name', '?')} {card.get('version', '?')} {card.get('weights_sha256', '')}"


def learned_job(
    ct_volume: Any,
    drawn_zyx: np.ndarray,
    *,
    device: str,
    on_progress: Callable[[str, float, str], None],
    python: str | None = None,
) -> Any:
    """A not yet started :class:`~AutoCTVLib.cli.jobs.CommandJob` running
    ``autoctv complete --method learned --axes z`` on the CT and the drawing."""
    from AutoCTVLib.cli.jobs import CommandJob, prepare_completion, read_completion_output

    base = prepare_completion(
        ct_volume, drawn_zyx, method="learned", model_path=None, device=device
    )

    def prepare(work_dir: Path) -> Sequence[str]:
        return [*base(work_dir), "--axes", DRAWN_AXES]

    return CommandJob(
        prepare,
        read_completion_output(ct_volume.geometry),
        on_progress=on_progress,
        python=python,
    )


class CompletionRun:
    """One completion in progress, driven by :meth:`run` on the server's event loop.

    ``learned`` polls its child process every 100 ms; ``interpolate`` waits for a worker
    thread. :meth:`cancel` stops the child (or discards the thread's result).
    """

    def __init__(
        self,
        ct_volume: Any,
        drawn_zyx: np.ndarray,
        method: str,
        *,
        device: str = "auto",
        on_progress: Callable[[float, str], None] | None = None,
        python: str | None = None,
    ) -> None:
        if method not in WEB_COMPLETION_METHODS:
            raise ValueError(f"method must be one of {', '.join(WEB_COMPLETION_METHODS)}")
        self.ct_volume = ct_volume
        self.drawn_zyx = drawn_zyx
        self.method = method
        self.device = device
        self.on_progress = on_progress
        self.python = python
        self.cancelled = False
        self._job: Any = None

    def cancel(self) -> None:
        self.cancelled = True
        if self._job is not None:
            self._job.cancel(grace_s=2.0)

    async def run(self) -> Completed | None:
        """The completed structure, or None when cancelled.

        Raises:
            AutoCTVError: the drawing is refused or the child failed (its one-line message).
        """
        from AutoCTVLib.errors import AutoCTVError

        drawn, slices = describe_drawing(self.drawn_zyx)
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        model = ""
        if self.method == "interpolate":
            mask = await loop.run_in_executor(None, interpolate, self.ct_volume, self.drawn_zyx)
        else:
            model = await loop.run_in_executor(None, completion_model_summary)
            self._job = learned_job(
                self.ct_volume,
                self.drawn_zyx,
                device=self.device,
                on_progress=lambda _stage, fraction, message: self._report(fraction, message),
                python=self.python,
            )
            await loop.run_in_executor(None, self._job.start)
            if self.cancelled:
                self._job.cancel(grace_s=2.0)
            while not self._job.poll():
                await asyncio.sleep(POLL_S)
            if self._job.cancelled:
                return None
            if self._job.result is None:
                raise AutoCTVError(self._job.error_message or "the completion process failed")
            mask = self._job.result
        if self.cancelled:
            return None
        return Completed(
            mask_zyx=mask,
            method=self.method,
            drawn=drawn,
            drawn_slices=slices,
            seconds=time.monotonic() - started,
            model=model,
        )

    def _report(self, fraction: float, message: str) -> None:
        if self.on_progress is not None:
            self.on_progress(fraction, message)


def show_completed(case: Any, segment_id: str, mask_zyx: np.ndarray) -> bool:
    """Put the completed mask into the segment, if the case still has it; True if shown."""
    from AutoCTVSlicerLib.segmentation_nodes import set_segment_labelmap

    node = case.segmentation_node
    if node.GetScene() is None or node.GetSegmentation().GetSegment(segment_id) is None:
        return False
    set_segment_labelmap(node, segment_id, mask_zyx, case.ct_node)
    return True


def show_stored_structures(case: Any, case_dir: Path, records: Sequence[Any]) -> int:
    """Add the case's stored structures as segments (``Structure n``); how many were shown."""
    from AutoCTVLib.io.image_files import read_labelmap
    from AutoCTVSlicerLib.segmentation_nodes import add_segment, set_segment_labelmap

    from .structures import STRUCTURE_DOWNLOADS, structure_dir

    shown = 0
    for record in records:
        path = structure_dir(case_dir, record.number) / STRUCTURE_DOWNLOADS["nifti"][0]
        if not path.is_file():
            continue
        mask = read_labelmap(path, reference=case.ct_volume.geometry).array != 0
        segment_id = add_segment(
            case.segmentation_node,
            segment_name=record.name,
            color_rgb=STRUCTURE_COLOR_RGB,
            terminology=None,
        )
        set_segment_labelmap(
            case.segmentation_node, segment_id, mask.astype(np.uint8), case.ct_node
        )
        shown += 1
    return shown
