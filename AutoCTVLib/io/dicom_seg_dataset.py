"""Assemble a one-segment binary DICOM Segmentation (PS3.3 A.51) with pydicom alone.

Modules written (PS3.3 A.51-1): Patient, General Study, General Series + Segmentation Series,
Frame of Reference, General Equipment + Enhanced General Equipment, General Image, Image Pixel,
Segmentation Image, Multi-frame Functional Groups, Multi-frame Dimension, Common Instance
Reference and SOP Common. Patient and study attributes are copied from the CT so the SEG lands
in the CT's study.

Frames: one per CT source frame that holds at least one segment pixel, in the mask's order (k
ascending). A source frame is a single-frame CT image or one frame of a multi-frame (Enhanced /
Legacy Converted Enhanced) CT, whose geometry is read from its functional groups
(:mod:`AutoCTVLib.io.dicom_seg_frames`). The shared functional groups carry the CT's
orientation, pixel spacing and slice thickness; each frame carries its source CT image
(Derivation Image; with ReferencedFrameNumber for a multi-frame source), its position (copied
from the source frame), its segment number and its dimension index (segment 1, frame position
rank).
Pixels are BitsAllocated 1, packed across frame boundaries with the first pixel in the least
significant bit (PS3.5 8.1.1), padded to an even length.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from AutoCTVLib import __version__
from AutoCTVLib.errors import InputError
from AutoCTVLib.io.dicom_seg_frames import SourceFrame, source_frames
from AutoCTVLib.terminology import CodedConcept

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
#: (121322, DCM) "Source image for image processing operation" (CID 7202).
SOURCE_IMAGE_PURPOSE = CodedConcept("121322", "DCM", "Source image for image processing operation")
#: (113076, DCM) "Segmentation" (CID 7203, image derivation).
SEGMENTATION_DERIVATION = CodedConcept("113076", "DCM", "Segmentation")
#: (123110, DCM) "Artificial Intelligence" (CID 7162, algorithm family).
ARTIFICIAL_INTELLIGENCE = CodedConcept("123110", "DCM", "Artificial Intelligence")
_LO_MAX = 64
_REGULAR_SPACING_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class SegmentSpec:
    """What the one segment is and who made it.

    Attributes:
        label: SegmentLabel (≤ 64 characters).
        description: SegmentDescription, or "" for none.
        category, segment_type: SegmentedPropertyCategory / SegmentedPropertyType codes.
        cielab: RecommendedDisplayCIELabValue as DICOM's three 16-bit integers.
        algorithm_name, algorithm_version: the model's name and version.
        algorithm_parameters: settings recorded as ``key=value`` pairs.
    """

    label: str
    description: str
    category: CodedConcept
    segment_type: CodedConcept
    cielab: tuple[int, int, int]
    algorithm_name: str
    algorithm_version: str
    algorithm_parameters: Mapping[str, str]


@dataclass(frozen=True)
class SeriesSpec:
    """The new SEG series and instance: UIDs, numbers and descriptive text."""

    series_instance_uid: str
    sop_instance_uid: str
    series_number: int
    series_description: str
    content_label: str
    content_description: str
    created: datetime


def code_item(code: CodedConcept) -> Dataset:
    """A Code Sequence item (Code Value, Coding Scheme Designator, Code Meaning)."""
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme
    item.CodeMeaning = code.meaning
    return item


def pack_frames(frames: np.ndarray) -> bytes:
    """Bit-pack binary frames (n, rows, columns) for BitsAllocated 1: pixel order row by row,
    frame after frame, first pixel in bit 0 of the first byte; padded to an even length."""
    packed = np.packbits(np.asarray(frames, dtype=bool).ravel(), bitorder="little").tobytes()
    return packed + b"\0" if len(packed) % 2 else packed


def build_segmentation(
    mask_zyx: np.ndarray,
    ct_images: Sequence[Dataset],
    segment: SegmentSpec,
    series: SeriesSpec,
    *,
    manufacturer_model_name: str,
) -> Dataset:
    """The SEG dataset (with file meta) for ``mask_zyx`` on the CT images ``ct_images``.

    Args:
        mask_zyx: bool (z, y, x); slice k belongs to the k-th source frame: ``ct_images[k]``
            for single-frame images, frame k + 1 for one multi-frame image (see
            :func:`~AutoCTVLib.io.dicom_seg_frames.source_frames`); at least one voxel set.
        ct_images: CT headers in volume order (pixel data not needed), one series.
        segment, series: what to write (see :class:`SegmentSpec`, :class:`SeriesSpec`).
        manufacturer_model_name: Enhanced General Equipment's model name (the model's name).

    Raises:
        InputError: a CT image lacks an attribute the SEG must copy (position, orientation,
            pixel spacing, UIDs).
    """
    first = ct_images[0]
    _require(
        first,
        ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "Rows", "Columns"),
    )
    frames = source_frames(ct_images)
    _require(frames[0].header, ("ImageOrientationPatient", "PixelSpacing"))
    for frame in frames:
        _require(frame.header, ("SOPClassUID", "SOPInstanceUID", "ImagePositionPatient"))
    stored = [k for k in range(len(frames)) if mask_zyx[k].any()]
    date, time = series.created.strftime("%Y%m%d"), series.created.strftime("%H%M%S")

    ds = Dataset()
    ds.file_meta = _file_meta(series.sop_instance_uid)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.SOPClassUID = SEGMENTATION_STORAGE
    ds.SOPInstanceUID = series.sop_instance_uid
    _copy_patient_and_study(first, ds)
    ds.ContentDate, ds.ContentTime = date, time
    ds.Modality = "SEG"
    ds.Manufacturer = "AutoCTV"
    ds.ManufacturerModelName = manufacturer_model_name[:_LO_MAX]
    ds.DeviceSerialNumber = "0"
    ds.SoftwareVersions = f"AutoCTVLib {__version__}"
    ds.SeriesInstanceUID = series.series_instance_uid
    ds.SeriesNumber = int(series.series_number)
    ds.SeriesDescription = series.series_description[:_LO_MAX]
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.InstanceNumber = 1
    ds.FrameOfReferenceUID = first.FrameOfReferenceUID
    ds.PositionReferenceIndicator = first.get("PositionReferenceIndicator", "") or ""
    ds.ReferencedSeriesSequence = [_referenced_series(ct_images)]
    # Image Pixel + Segmentation Image
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(first.Rows), int(first.Columns)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "00"
    ds.SegmentationType = "BINARY"
    ds.ContentLabel = series.content_label
    ds.ContentDescription = series.content_description[:_LO_MAX]
    ds.ContentCreatorName = ""
    ds.SegmentSequence = [_segment_item(segment)]
    # Multi-frame Dimension + Functional Groups
    dimension_uid = generate_uid(entropy_srcs=[series.sop_instance_uid, "dimension"])
    ds.DimensionOrganizationSequence = [Dataset()]
    ds.DimensionOrganizationSequence[0].DimensionOrganizationUID = dimension_uid
    ds.DimensionOrganizationType = "3D"
    ds.DimensionIndexSequence = _dimension_index(dimension_uid)
    ds.SharedFunctionalGroupsSequence = [_shared_groups([frame.header for frame in frames])]
    ds.PerFrameFunctionalGroupsSequence = [
        _frame_groups(frames[k], rank) for rank, k in enumerate(stored, start=1)
    ]
    ds.NumberOfFrames = len(stored)
    ds.PixelData = pack_frames(np.asarray(mask_zyx, dtype=bool)[stored])
    ds["PixelData"].VR = "OB"
    return ds


def _require(image: Dataset, keywords: Sequence[str]) -> None:
    missing = [keyword for keyword in keywords if not image.get(keyword)]
    if missing:
        raise InputError(
            f"CT image {image.get('SOPInstanceUID', '?')} lacks {', '.join(missing)}, which a "
            "DICOM SEG must reference"
        )


def _file_meta(instance_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SEGMENTATION_STORAGE
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"AUTOCTV_{__version__}"[:16]
    return meta


def _copy_patient_and_study(ct: Dataset, ds: Dataset) -> None:
    """Patient and General Study (type 2 attributes are written empty when the CT lacks them)."""
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "ReferringPhysicianName",
        "StudyID",
        "AccessionNumber",
    ):
        setattr(ds, keyword, ct.get(keyword, "") or "")
    ds.StudyInstanceUID = ct.StudyInstanceUID
    if ct.get("StudyDescription"):
        ds.StudyDescription = ct.StudyDescription


def _referenced_series(ct_images: Sequence[Dataset]) -> Dataset:
    """Common Instance Reference: the CT series and every one of its images (a multi-frame
    image once)."""
    series = Dataset()
    series.SeriesInstanceUID = ct_images[0].SeriesInstanceUID
    instances = []
    seen: set[str] = set()
    for image in ct_images:
        if str(image.SOPInstanceUID) in seen:
            continue
        seen.add(str(image.SOPInstanceUID))
        item = Dataset()
        item.ReferencedSOPClassUID = image.SOPClassUID
        item.ReferencedSOPInstanceUID = image.SOPInstanceUID
        instances.append(item)
    series.ReferencedInstanceSequence = instances
    return series


def _segment_item(segment: SegmentSpec) -> Dataset:
    algorithm = Dataset()
    algorithm.AlgorithmFamilyCodeSequence = [code_item(ARTIFICIAL_INTELLIGENCE)]
    algorithm.AlgorithmName = segment.algorithm_name[:_LO_MAX]
    algorithm.AlgorithmVersion = segment.algorithm_version[:_LO_MAX]
    algorithm.AlgorithmSource = "AutoCTV"
    if segment.algorithm_parameters:
        algorithm.AlgorithmParameters = ",".join(
            f"{key}={value}" for key, value in segment.algorithm_parameters.items()
        )
    item = Dataset()
    item.SegmentedPropertyCategoryCodeSequence = [code_item(segment.category)]
    item.SegmentNumber = 1
    item.SegmentLabel = segment.label[:_LO_MAX]
    if segment.description:
        item.SegmentDescription = segment.description[:_LO_MAX]
    item.SegmentationAlgorithmIdentificationSequence = [algorithm]
    item.SegmentAlgorithmType = "AUTOMATIC"
    item.SegmentAlgorithmName = segment.algorithm_name[:_LO_MAX]
    item.RecommendedDisplayCIELabValue = [int(v) for v in segment.cielab]
    item.SegmentedPropertyTypeCodeSequence = [code_item(segment.segment_type)]
    return item


def _dimension_index(dimension_uid: str) -> list[Dataset]:
    """Two dimensions: the referenced segment number, then the frame's patient position."""
    entries = []
    for index_pointer, group_pointer, label in (
        (Tag(0x0062, 0x000B), Tag(0x0062, 0x000A), "Referenced Segment Number"),
        (Tag(0x0020, 0x0032), Tag(0x0020, 0x9113), "Image Position Patient"),
    ):
        item = Dataset()
        item.DimensionOrganizationUID = dimension_uid
        item.DimensionIndexPointer = index_pointer
        item.FunctionalGroupPointer = group_pointer
        item.DimensionDescriptionLabel = label
        entries.append(item)
    return entries


def _shared_groups(ct_images: Sequence[Dataset]) -> Dataset:
    """Orientation and pixel measures, shared by every frame (``ct_images``: flat headers)."""
    first = ct_images[0]
    orientation = Dataset()
    orientation.ImageOrientationPatient = list(first.ImageOrientationPatient)
    measures = Dataset()
    measures.PixelSpacing = list(first.PixelSpacing)
    spacing_mm = _regular_spacing_mm(ct_images)
    thickness = first.get("SliceThickness") or (
        format_number_as_ds(spacing_mm) if spacing_mm else None
    )
    if thickness:
        measures.SliceThickness = thickness
    if spacing_mm:
        measures.SpacingBetweenSlices = format_number_as_ds(spacing_mm)
    shared = Dataset()
    shared.PlaneOrientationSequence = [orientation]
    shared.PixelMeasuresSequence = [measures]
    return shared


def _regular_spacing_mm(ct_images: Sequence[Dataset]) -> float | None:
    """Distance between neighbouring CT images along the slice normal when it is the same for
    every pair (mm), else None (a single image has none)."""
    if len(ct_images) < 2:
        return None
    row_col = np.asarray([float(v) for v in ct_images[0].ImageOrientationPatient]).reshape(2, 3)
    normal = np.cross(row_col[0], row_col[1])
    positions = np.asarray([[float(v) for v in image.ImagePositionPatient] for image in ct_images])
    gaps = np.abs(np.diff(positions @ normal))
    if gaps.min() <= 0 or gaps.max() - gaps.min() > _REGULAR_SPACING_TOLERANCE_MM:
        return None
    return float(gaps.mean())


def _frame_groups(frame: SourceFrame, rank: int) -> Dataset:
    """Per-frame groups: source CT image (and frame), dimension index (segment 1, rank),
    position and the segment (per frame rather than shared: older readers, highdicom 0.22 among
    them, look for it there)."""
    image = frame.header
    source = Dataset()
    source.ReferencedSOPClassUID = image.SOPClassUID
    source.ReferencedSOPInstanceUID = image.SOPInstanceUID
    if frame.frame_number is not None:
        source.ReferencedFrameNumber = int(frame.frame_number)
    source.PurposeOfReferenceCodeSequence = [code_item(SOURCE_IMAGE_PURPOSE)]
    source.SpatialLocationsPreserved = "YES"
    derivation = Dataset()
    derivation.SourceImageSequence = [source]
    derivation.DerivationCodeSequence = [code_item(SEGMENTATION_DERIVATION)]
    content = Dataset()
    content.DimensionIndexValues = [1, rank]
    position = Dataset()
    position.ImagePositionPatient = list(image.ImagePositionPatient)
    segment = Dataset()
    segment.ReferencedSegmentNumber = 1
    frame = Dataset()
    frame.DerivationImageSequence = [derivation]
    frame.FrameContentSequence = [content]
    frame.PlanePositionSequence = [position]
    frame.SegmentIdentificationSequence = [segment]
    return frame
