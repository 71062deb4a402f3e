"""Receiving an upload: size limit, safe zip unpacking, and validation with the CLI's reader.

An upload is one file: a zipped DICOM folder, or a NIfTI / NRRD / MetaImage file. It is written
into a fresh folder under ``<data>/incoming``; a zip is unpacked there, entry by entry, after
every entry name has been checked (no absolute paths, no ``..``, no drive letters, no links),
with limits on the number of entries and their unpacked size. Nothing from an upload is ever
executed. The result is read with :func:`AutoCTVLib.io.ct_reader.read_ct`, exactly as
``autoctv predict`` reads its input, so the messages are the command line's (with the folder
shown by the upload's name). A refused upload is deleted before the error is returned.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from AutoCTVLib.errors import AutoCTVError, InputError
from AutoCTVLib.io.ct_reader import LoadedCT, image_file_format, read_ct

logger = logging.getLogger(__name__)

#: Default largest upload, bytes (2 GiB: a 1000-slice 512×512 CT series is about 0.5 GiB).
DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024**3
#: A zip may unpack to at most this many times the upload limit (zip bombs).
UNPACK_FACTOR = 4
MAX_ZIP_ENTRIES = 20000
INPUT_FOLDER = "input"
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"


class UploadError(InputError):
    """An upload was refused; ``status`` is the HTTP status to answer with (400 or 413)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class CheckedUpload:
    """A validated upload inside its staging folder.

    Attributes:
        input_path: the CT to contour, relative to the staging folder (``input`` for an
            unpacked DICOM zip, ``input/<name>`` for an image file).
        kind: ``dicom`` or the image file's format.
        loaded: the CT as the CLI reads it (volume (z, y, x) in HU, identity, warnings).
    """

    input_path: str
    kind: str
    loaded: LoadedCT


def safe_upload_name(name: str) -> str:
    """The last part of a client's file name, with only safe characters (never empty)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(char if char.isalnum() or char in "._-" else "_" for char in base)
    cleaned = cleaned.lstrip(".")
    return cleaned[:120] or "upload"


class SizeLimitedWriter:
    """Writes chunks to a file, hashing them (sha256), refusing more than ``limit_bytes``."""

    def __init__(self, path: Path, limit_bytes: int) -> None:
        self.path = path
        self.limit_bytes = limit_bytes
        self.size_bytes = 0
        self._hash = hashlib.sha256()
        self._file = open(path, "wb")  # closed in close()

    def write(self, chunk: bytes) -> None:
        self.size_bytes += len(chunk)
        if self.size_bytes > self.limit_bytes:
            raise UploadError(
                f"the upload is larger than the limit of {_mebibytes(self.limit_bytes)}", 413
            )
        self._hash.update(chunk)
        self._file.write(chunk)

    def close(self) -> None:
        self._file.close()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def _mebibytes(size_bytes: int) -> str:
    return f"{size_bytes / 1024**2:.0f} MiB"


def is_zip_file(path: Path) -> bool:
    """True if the file starts like a zip archive (or is named ``.zip``)."""
    with open(path, "rb") as stream:
        head = stream.read(4)
    return head in (_ZIP_MAGIC, _EMPTY_ZIP_MAGIC) or path.name.lower().endswith(".zip")


def checked_entry_path(name: str) -> PurePosixPath:
    """The relative path a zip entry may be unpacked to.

    Raises:
        UploadError: absolute path, drive letter, ``..`` part or an empty name.
    """
    text = name.replace("\\", "/")
    path = PurePosixPath(text)
    if text.startswith("/") or path.is_absolute():
        raise UploadError(f"the zip holds an entry with an absolute path ({name}); refused")
    if any(part == ".." for part in path.parts):
        raise UploadError(
            f"the zip holds an entry that points outside its folder ({name}); refused"
        )
    if path.parts and ":" in path.parts[0]:
        raise UploadError(f"the zip holds an entry with a drive letter ({name}); refused")
    if not path.parts:
        raise UploadError("the zip holds an entry without a name; refused")
    return path


def unpack_zip(archive: Path, target: Path, upload_name: str, max_unpacked_bytes: int) -> None:
    """Unpack ``archive`` into ``target`` after checking every entry (see the module notes).

    Raises:
        UploadError: not a readable zip, a refused entry name, a link, too many entries, or
            more than ``max_unpacked_bytes`` unpacked.
    """
    try:
        with zipfile.ZipFile(archive) as bundle:
            entries = bundle.infolist()
            if len(entries) > MAX_ZIP_ENTRIES:
                raise UploadError(f"{upload_name} holds more than {MAX_ZIP_ENTRIES} files")
            total = 0
            for entry in entries:
                checked_entry_path(entry.filename)
                mode = entry.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise UploadError(f"{upload_name} holds a link ({entry.filename}); refused")
                total += entry.file_size
            if total > max_unpacked_bytes:
                raise UploadError(
                    f"{upload_name} unpacks to more than {_mebibytes(max_unpacked_bytes)}", 413
                )
            target.mkdir(parents=True, exist_ok=True)
            root = target.resolve()
            for entry in entries:
                relative = checked_entry_path(entry.filename)
                destination = (target / Path(*relative.parts)).resolve()
                if root != destination and root not in destination.parents:
                    raise UploadError(f"the zip entry {entry.filename} points outside; refused")
                if entry.is_dir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(entry) as source, open(destination, "wb") as sink:
                    shutil.copyfileobj(source, sink, 1024 * 1024)
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as error:
        raise UploadError(f"{upload_name} is not a readable zip archive ({error})") from error
    except (OSError, NotImplementedError, RuntimeError) as error:
        if isinstance(error, UploadError):
            raise
        raise UploadError(f"{upload_name} cannot be unpacked ({error})") from error


def check_upload(
    staging: Path,
    uploaded_file: Path,
    upload_name: str,
    *,
    series_uid: str | None = None,
    max_unpacked_bytes: int = DEFAULT_MAX_UPLOAD_BYTES * UNPACK_FACTOR,
) -> CheckedUpload:
    """Unpack (zip) or place (image file) an upload in ``staging/input`` and read it as a CT.

    Args:
        staging: the upload's own folder under ``<data>/incoming``.
        uploaded_file: the received file (inside ``staging``); removed once unpacked/moved.
        upload_name: the client's (cleaned) file name, used in messages instead of paths.
        series_uid: the series to read when a DICOM zip holds several.

    Raises:
        UploadError / InputError: the upload is refused; the message is the CLI's, with the
            staging folder shown as the upload's name.
    """
    input_dir = staging / INPUT_FOLDER
    if is_zip_file(uploaded_file):
        unpack_zip(uploaded_file, input_dir, upload_name, max_unpacked_bytes)
        uploaded_file.unlink()
        ct_path, relative = input_dir, INPUT_FOLDER
    else:
        input_dir.mkdir(parents=True, exist_ok=True)
        ct_path = input_dir / upload_name
        uploaded_file.replace(ct_path)
        relative = f"{INPUT_FOLDER}/{upload_name}"
    try:
        loaded = read_ct(ct_path, series_uid=series_uid or None)
    except AutoCTVError as error:
        raise UploadError(_as_upload_message(str(error), ct_path, upload_name)) from error
    kind = "dicom" if ct_path.is_dir() else (image_file_format(ct_path) or "image")
    return CheckedUpload(input_path=relative, kind=kind, loaded=loaded)


def _as_upload_message(message: str, ct_path: Path, upload_name: str) -> str:
    """The reader's one-line message, with server paths replaced by the upload's name."""
    text = " ".join(message.split())
    for shown in (str(ct_path.resolve()), str(ct_path)):
        text = text.replace(shown, upload_name)
    return text


REFERENCE_FOLDER = "reference"
REFERENCE_FILE = "ctv_reference.nii.gz"


def check_reference(
    staging: Path, received: Path, upload_name: str, loaded: LoadedCT, roi_pattern: str = "CTV"
) -> Path:
    """Put a reference CTV uploaded with the CT onto the CT's grid as ``reference/…nii.gz``.

    ``received`` is an RTSTRUCT (the ROI named like ``roi_pattern``, or its only ROI, is
    rasterised onto the CT with the library's rasteriser) or a labelmap file on the CT's grid
    (NIfTI, NRRD, MHA; non-zero voxels are the CTV).

    Raises:
        UploadError: unreadable, no matching ROI, or not on the CT's grid (the library's
            message, prefixed with the reference's name).
    """
    from AutoCTVLib.io.identity import SeriesIdentity
    from AutoCTVLib.io.image_files import read_labelmap, write_labelmap
    from AutoCTVLib.io.rtstruct_read import match_roi, rasterise_roi, read_rtstruct

    geometry = loaded.volume.geometry
    try:
        with open(received, "rb") as stream:
            is_dicom = stream.read(132)[128:132] == b"DICM"
        if is_dicom:
            structure_set = read_rtstruct(received)
            names = structure_set.roi_names
            roi = names[0] if len(names) == 1 else match_roi(names, roi_pattern)
            identity = loaded.identity if isinstance(loaded.identity, SeriesIdentity) else None
            mask = rasterise_roi(structure_set, roi, geometry, identity)
        else:
            suffix = "".join(Path(upload_name).suffixes[-2:]) or ".nii.gz"
            named = received.with_name("reference" + suffix)
            received.replace(named)
            received = named
            mask = read_labelmap(received, reference=geometry).array != 0
    except AutoCTVError as error:
        message = _as_upload_message(str(error), received, upload_name)
        raise UploadError(f"reference {upload_name}: {message}") from error
    target = staging / REFERENCE_FOLDER / REFERENCE_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    write_labelmap(mask.astype("uint8"), geometry, target, overwrite=True)
    received.unlink(missing_ok=True)
    return target
