"""UIDs of DICOM inputs whose UIDs are blank: fall back to the file meta, or make valid new ones.

Anonymisers often empty SOPClassUID, SOPInstanceUID, SeriesInstanceUID and StudyInstanceUID in
the data set while the file meta information (group 0002) still holds the SOP class and instance
(MediaStorageSOPClassUID, MediaStorageSOPInstanceUID). The reader therefore takes

1. the data set's UID when it is a syntactically valid UID (digits and dots, ≤ 64 characters);
2. else, for the SOP class and instance, the file meta's;
3. else a new UID, derived deterministically (so reading the same files twice gives the same
   UIDs, and ``--series-uid`` can name a generated series): a SOP instance from the file's
   bytes, a series from its images, a study and a frame of reference from their series.

Generated UIDs use the ``2.25.<UUID as integer>`` form (PS3.5 B.2), the UUID being a name-based
(version 5 style) hash of what the UID stands for.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable
from pathlib import Path

from pydicom.dataset import Dataset

UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")
"""A UID is digits separated by dots (components with leading zeros are tolerated, as many real
archives hold them and treatment-planning systems match UIDs as exact strings)."""
UID_MAX_LENGTH = 64

_META_KEYWORDS = {
    "SOPClassUID": "MediaStorageSOPClassUID",
    "SOPInstanceUID": "MediaStorageSOPInstanceUID",
}
_CHUNK_BYTES = 1 << 20


def is_valid_uid(value: object) -> bool:
    """True when ``value`` is a non-empty, syntactically valid DICOM UID."""
    text = str(value or "").strip()
    return 0 < len(text) <= UID_MAX_LENGTH and UID_PATTERN.match(text) is not None


def dataset_uid(dataset: Dataset, keyword: str) -> str:
    """``keyword``'s UID from the data set, or "" when it is missing, blank or invalid."""
    value = str(dataset.get(keyword, "") or "").strip()
    return value if is_valid_uid(value) else ""


def file_meta_uid(dataset: Dataset, keyword: str) -> str:
    """The file meta's MediaStorage UID standing in for ``keyword`` (SOPClassUID or
    SOPInstanceUID), or "" when there is none."""
    meta = getattr(dataset, "file_meta", None)
    meta_keyword = _META_KEYWORDS.get(keyword)
    if meta is None or meta_keyword is None:
        return ""
    value = str(meta.get(meta_keyword, "") or "").strip()
    return value if is_valid_uid(value) else ""


def uid_with_fallback(dataset: Dataset, keyword: str) -> tuple[str, str]:
    """``(uid, source)``: source is "dataset", "file meta" or "" (nothing usable found)."""
    value = dataset_uid(dataset, keyword)
    if value:
        return value, "dataset"
    value = file_meta_uid(dataset, keyword)
    return (value, "file meta") if value else ("", "")


def derived_uid(*parts: str) -> str:
    """A valid ``2.25.`` UID determined by ``parts`` (same parts, same UID)."""
    digest = hashlib.sha256("\x1f".join(("autoctv-input-uid", *parts)).encode()).digest()
    return f"2.25.{uuid.UUID(bytes=digest[:16], version=5).int}"


def file_content_digest(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (identifies an image that has no SOP instance UID)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def instance_uid_from_content(path: Path, frame: int | None = None) -> str:
    """A SOP instance UID for an image without one, derived from its file's bytes."""
    parts = ["sop-instance", file_content_digest(path)]
    if frame is not None:
        parts.append(f"frame-{frame}")
    return derived_uid(*parts)


def series_uid_from_members(key: str, instance_uids: Iterable[str]) -> str:
    """A series UID for images without one, derived from their grouping key and instances."""
    return derived_uid("series", key, *sorted(instance_uids))


def related_uid(kind: str, series_uid: str) -> str:
    """A study or frame-of-reference UID (``kind``) for a series whose own is blank."""
    return derived_uid(kind, series_uid)
