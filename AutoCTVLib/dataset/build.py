"""Build one HDF5 training dataset from a folder of cases (DICOM-RT exports or NIfTI pairs).

Each case is read, checked and written on its own; a case that cannot be used (missing ROI, an
RTSTRUCT that does not reference the CT, an unreadable file, a label on another grid) is reported
with its reason and skipped. The dataset file appears only when at least one case succeeded
(written to a temporary name, then renamed).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from AutoCTVLib.dataset.discovery import (
    CT_STEMS,
    CTV_STEMS,
    CaseFolder,
    discover_cases,
    find_dicom_case_files,
    find_image_file,
)
from AutoCTVLib.dataset.hdf5 import (
    hu_to_int16,
    record_skipped_cases,
    write_case,
    write_dataset_header,
)
from AutoCTVLib.dataset.qc import TINY_LABEL_ML, case_qc
from AutoCTVLib.errors import AutoCTVError, CancelledError, InputError, ROINotFoundError
from AutoCTVLib.io.atomic import atomic_path, check_writable
from AutoCTVLib.io.image_files import read_labelmap
from AutoCTVLib.volume import Volume

logger = logging.getLogger(__name__)

#: Name of the main label in the dataset (always first).
CTV_LABEL = "CTV"

#: ``progress(done, total, case_id)`` is called after each case.
ProgressCallback = Callable[[int, int, str], None]


@dataclass
class CaseReport:
    """The outcome of one case folder."""

    case_id: str
    source_kind: str
    status: str  # "ok" or "failed"
    reason: str = ""
    shape_zyx: tuple[int, int, int] | None = None
    spacing_xyz_mm: tuple[float, float, float] | None = None
    roi_names: dict[str, str] = field(default_factory=dict)
    qc: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def warnings(self) -> list[str]:
        return list(self.qc.get("warnings", []))  # type: ignore[arg-type]


@dataclass
class BuildReport:
    """What ``build_dataset`` did: one :class:`CaseReport` per case folder, in name order."""

    output_path: Path
    roi_pattern: str
    label_names: list[str]
    cases: list[CaseReport]

    @property
    def succeeded(self) -> list[CaseReport]:
        return [case for case in self.cases if case.ok]

    @property
    def failed(self) -> list[CaseReport]:
        return [case for case in self.cases if not case.ok]


@dataclass
class _LoadedCase:
    ct: Volume
    identity: dict[str, object]
    source: str
    labels: dict[str, np.ndarray]
    roi_names: dict[str, str]
    warnings: list[str]


def build_dataset(
    input_dir: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    roi_pattern: str = "CTV",
    extra_rois: Sequence[str] = (),
    source: str = "auto",
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    tiny_label_ml: float = TINY_LABEL_ML,
) -> BuildReport:
    """Build the HDF5 dataset ``output_path`` from the case folders of ``input_dir``.

    Args:
        input_dir: folder with one sub-folder per case (see :mod:`AutoCTVLib.dataset.discovery`).
        output_path: the ``.h5`` file to write.
        roi_pattern: RTSTRUCT ROI name or pattern of the CTV (matching as in
            :func:`AutoCTVLib.io.rtstruct_read.rasterise_roi`); stored as label "CTV".
        extra_rois: further structures to store, each under its own name: an ROI name/pattern for
            DICOM cases, a labelmap file named after it (lower case) for NIfTI cases.
        source: "auto", "dicom" or "nifti" (how case folders are read).
        overwrite: replace an existing ``output_path``; otherwise :class:`OutputError`.
        progress: called as ``progress(done, total, case_id)`` after each case.
        cancel: when set, the build stops, writes nothing and raises :class:`CancelledError`.
        tiny_label_ml: labels below this volume (mL) get a QC warning.

    Returns:
        The per-case report.

    Raises:
        InputError: the input folder is missing or has no case folders, or no case succeeded.
        OutputError: the output exists (without ``overwrite``) or its folder does not exist.
    """
    input_dir = Path(input_dir)
    output_path = Path(output_path)
    label_names = [CTV_LABEL, *extra_rois]
    if len(set(label_names)) != len(label_names):
        raise ValueError(f"label names must be distinct, got {label_names}")
    check_writable(output_path, overwrite)
    cases = discover_cases(input_dir, source)
    reports: list[CaseReport] = []
    with atomic_path(output_path, overwrite=overwrite) as tmp, h5py.File(tmp, "w") as h5file:
        write_dataset_header(h5file, roi_pattern=roi_pattern, label_names=label_names)
        for done, case in enumerate(cases, start=1):
            if cancel is not None and cancel.is_set():
                raise CancelledError("dataset build cancelled; no file was written")
            reports.append(_build_case(h5file, case, roi_pattern, extra_rois, tiny_label_ml))
            if progress is not None:
                progress(done, len(cases), case.case_id)
        if not any(report.ok for report in reports):
            reasons = "; ".join(f"{r.case_id}: {r.reason}" for r in reports[:3])
            raise InputError(
                f"no usable case in {input_dir} ({len(reports)} folder(s) failed; {reasons})"
            )
        record_skipped_cases(h5file, {r.case_id: r.reason for r in reports if not r.ok})
    return BuildReport(output_path, roi_pattern, label_names, reports)


def _build_case(
    h5file: h5py.File,
    case: CaseFolder,
    roi_pattern: str,
    extra_rois: Sequence[str],
    tiny_label_ml: float,
) -> CaseReport:
    try:
        if case.kind == "nifti":
            loaded = _load_nifti_case(case.folder, extra_rois)
        else:
            loaded = _load_dicom_case(case.folder, roi_pattern, extra_rois)
        ct_int16, hu_warnings = hu_to_int16(loaded.ct.array)
    except AutoCTVError as error:
        logger.info("case %s skipped: %s", case.case_id, error)
        return CaseReport(case.case_id, case.kind, "failed", _one_line(str(error)))
    except Exception as error:  # an unreadable file must not stop the whole build
        logger.warning("case %s skipped after an unexpected error", case.case_id, exc_info=True)
        return CaseReport(
            case.case_id,
            case.kind,
            "failed",
            _one_line(f"unreadable: {type(error).__name__}: {error}"),
        )
    geometry = loaded.ct.geometry
    qc = case_qc(ct_int16, loaded.labels, geometry, [*loaded.warnings, *hu_warnings], tiny_label_ml)
    write_case(
        h5file,
        case.case_id,
        ct_int16,
        loaded.labels,
        geometry,
        source=loaded.source,
        source_kind=case.kind,
        identity=loaded.identity,
        roi_names=loaded.roi_names,
        qc=qc,
    )
    return CaseReport(
        case.case_id,
        case.kind,
        "ok",
        shape_zyx=geometry.shape_zyx,
        spacing_xyz_mm=geometry.spacing_xyz_mm,
        roi_names=dict(loaded.roi_names),
        qc=qc,
    )


def _load_nifti_case(folder: Path, extra_rois: Sequence[str]) -> _LoadedCase:
    from AutoCTVLib.io.ct_reader import read_ct

    ct_path = find_image_file(folder, CT_STEMS)
    if ct_path is None:
        raise InputError("no CT file (ct.nii.gz or image.nii.gz)")
    loaded = read_ct(ct_path)
    geometry = loaded.volume.geometry
    warnings = list(loaded.warnings)
    labels: dict[str, np.ndarray] = {}
    roi_names: dict[str, str] = {}
    wanted = [(CTV_LABEL, CTV_STEMS), *((name, (name.lower(),)) for name in extra_rois)]
    for label_name, stems in wanted:
        label_path = find_image_file(folder, stems)
        if label_path is None:
            raise ROINotFoundError(f"no {label_name} labelmap ({stems[0]}.nii.gz) next to the CT")
        values = read_labelmap(label_path, reference=geometry).array
        if np.any(values > 1):
            warnings.append(
                f"{label_path.name} holds values other than 0/1; "
                f"every non-zero voxel is counted as {label_name}"
            )
        labels[label_name] = (values > 0).astype(np.uint8)
        roi_names[label_name] = label_path.name
    return _LoadedCase(
        ct=loaded.volume,
        identity=loaded.identity.summary(),
        source=str(ct_path),
        labels=labels,
        roi_names=roi_names,
        warnings=warnings,
    )


def _load_dicom_case(folder: Path, roi_pattern: str, extra_rois: Sequence[str]) -> _LoadedCase:
    from AutoCTVLib.io.ct_reader import read_ct
    from AutoCTVLib.io.rtstruct_read import rasterise_roi_detailed, read_rtstruct

    files = find_dicom_case_files(folder)
    warnings = []
    if len(files.ct_series_sizes) > 1:
        warnings.append(
            f"{len(files.ct_series_sizes)} CT series in the folder; used the one the RTSTRUCT "
            "references"
        )
    loaded = read_ct(folder, series_uid=files.ct_series_uid)
    warnings.extend(loaded.warnings)
    geometry = loaded.volume.geometry
    structure_set = read_rtstruct(files.rtstruct_path)
    labels: dict[str, np.ndarray] = {}
    roi_names: dict[str, str] = {}
    for label_name, pattern in [(CTV_LABEL, roi_pattern), *((name, name) for name in extra_rois)]:
        rasterised = rasterise_roi_detailed(structure_set, pattern, geometry, ct=loaded.identity)
        labels[label_name] = rasterised.mask_zyx.astype(np.uint8)
        roi_names[label_name] = rasterised.roi_name
        warnings.extend(rasterised.warnings)
    return _LoadedCase(
        ct=loaded.volume,
        identity=loaded.identity.summary(),
        source=str(folder),
        labels=labels,
        roi_names=roi_names,
        warnings=warnings,
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())
