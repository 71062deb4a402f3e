"""Check an image file's voxel data before SimpleITK reads it: complete, undamaged, finite.

Two failures of SimpleITK's readers make this necessary:

* **Truncated NIfTI.** ITK's NIfTI reader (niftilib) fills the voxels a cut-short ``.nii`` or
  ``.nii.gz`` lacks with zeros and reports nothing; a CT cut at 1 MB of 27 MB becomes an image
  that is mostly 0 HU. (NRRD and MetaImage readers refuse such files, MetaImage with messages
  printed straight to the terminal.)
* **NaN in NIfTI.** niftilib's ``nifti_read_buffer`` replaces every NaN and infinite float by 0
  while reading ("fix bad floats"), so an array check after reading never sees them. The same
  data in NRRD or MetaImage keep their NaNs.

:func:`scan_image_data` therefore streams the file's data itself (decompressing gzip/zlib on the
fly, a few MiB at a time) and compares the number of data bytes with what the header announces
(dimensions × bytes per voxel). For NIfTI float data it also counts the non-finite values in
the raw bytes. A damaged compressed stream (CRC or format error) is reported as damaged.
Header-only files with detached data (``.nhdr``, ``.mhd``) are checked when their data file is
raw, and otherwise left to SimpleITK. Headers are parsed only as far as the check needs.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from AutoCTVLib.errors import InputError

_CHUNK_BYTES = 1 << 20  # compressed bytes read at a time
_MAX_OUT_BYTES = 8 << 20  # most decompressed bytes produced from one read
_GZIP_MAGIC = b"\x1f\x8b"

#: NIfTI datatype code → (numpy kind, bytes per value) for the float types whose NaNs matter.
_NIFTI_FLOATS = {16: "f4", 64: "f8"}

_META_TYPE_BYTES = {
    "MET_CHAR": 1,
    "MET_UCHAR": 1,
    "MET_SHORT": 2,
    "MET_USHORT": 2,
    "MET_INT": 4,
    "MET_UINT": 4,
    "MET_LONG": 4,
    "MET_ULONG": 4,
    "MET_LONG_LONG": 8,
    "MET_ULONG_LONG": 8,
    "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}


@dataclass(frozen=True)
class DataScan:
    """What :func:`scan_image_data` found.

    Attributes:
        data_bytes: voxel data bytes present (after decompression); ``None`` when not checked.
        non_finite: NaN or infinite values counted in the raw data; ``None`` when not counted
            (not a float NIfTI: SimpleITK keeps those values and the reader checks them).
    """

    data_bytes: int | None = None
    non_finite: int | None = None


class _Damaged(Exception):
    """The compressed stream is corrupt (not merely cut short)."""


def scan_image_data(path: Path, file_format: str) -> DataScan:
    """Check that ``path`` holds all the voxel data its header announces, undamaged.

    Args:
        path: a ``.nii``/``.nii.gz``, ``.nrrd``/``.nhdr`` or ``.mha``/``.mhd`` file.
        file_format: ``"nifti"``, ``"nrrd"`` or ``"metaimage"``.

    Returns:
        The scan (bytes found; NaN/infinity count for float NIfTI data).

    Raises:
        InputError: the file is cut short (fewer data bytes than the header says) or its
            compressed stream is damaged.
    """
    try:
        if file_format == "nifti":
            return _scan_nifti(path)
        if file_format == "nrrd":
            return _scan_nrrd(path)
        if file_format == "metaimage":
            return _scan_metaimage(path)
    except _Damaged as error:
        raise InputError(
            f"{path.name} is damaged: its compressed data cannot be decoded ({error}); the "
            "file was corrupted, export or copy it again"
        ) from None
    return DataScan()


def _truncated(path: Path, found: int, expected: int) -> InputError:
    share = 100.0 * found / expected if expected else 0.0
    return InputError(
        f"{path.name} is truncated: it holds {found} of the {expected} bytes of voxel data its "
        f"header announces ({share:.0f} %); the file was cut short (an interrupted copy or "
        "download?), export or copy it again"
    )


# --- byte streams --------------------------------------------------------------------------


def _raw_chunks(path: Path, offset: int) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        handle.seek(offset)
        while True:
            chunk = handle.read(_CHUNK_BYTES)
            if not chunk:
                return
            yield chunk


def _inflated(chunks: Iterator[bytes], wbits: int) -> Iterator[bytes]:
    """Decompress a zlib/gzip stream (gzip members may follow each other).

    Raises:
        _Damaged: a corrupt stream or a failed checksum.
        EOFError: the stream ends before its end marker (cut short).
    """
    decompressor = zlib.decompressobj(wbits)
    pending = b""
    for chunk in chunks:
        pending += chunk
        while pending:
            try:
                out = decompressor.decompress(pending, _MAX_OUT_BYTES)
            except zlib.error as error:
                raise _Damaged(str(error)) from None
            if out:
                yield out
            if decompressor.eof:
                rest = decompressor.unused_data
                if not rest.startswith(_GZIP_MAGIC):
                    return  # trailing bytes after the stream: not voxel data
                decompressor = zlib.decompressobj(wbits)
                pending = rest
                continue
            pending = decompressor.unconsumed_tail
            if not out and not pending:
                break
    try:
        tail = decompressor.flush()
    except zlib.error as error:
        raise _Damaged(str(error)) from None
    if tail:
        yield tail
    if not decompressor.eof:
        raise EOFError("compressed stream ended early")


def _count_bytes(stream: Iterator[bytes]) -> tuple[int, bool]:
    """(bytes in the stream, whether it ended before its end marker)."""
    total = 0
    try:
        for chunk in stream:
            total += len(chunk)
    except EOFError:
        return total, True
    return total, False


# --- NIfTI ---------------------------------------------------------------------------------


def _nifti_stream(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        compressed = handle.read(2) == _GZIP_MAGIC
    chunks = _raw_chunks(path, 0)
    return _inflated(chunks, 31) if compressed else chunks


def _scan_nifti(path: Path) -> DataScan:
    stream = _nifti_stream(path)
    buffer = b""
    ended_early = False
    try:
        while len(buffer) < 540:
            buffer += next(stream)
    except StopIteration:
        pass
    except EOFError:
        ended_early = True
    header = _nifti_header(buffer)
    if header is None:
        return DataScan()  # not a header this check understands: SimpleITK will say so
    offset, data_bytes, dtype = header
    if ended_early:
        raise _truncated(path, max(0, len(buffer) - offset), data_bytes)
    found, non_finite = 0, 0
    remainder = b""
    item = dtype.itemsize if dtype is not None else 1

    def consume(chunk: bytes) -> None:
        nonlocal found, non_finite, remainder
        usable = chunk[: max(0, data_bytes - found)]
        found += len(usable)
        if dtype is not None and usable:
            data = remainder + usable
            cut = len(data) - len(data) % item
            values = np.frombuffer(data[:cut], dtype=dtype)
            non_finite += int(values.size - np.count_nonzero(np.isfinite(values)))
            remainder = data[cut:]

    head = buffer[offset:]
    skip = max(0, offset - len(buffer))
    try:
        consume(head)
        for chunk in stream:
            if skip:
                dropped = min(skip, len(chunk))
                chunk, skip = chunk[dropped:], skip - dropped
            consume(chunk)
    except EOFError:
        pass
    if found < data_bytes:
        raise _truncated(path, found, data_bytes)
    return DataScan(data_bytes=found, non_finite=non_finite if dtype is not None else None)


def _nifti_header(buffer: bytes) -> tuple[int, int, np.dtype | None] | None:
    """(data offset, data bytes, float dtype or None) from a NIfTI-1 or -2 header."""
    if len(buffer) < 348:
        return None
    for order in "<>":
        size = struct.unpack(f"{order}i", buffer[:4])[0]
        if size == 348:
            dims = struct.unpack(f"{order}8h", buffer[40:56])
            datatype, bitpix = struct.unpack(f"{order}hh", buffer[70:74])
            offset = int(struct.unpack(f"{order}f", buffer[108:112])[0])
            offset = max(offset, 352) if buffer[344:347] == b"n+1" else offset
            break
        if size == 540 and len(buffer) >= 540:
            datatype, bitpix = struct.unpack(f"{order}hh", buffer[12:16])
            dims = struct.unpack(f"{order}8q", buffer[16:80])
            offset = int(struct.unpack(f"{order}q", buffer[168:176])[0])
            break
    else:
        return None
    rank = int(dims[0])
    if not 1 <= rank <= 7 or bitpix <= 0 or bitpix % 8:
        return None
    voxels = 1
    for extent in dims[1 : rank + 1]:
        voxels *= max(1, int(extent))
    kind = _NIFTI_FLOATS.get(int(datatype))
    dtype = np.dtype(order + kind) if kind else None
    return offset, voxels * (bitpix // 8), dtype


# --- NRRD ----------------------------------------------------------------------------------

_NRRD_FIELD = re.compile(r"^([^:#]+):=?\s*(.*?)\s*$")


def _nrrd_type_bytes(name: str) -> int | None:
    text = name.lower().strip().replace("unsigned ", "").replace("signed ", "")
    text = text.replace("_t", "").replace(" ", "")
    if text.startswith("u"):
        text = text[1:]  # uchar, ushort, uint, uint8, ulonglong ...
    sizes = {
        "char": 1,
        "int8": 1,
        "short": 2,
        "shortint": 2,
        "int16": 2,
        "int": 4,
        "int32": 4,
        "longlong": 8,
        "longlongint": 8,
        "int64": 8,
        "float": 4,
        "double": 8,
    }
    return sizes.get(text)


def _read_text_header(path: Path, limit: int = 1 << 16) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(limit)


def _scan_nrrd(path: Path) -> DataScan:
    raw = _read_text_header(path)
    end = raw.find(b"\n\n")
    if not raw.startswith(b"NRRD") or (end < 0 and path.suffix.lower() != ".nhdr"):
        return DataScan()
    text = raw[: end if end >= 0 else len(raw)].decode("latin-1")
    fields: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        match = _NRRD_FIELD.match(line)
        if match:
            fields[match.group(1).strip().lower()] = match.group(2)
    item = _nrrd_type_bytes(fields.get("type", ""))
    sizes = fields.get("sizes", "").split()
    if item is None or not sizes or not all(s.isdigit() for s in sizes):
        return DataScan()
    if "line skip" in fields or "lineskip" in fields or "byte skip" in fields:
        return DataScan()
    expected = item * int(np.prod([int(s) for s in sizes], dtype=np.int64))
    encoding = fields.get("encoding", "raw").lower()
    data_file = fields.get("data file") or fields.get("datafile")
    if data_file:
        data_path = path.parent / data_file
        if encoding != "raw" or not data_path.is_file():
            return DataScan()
        return _checked(path, data_path.stat().st_size, expected, ended_early=False)
    if end < 0:
        return DataScan()
    if encoding == "raw":
        return _checked(path, path.stat().st_size - end - 2, expected, ended_early=False)
    if encoding in ("gzip", "gz"):
        found, ended_early = _count_bytes(_inflated(_raw_chunks(path, end + 2), 31))
        return _checked(path, found, expected, ended_early)
    return DataScan()


# --- MetaImage -----------------------------------------------------------------------------


def _scan_metaimage(path: Path) -> DataScan:
    raw = _read_text_header(path)
    fields: dict[str, str] = {}
    data_start = -1
    position = 0
    for line in raw.split(b"\n"):
        position += len(line) + 1
        key, _, value = line.decode("latin-1").partition("=")
        key, value = key.strip(), value.strip()
        if not key:
            continue
        fields[key] = value
        if key == "ElementDataFile":
            data_start = position
            break
    item = _META_TYPE_BYTES.get(fields.get("ElementType", ""))
    dims = fields.get("DimSize", "").split()
    if item is None or data_start < 0 or not dims or not all(d.isdigit() for d in dims):
        return DataScan()
    if "HeaderSize" in fields:
        return DataScan()
    channels = int(fields.get("ElementNumberOfChannels", "1") or 1)
    expected = item * channels * int(np.prod([int(d) for d in dims], dtype=np.int64))
    compressed = fields.get("CompressedData", "False").lower() == "true"
    source = fields["ElementDataFile"]
    if source.upper() != "LOCAL":
        data_path = path.parent / source
        if compressed or not data_path.is_file():
            return DataScan()
        return _checked(path, data_path.stat().st_size, expected, ended_early=False)
    if not compressed:
        return _checked(path, path.stat().st_size - data_start, expected, ended_early=False)
    found, ended_early = _count_bytes(_inflated(_raw_chunks(path, data_start), 47))
    return _checked(path, found, expected, ended_early)


def _checked(path: Path, found: int, expected: int, ended_early: bool) -> DataScan:
    """Refuse fewer data bytes than expected (a stream that ends early but holds every voxel
    lost only its checksum trailer: its voxels are all there)."""
    del ended_early
    if found < expected:
        raise _truncated(path, found, expected)
    return DataScan(data_bytes=found)
