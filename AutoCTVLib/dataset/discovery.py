"""Finding the cases of a dataset: every immediate sub-folder of the input folder is one case.

A case folder is either

* a **NIfTI pair**: a CT file named ``ct`` or ``image`` and a CTV labelmap named ``ctv`` or
  ``label`` (ending ``.nii.gz``, ``.nii``, ``.nrrd`` or ``.mha``; names are case-insensitive).
  Extra structures are labelmaps named after the structure (``bladder.nii.gz`` for "Bladder").
  This is what ``autoctv phantom`` writes (``ct.nii.gz`` + ``ctv.nii.gz``); or
* a **DICOM-RT export**: DICOM files anywhere below the folder holding a CT series and an
  RTSTRUCT that references it. With several CT series, the one the RTSTRUCT references is used.

With ``source="auto"`` a folder holding a NIfTI pair is read as NIfTI, anything else as DICOM.
Hidden folders (starting with ".") are ignored.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from AutoCTVLib.errors import InputError, ReferenceMismatchError

logger = logging.getLogger(__name__)

CT_STEMS = ("ct", "image")
CTV_STEMS = ("ctv", "label")
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
SOURCE_CHOICES = ("auto", "dicom", "nifti")
RTSTRUCT_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.481.3"


@dataclass(frozen=True)
class CaseFolder:
    """One case folder and how it will be read ("nifti" or "dicom")."""

    case_id: str
    folder: Path
    kind: str


@dataclass(frozen=True)
class DicomCaseFiles:
    """What a DICOM case folder holds: the CT series to read and the RTSTRUCT to pair with it."""

    ct_series_uid: str
    rtstruct_path: Path
    ct_series_sizes: dict[str, int] = field(default_factory=dict)


def discover_cases(input_dir: Path, source: str = "auto") -> list[CaseFolder]:
    """The case folders of ``input_dir`` in name order.

    Raises:
        InputError: ``input_dir`` is missing, not a folder, or has no sub-folders.
    """
    if source not in SOURCE_CHOICES:
        raise ValueError(f"source must be one of {SOURCE_CHOICES}, got {source!r}")
    if not input_dir.exists():
        raise InputError(f"input folder {input_dir} does not exist")
    if not input_dir.is_dir():
        raise InputError(f"{input_dir} is not a folder; give a folder with one sub-folder per case")
    folders = sorted(p for p in input_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise InputError(f"{input_dir} has no case sub-folders (one sub-folder per case expected)")
    cases = []
    for folder in folders:
        if source == "auto":
            kind = "nifti" if find_image_file(folder, CT_STEMS) is not None else "dicom"
        else:
            kind = source
        cases.append(CaseFolder(case_id=folder.name, folder=folder, kind=kind))
    return cases


def find_image_file(folder: Path, stems: tuple[str, ...]) -> Path | None:
    """The first file in ``folder`` named ``<stem><suffix>`` (case-insensitive), by stem order."""
    files = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
    for stem in stems:
        for suffix in IMAGE_SUFFIXES:
            found = files.get(stem.lower() + suffix)
            if found is not None:
                return found
    return None


def find_dicom_case_files(folder: Path) -> DicomCaseFiles:
    """Scan a DICOM case folder (recursively) for its CT series and the RTSTRUCT to use.

    Raises:
        InputError: no DICOM files, no CT series, or no RTSTRUCT.
        ReferenceMismatchError: the RTSTRUCT references a CT series that is not in the folder,
            or several RTSTRUCTs reference the CT and none can be preferred.
    """
    ct_series: Counter[str] = Counter()
    rtstructs: list[tuple[Path, str | None]] = []
    dicom_count = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        header = _read_header(path)
        if header is None:
            continue
        dicom_count += 1
        modality = str(header.get("Modality", "")).upper()
        sop_class = str(header.get("SOPClassUID", ""))
        if modality == "RTSTRUCT" or sop_class == RTSTRUCT_SOP_CLASS_UID:
            rtstructs.append((path, referenced_series_uid(path)))
        elif modality == "CT" and "SeriesInstanceUID" in header:
            ct_series[str(header.SeriesInstanceUID)] += 1
    if dicom_count == 0:
        raise InputError(
            "no CT found: neither a NIfTI pair (ct.nii.gz + ctv.nii.gz) nor DICOM files"
        )
    if not ct_series:
        raise InputError("the DICOM files hold no CT series")
    if not rtstructs:
        raise InputError("the DICOM files hold no RTSTRUCT")
    matching = [(path, uid) for path, uid in rtstructs if uid in ct_series]
    if len(matching) > 1:
        names = ", ".join(path.name for path, _ in matching)
        raise ReferenceMismatchError(
            f"{len(matching)} RTSTRUCT files reference the CT ({names}); keep one per case folder"
        )
    if len(matching) == 1:
        path, uid = matching[0]
        return DicomCaseFiles(str(uid), path, dict(ct_series))
    unreferenced = [path for path, uid in rtstructs if uid is None]
    if len(unreferenced) == 1 and len(rtstructs) == 1 and len(ct_series) == 1:
        # No series reference in the RTSTRUCT: pair it with the only CT series; the frame of
        # reference and per-slice references are checked when the contours are rasterised.
        return DicomCaseFiles(next(iter(ct_series)), unreferenced[0], dict(ct_series))
    referenced = sorted({uid for _, uid in rtstructs if uid})
    raise ReferenceMismatchError(
        "the RTSTRUCT references CT series "
        f"{', '.join(referenced) or '(none)'}, which is not among the CT series in the folder"
    )


def referenced_series_uid(rtstruct_path: Path) -> str | None:
    """The CT series UID an RTSTRUCT references (first referenced series), or None."""
    try:
        dataset = pydicom.dcmread(rtstruct_path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError):
        return None
    for frame in dataset.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                uid = series.get("SeriesInstanceUID")
                if uid:
                    return str(uid)
    return None


def _read_header(path: Path) -> pydicom.Dataset | None:
    try:
        return pydicom.dcmread(
            path,
            stop_before_pixels=True,
            specific_tags=["Modality", "SOPClassUID", "SeriesInstanceUID"],
        )
    except (InvalidDicomError, OSError, ValueError, EOFError, TypeError):
        return None
