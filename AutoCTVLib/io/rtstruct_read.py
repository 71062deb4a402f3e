"""Read a DICOM RT Structure Set, choose an ROI by name, and rasterise it onto a CT grid.

:func:`read_rtstruct` returns a :class:`StructureSet`: every ROI with its contours in LPS mm and
the references (frame of reference, CT series, CT images) the file declares.

:func:`match_roi` picks one ROI name for a requested name or pattern (see its docstring for the
alias rules, e.g. "CTV" also finds "CTV_45Gy" or "CTVp" but never "PTV" or the nodal "CTVn").

:func:`rasterise_roi` turns an ROI into a boolean mask (z, y, x) on a given grid: contour points
are mapped to continuous (i, j, k) indices with ``geometry.physical_to_index``, each planar
contour is assigned to the slice nearest to its k, and all contours of a slice are combined by
the even-odd rule at pixel centres (:func:`AutoCTVLib.io.contours.polygons_to_mask`), so holes
drawn as separate contours stay empty. Contours that cannot be placed (off the slices by more
than the tolerance, outside the grid, not parallel to the slices, fewer than three points, not
closed) are skipped and reported in :attr:`RasterisedROI.warnings`; an ROI none of whose
contours can be placed raises :class:`~AutoCTVLib.errors.InputError`.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import RTStructureSetStorage

from AutoCTVLib.errors import InputError, ReferenceMismatchError, ROINotFoundError
from AutoCTVLib.io.contours import lps_to_index, polygons_to_mask
from AutoCTVLib.io.identity import SeriesIdentity
from AutoCTVLib.volume import Geometry

logger = logging.getLogger(__name__)

_CONTOUR_DATA_TAG = 0x30060050
#: Contour geometric types that enclose an area (CLOSED_PLANAR_XOR is combined like the others).
_AREA_TYPES = frozenset({"CLOSED_PLANAR", "CLOSED_PLANAR_XOR"})
#: Largest spread of a contour's k index (in slice spacings) still counted as parallel to the
#: CT slices.
PLANARITY_TOLERANCE_SLICES = 0.1


@dataclass(frozen=True)
class Contour:
    """One contour of an ROI.

    Attributes:
        points_lps_mm: (N, 3) float array of vertices in LPS mm (implicitly closed).
        geometric_type: ContourGeometricType, e.g. "CLOSED_PLANAR", "POINT", "OPEN_PLANAR".
        referenced_sop_instance_uids: the images named in its Contour Image Sequence.
    """

    points_lps_mm: np.ndarray
    geometric_type: str = "CLOSED_PLANAR"
    referenced_sop_instance_uids: tuple[str, ...] = ()


@dataclass(frozen=True)
class StructureROI:
    """One ROI: Structure Set ROI, ROI Contour and RT ROI Observations items joined by number.

    ``color_rgb`` is None when the file gives no display colour; ``interpreted_type`` is "" when
    it gives none.
    """

    number: int
    name: str
    color_rgb: tuple[int, int, int] | None
    interpreted_type: str
    frame_of_reference_uid: str
    contours: tuple[Contour, ...]
    generation_algorithm: str = ""


@dataclass(frozen=True)
class StructureSet:
    """What an RTSTRUCT file holds and what it refers to.

    Attributes:
        rois: ROIs in file order.
        frame_of_reference_uids: frames of reference listed in the Referenced Frame of Reference
            Sequence (falling back to the ROIs' own references).
        referenced_series_uids: CT (image) series listed under the referenced frames of reference.
        referenced_sop_instance_uids: images listed there (all series together).
        patient_id, patient_name, study_instance_uid: the patient and study the file belongs to.
        series_instance_uid, sop_instance_uid: the RTSTRUCT's own identity.
        structure_set_label: StructureSetLabel.
        source: the file it was read from.
    """

    rois: tuple[StructureROI, ...]
    frame_of_reference_uids: tuple[str, ...]
    referenced_series_uids: tuple[str, ...]
    referenced_sop_instance_uids: tuple[str, ...]
    patient_id: str
    patient_name: str
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    structure_set_label: str = ""
    source: str = ""

    @property
    def roi_names(self) -> list[str]:
        """ROI names in file order."""
        return [roi.name for roi in self.rois]

    def roi(self, name_or_pattern: str) -> StructureROI:
        """The ROI chosen by :func:`match_roi` for ``name_or_pattern``."""
        chosen = match_roi(self.roi_names, name_or_pattern)
        return next(roi for roi in self.rois if roi.name == chosen)


@dataclass(frozen=True)
class RasterisedROI:
    """Result of :func:`rasterise_roi_detailed`.

    Attributes:
        mask_zyx: bool array on the requested grid, indexed (z, y, x).
        roi_name: the ROI actually rasterised (after name matching).
        contours_used: contours placed on a slice.
        contours_skipped: contours left out (each explained in ``warnings``).
        warnings: one plain sentence per problem found.
    """

    mask_zyx: np.ndarray
    roi_name: str
    contours_used: int
    contours_skipped: int
    warnings: tuple[str, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------------------------
# Reading


def read_rtstruct(path: str | os.PathLike[str]) -> StructureSet:
    """Read an RT Structure Set file.

    Raises:
        InputError: the file is missing, not DICOM, not an RTSTRUCT, or lacks its ROI list.
    """
    ds = _read_dicom(path)

    sop_class = str(ds.get("SOPClassUID", ""))
    modality = str(ds.get("Modality", ""))
    if sop_class != RTStructureSetStorage and modality != "RTSTRUCT":
        kind = modality or "non-image DICOM"
        raise InputError(f"{path} is a {kind} file, not an RTSTRUCT (RT Structure Set)")
    if "StructureSetROISequence" not in ds:
        raise InputError(f"RTSTRUCT {path} has no Structure Set ROI Sequence (no ROI list)")

    frames, series, images = _declared_references(ds)
    rois = _read_rois(ds, path)
    if not frames:
        frames = tuple(
            dict.fromkeys(r.frame_of_reference_uid for r in rois if r.frame_of_reference_uid)
        )
    return StructureSet(
        rois=tuple(rois),
        frame_of_reference_uids=frames,
        referenced_series_uids=series,
        referenced_sop_instance_uids=images,
        patient_id=str(ds.get("PatientID", "")),
        patient_name=str(ds.get("PatientName", "")),
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
        series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        structure_set_label=str(ds.get("StructureSetLabel", "")),
        source=os.fspath(path),
    )


def _read_dicom(path: str | os.PathLike[str]) -> Dataset:
    """Read a DICOM file, also one without the 128-byte preamble (older exports)."""
    try:
        try:
            return pydicom.dcmread(os.fspath(path))
        except InvalidDicomError:
            with warnings.catch_warnings():  # pydicom warns while guessing the encoding
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(os.fspath(path), force=True)
    except FileNotFoundError as error:
        raise InputError(f"RTSTRUCT file {path} does not exist") from error
    except IsADirectoryError as error:
        raise InputError(f"{path} is a folder; give the RTSTRUCT file itself") from error
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError) as error:
        raise InputError(f"{path} is not a readable DICOM file ({error})") from error
    try:
        readable = "SOPClassUID" in ds or "Modality" in ds
    except Exception:  # a forced read of a non-DICOM file can fail on first access
        readable = False
    if not readable:
        raise InputError(f"{path} is not a readable DICOM file")
    return ds


def _declared_references(ds: Dataset) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Frames of reference, series and image UIDs from the Referenced Frame of Reference Seq."""
    frames: dict[str, None] = {}
    series: dict[str, None] = {}
    images: dict[str, None] = {}
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        if frame.get("FrameOfReferenceUID"):
            frames[str(frame.FrameOfReferenceUID)] = None
        for study in frame.get("RTReferencedStudySequence", []):
            for item in study.get("RTReferencedSeriesSequence", []):
                if item.get("SeriesInstanceUID"):
                    series[str(item.SeriesInstanceUID)] = None
                for image in item.get("ContourImageSequence", []):
                    if image.get("ReferencedSOPInstanceUID"):
                        images[str(image.ReferencedSOPInstanceUID)] = None
    return tuple(frames), tuple(series), tuple(images)


def _read_rois(ds: Dataset, path: str | os.PathLike[str]) -> list[StructureROI]:
    contours_by_number: dict[int, tuple[tuple[int, int, int] | None, tuple[Contour, ...]]] = {}
    for item in ds.get("ROIContourSequence", []):
        number = _int_or_none(item.get("ReferencedROINumber"))
        if number is None:
            continue
        color = _color(item.get("ROIDisplayColor"))
        contours = tuple(_read_contour(c, path) for c in item.get("ContourSequence", []))
        contours_by_number[number] = (color, contours)
    types_by_number: dict[int, str] = {}
    for item in ds.get("RTROIObservationsSequence", []):
        number = _int_or_none(item.get("ReferencedROINumber"))
        if number is not None:
            types_by_number[number] = str(item.get("RTROIInterpretedType", "") or "")

    rois = []
    for item in ds.StructureSetROISequence:
        number = _int_or_none(item.get("ROINumber"))
        if number is None:
            raise InputError(f"RTSTRUCT {path} has an ROI without ROI Number")
        color, contours = contours_by_number.get(number, (None, ()))
        frame_uid = str(item.get("ReferencedFrameOfReferenceUID", "") or "")
        rois.append(
            StructureROI(
                number=number,
                name=str(item.get("ROIName", "") or "").strip(),
                color_rgb=color,
                interpreted_type=types_by_number.get(number, ""),
                frame_of_reference_uid=frame_uid,
                contours=contours,
                generation_algorithm=str(item.get("ROIGenerationAlgorithm", "") or ""),
            )
        )
    return rois


def _read_contour(item: Dataset, path: str | os.PathLike[str]) -> Contour:
    element = item.get_item(_CONTOUR_DATA_TAG)
    if element is None or element.value in (None, b"", ""):
        values = np.zeros(0)
    elif element.is_raw:  # decode the decimal strings in one go (fast for large files)
        text = bytes(element.value).decode("ascii", errors="replace").strip(" \x00")
        try:
            values = np.array(text.split("\\"), dtype=float)
        except ValueError as error:
            raise InputError(f"RTSTRUCT {path} has unreadable Contour Data: {error}") from error
    else:
        values = np.asarray(item.ContourData, dtype=float).ravel()
    if values.size % 3:
        raise InputError(
            f"RTSTRUCT {path} has Contour Data with {values.size} numbers, not (x, y, z) triples"
        )
    images = tuple(
        str(image.ReferencedSOPInstanceUID)
        for image in item.get("ContourImageSequence", [])
        if image.get("ReferencedSOPInstanceUID")
    )
    return Contour(
        points_lps_mm=values.reshape(-1, 3),
        geometric_type=str(item.get("ContourGeometricType", "") or "").upper(),
        referenced_sop_instance_uids=images,
    )


def _int_or_none(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _color(value: object) -> tuple[int, int, int] | None:
    try:
        rgb = tuple(int(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return (rgb[0], rgb[1], rgb[2]) if len(rgb) == 3 else None


# --------------------------------------------------------------------------------------------
# ROI name matching

_GLOB_CHARACTERS = frozenset("*?[")
_REGEX_PREFIX = "re:"
_SEPARATORS = re.compile(r"[\s_\-.]+")
#: What may follow the requested name for an alias match (separators removed, lower case):
#: plain numbers ("CTV1", "CTV 45"), doses ("CTV_45Gy", "CTV5040cGy", "CTV_50.4Gy") and the
#: primary-target markers p/prim/primary/t/total, in any order.
_PRIMARY_SUFFIX = re.compile(r"(?:\d+(?:[.,]\d+)?(?:c?gy)?|p|prim|primary|t|total)*")


def match_roi(names: Iterable[str], pattern: str) -> str:
    """Choose exactly one ROI name for a requested name or pattern.

    Rules, tried in order; the first rule that finds anything decides:

    1. Exact name, ignoring case and surrounding spaces.
    2. A pattern: ``re:<regex>`` (full match, case-insensitive) or a glob with ``*``, ``?``,
       ``[...]`` (case-insensitive). Patterns use only this rule.
    3. Aliases of a plain name: an ROI whose name, ignoring case and separators (space, ``_``,
       ``-``, ``.``), starts with the requested name followed only by numbers, doses or primary
       markers (see ``_PRIMARY_SUFFIX``). So "CTV" finds "CTV1", "CTV 45", "CTV_45Gy", "ctv_p",
       "CTVp", "CTV_T"; never "PTV", "ITV", "zCTV" or the nodal "CTV_N", "CTVn", "CTV_LN".
       Nodal targets are found by asking for them: "CTV_N" finds "CTVn", "CTV N 45Gy".

    Raises:
        ROINotFoundError: nothing matches (the message lists every ROI name) or several names
            match at the deciding rule (the message lists the candidates).
    """
    names = list(names)
    wanted = pattern.strip()
    if not wanted:
        raise ROINotFoundError("no ROI name was given")

    exact = [n for n in names if n.strip().casefold() == wanted.casefold()]
    if exact:
        return _one(exact, pattern)

    if wanted.lower().startswith(_REGEX_PREFIX):
        try:
            regex = re.compile(wanted[len(_REGEX_PREFIX) :], re.IGNORECASE)
        except re.error as error:
            raise ROINotFoundError(
                f"ROI pattern {pattern!r} is not a valid regex: {error}"
            ) from None
        return _one([n for n in names if regex.fullmatch(n.strip())], pattern, names)
    if _GLOB_CHARACTERS & set(wanted):
        glob = wanted.casefold()
        return _one(
            [n for n in names if fnmatch.fnmatchcase(n.strip().casefold(), glob)], pattern, names
        )

    key = _compact(wanted)
    aliases = [
        n
        for n in names
        if _compact(n).startswith(key) and _PRIMARY_SUFFIX.fullmatch(_compact(n)[len(key) :])
    ]
    return _one(aliases, pattern, names)


def _compact(name: str) -> str:
    return _SEPARATORS.sub("", name.strip().casefold())


def _one(candidates: Sequence[str], pattern: str, all_names: Sequence[str] = ()) -> str:
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        listed = ", ".join(repr(n) for n in candidates)
        raise ROINotFoundError(
            f"ROI name {pattern!r} is ambiguous: {listed} all match; give the exact ROI name"
        )
    listed = ", ".join(repr(n) for n in all_names) or "(none)"
    raise ROINotFoundError(f"no ROI matches {pattern!r}; the RTSTRUCT holds: {listed}")


# --------------------------------------------------------------------------------------------
# Rasterisation


def rasterise_roi(
    structure_set: StructureSet,
    roi: str | int,
    geometry: Geometry,
    ct: SeriesIdentity | None = None,
    *,
    slice_tolerance: float = 0.5,
) -> np.ndarray:
    """Boolean mask (z, y, x) of one ROI on ``geometry``; see :func:`rasterise_roi_detailed`."""
    return rasterise_roi_detailed(
        structure_set, roi, geometry, ct, slice_tolerance=slice_tolerance
    ).mask_zyx


def rasterise_roi_detailed(
    structure_set: StructureSet,
    roi: str | int,
    geometry: Geometry,
    ct: SeriesIdentity | None = None,
    *,
    slice_tolerance: float = 0.5,
) -> RasterisedROI:
    """Rasterise one ROI onto ``geometry`` by the even-odd rule at voxel centres.

    Args:
        structure_set: from :func:`read_rtstruct`.
        roi: ROI number, or a name/pattern resolved with :func:`match_roi`.
        geometry: target grid (normally the CT the RTSTRUCT was drawn on).
        ct: when given, the RTSTRUCT must reference this CT's frame of reference and series.
        slice_tolerance: largest distance, as a fraction of the slice spacing, between a
            contour's plane and the nearest slice centre (0.5 accepts every contour inside
            the grid's slab; a contour half-way between two slices goes to the upper one).

    Returns:
        A :class:`RasterisedROI` with the mask and the warnings about skipped contours.

    Raises:
        ROINotFoundError: no single ROI matches ``roi``.
        ReferenceMismatchError: ``ct`` is given and its frame of reference or series UID is not
            the one the RTSTRUCT refers to.
        InputError: the ROI has contours but none lies on the grid's slices.
    """
    if not 0.0 <= slice_tolerance <= 0.5:
        raise ValueError(f"slice_tolerance must lie in [0, 0.5], got {slice_tolerance}")
    chosen = _choose_roi(structure_set, roi)
    if ct is not None:
        _check_references(structure_set, chosen, ct)

    _, n_rows, n_cols = geometry.shape_zyx
    polygons_by_slice: dict[int, list[np.ndarray]] = {}
    problems: list[str] = []
    slice_of_uid = {s.sop_instance_uid: k for k, s in enumerate(ct.slices)} if ct else {}
    skipped = 0
    for number, contour in enumerate(chosen.contours, start=1):
        problem, k, points_ij = _place_contour(contour, geometry, slice_tolerance)
        if problem:
            problems.append(f"ROI {chosen.name!r} contour {number}: {problem}; skipped")
            skipped += 1
            continue
        polygons_by_slice.setdefault(k, []).append(points_ij)
        named = [slice_of_uid[u] for u in contour.referenced_sop_instance_uids if u in slice_of_uid]
        if named and k not in named:
            problems.append(
                f"ROI {chosen.name!r} contour {number} lies on slice {k} but names the image "
                f"of slice {named[0]}; its position was used"
            )

    mask_zyx = np.zeros(geometry.shape_zyx, dtype=bool)
    for k, polygons in polygons_by_slice.items():
        mask_zyx[k] = polygons_to_mask(polygons, (n_rows, n_cols))
    used = len(chosen.contours) - skipped
    if chosen.contours and used == 0:
        raise InputError(
            f"none of the {len(chosen.contours)} contours of ROI {chosen.name!r} lies on the "
            f"slices of this CT ({geometry.describe()}); the RTSTRUCT belongs to another scan"
        )
    if not chosen.contours:
        problems.append(f"ROI {chosen.name!r} has no contours; its mask is empty")
    for message in problems:
        logger.warning("%s", message)
    return RasterisedROI(mask_zyx, chosen.name, used, skipped, tuple(problems))


def _choose_roi(structure_set: StructureSet, roi: str | int) -> StructureROI:
    if isinstance(roi, (int, np.integer)):
        for candidate in structure_set.rois:
            if candidate.number == roi:
                return candidate
        numbers = ", ".join(f"{r.number} {r.name!r}" for r in structure_set.rois) or "(none)"
        raise ROINotFoundError(f"no ROI number {roi}; the RTSTRUCT holds: {numbers}")
    return structure_set.roi(roi)


def _check_references(
    structure_set: StructureSet, chosen: StructureROI, ct: SeriesIdentity
) -> None:
    frames = set(structure_set.frame_of_reference_uids)
    if chosen.frame_of_reference_uid:
        frames.add(chosen.frame_of_reference_uid)
    if frames and ct.frame_of_reference_uid not in frames:
        listed = ", ".join(sorted(frames))
        raise ReferenceMismatchError(
            f"the RTSTRUCT is drawn in frame of reference {listed} but the CT series "
            f"{ct.series_instance_uid} is in frame of reference {ct.frame_of_reference_uid}"
        )
    series = structure_set.referenced_series_uids
    if series and ct.series_instance_uid not in series:
        raise ReferenceMismatchError(
            f"the RTSTRUCT refers to CT series {', '.join(series)} but the CT given is series "
            f"{ct.series_instance_uid}"
        )
    if not series:
        ct_images = {s.sop_instance_uid for s in ct.slices}
        named = {u for c in chosen.contours for u in c.referenced_sop_instance_uids}
        if named and not named & ct_images:
            raise ReferenceMismatchError(
                f"the contours of ROI {chosen.name!r} name none of the images of CT series "
                f"{ct.series_instance_uid}"
            )


def _place_contour(
    contour: Contour, geometry: Geometry, slice_tolerance: float
) -> tuple[str, int, np.ndarray]:
    """(problem, slice k, (N, 2) index-space points); ``problem`` is "" when the contour fits."""
    empty = np.zeros((0, 2))
    if contour.geometric_type and contour.geometric_type not in _AREA_TYPES:
        return f"type {contour.geometric_type} encloses no area", -1, empty
    if len(contour.points_lps_mm) < 3:
        return f"only {len(contour.points_lps_mm)} point(s)", -1, empty
    ijk = lps_to_index(contour.points_lps_mm, geometry)
    k_values = ijk[:, 2]
    spread = float(k_values.max() - k_values.min())
    if spread > PLANARITY_TOLERANCE_SLICES:
        return (
            f"not parallel to the CT slices (spans {spread:.2f} slice spacings)",
            -1,
            empty,
        )
    k_centre = float(k_values.mean())
    k = int(np.floor(k_centre + 0.5))
    off_by = abs(k_centre - k)
    n_slices = geometry.shape_zyx[0]
    if not 0 <= k < n_slices:
        return f"lies outside the CT's slices (at slice position {k_centre:.2f})", -1, empty
    if off_by > slice_tolerance + 1e-9:
        spacing_k = geometry.spacing_xyz_mm[2]
        return (
            f"lies {off_by * spacing_k:.2f} mm from the centre of slice {k} (tolerance "
            f"{slice_tolerance * spacing_k:.2f} mm)",
            -1,
            empty,
        )
    return "", k, ijk[:, :2]
