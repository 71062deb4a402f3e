"""Evaluate a segmenter on an AutoCTV HDF5 dataset, on each case's own (input) grid.

A *segmenter* is any callable ``Volume (CT in HU) -> Volume (0/1 labelmap on the same grid)``:
the predictor, an ablation model, a completion method. Metrics are computed against the
dataset's label on the case's original grid (not the network grid), so they are what a user
would measure on the exported contour.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from AutoCTVLib.dataset import list_cases, read_case
from AutoCTVLib.metrics import segmentation_metrics, summarize
from AutoCTVLib.volume import Volume

logger = logging.getLogger(__name__)

Segmenter = Callable[[Volume], Volume]


@dataclass(frozen=True)
class EvaluationResult:
    """Per-case rows (``case_id``, ``dice``, ``hd95_mm``, volumes in mL, ``seconds``) and
    their summary (see :func:`AutoCTVLib.metrics.summarize`)."""

    per_case: list[dict[str, object]]
    summary: dict[str, float | int | None]


def evaluate_dataset(
    segment: Segmenter,
    dataset_path: str | Path,
    *,
    label_name: str = "CTV",
    case_ids: Sequence[str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> EvaluationResult:
    """Run ``segment`` on every case (or ``case_ids``) and compare with ``label_name``.

    ``progress(done, total, case_id)`` is called after each case.
    """
    ids = list(case_ids) if case_ids is not None else list_cases(dataset_path)
    rows: list[dict[str, object]] = []
    for index, case_id in enumerate(ids):
        ct, labels, _ = read_case(dataset_path, case_id)
        reference = labels[label_name]
        started = time.perf_counter()
        predicted = segment(ct)
        seconds = time.perf_counter() - started
        if not predicted.geometry.is_close(ct.geometry):
            raise ValueError(f"case {case_id}: the segmenter changed the grid")
        row: dict[str, object] = {"case_id": case_id, "seconds": seconds}
        row.update(
            segmentation_metrics(
                np.asarray(predicted.array) > 0, reference.array > 0, ct.geometry.spacing_xyz_mm
            )
        )
        rows.append(row)
        logger.info("%s: Dice %.3f, HD95 %.1f mm", case_id, row["dice"], row["hd95_mm"])
        if progress is not None:
            progress(index + 1, len(ids), case_id)
    return EvaluationResult(per_case=rows, summary=summarize(rows))  # type: ignore[arg-type]
