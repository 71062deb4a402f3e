"""Find the DICOM files below a folder and read their headers (step 1 of
:mod:`AutoCTVLib.io.dicom_ct`): Part 10 files and files without the preamble alike."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from AutoCTVLib.errors import InputError
from AutoCTVLib.io.dicom_files import is_dicom_file, read_dicom
from AutoCTVLib.io.dicom_header import DicomHeader

logger = logging.getLogger(__name__)

_MAX_LISTED = 10


@dataclass(frozen=True)
class DicomScan:
    """What a scan of files found: DICOM headers, plus counts of what was skipped."""

    source: Path
    headers: tuple[DicomHeader, ...]
    non_dicom_files: int
    unreadable_files: tuple[str, ...]


def _files_below(folder: Path) -> Iterable[Path]:
    for root, directories, files in os.walk(folder):
        directories.sort()
        for name in sorted(files):
            yield Path(root) / name


def scan_dicom_files(source: Path) -> DicomScan:
    """Read the header of every DICOM file at ``source`` (a file, or a folder recursively)."""
    if source.is_file():
        if not is_dicom_file(source):
            raise InputError(
                f"{source} is not a DICOM file (no DICM signature, and it does not start with a "
                "DICOM group); give a DICOM folder or a NIfTI/NRRD/MHA file"
            )
        candidates: Iterable[Path] = [source]
    elif source.is_dir():
        candidates = _files_below(source)
    else:
        raise InputError(f"{source} does not exist")
    headers: list[DicomHeader] = []
    non_dicom = 0
    unreadable: list[str] = []
    for candidate in candidates:
        if not is_dicom_file(candidate):
            non_dicom += 1
            continue
        try:
            dataset = read_dicom(candidate, header_only=True)
        except Exception as error:  # any parse failure means "not usable", never a crash
            logger.debug("cannot parse %s: %s", candidate, error)
            unreadable.append(str(candidate))
            continue
        header = DicomHeader(candidate, dataset)
        if not header.sop_class_uid:  # pydicom parses truncated files leniently
            unreadable.append(str(candidate))
            continue
        headers.append(header)
    return DicomScan(source, tuple(headers), non_dicom, tuple(unreadable))


def scan_warnings(scan: DicomScan) -> Iterable[str]:
    if scan.unreadable_files:
        listed = ", ".join(Path(name).name for name in scan.unreadable_files[:_MAX_LISTED])
        yield f"skipped {len(scan.unreadable_files)} unreadable DICOM file(s): {listed}"
    if scan.non_dicom_files:
        logger.debug("ignored %d non-DICOM files in %s", scan.non_dicom_files, scan.source)
