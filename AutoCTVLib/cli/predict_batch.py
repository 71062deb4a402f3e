"""``autoctv predict`` on several cases: one sub-folder of outputs per case and a summary table.

Batch mode starts when ``predict`` is given several INPUTs, or ``--batch`` (then every INPUT is
a folder of cases: each sub-folder and each NIfTI/NRRD/MHA file inside it is one case). Each
case is contoured exactly as a single ``predict`` would, into ``OUT_DIR/<case>/``; the model is
loaded once. A case that fails (bad file, wrong modality, ...) is recorded and the batch goes
on; at the end a table lists every case (CTV mL, uncertainty case score, seconds, error), is
written to ``OUT_DIR/batch_summary.csv``, and the command exits non-zero when any case failed.
A case whose folder already holds ``report.json`` (written last, so only by a complete run) is
skipped, and its earlier result shown in the table; ``--overwrite`` contours it again.

Case names: a folder's name, or a file's name without its image suffix (``ct_07.nii.gz`` →
``ct_07``); names that repeat get their parent folder's name in front.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from AutoCTVLib.errors import AutoCTVError, InputError

logger = logging.getLogger(__name__)

SUMMARY_NAME = "batch_summary.csv"
SUMMARY_COLUMNS = ("case", "status", "ctv_ml", "case_score", "seconds", "error", "input")


@dataclass(frozen=True)
class Case:
    """One input of a batch: its name (the output sub-folder) and path."""

    name: str
    path: Path


@dataclass
class CaseRow:
    """One line of the summary table. ``status`` is done, skipped (done earlier) or failed."""

    case: str
    input: str
    status: str
    ctv_ml: float | None = None
    case_score: float | None = None
    seconds: float | None = None
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {column: getattr(self, column) for column in SUMMARY_COLUMNS}


def collect_cases(inputs: Sequence[Path], folders_of_cases: bool) -> list[Case]:
    """The cases of a batch, in the order given (a folder's cases sorted by name).

    Raises:
        InputError: ``--batch`` with an INPUT that is not a folder, or a folder without cases.
    """
    from AutoCTVLib.io.ct_reader import image_file_format

    paths: list[Path] = []
    for given in inputs:
        if not folders_of_cases:
            paths.append(Path(given))
            continue
        folder = Path(given)
        if not folder.is_dir():
            raise InputError(f"--batch: {folder} is not a folder of cases")
        entries = sorted(
            entry
            for entry in folder.iterdir()
            if not entry.name.startswith(".")
            and (entry.is_dir() or image_file_format(entry) is not None)
        )
        if not entries:
            raise InputError(
                f"--batch: {folder} holds no cases (a sub-folder per DICOM case, or NIfTI/NRRD/"
                "MHA files)"
            )
        paths += entries
    return _named(paths)


def _case_name(path: Path) -> str:
    from AutoCTVLib.io.ct_reader import IMAGE_FILE_FORMATS

    name = path.name
    for suffix in IMAGE_FILE_FORMATS:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name or "case"


def _named(paths: list[Path]) -> list[Case]:
    names = [_case_name(path) for path in paths]
    repeated = {name for name in names if names.count(name) > 1}
    cases: list[Case] = []
    used: set[str] = set()
    for path in paths:
        name = _case_name(path)
        if name in repeated:
            name = f"{path.resolve().parent.name}_{name}"
        unique, count = name, 1
        while unique in used:
            count += 1
            unique = f"{name}_{count}"
        used.add(unique)
        cases.append(Case(unique, path))
    return cases


def run_batch(cases: list[Case], out_dir: Path, job_options: dict[str, Any]) -> list[CaseRow]:
    """Contour every case into ``out_dir/<case>/``; never stops at a failing case.

    Args:
        cases: from :func:`collect_cases`.
        out_dir: the batch's output folder (created; its parent must exist).
        job_options: keyword arguments of
            :func:`AutoCTVLib.cli.predict_cmd.run_prediction_job` other than the input, the
            output folder and the progress label.

    Returns:
        One row per case, in order. Ctrl-C / SIGTERM stops the batch (the case being
        contoured leaves no outputs).
    """
    from AutoCTVLib.cli.predict_cmd import run_prediction_job

    out_dir.mkdir(exist_ok=True)
    progress_mode = job_options.get("progress_mode", "bar")
    cache: dict[Any, Any] = {}
    rows: list[CaseRow] = []
    for index, case in enumerate(cases, start=1):
        label = f"case {index}/{len(cases)} {case.name}"
        case_dir = out_dir / case.name
        if (case_dir / "report.json").is_file() and not job_options.get("overwrite"):
            rows.append(_skipped_row(case, case_dir))
            _note(progress_mode, label, "skipped: done earlier (--overwrite contours it again)")
            continue
        started = time.perf_counter()
        try:
            result = run_prediction_job(
                input_path=case.path,
                out_dir=case_dir,
                progress_label=label,
                predictor_cache=cache,
                **job_options,
            )
        except AutoCTVError as error:
            message = " ".join(str(error).split())
            rows.append(_failed_row(case, message, started))
            _note(progress_mode, label, f"failed: {message}")
            continue
        except Exception as error:  # a bug must not cost the other cases; its traceback is logged
            logger.exception("case %s failed", case.name)
            rows.append(_failed_row(case, f"internal error: {type(error).__name__}", started))
            _note(progress_mode, label, f"failed: internal error {type(error).__name__}")
            continue
        summary = result.prediction.summary
        rows.append(
            CaseRow(
                case=case.name,
                input=str(case.path),
                status="done",
                ctv_ml=round(result.prediction.ctv_volume_ml, 1),
                case_score=None if summary is None else round(float(summary.case_score), 4),
                seconds=round(time.perf_counter() - started, 1),
            )
        )
        _note(progress_mode, label, f"done: CTV {result.prediction.ctv_volume_ml:.1f} mL")
    return rows


def _failed_row(case: Case, message: str, started: float) -> CaseRow:
    seconds = round(time.perf_counter() - started, 1)
    return CaseRow(case.name, str(case.path), "failed", seconds=seconds, error=message)


def _skipped_row(case: Case, case_dir: Path) -> CaseRow:
    """A case done by an earlier run: its numbers from its report.json."""
    row = CaseRow(case.name, str(case.path), "skipped")
    try:
        report = json.loads((case_dir / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return row
    result = report.get("result") or {}
    uncertainty = report.get("uncertainty") or {}
    if isinstance(result.get("ctv_volume_ml"), (int, float)):
        row.ctv_ml = round(float(result["ctv_volume_ml"]), 1)
    if isinstance(uncertainty.get("case_score"), (int, float)):
        row.case_score = round(float(uncertainty["case_score"]), 4)
    return row


def _note(progress_mode: str, label: str, message: str) -> None:
    """One line per case: on stderr beside the bar, as a JSON event on stdout."""
    if progress_mode == "json":
        print(json.dumps({"event": "case", "case": label, "message": message}), flush=True)
    elif progress_mode == "bar":
        print(f"{label}: {message}", file=sys.stderr, flush=True)


def summary_table(rows: list[CaseRow]) -> str:
    """The rows as an aligned text table (one line per case)."""
    header = ("case", "CTV mL", "case score", "time s", "status / error")
    lines = [header]
    for row in rows:
        status = row.status if not row.error else f"failed: {row.error}"
        if row.status == "skipped":
            status = "skipped (done earlier)"
        lines.append(
            (
                row.case,
                "" if row.ctv_ml is None else f"{row.ctv_ml:.1f}",
                "" if row.case_score is None else f"{row.case_score:.3f}",
                "" if row.seconds is None else f"{row.seconds:.1f}",
                status,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(line[i].ljust(widths[i]) for i in range(len(widths))) + "  " + line[-1]
        for line in lines
    )


def write_summary(rows: list[CaseRow], path: Path) -> Path:
    """``batch_summary.csv``: one row per case with :data:`SUMMARY_COLUMNS` (written atomically;
    replaced by each batch run)."""
    from AutoCTVLib.io.atomic import atomic_path

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.as_dict().items()})
    with atomic_path(path, overwrite=True) as temporary:
        temporary.write_text(buffer.getvalue(), encoding="utf-8")
    return path
