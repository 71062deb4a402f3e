"""Write a ``Volume`` of Hounsfield units as a DICOM CT series (one CT Image Storage file a slice).

The grid may be axial, flipped or oblique. Slice k of ``volume.array`` (indexed z, y, x) becomes
one file whose pixel (row r, column c) is ``array[k, r, c]``:

* ImageOrientationPatient = the direction's i column (along a row) then its j column (down the
  columns), in LPS.
* ImagePositionPatient = ``origin + k * spacing_k * k_axis`` (LPS mm, centre of the first pixel).
* PixelSpacing = (row spacing, column spacing) = (spacing along j, spacing along i): DICOM lists
  the distance between rows first.
* Pixel data are signed 16-bit integers with RescaleSlope 1; RescaleIntercept is 0 whenever the
  rounded HU values fit in int16 (always, for real CT). Non-integer HU values are rounded to the
  nearest integer.

Readers that follow DICOM (including :func:`AutoCTVLib.io.ct_reader.read_ct`) order slices along
``row × column``. A right-handed direction (k axis = i × j) therefore reads back on the identical
grid; a left-handed one reads back with the k axis reversed (the same voxels in space).

File names are ``CT.<SOPInstanceUID>.dcm``, which says nothing about slice order. The series is
written into a hidden temporary folder beside ``out_dir`` and renamed into place only when every
file was written, so an interrupted write never leaves a partial series behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from AutoCTVLib import __version__
from AutoCTVLib.compat import save_dicom_file
from AutoCTVLib.errors import OutputError
from AutoCTVLib.io.identity import SeriesIdentity, SliceRef
from AutoCTVLib.volume import Volume

logger = logging.getLogger(__name__)

_INT16_MIN = -32768
_INT16_MAX = 32767


def write_ct_series(
    volume: Volume,
    out_dir: str | os.PathLike[str],
    *,
    patient_id: str = "PHANTOM",
    patient_name: str = "AutoCTV^Phantom",
    patient_sex: str = "O",
    patient_birth_date: str = "",
    study_description: str = "AutoCTV synthetic CT",
    study_id: str = "1",
    accession_number: str = "",
    referring_physician_name: str = "",
    series_description: str = "AutoCTV synthetic CT",
    series_number: int = 1,
    patient_position: str = "HFS",
    kvp: float = 120.0,
    body_part_examined: str = "PELVIS",
    uid_seed: str | None = None,
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    study_datetime: datetime | None = None,
) -> SeriesIdentity:
    """Write ``volume`` (float HU, indexed z, y, x) as a CT series in the new folder ``out_dir``.

    Args:
        volume: CT in Hounsfield units on any grid (LPS mm geometry).
        out_dir: folder to create; it must not exist yet, or be empty. Its parent must exist.
        patient_id, patient_name, patient_sex, patient_birth_date: Patient module (name in DICOM
            ``Family^Given`` form, sex M/F/O, birth date YYYYMMDD or empty).
        study_description, study_id, accession_number, referring_physician_name: Study module.
        series_description, series_number: Series module.
        patient_position: DICOM PatientPosition (HFS, FFS, ...); informative only, the geometry
            lives in ImagePositionPatient/ImageOrientationPatient.
        kvp: tube voltage written as KVP (kV).
        body_part_examined: DICOM BodyPartExamined (defined terms, e.g. PELVIS, ABDOMEN);
            empty to leave it out (Laterality is then written empty, meaning unknown).
        uid_seed: when given, every UID is derived from it (and, for the series and image UIDs,
            from a hash of the voxels and grid), so the same seed and volume give the same UIDs.
            When None, UIDs are random.
        study_instance_uid, series_instance_uid, frame_of_reference_uid: explicit UIDs that
            override the generated ones (e.g. to add a series to an existing study).
        study_datetime: study/series/content date and time; the current time when None.

    Returns:
        The written series' identity; ``slices`` are listed in the volume's k order.

    Raises:
        ValueError: the volume holds NaN/inf or HU values that cannot be stored in 16 bits.
        OutputError: ``out_dir`` exists and is not empty, or its parent folder is missing.
    """
    ct_hu = np.asarray(volume.array)
    geometry = volume.geometry
    if not np.all(np.isfinite(ct_hu)):
        raise ValueError("the CT volume holds NaN or infinite values; DICOM cannot store them")
    stored, intercept = _to_stored_int16(ct_hu)
    rows, columns = geometry.shape_zyx[1], geometry.shape_zyx[2]
    if rows > 65535 or columns > 65535:
        raise ValueError(f"slices of {columns}×{rows} pixels are too large for DICOM")

    target = Path(out_dir)
    _check_target(target)
    when = study_datetime or datetime.now()
    study_uid = study_instance_uid or _uid(uid_seed, "study")
    frame_uid = frame_of_reference_uid or _uid(uid_seed, "frame-of-reference")
    content_key = _content_key(stored, intercept, volume, series_description, series_number)
    series_uid = series_instance_uid or _uid(uid_seed, "series", study_uid, content_key)

    dataset = _series_dataset(
        geometry_direction=geometry.direction_matrix,
        spacing_xyz_mm=geometry.spacing_xyz_mm,
        rows=rows,
        columns=columns,
        intercept=intercept,
        when=when,
        patient=(patient_id, patient_name, patient_sex, patient_birth_date),
        study=(study_uid, study_id, study_description, accession_number, referring_physician_name),
        series=(series_uid, series_number, series_description, patient_position),
        frame_uid=frame_uid,
        kvp=kvp,
        body_part_examined=body_part_examined,
    )

    origin = np.asarray(geometry.origin_xyz_mm, dtype=float)
    k_step = geometry.spacing_xyz_mm[2] * geometry.slice_normal
    temporary = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
    temporary.mkdir()
    slices: list[SliceRef] = []
    try:
        for k in range(geometry.shape_zyx[0]):
            sop_uid = _uid(uid_seed, "image", series_uid, str(k))
            position = _ds_values(origin + k * k_step)
            dataset.SOPInstanceUID = sop_uid
            dataset.file_meta.MediaStorageSOPInstanceUID = sop_uid
            dataset.InstanceNumber = k + 1
            dataset.ImagePositionPatient = position
            dataset.PixelData = np.ascontiguousarray(stored[k], dtype="<i2").tobytes()
            _save_dataset(dataset, temporary / f"CT.{sop_uid}.dcm")
            slices.append(SliceRef(CTImageStorage, sop_uid, tuple(float(v) for v in position)))
        _publish(temporary, target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    logger.debug("wrote %d CT slices to %s", len(slices), target)
    return SeriesIdentity(
        patient_id=patient_id,
        patient_name=patient_name,
        patient_sex=patient_sex,
        patient_birth_date=patient_birth_date,
        study_instance_uid=study_uid,
        study_id=study_id,
        study_date=when.strftime("%Y%m%d"),
        study_time=when.strftime("%H%M%S"),
        accession_number=accession_number,
        referring_physician_name=referring_physician_name,
        study_description=study_description,
        series_instance_uid=series_uid,
        series_number=int(series_number),
        series_description=series_description,
        frame_of_reference_uid=frame_uid,
        modality="CT",
        slices=tuple(slices),
        source=str(target),
    )


def _to_stored_int16(ct_hu: np.ndarray) -> tuple[np.ndarray, int]:
    """Rounded HU as int16 stored values and the RescaleIntercept that maps them back to HU."""
    rounded = np.rint(ct_hu)
    low, high = (float(rounded.min()), float(rounded.max())) if rounded.size else (0.0, 0.0)
    if low >= _INT16_MIN and high <= _INT16_MAX:
        intercept = 0
    elif high - low <= _INT16_MAX - _INT16_MIN:
        intercept = int(low) - _INT16_MIN
    else:
        raise ValueError(f"HU values from {low:g} to {high:g} do not fit in 16-bit DICOM pixels")
    return (rounded - intercept).astype(np.int16), intercept


def _uid(seed: str | None, *parts: str) -> str:
    """A random UID, or one derived from ``seed`` and ``parts`` when a seed is given."""
    if seed is None:
        return generate_uid()
    return generate_uid(entropy_srcs=["autoctv-ct", seed, *parts])


def _content_key(
    stored: np.ndarray,
    intercept: int,
    volume: Volume,
    series_description: str,
    series_number: int,
) -> str:
    """Hash of voxels, grid and series labels: different content never shares seeded UIDs."""
    digest = hashlib.sha256(np.ascontiguousarray(stored).tobytes())
    digest.update(repr((intercept, volume.geometry, series_description, series_number)).encode())
    return digest.hexdigest()


def _ds_value(value: float) -> str:
    """A decimal string (≤ 16 characters, DICOM DS) for ``value``; tiny values become 0."""
    return format_number_as_ds(0.0 if abs(value) < 1e-12 else float(value))


def _ds_values(values: Sequence[float] | np.ndarray) -> list[str]:
    return [_ds_value(float(v)) for v in values]


def _series_dataset(
    *,
    geometry_direction: np.ndarray,
    spacing_xyz_mm: tuple[float, float, float],
    rows: int,
    columns: int,
    intercept: int,
    when: datetime,
    patient: tuple[str, str, str, str],
    study: tuple[str, str, str, str, str],
    series: tuple[str, int, str, str],
    frame_uid: str,
    kvp: float,
    body_part_examined: str,
) -> Dataset:
    """The attributes every slice shares (per-slice ones are filled in while writing)."""
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"AUTOCTV_{__version__}"[:16]

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    # SOP Common
    ds.SOPClassUID = CTImageStorage
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    # Patient
    ds.PatientName, ds.PatientID, ds.PatientSex, ds.PatientBirthDate = (
        patient[1],
        patient[0],
        patient[2],
        patient[3],
    )
    # General Study
    study_uid, study_id, study_description, accession, referring = study
    ds.StudyInstanceUID, ds.StudyID, ds.StudyDescription = study_uid, study_id, study_description
    ds.StudyDate, ds.StudyTime = date, time
    ds.AccessionNumber, ds.ReferringPhysicianName = accession, referring
    # General Series
    series_uid, series_number, series_description, patient_position = series
    ds.Modality = "CT"
    ds.SeriesInstanceUID, ds.SeriesNumber = series_uid, int(series_number)
    ds.SeriesDescription = series_description
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.PatientPosition = patient_position
    if body_part_examined:
        ds.BodyPartExamined = body_part_examined
    else:
        ds.Laterality = ""  # type 2C: empty means "unknown"
    # Frame of Reference
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    # General Equipment
    ds.Manufacturer = "AutoCTV"
    ds.SoftwareVersions = __version__
    # General Image
    ds.ContentDate, ds.ContentTime = date, time
    ds.AcquisitionNumber = 1
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    # Image Plane
    row_axis, column_axis = geometry_direction[:, 0], geometry_direction[:, 1]
    ds.ImageOrientationPatient = _ds_values(np.concatenate([row_axis, column_axis]))
    ds.PixelSpacing = _ds_values([spacing_xyz_mm[1], spacing_xyz_mm[0]])
    ds.SliceThickness = _ds_value(spacing_xyz_mm[2])
    # Image Pixel and CT Image
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = _ds_value(intercept)
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.KVP = _ds_value(kvp)
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    return ds


def _save_dataset(dataset: Dataset, path: Path) -> None:
    """Write one DICOM Part 10 file (preamble, file meta, explicit VR little endian)."""
    save_dicom_file(dataset, path)


def _check_target(target: Path) -> None:
    if not target.parent.is_dir():
        raise OutputError(f"cannot write the CT series: folder {target.parent} does not exist")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise OutputError(
            f"cannot write the CT series into {target}: it already exists and is not an empty "
            "folder; choose a new folder"
        )


def _publish(temporary: Path, target: Path) -> None:
    """Rename the finished temporary folder to ``target`` (replacing an empty folder)."""
    if target.is_dir():
        with contextlib.suppress(OSError):
            target.rmdir()
    try:
        os.replace(temporary, target)
    except OSError as error:
        raise OutputError(f"cannot publish the CT series as {target}: {error}") from error
