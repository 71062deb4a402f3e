"""One DICOM image's header (no pixel data): where it lies and the UIDs the reader uses for it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage

from AutoCTVLib.io.dicom_uids import dataset_uid, uid_with_fallback


@dataclass(frozen=True)
class DicomHeader:
    """One image of a DICOM file: a single-frame file, or one frame of a multi-frame file.

    Attributes:
        path: the file.
        dataset: its header (for a frame of a multi-frame image: a flat header holding that
            frame's ImagePositionPatient, ImageOrientationPatient, PixelSpacing and rescale).
        frame_index: 0-based frame number within a multi-frame file; None for single-frame.
        generated_instance_uid: a new SOP instance UID when the file has no usable one (or shares
            it with a different image).
        generated_series_uid: a new series UID when the file's SeriesInstanceUID is blank.
    """

    path: Path
    dataset: Dataset
    frame_index: int | None = None
    generated_instance_uid: str = ""
    generated_series_uid: str = ""

    @property
    def name(self) -> str:
        """The file name, plus the frame for a frame of a multi-frame image (for messages)."""
        if self.frame_index is None:
            return self.path.name
        return f"{self.path.name} (frame {self.frame_index + 1})"

    @property
    def sop_class_uid(self) -> str:
        """SOPClassUID, or the file meta's MediaStorageSOPClassUID when it is blank; for a
        single-frame CT image with neither (modality CT, an image position), CT Image Storage."""
        value = uid_with_fallback(self.dataset, "SOPClassUID")[0]
        if not value and self.sop_class_inferred:
            return CTImageStorage
        return value

    @property
    def sop_class_inferred(self) -> bool:
        """True when the SOP class is blank everywhere (data set and file meta, or no file meta
        at all) and the header describes a single-frame CT image: Modality CT, an image
        position, Rows and Columns."""
        if uid_with_fallback(self.dataset, "SOPClassUID")[0]:
            return False
        dataset = self.dataset
        return (
            self.modality.upper() == "CT"
            and all(keyword in dataset for keyword in ("ImagePositionPatient", "Rows", "Columns"))
            and "NumberOfFrames" not in dataset
        )

    @property
    def sop_instance_uid(self) -> str:
        """The generated UID when one was given, else SOPInstanceUID, else the file meta's."""
        return self.generated_instance_uid or uid_with_fallback(self.dataset, "SOPInstanceUID")[0]

    @property
    def series_uid(self) -> str:
        """SeriesInstanceUID, else the generated one ("" while the series is not grouped)."""
        return dataset_uid(self.dataset, "SeriesInstanceUID") or self.generated_series_uid

    @property
    def modality(self) -> str:
        return str(self.dataset.get("Modality", "") or "")

    @property
    def is_localizer(self) -> bool:
        image_type = self.dataset.get("ImageType") or []
        values = [image_type] if isinstance(image_type, str) else list(image_type)
        return "LOCALIZER" in [str(value).upper() for value in values]
