"""Recognise DICOM files, with or without the Part 10 preamble, and read their headers.

A Part 10 file starts with a 128-byte preamble and the four bytes ``DICM``. Some archives and
older exporters write the file meta group (group 0002) first with no preamble, or a bare data set
(group 0008 first, no meta group at all). All three are recognised here from their first bytes,
so a folder scan finds them, and read with ``force=True`` (pydicom refuses files without the
preamble otherwise).

The test on the first bytes is strict enough that ordinary non-DICOM files (text, NIfTI, NRRD,
images) are not mistaken for DICOM: the file must start with a tag of group 0002 or 0008 whose
element number is small, followed either by a valid two-letter value representation (explicit
VR) or by a plausible 32-bit length (implicit VR).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

_PREAMBLE_BYTES = 128
_MAGIC = b"DICM"
_HEAD_BYTES = 12
_KNOWN_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL "
    b"UN UR US UT UV".split()
)
_MAX_FIRST_ELEMENT = 0x0100
"""A file's first element must be near the start of its group (0002,0000..0100 or 0008,...)."""
_MAX_IMPLICIT_LENGTH = 1 << 16
"""A bare implicit-VR data set's first element (usually a short string) is shorter than this."""


def has_preamble(head: bytes) -> bool:
    """True when ``head`` (the file's first bytes) carries ``DICM`` at byte 128."""
    return len(head) >= _PREAMBLE_BYTES + 4 and head[128:132] == _MAGIC


def starts_like_dicom_without_preamble(head: bytes) -> bool:
    """True when ``head`` starts with the meta group or a bare data set (no preamble).

    Little-endian tags only (big-endian data sets always carry a little-endian meta group).
    """
    if len(head) < _HEAD_BYTES:
        return False
    group, element = struct.unpack("<HH", head[:4])
    if group not in (0x0002, 0x0008) or element > _MAX_FIRST_ELEMENT:
        return False
    if head[4:6] in _KNOWN_VRS:
        return True
    if group == 0x0002:  # the meta group is always explicit VR
        return False
    (length,) = struct.unpack("<I", head[4:8])
    return length < _MAX_IMPLICIT_LENGTH


def is_dicom_file(path: Path) -> bool:
    """True for a DICOM file: Part 10 (``DICM`` at byte 128), or meta group / data set first."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_PREAMBLE_BYTES + 4)
    except OSError:
        return False
    return has_preamble(head) or starts_like_dicom_without_preamble(head)


def read_dicom(path: Path, *, header_only: bool) -> Dataset:
    """Read a DICOM file with or without its preamble; ``header_only`` skips the pixel data.

    Raises:
        whatever pydicom raises for a file it cannot parse (callers turn it into their error).
    """
    dataset = pydicom.dcmread(path, stop_before_pixels=header_only, force=True)
    _name_transfer_syntax(dataset)
    return dataset


def _name_transfer_syntax(dataset: Dataset) -> None:
    """Give a data set read without file meta the transfer syntax it was read with, which
    pydicom needs to decode its pixel data (implicit or explicit VR, little or big endian)."""
    meta = getattr(dataset, "file_meta", None)
    if meta is None:
        meta = FileMetaDataset()
        dataset.file_meta = meta
    if meta.get("TransferSyntaxUID"):
        return
    encoding = getattr(dataset, "original_encoding", None)  # pydicom 3
    if encoding is None or encoding[0] is None:
        encoding = (dataset.is_implicit_VR, dataset.is_little_endian)  # pydicom 2
    implicit, little = encoding
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
