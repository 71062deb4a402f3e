"""The source frames a DICOM SEG derives from: one per single-frame CT image, one per frame of a
multi-frame (Enhanced / Legacy Converted Enhanced) CT.

A single-frame CT image carries its position, orientation and pixel spacing at the top level; a
multi-frame CT carries them in its functional groups (per-frame, else shared), which
:func:`AutoCTVLib.io.dicom_multiframe.frame_headers` flattens frame by frame. Each
:class:`SourceFrame` is such a flat header plus the 1-based frame number to reference (None for a
single-frame image), so the SEG writer treats both kinds the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from AutoCTVLib.errors import GeometryError, InputError
from AutoCTVLib.io.dicom_multiframe import MULTIFRAME_CT_CLASSES, frame_headers


@dataclass(frozen=True)
class SourceFrame:
    """One source frame: a flat header (ImagePositionPatient, ImageOrientationPatient,
    PixelSpacing, UIDs at its top level) and its frame number in a multi-frame image."""

    header: Dataset
    frame_number: int | None


def is_multiframe(image: Dataset) -> bool:
    """True for a multi-frame CT data set (its geometry lives in functional groups)."""
    return str(image.get("SOPClassUID", "")) in MULTIFRAME_CT_CLASSES or (
        "PerFrameFunctionalGroupsSequence" in image or "SharedFunctionalGroupsSequence" in image
    )


def source_frames(ct_images: Sequence[Dataset]) -> list[SourceFrame]:
    """The frames of ``ct_images`` in order: each single-frame image, then each multi-frame
    image's frames 1, 2, … (file order). Mask slice k of a SEG belongs to the k-th frame.

    Raises:
        InputError: a multi-frame image's functional groups lack a frame's geometry.
    """
    frames: list[SourceFrame] = []
    for image in ct_images:
        if not is_multiframe(image):
            frames.append(SourceFrame(image, None))
            continue
        name = Path(str(getattr(image, "filename", "") or "multi-frame CT")).name
        try:
            headers = frame_headers(Path(name), image)
        except GeometryError as error:
            raise InputError(f"{error}; a DICOM SEG cannot reference its frames") from error
        frames.extend(
            SourceFrame(header.dataset, (header.frame_index or 0) + 1) for header in headers
        )
    return frames
