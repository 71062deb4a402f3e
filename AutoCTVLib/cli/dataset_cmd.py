"""``autoctv dataset``: build an HDF5 training dataset from case folders, and inspect one.

``autoctv dataset build INPUT_DIR -o DATASET.h5`` reads every sub-folder of INPUT_DIR as one case
(a DICOM-RT export or a ct.nii.gz + ctv.nii.gz pair), prints a QC table and exits 0 when at
least one case was written. ``autoctv dataset info DATASET.h5`` prints the cases and their QC.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

ORDER = 40

_COLUMNS = (
    ("case", 18, "<"),
    ("source", 6, "<"),
    ("shape z×y×x", 13, "<"),
    ("spacing mm", 15, "<"),
    ("ROI matched", 16, "<"),
    ("volume mL", 9, ">"),
    ("slices", 7, ">"),
    ("status / warnings", 0, "<"),
)
_TABLE_NOTE = "volume mL: CTV volume; slices: slices holding the CTV / slices in the CT"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dataset",
        help="build or inspect an HDF5 training dataset",
        description="Build an HDF5 training dataset from DICOM-RT exports or NIfTI pairs.",
    )
    actions = parser.add_subparsers(dest="dataset_command", metavar="ACTION")

    build = actions.add_parser(
        "build",
        help="build a dataset from a folder of cases",
        description=(
            "Each sub-folder of INPUT_DIR is one case: a DICOM CT series with an RTSTRUCT that "
            "references it, or a NIfTI pair (ct.nii.gz or image.nii.gz with ctv.nii.gz or "
            "label.nii.gz). Cases that cannot be used are listed with the reason and skipped."
        ),
    )
    build.add_argument("input_dir", type=Path, metavar="INPUT_DIR", help="folder of case folders")
    build.add_argument(
        "-o", "--output", type=Path, required=True, metavar="DATASET.h5", help="file to write"
    )
    build.add_argument(
        "--roi", default="CTV", metavar="PATTERN", help="RTSTRUCT ROI name of the CTV (default CTV)"
    )
    build.add_argument(
        "--extra-roi",
        action="append",
        default=[],
        metavar="NAME",
        help="also store this structure (repeatable): ROI name for DICOM, NAME.nii.gz for NIfTI",
    )
    build.add_argument(
        "--source",
        choices=("auto", "dicom", "nifti"),
        default="auto",
        help="how to read case folders (default auto: NIfTI pair if present, else DICOM)",
    )
    build.add_argument("--overwrite", action="store_true", help="replace an existing DATASET.h5")
    build.set_defaults(handler=run_build)

    info = actions.add_parser("info", help="list the cases and QC of a dataset")
    info.add_argument("dataset", type=Path, metavar="DATASET.h5", help="dataset file")
    info.set_defaults(handler=run_info)

    parser.set_defaults(handler=lambda args: _missing_action(parser))


def _missing_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def run_build(args: argparse.Namespace) -> int:
    from AutoCTVLib.dataset import build_dataset
    from AutoCTVLib.errors import OutputError

    if args.output.exists() and not args.overwrite:
        raise OutputError(f"{args.output} already exists; add --overwrite to replace it")

    with _ProgressBar() as bar:
        report = build_dataset(
            args.input_dir,
            args.output,
            roi_pattern=args.roi,
            extra_rois=tuple(args.extra_roi),
            source=args.source,
            overwrite=args.overwrite,
            progress=bar.update,
        )
    rows = []
    for case in report.cases:
        if case.ok:
            rows.append(_ok_row(case.case_id, case.source_kind, case.roi_names, case.qc))
        else:
            rows.append(_failed_row(case.case_id, case.source_kind, case.reason))
    print(format_table(rows))
    print(_TABLE_NOTE)
    print(
        f"{len(report.succeeded)} of {len(report.cases)} case(s) written to {report.output_path}"
        f" ({len(report.failed)} skipped); labels: {', '.join(report.label_names)}"
    )
    return 0


def run_info(args: argparse.Namespace) -> int:
    from AutoCTVLib.dataset import case_attrs, dataset_attrs, list_cases, open_dataset

    with open_dataset(args.dataset) as h5file:
        root = dataset_attrs(h5file)
        case_ids = list_cases(h5file)
        rows = []
        for case_id in case_ids:
            attrs = case_attrs(h5file, case_id)
            roi_names = attrs.get("roi_names", {})
            rows.append(_ok_row(case_id, str(attrs.get("source_kind", "")), roi_names, attrs["qc"]))
    skipped = root.get("skipped_cases", {})
    for case_id, reason in sorted(skipped.items()):
        rows.append(_failed_row(case_id, "", reason))
    print(
        f"{args.dataset}: AutoCTV dataset format {root.get('format_version')}, "
        f"created {root.get('created_utc', '?')} by {root.get('created_by', '?')}"
    )
    print(f"ROI pattern {root.get('roi_pattern', '?')!r}; labels: {', '.join(root['label_names'])}")
    print(format_table(rows))
    print(_TABLE_NOTE)
    print(f"{len(case_ids)} case(s); {len(skipped)} skipped when built")
    return 0


def format_table(rows: Iterable[Sequence[str]]) -> str:
    """Fixed-width text table with the QC columns (cells longer than a column are shortened)."""
    rule = ["-" * (width or len(name)) for name, width, _ in _COLUMNS]
    lines = [_format_row([name for name, _, _ in _COLUMNS]), _format_row(rule)]
    lines += [_format_row(row) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _format_row(cells: Sequence[str]) -> str:
    parts = []
    for (_, width, align), cell in zip(_COLUMNS, cells):
        if width:
            text = cell if len(cell) <= width else cell[: width - 1] + "…"
            parts.append(f"{text:{align}{width}}")
        else:
            parts.append(cell)
    return "  ".join(parts)


def _ok_row(case_id: str, kind: str, roi_names: dict, qc: dict) -> list[str]:
    shape = "×".join(str(n) for n in qc.get("shape_zyx", []))
    spacing = "×".join(f"{s:.3g}" for s in qc.get("spacing_xyz_mm", []))
    volume = qc.get("volume_ml", {}).get("CTV")
    label_slices = qc.get("label_slice_count", {}).get("CTV")
    warnings = list(qc.get("warnings", []))
    status = "ok" if not warnings else "ok; " + "; ".join(warnings)
    return [
        case_id,
        kind,
        shape,
        spacing,
        str(roi_names.get("CTV", "")),
        "-" if volume is None else f"{volume:.1f}",
        f"{label_slices}/{qc.get('slice_count', '?')}",
        status,
    ]


def _failed_row(case_id: str, kind: str, reason: str) -> list[str]:
    return [case_id, kind, "-", "-", "-", "-", "-", f"FAILED: {reason}"]


class _ProgressBar:
    """A tqdm bar on stderr fed by the library's progress callback (silent if tqdm is absent)."""

    def __init__(self) -> None:
        self._bar = None

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def update(self, done: int, total: int, case_id: str) -> None:
        try:
            from tqdm import tqdm
        except ImportError:
            return
        if self._bar is None:
            self._bar = tqdm(total=total, unit="case", file=sys.stderr, leave=False, disable=None)
        self._bar.set_postfix_str(case_id)
        self._bar.update(done - self._bar.n)
