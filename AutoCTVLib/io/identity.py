"""Where an input came from: the identity every result's provenance and DICOM export refer to."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class SliceRef:
    """One image of a DICOM CT series; ``SeriesIdentity.slices`` lists them in volume k order."""

    sop_class_uid: str
    sop_instance_uid: str
    position_lps_mm: tuple[float, float, float]
    frame_number: int | None = None
    """1-based frame of a multi-frame image (Enhanced CT); None for a single-frame image."""
    source_file: str = field(default="", compare=False)
    """The file the reader took this image from ("" when not read from a file)."""


@dataclass(frozen=True)
class SeriesIdentity:
    """A DICOM CT series: patient, study, series and frame of reference, plus its slices.

    RTSTRUCT and DICOM SEG export copy the patient/study modules from here and reference
    ``series_instance_uid``, ``frame_of_reference_uid`` and each slice's SOP instance UID.
    """

    patient_id: str
    patient_name: str
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    slices: tuple[SliceRef, ...]
    modality: str = "CT"
    patient_sex: str = ""
    patient_birth_date: str = ""
    study_id: str = ""
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    referring_physician_name: str = ""
    study_description: str = ""
    series_number: int = 1
    series_description: str = ""
    source: str = ""
    generated_uids: tuple[str, ...] = ()
    """UIDs that were blank or invalid in the input and were generated (e.g.
    "SeriesInstanceUID"); outputs reference the generated ones."""
    uids_from_file_meta: tuple[str, ...] = ()
    """UIDs blank in the data set and taken from the file meta ("SOPClassUID", ...)."""

    @property
    def kind(self) -> str:
        return "dicom"

    def summary(self) -> dict[str, object]:
        """JSON-friendly provenance (without the per-slice list)."""
        data = asdict(self)
        data["slice_count"] = len(self.slices)
        del data["slices"]
        data["input_uids_generated"] = bool(self.generated_uids)
        data["generated_uids"] = list(self.generated_uids)
        data["uids_from_file_meta"] = list(self.uids_from_file_meta)
        data["kind"] = self.kind
        return data


@dataclass(frozen=True)
class FileIdentity:
    """A single-file input (NIfTI, NRRD, MHA), identified by its content hash."""

    path: str
    sha256: str
    format: str
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "file"

    def summary(self) -> dict[str, object]:
        data = asdict(self)
        data["kind"] = self.kind
        return data


def sha256_of_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
