"""Enhanced CT and Legacy Converted Enhanced CT (multi-frame) as one header per frame.

A multi-frame CT stores all slices in one file; each frame's geometry and rescale live in the
functional groups: the Per-frame Functional Groups Sequence item of that frame, else the Shared
Functional Groups Sequence, else (rarely) the top level of the data set:

* PlanePositionSequence → ImagePositionPatient (LPS mm of the frame's first pixel),
* PlaneOrientationSequence → ImageOrientationPatient,
* PixelMeasuresSequence → PixelSpacing (row spacing, column spacing; mm) and SliceThickness,
* PixelValueTransformationSequence → RescaleSlope, RescaleIntercept,
* CTImageFrameTypeSequence → FrameType (a frame typed LOCALIZER is a scout).

:func:`frame_headers` turns such a file into one :class:`DicomHeader` per frame whose data set
is flat (these attributes at its top level), so the single-frame path sorts, checks and
references the frames; :class:`FramePixels` decodes the file once and hands out frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from AutoCTVLib.errors import GeometryError
from AutoCTVLib.io.dicom_files import read_dicom
from AutoCTVLib.io.dicom_header import DicomHeader

MULTIFRAME_CT_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
}

_GROUP_ITEMS = {
    "PlanePositionSequence": ("ImagePositionPatient",),
    "PlaneOrientationSequence": ("ImageOrientationPatient",),
    "PixelMeasuresSequence": ("PixelSpacing", "SliceThickness"),
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept", "RescaleType"),
    "CTImageFrameTypeSequence": ("FrameType",),
}
_SKIPPED = {"PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence", "PixelData"}


def _group_value(group: Dataset | None, sequence: str, keyword: str) -> object | None:
    if group is None or sequence not in group:
        return None
    items = group[sequence].value
    if not items or keyword not in items[0]:
        return None
    return items[0][keyword].value


def frame_headers(path: Path, dataset: Dataset) -> list[DicomHeader]:
    """One flat header per frame of the multi-frame CT ``dataset`` read from ``path``.

    Raises:
        GeometryError: the file has no frames, or a frame lacks its position or orientation.
    """
    try:
        frames = int(dataset.get("NumberOfFrames") or 0)
    except (TypeError, ValueError):
        frames = 0
    if frames < 1 and dataset.get("NumberOfFrames") not in (None, ""):
        raise GeometryError(
            f"multi-frame CT {path.name} holds no frames (NumberOfFrames is "
            f"{dataset.NumberOfFrames}); there is no image to contour"
        )
    if frames < 1:
        raise GeometryError(
            f"multi-frame CT {path.name} has no NumberOfFrames; its frames cannot be found"
        )
    per_frame: Sequence[Dataset] = dataset.get("PerFrameFunctionalGroupsSequence") or []
    shared_items = dataset.get("SharedFunctionalGroupsSequence") or []
    shared = shared_items[0] if shared_items else None
    if per_frame and len(per_frame) != frames:
        raise GeometryError(
            f"multi-frame CT {path.name} has {frames} frames but {len(per_frame)} per-frame "
            "functional group items"
        )
    base = Dataset()
    for element in dataset:
        if element.keyword not in _SKIPPED:
            base.add(element)
    base.file_meta = getattr(dataset, "file_meta", Dataset())
    headers = []
    for index in range(frames):
        own = per_frame[index] if per_frame else None
        flat = Dataset()
        flat.update(base)
        flat.file_meta = base.file_meta
        flat.NumberOfFrames = 1
        for sequence, keywords in _GROUP_ITEMS.items():
            for keyword in keywords:
                value = _group_value(own, sequence, keyword)
                if value is None:
                    value = _group_value(shared, sequence, keyword)
                if value is not None:
                    setattr(flat, keyword, value)
        frame_type = flat.get("FrameType")
        if frame_type is not None:
            flat.ImageType = frame_type
        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            if keyword not in flat:
                raise GeometryError(
                    f"frame {index + 1} of multi-frame CT {path.name} has no {keyword} in its "
                    "functional groups; the slice geometry cannot be known"
                )
        headers.append(DicomHeader(path, flat, frame_index=index))
    return headers


class FramePixels:
    """Decodes each multi-frame file once and hands out its frames (stored values)."""

    def __init__(self) -> None:
        self._path: Path | None = None
        self._frames: np.ndarray | None = None

    def frame(self, path: Path, index: int) -> np.ndarray:
        """Stored pixel values of frame ``index`` (0-based) of ``path``, (rows, columns)."""
        if self._path != path or self._frames is None:
            self._frames = None
            pixels = np.asarray(read_dicom(path, header_only=False).pixel_array)
            self._frames = pixels if pixels.ndim == 3 else pixels[np.newaxis]
            self._path = path
        return self._frames[index]
