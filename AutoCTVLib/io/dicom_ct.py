"""Find, check and load one DICOM CT series from a folder.

Steps, each with its own error a physicist can act on:

1. **Scan** (:mod:`AutoCTVLib.io.dicom_scan`). Every file below the folder (recursively) that
   is DICOM — with the Part 10 preamble (``DICM`` at byte 128), or starting with the file meta
   group or a bare data set as some archives export (:mod:`AutoCTVLib.io.dicom_files`) — is
   read with pydicom, header only.
   Other files are ignored; DICOM files pydicom cannot parse are skipped with a warning.
2. **Select** (:mod:`AutoCTVLib.io.dicom_series_select`). CT images are CT Image Storage
   and the multi-frame Enhanced CT and Legacy Converted Enhanced CT, whose frames become one
   image each
   (:mod:`AutoCTVLib.io.dicom_multiframe`). Blank SOP class or instance UIDs are taken from the
   file meta; images without any usable UID get derived ones (:mod:`AutoCTVLib.io.dicom_uids`).
   Images are grouped by SeriesInstanceUID, or — when it is blank — by frame of reference,
   orientation and pixel grid (:mod:`AutoCTVLib.io.dicom_series_grouping`), with a warning.
   Localizer images (ImageType ``LOCALIZER``) are dropped with a warning. No CT but other
   objects (MR, RT Dose, secondary capture, RTSTRUCT, ...) → :class:`NotCTError`. Several CT
   series and no ``series_uid`` → :class:`SeriesSelectionError` listing each of them.
3. **Geometry.** Slices are ordered by the projection of ImagePositionPatient onto the slice
   normal ``n = row × column`` of ImageOrientationPatient, never by file name or
   InstanceNumber, and must form one regular grid:

   * at least :data:`MIN_SLICES` slices (three: fewer gives no check that the spacing is
     regular, and no 3D context for the network);
   * the same Rows/Columns, ImageOrientationPatient (±1e-4 per cosine) and PixelSpacing
     (±0.001 mm) on every slice;
   * no two slices at the same position (closer than 0.01 mm along ``n``);
   * positions stacked along ``n``, or sheared along one line (gantry tilt): a tilted series is
     resampled onto an orthogonal grid with a warning (:mod:`AutoCTVLib.io.dicom_tilt`); a
     slice more than a tenth of the smallest pixel spacing off that line (shifted images) is
     refused;
   * uniform steps along ``n``: every slice within ``max(0.01 mm, 1 % of the step)`` of its
     place on the regular grid. A step that is a whole multiple of the common step is
     reported as missing slices, with their positions.
4. **Load.** A memory estimate (voxels × 4 bytes for float32) is checked against the budget
   before any pixel data is read; then each file is read once (any transfer syntax pydicom's
   installed decoders handle: JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE,
   deflate) and RescaleSlope / RescaleIntercept are applied per slice (per frame), giving
   float32 Hounsfield units.

The grid: origin = ImagePositionPatient of the first slice in that order (moved in plane for a
tilted series); direction columns = row direction (i), column direction (j) and ``n`` (k);
spacing = (column spacing, row spacing, slice step), i.e. (PixelSpacing[1], PixelSpacing[0],
step) in mm.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from AutoCTVLib.errors import (
    GeometryError,
    InputError,
    MemoryBudgetError,
)
from AutoCTVLib.io.dicom_files import is_dicom_file, read_dicom
from AutoCTVLib.io.dicom_header import DicomHeader
from AutoCTVLib.io.dicom_multiframe import FramePixels
from AutoCTVLib.io.dicom_scan import DicomScan, scan_dicom_files, scan_warnings
from AutoCTVLib.io.dicom_series_select import (
    CT_CLASSES,
    ENHANCED_CT_CLASSES,
    class_name,
    select_ct_series,
)
from AutoCTVLib.io.dicom_tilt import Shear, fit_shear, origin_for_shear, resample_sheared
from AutoCTVLib.io.dicom_uids import (
    dataset_uid,
    related_uid,
    uid_with_fallback,
)
from AutoCTVLib.io.identity import SeriesIdentity, SliceRef
from AutoCTVLib.io.quiet_decoding import quiet_decoding
from AutoCTVLib.volume import Geometry, Volume

__all__ = [
    "CT_CLASSES",
    "ENHANCED_CT_CLASSES",
    "MIN_SLICES",
    "DicomHeader",
    "DicomScan",
    "SortedSeries",
    "check_memory_budget",
    "is_dicom_file",
    "load_hounsfield",
    "read_dicom_ct",
    "scan_dicom_files",
    "select_ct_series",
    "series_identity",
    "sort_and_check_slices",
    "tilt_warning",
]

logger = logging.getLogger(__name__)

MIN_SLICES = 3
"""Fewest slices a CT series may have."""
ORIENTATION_TOLERANCE = 1e-4
"""Largest difference of any ImageOrientationPatient cosine between slices."""
PIXEL_SPACING_TOLERANCE_MM = 1e-3
"""Largest PixelSpacing difference between slices (mm)."""
DUPLICATE_TOLERANCE_MM = 0.01
"""Two slices closer than this along the normal are duplicates (mm)."""
SPACING_TOLERANCE_MM = 0.01
SPACING_TOLERANCE_FRACTION = 0.01
"""A slice may sit ``max(0.01 mm, 1 % of the step)`` off its place on the regular grid."""
IN_PLANE_TOLERANCE_PIXELS = 0.1
"""A slice may sit this many (smallest) pixel spacings off the stacking line (tilt check)."""

_MAX_LISTED = 10


@dataclass(frozen=True)
class SortedSeries:
    """The slices of one CT series in k order and the grid they span."""

    headers: tuple[DicomHeader, ...]
    geometry: Geometry
    shear: Shear | None = None
    """Set for a gantry-tilted series: how to shift each image onto ``geometry``."""


def read_dicom_ct(
    path: str | os.PathLike[str],
    *,
    series_uid: str | None,
    memory_budget_bytes: int,
) -> tuple[Volume, SeriesIdentity, tuple[str, ...]]:
    """Read one CT series from a folder (searched recursively) or a single DICOM file.

    Returns:
        ``(volume, identity, warnings)``: the float32 HU volume (z, y, x) on its LPS grid, the
        series identity (slices in k order) and human-readable warnings.

    Raises:
        InputError, NotCTError, SeriesSelectionError, GeometryError, MemoryBudgetError: see the
        module docstring.
    """
    source = Path(path)
    single_file = source.is_file()
    scan = scan_dicom_files(source)
    warnings = list(scan_warnings(scan))
    chosen, selection_warnings = select_ct_series(scan, series_uid)
    warnings.extend(selection_warnings)
    hint = (
        "; give the folder that holds the whole series, not one of its files" if single_file else ""
    )
    series = sort_and_check_slices(chosen, hint=hint)
    if series.shear is not None:
        warnings.append(tilt_warning(series.shear))
    check_memory_budget(series.geometry.shape_zyx, memory_budget_bytes, str(source))
    ct_hu = load_hounsfield(series)
    identity = series_identity(series, source)
    if identity.generated_uids:
        warnings.append(
            "the CT series has blank or invalid UIDs ("
            + ", ".join(identity.generated_uids)
            + "); outputs reference newly generated UIDs, which report.json lists"
        )
    logger.debug("read CT series %s: %s", identity.series_instance_uid, series.geometry.describe())
    return Volume(ct_hu, series.geometry), identity, tuple(warnings)


# --- geometry -------------------------------------------------------------------------------------


def _required(header: DicomHeader, keyword: str) -> Any:
    value = header.dataset.get(keyword)
    if value is None or value == "":
        raise GeometryError(
            f"CT image {header.name} lacks {keyword}; the slice geometry cannot be known"
        )
    return value


def _floats(header: DicomHeader, keyword: str, count: int) -> np.ndarray:
    value = _required(header, keyword)
    try:
        numbers = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError) as error:
        raise GeometryError(f"CT image {header.name} has an unreadable {keyword}") from error
    if numbers.shape != (count,) or not np.all(np.isfinite(numbers)):
        raise GeometryError(f"CT image {header.name} has an invalid {keyword}: {value}")
    return numbers


def _spacing_tolerance(step_mm: float) -> float:
    return max(SPACING_TOLERANCE_MM, SPACING_TOLERANCE_FRACTION * abs(step_mm))


def _orthonormal_axes(orientation: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    row, column = orientation[:3], orientation[3:]
    if (
        abs(np.linalg.norm(row) - 1) > 1e-3
        or abs(np.linalg.norm(column) - 1) > 1e-3
        or abs(float(row @ column)) > 1e-3
    ):
        raise GeometryError(
            f"ImageOrientationPatient of {name} is not two perpendicular unit vectors: "
            f"{np.round(orientation, 6).tolist()}"
        )
    row = row / np.linalg.norm(row)
    column = column - (column @ row) * row
    return row, column / np.linalg.norm(column)


def sort_and_check_slices(headers: Sequence[DicomHeader], *, hint: str = "") -> SortedSeries:
    """Order a CT series' slices along the normal and check they form one regular grid."""
    if len(headers) < MIN_SLICES:
        raise GeometryError(
            f"too few slices: the CT series has {len(headers)} slice(s), at least {MIN_SLICES} "
            f"are needed{hint}"
        )
    first = headers[0]
    rows, columns = int(_required(first, "Rows")), int(_required(first, "Columns"))
    orientation = _floats(first, "ImageOrientationPatient", 6)
    pixel_spacing = _floats(first, "PixelSpacing", 2)
    for header in headers[1:]:
        if (int(_required(header, "Rows")), int(_required(header, "Columns"))) != (rows, columns):
            raise GeometryError(
                f"slices differ in size: {first.name} is {columns}×{rows} pixels but "
                f"{header.name} is {header.dataset.Columns}×{header.dataset.Rows}"
            )
        other = _floats(header, "ImageOrientationPatient", 6)
        if np.max(np.abs(other - orientation)) > ORIENTATION_TOLERANCE:
            raise GeometryError(
                "slices do not share one orientation (ImageOrientationPatient differs between "
                f"{first.name} and {header.name})"
            )
        other_spacing = _floats(header, "PixelSpacing", 2)
        if np.max(np.abs(other_spacing - pixel_spacing)) > PIXEL_SPACING_TOLERANCE_MM:
            raise GeometryError(
                f"slices differ in pixel spacing: {pixel_spacing.tolist()} mm in "
                f"{first.name}, {other_spacing.tolist()} mm in {header.name}"
            )
    if min(pixel_spacing) <= 0:
        raise GeometryError(f"PixelSpacing must be positive, got {pixel_spacing.tolist()} mm")
    row_axis, column_axis = _orthonormal_axes(orientation, first.name)
    normal = np.cross(row_axis, column_axis)

    positions = np.stack([_floats(h, "ImagePositionPatient", 3) for h in headers])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    ordered = [headers[i] for i in order]
    positions, along = positions[order], along[order]

    _check_duplicates(ordered, along)
    spacing_ij = (float(pixel_spacing[1]), float(pixel_spacing[0]))
    shear = _check_stacking(positions, row_axis, column_axis, normal, spacing_ij)
    step = _check_uniform_steps(along)
    origin = positions[0]
    if shear is not None:
        origin = origin_for_shear(positions[0], shear, row_axis, column_axis, spacing_ij)

    geometry = Geometry(
        shape_zyx=(len(ordered), rows, columns),
        spacing_xyz_mm=(spacing_ij[0], spacing_ij[1], step),
        origin_xyz_mm=tuple(origin),
        direction=tuple(np.column_stack([row_axis, column_axis, normal]).ravel()),
    )
    return SortedSeries(tuple(ordered), geometry, shear)


def _check_duplicates(ordered: Sequence[DicomHeader], along: np.ndarray) -> None:
    steps = np.diff(along)
    duplicates = np.flatnonzero(steps < DUPLICATE_TOLERANCE_MM)
    if duplicates.size:
        k = int(duplicates[0])
        raise GeometryError(
            f"two different CT images lie at the same position ({along[k]:.3f} mm along the "
            f"slice normal): {ordered[k].name} and {ordered[k + 1].name}; "
            f"{duplicates.size} duplicate position(s) in all"
        )


def _check_stacking(
    positions: np.ndarray,
    row_axis: np.ndarray,
    column_axis: np.ndarray,
    normal: np.ndarray,
    spacing_ij_mm: tuple[float, float],
) -> Shear | None:
    """None when the slices are stacked along the normal; the shear of a gantry-tilted series;
    raises when slices are shifted in a way no single tilt explains."""
    tolerance = IN_PLANE_TOLERANCE_PIXELS * min(spacing_ij_mm)
    shear, misfit = fit_shear(positions, row_axis, column_axis, normal, spacing_ij_mm, tolerance)
    if misfit > tolerance:
        raise GeometryError(
            "the slices are not stacked along their normal nor along one tilted line (shifted "
            f"images: a slice lies {misfit:.2f} mm off the line through the others); AutoCTV "
            "cannot tell where such images belong"
        )
    return shear


def tilt_warning(shear: Shear) -> str:
    """The warning given when a gantry-tilted series is resampled."""
    return (
        f"gantry tilt of about {shear.tilt_deg:.1f}°: the slices were shifted in plane (by up "
        f"to {shear.largest_shift_mm:.1f} mm, linear interpolation) onto an orthogonal grid; "
        "voxels outside the scanned field are filled with the series' lowest value"
    )


def _common_step(steps: np.ndarray) -> float:
    """The most frequent slice step (within tolerance); ties go to the smaller step."""
    tolerance = np.maximum(SPACING_TOLERANCE_MM, SPACING_TOLERANCE_FRACTION * steps)
    close = np.abs(steps[None, :] - steps[:, None]) <= tolerance[:, None]
    counts = close.sum(axis=1)
    best = max(range(steps.size), key=lambda i: (counts[i], -steps[i]))
    return float(np.median(steps[close[best]]))


def _check_uniform_steps(along: np.ndarray) -> float:
    """The regular slice step (mm); raises on missing slices or non-uniform spacing."""
    steps = np.diff(along)
    common = _common_step(steps)
    tolerance = _spacing_tolerance(common)
    missing: list[float] = []
    irregular = False
    for k, step in enumerate(steps):
        multiple = round(step / common)
        if multiple <= 1:
            irregular |= abs(step - common) > tolerance
        elif abs(step - multiple * common) <= tolerance * multiple:
            missing.extend(along[k] + common * np.arange(1, multiple))
        else:
            irregular = True
    if missing:
        listed = ", ".join(f"{value:.2f}" for value in missing[:_MAX_LISTED])
        more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
        raise GeometryError(
            f"missing slices: the series has gaps where {len(missing)} slice(s) of its "
            f"{common:.3g} mm spacing should be, at {listed}{more} mm along the slice normal"
        )
    regular = (along[-1] - along[0]) / (along.size - 1)
    deviation = np.abs(along - (along[0] + regular * np.arange(along.size)))
    if irregular or float(deviation.max()) > _spacing_tolerance(regular):
        raise GeometryError(
            f"slice spacing is not uniform: steps between neighbouring slices range from "
            f"{steps.min():.3f} to {steps.max():.3f} mm (allowed ±{tolerance:.3f} mm); "
            "AutoCTV does not resample irregular series"
        )
    return float(regular)


# --- memory and pixels ----------------------------------------------------------------------------


def check_memory_budget(shape_zyx: Sequence[int], budget_bytes: int, source: str) -> None:
    """Raise :class:`MemoryBudgetError` when a float32 ``shape_zyx`` volume exceeds the budget."""
    needed = int(np.prod([int(n) for n in shape_zyx], dtype=np.int64)) * 4
    if needed > budget_bytes:
        z, y, x = (int(n) for n in shape_zyx)
        raise MemoryBudgetError(
            f"the CT {source} needs {needed / 2**20:.1f} MiB ({x}×{y}×{z} voxels as float32), "
            f"more than the memory budget of {budget_bytes / 2**20:.1f} MiB; raise the budget "
            "or crop the series"
        )


def load_hounsfield(series: SortedSeries) -> np.ndarray:
    """Pixel data of every slice in k order as float32 HU (z, y, x), read once per file.

    RescaleSlope and RescaleIntercept come from each image's header (for a frame of a
    multi-frame image, from its Pixel Value Transformation functional group). A gantry-tilted
    series is resampled onto ``series.geometry`` (see :mod:`AutoCTVLib.io.dicom_tilt`).
    """
    shape = series.geometry.shape_zyx
    ct_hu = np.empty(shape, dtype=np.float32)
    frames = FramePixels()
    for k, header in enumerate(series.headers):
        stored = _stored_pixels(header, frames)
        if stored.shape != shape[1:]:
            raise GeometryError(
                f"pixel data of {header.name} has shape {stored.shape}, expected "
                f"{shape[1]}×{shape[2]} (Rows×Columns)"
            )
        try:
            slope = float(header.dataset.get("RescaleSlope", 1) or 1)
            intercept = float(header.dataset.get("RescaleIntercept", 0) or 0)
        except (TypeError, ValueError):
            slope = intercept = float("nan")
        if not (np.isfinite(slope) and np.isfinite(intercept)):
            raise InputError(f"{header.name} has an invalid RescaleSlope/RescaleIntercept")
        if slope == 1.0:
            ct_hu[k] = stored
            if intercept:
                ct_hu[k] += np.float32(intercept)
        else:
            ct_hu[k] = stored * slope + intercept
    if series.shear is not None:
        ct_hu = resample_sheared(ct_hu, series.shear)
    return ct_hu


def _stored_pixels(header: DicomHeader, frames: FramePixels) -> np.ndarray:
    """The stored values of one image (or frame), (rows, columns)."""
    try:
        with quiet_decoding():
            if header.frame_index is not None:
                return frames.frame(header.path, header.frame_index)
            return np.asarray(read_dicom(header.path, header_only=False).pixel_array)
    except Exception as error:  # decoding failures depend on the transfer syntax
        meta = getattr(header.dataset, "file_meta", None)
        syntax = str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""
        raise InputError(
            f"cannot read the pixel data of {header.name} (transfer syntax "
            f"{class_name(syntax) if syntax else 'unknown'}): {_one_line(error)}"
        ) from error


def _one_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines)[:300] or type(error).__name__


def series_identity(series: SortedSeries, source: Path) -> SeriesIdentity:
    """Patient, study, series and frame-of-reference identity, slices in k order.

    Blank or invalid study, series, frame-of-reference and SOP instance UIDs are replaced by
    generated ones (:mod:`AutoCTVLib.io.dicom_uids`), named in ``generated_uids``; SOP class and
    instance UIDs taken from the file meta are named in ``uids_from_file_meta``.
    """
    headers = series.headers
    first = headers[0].dataset
    series_uid = headers[0].series_uid
    frames = {dataset_uid(h.dataset, "FrameOfReferenceUID") for h in headers} - {""}
    if len(frames) > 1:
        raise InputError(
            f"the slices of CT series {series_uid or '?'} belong to "
            f"{len(frames)} different frames of reference (FrameOfReferenceUID)"
        )

    def text(keyword: str) -> str:
        return str(first.get(keyword, "") or "")

    generated: list[str] = []
    from_meta: list[str] = []
    study_uid = dataset_uid(first, "StudyInstanceUID")
    if not study_uid:
        study_uid = related_uid("study", series_uid)
        generated.append("StudyInstanceUID")
    if not dataset_uid(first, "SeriesInstanceUID"):
        generated.append("SeriesInstanceUID")
    if any(h.generated_instance_uid for h in headers):
        generated.append("SOPInstanceUID")
    frame_uid = next(iter(frames)) if frames else ""
    if not frame_uid:
        frame_uid = related_uid("frame-of-reference", series_uid)
        generated.append("FrameOfReferenceUID")
    if any(h.sop_class_inferred for h in headers):
        generated.append("SOPClassUID")
    for keyword in ("SOPClassUID", "SOPInstanceUID"):
        if any(uid_with_fallback(h.dataset, keyword)[1] == "file meta" for h in headers):
            from_meta.append(keyword)

    try:
        series_number = int(first.get("SeriesNumber") or 0)
    except (TypeError, ValueError):
        series_number = 0
    slices = tuple(
        SliceRef(
            sop_class_uid=header.sop_class_uid,
            sop_instance_uid=header.sop_instance_uid,
            position_lps_mm=_slice_position(series, k),
            frame_number=None if header.frame_index is None else header.frame_index + 1,
            source_file=str(header.path),
        )
        for k, header in enumerate(headers)
    )
    return SeriesIdentity(
        patient_id=text("PatientID"),
        patient_name=text("PatientName"),
        patient_sex=text("PatientSex"),
        patient_birth_date=text("PatientBirthDate"),
        study_instance_uid=study_uid,
        study_id=text("StudyID"),
        study_date=text("StudyDate"),
        study_time=text("StudyTime"),
        accession_number=text("AccessionNumber"),
        referring_physician_name=text("ReferringPhysicianName"),
        study_description=text("StudyDescription"),
        series_instance_uid=series_uid,
        series_number=series_number,
        series_description=text("SeriesDescription"),
        frame_of_reference_uid=frame_uid,
        modality=text("Modality") or "CT",
        slices=slices,
        source=str(source),
        generated_uids=tuple(generated),
        uids_from_file_meta=tuple(from_meta),
    )


def _slice_position(series: SortedSeries, k: int) -> tuple[float, float, float]:
    """Image k's ImagePositionPatient; for a tilted series, where slice k lies on the grid."""
    if series.shear is None:
        return tuple(float(v) for v in series.headers[k].dataset.ImagePositionPatient)
    corner = series.geometry.index_to_physical(np.asarray([[0.0, 0.0, float(k)]]))[0]
    return tuple(float(v) for v in corner)
