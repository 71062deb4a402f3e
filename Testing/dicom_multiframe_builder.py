"""Build a Legacy Converted Enhanced CT (one multi-frame file) from a single-frame CT series with
pydicom alone (test helper), so the multi-frame tests run on every stack, pydicom 2.4 included.

The file follows PS3.3 A.70 in what a reader needs: the frames in the order of the series'
slices along their normal, the geometry only in the functional groups (shared: orientation,
pixel measures, rescale; per frame: position and frame content), nothing of it at the top level.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

LEGACY_CONVERTED_CT = "1.2.840.10008.5.1.4.1.1.2.2"
_PER_IMAGE = (
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "SliceLocation",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "InstanceNumber",
    "PixelData",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "WindowCenter",
    "WindowWidth",
)


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _along_normal(dataset: Dataset) -> float:
    row_col = np.asarray([float(v) for v in dataset.ImageOrientationPatient]).reshape(2, 3)
    position = np.asarray([float(v) for v in dataset.ImagePositionPatient])
    return float(position @ np.cross(row_col[0], row_col[1]))


def legacy_converted_ct(datasets: Sequence[Dataset]) -> Dataset:
    """The multi-frame data set (with file meta) holding ``datasets`` (one series, same grid)."""
    slices = sorted(datasets, key=_along_normal)
    first = slices[0]
    ds = Dataset()
    for element in first:
        if element.keyword not in _PER_IMAGE:
            ds.add(element)
    instance_uid = generate_uid()
    ds.SOPClassUID = LEGACY_CONVERTED_CT
    ds.SOPInstanceUID = instance_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.ContentQualification = "PRODUCT"
    ds.NumberOfFrames = len(slices)
    shared = Dataset()
    shared.PlaneOrientationSequence = [
        _item(ImageOrientationPatient=list(first.ImageOrientationPatient))
    ]
    measures = _item(PixelSpacing=list(first.PixelSpacing))
    if first.get("SliceThickness"):
        measures.SliceThickness = first.SliceThickness
    shared.PixelMeasuresSequence = [measures]
    shared.PixelValueTransformationSequence = [
        _item(
            RescaleSlope=first.get("RescaleSlope", 1),
            RescaleIntercept=first.get("RescaleIntercept", 0),
            RescaleType="HU",
        )
    ]
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.PerFrameFunctionalGroupsSequence = [
        _item(
            PlanePositionSequence=[_item(ImagePositionPatient=list(image.ImagePositionPatient))],
            FrameContentSequence=[_item(StackID="1", InStackPositionNumber=number)],
        )
        for number, image in enumerate(slices, start=1)
    ]
    ds.PixelData = b"".join(bytes(image.PixelData) for image in slices)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = LEGACY_CONVERTED_CT
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def save_multiframe(dataset: Dataset, path: Path) -> None:
    """Write ``dataset`` as a DICOM file (preamble and file meta) under pydicom 2.4 and 3."""
    if int(pydicom.__version__.split(".")[0]) >= 3:
        dataset.save_as(path, enforce_file_format=True)
    else:
        dataset.is_little_endian, dataset.is_implicit_VR = True, False
        dataset.save_as(path, write_like_original=False)
