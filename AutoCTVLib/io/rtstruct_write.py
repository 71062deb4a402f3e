"""Write binary masks on a CT grid as a DICOM RT Structure Set (what planning systems import).

Each ROI's mask (indexed z, y, x on the CT's exact grid) is traced slice by slice with
:func:`AutoCTVLib.io.contours.mask_to_polygons`: one ``CLOSED_PLANAR`` contour per island outline
and one per hole outline, vertices on pixel corners, converted to LPS millimetres with the grid's
``index_to_physical``. Planning systems combine the contours of a slice by the even-odd rule, which
reproduces the mask exactly at the CT's pixel centres (oblique and flipped grids included).

The file references the CT series it was drawn on: patient and study are copied from the CT's
:class:`~AutoCTVLib.io.identity.SeriesIdentity`; the Referenced Frame of Reference Sequence lists
every CT image; each contour names the image (SOP Class/Instance UID) of its slice. The result is
a new series (Modality RTSTRUCT) in the CT's study, written atomically.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    RTStructureSetStorage,
    generate_uid,
)

from AutoCTVLib import __version__
from AutoCTVLib.compat import save_dicom_file
from AutoCTVLib.errors import OutputError, ReferenceMismatchError
from AutoCTVLib.io.atomic import atomic_path
from AutoCTVLib.io.contours import mask_volume_to_polygons, polygons_to_lps
from AutoCTVLib.io.identity import SeriesIdentity
from AutoCTVLib.volume import Geometry

logger = logging.getLogger(__name__)

#: RT ROI Interpreted Type defined terms (DICOM PS3.3 C.8.8.8.1); "" is allowed (type 2).
INTERPRETED_TYPES = frozenset(
    {
        "EXTERNAL",
        "PTV",
        "CTV",
        "GTV",
        "TREATED_VOLUME",
        "IRRAD_VOLUME",
        "OAR",
        "BOLUS",
        "AVOIDANCE",
        "ORGAN",
        "MARKER",
        "REGISTRATION",
        "ISOCENTER",
        "CONTRAST_AGENT",
        "CAVITY",
        "BRACHY_CHANNEL",
        "BRACHY_ACCESSORY",
        "BRACHY_SRC_APP",
        "BRACHY_CHNL_SHLD",
        "SUPPORT",
        "FIXATION",
        "DOSE_REGION",
        "CONTROL",
        "DOSE_MEASUREMENT",
    }
)
GENERATION_ALGORITHMS = frozenset({"AUTOMATIC", "SEMIAUTOMATIC", "MANUAL"})

#: Referenced SOP Class UID for the study in RT Referenced Study Sequence (Detached Study
#: Management, as the RT Structure Set IOD prescribes).
_STUDY_COMPONENT_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"
_CONTOUR_DATA_TAG = Tag(0x3006, 0x0050)
_TRAILING_ZEROS = re.compile(r"\.?0+(?=\\|$)")
_MAX_ABS_COORDINATE_MM = 1e9  # keeps every formatted coordinate within DS's 16 characters
#: Largest distance (mm) tolerated between a CT image's position and the grid's slice centre.
SLICE_POSITION_TOLERANCE_MM = 0.1


@dataclass(frozen=True)
class RoiSpec:
    """One ROI to export.

    Attributes:
        name: ROI name shown in the planning system (≤ 64 characters, unique in the file).
        mask_zyx: boolean mask indexed (z, y, x) on the CT grid.
        color_rgb: display colour, three integers 0–255.
        interpreted_type: RT ROI Interpreted Type, e.g. "CTV", "ORGAN", "AVOIDANCE".
        generation_algorithm: "AUTOMATIC", "SEMIAUTOMATIC" or "MANUAL".
        generation_description: free text (≤ 64 characters), e.g. model name and version.
    """

    name: str
    mask_zyx: np.ndarray
    color_rgb: tuple[int, int, int]
    interpreted_type: str = "ORGAN"
    generation_algorithm: str = "AUTOMATIC"
    generation_description: str = ""


def write_rtstruct(
    rois: Sequence[RoiSpec],
    ct: SeriesIdentity,
    geometry: Geometry,
    path: str | os.PathLike[str],
    *,
    series_description: str,
    structure_set_label: str,
    uid_seed: str | None = None,
    series_number: int | None = None,
    provenance: Mapping[str, str] | None = None,
    created: datetime | None = None,
    overwrite: bool = True,
    saddle_cut: float = 0.1,
) -> None:
    """Write ``rois`` as an RT Structure Set referencing the CT series ``ct`` on ``geometry``.

    Args:
        rois: ROIs in the order they get ROI numbers 1, 2, ...; masks must have
            ``geometry.shape_zyx``. An empty mask gives an ROI without contours.
        ct: identity of the CT series the masks were drawn on; ``ct.slices[k]`` is slice k.
        geometry: the CT grid (LPS mm); contour points are ``geometry.index_to_physical``.
        path: output file (written atomically).
        series_description: SeriesDescription (≤ 64 characters), e.g. model and version.
        structure_set_label: StructureSetLabel (≤ 16 characters, longer is truncated).
        uid_seed: when given, the series and instance UIDs derive from it, the CT series and the
            content, so the same input gives the same UIDs; otherwise they are random.
        series_number: SeriesNumber; defaults to the CT's series number + 1000.
        provenance: key/value pairs recorded in StructureSetDescription (model name, version,
            sha256, settings, input identity).
        created: timestamp written into the date/time attributes (default: now).
        overwrite: replace an existing file at ``path``.
        saddle_cut: see :func:`AutoCTVLib.io.contours.mask_to_polygons`.

    Raises:
        ReferenceMismatchError: ``ct`` does not describe ``geometry`` (slice count or positions).
        OutputError: an ROI name is empty, too long or repeated, or the file cannot be written.
        ValueError: a mask of the wrong shape, a bad colour or interpreted type.
    """
    if not rois:
        raise ValueError("write_rtstruct needs at least one ROI")
    _check_ct_matches_geometry(ct, geometry)
    _check_rois(rois, geometry)
    when = created or datetime.now()
    content_key = _content_key(rois, ct, geometry, series_description, structure_set_label)
    series_uid = _uid(uid_seed, "series", ct.series_instance_uid, content_key)
    instance_uid = _uid(uid_seed, "instance", series_uid)

    ds = _base_dataset(ct, when, series_uid, instance_uid, series_description, series_number)
    ds.StructureSetLabel = structure_set_label[:16]
    ds.StructureSetName = structure_set_label[:64]
    if provenance:
        ds.StructureSetDescription = _provenance_text(provenance)
    ds.StructureSetDate, ds.StructureSetTime = ds.InstanceCreationDate, ds.InstanceCreationTime
    ds.InstanceNumber = 1
    ds.ReferencedFrameOfReferenceSequence = [_referenced_frame_of_reference(ct)]

    structure_items, contour_items, observation_items = [], [], []
    for number, roi in enumerate(rois, start=1):
        structure_items.append(_structure_set_roi(number, roi, ct.frame_of_reference_uid))
        contour_items.append(_roi_contour(number, roi, ct, geometry, saddle_cut))
        observation_items.append(_observation(number, roi))
    ds.StructureSetROISequence = structure_items
    ds.ROIContourSequence = contour_items
    ds.RTROIObservationsSequence = observation_items
    _enable_raw_contour_writing(ds)

    with atomic_path(path, overwrite=overwrite) as temporary:
        try:
            save_dicom_file(ds, temporary)
        except OSError as error:
            raise OutputError(f"cannot write the RTSTRUCT {path}: {error}") from error
    logger.info("wrote RTSTRUCT %s with %d ROI(s)", path, len(rois))


def _check_ct_matches_geometry(ct: SeriesIdentity, geometry: Geometry) -> None:
    """Every CT image must sit at the centre of the grid slice with the same index."""
    n_slices = geometry.shape_zyx[0]
    if len(ct.slices) != n_slices:
        raise ReferenceMismatchError(
            f"the CT series {ct.series_instance_uid} has {len(ct.slices)} images but the grid "
            f"has {n_slices} slices; the RTSTRUCT must be written on the CT it was drawn on"
        )
    positions = np.asarray([s.position_lps_mm for s in ct.slices], dtype=float)
    expected = geometry.index_to_physical(
        np.column_stack([np.zeros(n_slices), np.zeros(n_slices), np.arange(n_slices)])
    )
    offsets = np.linalg.norm(positions - expected, axis=1)
    worst = int(np.argmax(offsets))
    if offsets[worst] > SLICE_POSITION_TOLERANCE_MM:
        raise ReferenceMismatchError(
            f"CT image {worst} of series {ct.series_instance_uid} lies {offsets[worst]:.2f} mm "
            "from the grid's slice position; the CT identity and the grid do not belong together"
        )


def _check_rois(rois: Sequence[RoiSpec], geometry: Geometry) -> None:
    seen: dict[str, str] = {}
    for roi in rois:
        name = roi.name.strip()
        if not name or len(name) > 64 or "\\" in name:
            raise OutputError(
                f"ROI name {roi.name!r} cannot be written: it must be 1–64 characters without '\\'"
            )
        if name.lower() in seen:
            raise OutputError(f"ROI name {name!r} is used twice; ROI names must be unique")
        seen[name.lower()] = name
        if tuple(np.shape(roi.mask_zyx)) != geometry.shape_zyx:
            raise ValueError(
                f"mask of ROI {name!r} has shape {np.shape(roi.mask_zyx)}, "
                f"the grid {geometry.shape_zyx}"
            )
        color = tuple(roi.color_rgb)
        if len(color) != 3 or not all(0 <= int(c) <= 255 and int(c) == c for c in color):
            raise ValueError(f"colour of ROI {name!r} must be three integers 0–255, got {color}")
        if roi.interpreted_type.upper() not in INTERPRETED_TYPES | {""}:
            raise ValueError(
                f"interpreted type {roi.interpreted_type!r} of ROI {name!r} is not one of "
                f"{', '.join(sorted(INTERPRETED_TYPES))}"
            )
        if roi.generation_algorithm.upper() not in GENERATION_ALGORITHMS:
            raise ValueError(
                f"generation algorithm {roi.generation_algorithm!r} of ROI {name!r} is not one "
                f"of {', '.join(sorted(GENERATION_ALGORITHMS))}"
            )


def _content_key(
    rois: Sequence[RoiSpec],
    ct: SeriesIdentity,
    geometry: Geometry,
    series_description: str,
    structure_set_label: str,
) -> str:
    """Hash of masks, names and labels: different content never shares seeded UIDs."""
    digest = hashlib.sha256()
    digest.update(repr((geometry, ct.series_instance_uid, series_description)).encode())
    digest.update(structure_set_label.encode())
    for roi in rois:
        digest.update(repr((roi.name, tuple(roi.color_rgb), roi.interpreted_type)).encode())
        digest.update(np.packbits(np.asarray(roi.mask_zyx, dtype=bool)).tobytes())
    return digest.hexdigest()


def _uid(seed: str | None, *parts: str) -> str:
    """A random UID, or one derived from ``seed`` and ``parts`` when a seed is given."""
    if seed is None:
        return generate_uid()
    return generate_uid(entropy_srcs=["autoctv-rtstruct", seed, *parts])


def _base_dataset(
    ct: SeriesIdentity,
    when: datetime,
    series_uid: str,
    instance_uid: str,
    series_description: str,
    series_number: int | None,
) -> Dataset:
    """File meta, SOP Common, Patient, General Study, RT Series, Frame of Reference, Equipment."""
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTStructureSetStorage
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"AUTOCTV_{__version__}"[:16]

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = RTStructureSetStorage
    ds.SOPInstanceUID = instance_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    # Patient (copied from the CT)
    ds.PatientName = ct.patient_name
    ds.PatientID = ct.patient_id
    ds.PatientBirthDate = ct.patient_birth_date
    ds.PatientSex = ct.patient_sex
    # General Study (the CT's study)
    ds.StudyInstanceUID = ct.study_instance_uid
    ds.StudyDate, ds.StudyTime = ct.study_date, ct.study_time
    ds.ReferringPhysicianName = ct.referring_physician_name
    ds.StudyID = ct.study_id
    ds.AccessionNumber = ct.accession_number
    if ct.study_description:
        ds.StudyDescription = ct.study_description
    # RT Series (new)
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = ct.series_number + 1000 if series_number is None else int(series_number)
    ds.SeriesDescription = series_description[:64]
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.OperatorsName = ""
    # Frame of Reference (the CT's)
    ds.FrameOfReferenceUID = ct.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    # General Equipment
    ds.Manufacturer = "AutoCTV"
    ds.ManufacturerModelName = "AutoCTV"
    ds.SoftwareVersions = __version__
    return ds


def _referenced_frame_of_reference(ct: SeriesIdentity) -> Dataset:
    """Frame of reference → study → series → every CT image."""
    images = []
    for ref in ct.slices:
        image = Dataset()
        image.ReferencedSOPClassUID = ref.sop_class_uid
        image.ReferencedSOPInstanceUID = ref.sop_instance_uid
        images.append(image)
    series = Dataset()
    series.SeriesInstanceUID = ct.series_instance_uid
    series.ContourImageSequence = images
    study = Dataset()
    study.ReferencedSOPClassUID = _STUDY_COMPONENT_SOP_CLASS
    study.ReferencedSOPInstanceUID = ct.study_instance_uid
    study.RTReferencedSeriesSequence = [series]
    frame = Dataset()
    frame.FrameOfReferenceUID = ct.frame_of_reference_uid
    frame.RTReferencedStudySequence = [study]
    return frame


def _structure_set_roi(number: int, roi: RoiSpec, frame_uid: str) -> Dataset:
    item = Dataset()
    item.ROINumber = number
    item.ReferencedFrameOfReferenceUID = frame_uid
    item.ROIName = roi.name.strip()
    item.ROIGenerationAlgorithm = roi.generation_algorithm.upper()
    if roi.generation_description:
        item.ROIGenerationDescription = roi.generation_description[:64]
    return item


def _roi_contour(
    number: int, roi: RoiSpec, ct: SeriesIdentity, geometry: Geometry, saddle_cut: float
) -> Dataset:
    """ROI Contour item: colour and one CLOSED_PLANAR contour per island and per hole."""
    item = Dataset()
    item.ReferencedROINumber = number
    item.ROIDisplayColor = [int(c) for c in roi.color_rgb]
    contours = []
    polygons_by_slice = mask_volume_to_polygons(roi.mask_zyx, saddle_cut=saddle_cut)
    for k, polygons in polygons_by_slice.items():
        slice_ref = ct.slices[k]
        for polygon in polygons:
            points_lps_mm = polygons_to_lps(polygon.points_ij, k, geometry)
            contour = Dataset()
            image = Dataset()
            image.ReferencedSOPClassUID = slice_ref.sop_class_uid
            image.ReferencedSOPInstanceUID = slice_ref.sop_instance_uid
            contour.ContourImageSequence = [image]
            contour.ContourGeometricType = "CLOSED_PLANAR"
            contour.NumberOfContourPoints = len(points_lps_mm)
            contour.ContourNumber = len(contours) + 1
            contour[_CONTOUR_DATA_TAG] = _decimal_strings_element(points_lps_mm)
            contours.append(contour)
    if contours:
        item.ContourSequence = contours
    else:
        logger.warning("ROI %r is empty; it is written without contours", roi.name)
    return item


def _observation(number: int, roi: RoiSpec) -> Dataset:
    item = Dataset()
    item.ObservationNumber = number
    item.ReferencedROINumber = number
    item.RTROIInterpretedType = roi.interpreted_type.upper()
    item.ROIInterpreter = ""
    return item


def _decimal_strings_element(points_lps_mm: np.ndarray) -> RawDataElement:
    """ContourData as an already-encoded DS element (0.1 µm precision).

    Encoding the numbers once here, instead of as one pydicom value object each, keeps writing a
    large structure set fast.
    """
    values = np.asarray(points_lps_mm, dtype=float).ravel()
    if not np.all(np.isfinite(values)) or np.abs(values).max() >= _MAX_ABS_COORDINATE_MM:
        raise ValueError("contour coordinates must be finite and below 1e9 mm")
    # Four decimals (0.1 µm); "+ 0.0" turns a rounded -0 into 0; trailing zeros are dropped.
    rounded = np.round(values, 4) + 0.0
    text = "\\".join(map("{:.4f}".format, rounded.tolist()))
    text = _TRAILING_ZEROS.sub("", text)
    encoded = text.encode("ascii")
    if len(encoded) % 2:
        encoded += b" "
    return RawDataElement(_CONTOUR_DATA_TAG, "DS", len(encoded), encoded, 0, False, True)


def _enable_raw_contour_writing(ds: Dataset) -> None:
    """Mark contour items as already encoded so pydicom writes their ContourData as it is."""
    for roi_contour in ds.ROIContourSequence:
        for contour in roi_contour.get("ContourSequence", DicomSequence()):
            contour.set_original_encoding(False, True, contour._character_set)


def _provenance_text(provenance: Mapping[str, str]) -> str:
    """``key=value`` pairs separated by '; ' (StructureSetDescription is ST, ≤ 1024 chars)."""
    text = "; ".join(f"{key}={value}" for key, value in provenance.items())
    return text[:1024]
