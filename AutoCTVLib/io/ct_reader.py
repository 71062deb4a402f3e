"""Read a planning CT from a DICOM folder or a NIfTI / NRRD / MetaImage file.

:func:`read_ct` is the one entry point. It dispatches on what ``path`` is:

* a folder → the DICOM CT series inside it (see :mod:`AutoCTVLib.io.dicom_ct`);
* ``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd`` → SimpleITK. The modality of
  such files is unknown; they are taken to be CT in Hounsfield units, and value ranges that
  suggest otherwise give a warning (not an error);
* one DICOM file (``.dcm``/``.dicom``/``.ima`` or any file with the DICOM signature) → read as a
  series of one file, which is then rejected as too few slices (or as not a CT).

Every result is a float32 HU :class:`~AutoCTVLib.volume.Volume` (z, y, x) on its LPS grid, the
input's identity (DICOM series or file hash) and warnings for the user.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from AutoCTVLib.errors import GeometryError, InputError, NotCTError
from AutoCTVLib.io.dicom_ct import (
    MIN_SLICES,
    check_memory_budget,
    is_dicom_file,
    read_dicom_ct,
)
from AutoCTVLib.io.file_integrity import scan_image_data
from AutoCTVLib.io.identity import FileIdentity, SeriesIdentity, sha256_of_file
from AutoCTVLib.volume import Volume

logger = logging.getLogger(__name__)

DEFAULT_MEMORY_BUDGET_BYTES = 4 * 1024**3
"""Largest CT (as float32) :func:`read_ct` loads unless told otherwise: 4 GiB."""

IMAGE_FILE_FORMATS = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".mha": "metaimage",
    ".mhd": "metaimage",
}
DICOM_FILE_SUFFIXES = (".dcm", ".dicom", ".ima")
_FORMAT_LABELS = {"nifti": "NIfTI", "nrrd": "NRRD", "metaimage": "MetaImage"}


@dataclass(frozen=True)
class LoadedCT:
    """A CT read from disk.

    Attributes:
        volume: float32 Hounsfield units indexed (z, y, x) on the input's LPS grid.
        identity: the DICOM series (slices in k order) or the file (path and sha256).
        warnings: human-readable notes about the input (skipped files, unusual values, ...).
    """

    volume: Volume
    identity: SeriesIdentity | FileIdentity
    warnings: tuple[str, ...] = ()


def read_ct(
    path: str | os.PathLike[str],
    *,
    series_uid: str | None = None,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
) -> LoadedCT:
    """Read a CT from a DICOM folder, one DICOM file, or a NIfTI/NRRD/MetaImage file.

    Args:
        path: the folder or file.
        series_uid: SeriesInstanceUID of the CT series to read when a DICOM folder holds
            several; not allowed for image files.
        memory_budget_bytes: largest float32 volume to load; checked before pixel data is read.

    Raises:
        InputError: missing, empty, unreadable or unsupported input (and its subclasses
            NotCTError, GeometryError, SeriesSelectionError, MemoryBudgetError).
    """
    source = Path(path).expanduser()
    if not source.exists():
        raise InputError(f"{source} does not exist")
    if source.is_dir() or _is_dicom_path(source):
        volume, identity, warnings = read_dicom_ct(
            source, series_uid=series_uid, memory_budget_bytes=memory_budget_bytes
        )
        metadata = {"source": str(source), "series_instance_uid": identity.series_instance_uid}
        return LoadedCT(replace_metadata(volume, metadata), identity, warnings)
    file_format = image_file_format(source)
    if file_format is None:
        supported = ", ".join(IMAGE_FILE_FORMATS)
        raise InputError(
            f"{source.name}: unsupported file type; AutoCTV reads a DICOM folder or a file "
            f"ending in {supported}"
        )
    if series_uid is not None:
        raise InputError(f"a series UID can only be chosen in a DICOM folder, not in {source.name}")
    return _read_image_file(source, file_format, memory_budget_bytes)


def image_file_format(path: Path) -> str | None:
    """'nifti', 'nrrd' or 'metaimage' from the file name, or None for other names."""
    name = path.name.lower()
    for suffix, file_format in IMAGE_FILE_FORMATS.items():
        if name.endswith(suffix):
            return file_format
    return None


def replace_metadata(volume: Volume, metadata: dict[str, str]) -> Volume:
    return Volume(volume.array, volume.geometry, {**volume.metadata, **metadata})


def _is_dicom_path(source: Path) -> bool:
    if image_file_format(source) is not None:
        return False
    return source.suffix.lower() in DICOM_FILE_SUFFIXES or is_dicom_file(source)


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception thrown", "/"))]
    line = (useful or lines or [type(error).__name__])[-1]
    return line.removeprefix("sitk::ERROR:").strip()


def _read_image_file(source: Path, file_format: str, memory_budget_bytes: int) -> LoadedCT:
    label = _FORMAT_LABELS[file_format]
    if source.stat().st_size == 0:
        raise InputError(f"{source.name} is empty (0 bytes)")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(source))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        scan_image_data(source, file_format)  # a cut or damaged file says so first
        raise InputError(
            f"{source.name} cannot be read as a {label} image: {_first_line(error)}"
        ) from error
    dimension, size = reader.GetDimension(), reader.GetSize()
    if dimension == 2:
        raise GeometryError(f"{source.name} is a 2D image; AutoCTV needs a 3D CT volume")
    if dimension != 3:
        raise GeometryError(
            f"{source.name} is a {dimension}D image (a time series or stack of volumes); "
            "AutoCTV needs a single 3D CT volume"
        )
    if reader.GetNumberOfComponents() != 1:
        raise GeometryError(
            f"{source.name} holds {reader.GetNumberOfComponents()} values per voxel (a vector "
            "or colour image); a CT holds one Hounsfield value per voxel"
        )
    if size[2] < MIN_SLICES:
        raise GeometryError(
            f"too few slices: {source.name} has {size[2]} slice(s), at least {MIN_SLICES} "
            "are needed"
        )
    check_memory_budget((size[2], size[1], size[0]), memory_budget_bytes, source.name)
    scan = scan_image_data(source, file_format)  # truncated, damaged; NaNs NIfTI would hide
    if scan.non_finite:
        raise InputError(_non_finite_message(source.name, scan.non_finite))
    try:
        image = sitk.Cast(reader.Execute(), sitk.sitkFloat32)
    except RuntimeError as error:
        raise InputError(
            f"{source.name} cannot be read as a {label} image: {_first_line(error)}"
        ) from error
    try:
        volume = Volume.from_sitk(image)
    except ValueError as error:
        raise GeometryError(f"{source.name} has an unusable voxel grid: {error}") from error
    ct_hu = volume.array
    non_finite = int(ct_hu.size - np.count_nonzero(np.isfinite(ct_hu)))
    if non_finite:
        raise InputError(_non_finite_message(source.name, non_finite))
    refuse_non_ct_values(ct_hu, source.name)
    identity = FileIdentity(
        path=str(source.resolve()),
        sha256=sha256_of_file(source),
        format=file_format,
        extra=_detached_data_identity(source, file_format),
    )
    metadata = {"source": str(source), "sha256": identity.sha256}
    warnings = tuple(_hounsfield_warnings(ct_hu, source.name))
    for warning in warnings:
        logger.info(warning)
    return LoadedCT(replace_metadata(volume, metadata), identity, warnings)


_DATA_FILE_PATTERNS = {
    "nrrd": re.compile(r"^data ?file:\s*(\S.*?)\s*$", re.IGNORECASE | re.MULTILINE),
    "metaimage": re.compile(r"^ElementDataFile\s*=\s*(\S.*?)\s*$", re.MULTILINE),
}


def _detached_data_identity(source: Path, file_format: str) -> dict[str, str]:
    """For a header-only file (.nhdr, .mhd), the name and sha256 of its voxel data file."""
    pattern = _DATA_FILE_PATTERNS.get(file_format)
    if pattern is None or source.suffix.lower() not in (".nhdr", ".mhd"):
        return {}
    with open(source, "rb") as handle:
        header = handle.read(65536).decode("latin-1")
    match = pattern.search(header)
    if match is None:
        return {}
    data_file = source.parent / match.group(1)
    if not data_file.is_file():
        return {}
    return {"data_file": data_file.name, "data_file_sha256": sha256_of_file(data_file)}


def _non_finite_message(name: str, count: int) -> str:
    return (
        f"{name} contains {count} NaN or infinite voxel value(s); a CT must hold finite "
        "Hounsfield units"
    )


LABELMAP_MAX_VALUES = 64
"""Most distinct whole values an image may hold and still be refused as a labelmap."""


def refuse_non_ct_values(ct_hu: np.ndarray, name: str) -> None:
    """Refuse values that cannot be a CT in Hounsfield units.

    A CT of a patient always holds air (about −1000 HU) outside the body and thousands of
    distinct values. Refused (:class:`NotCTError`):

    * a *probability map* or normalised image: every value within [0, 1];
    * a *labelmap* (e.g. a segmentation given as the CT): no value below 0 (no air), whole
      numbers only, and at most :data:`LABELMAP_MAX_VALUES` distinct values.

    Other images without air keep the softer warning of :func:`_hounsfield_warnings` (a CT
    stored as raw unsigned values is still a CT).
    """
    if ct_hu.size == 0:
        return
    low, high = float(ct_hu.min()), float(ct_hu.max())
    if low < 0.0:
        return
    if high <= 65535 and np.array_equal(ct_hu, np.rint(ct_hu)):
        counts = np.bincount(ct_hu.astype(np.int64).ravel(), minlength=1)
        distinct = int(np.count_nonzero(counts))
        if distinct <= LABELMAP_MAX_VALUES:
            raise NotCTError(
                f"{name} is not a CT but looks like a labelmap: {distinct} distinct whole "
                f"value(s) from {low:g} to {high:g} and no air (about −1000 HU); give the CT "
                "itself, not a segmentation"
            )
    if high <= 1.0:
        raise NotCTError(
            f"{name} is not a CT: every value lies between 0 and 1 ({low:.3g} to {high:.3g}), as "
            "in a probability map or a normalised image, and there is no air (about −1000 HU); "
            "give the CT in Hounsfield units"
        )


def _hounsfield_warnings(ct_hu: np.ndarray, name: str) -> list[str]:
    """Notes when the values do not look like Hounsfield units (air is about −1000 HU)."""
    low = float(ct_hu.min())
    if low >= 0.0:  # (values within [0, 1] and labelmaps were refused before)
        return [
            f"{name}: no value below 0 (air is about −1000 HU); the file may hold raw stored "
            "values rather than Hounsfield units"
        ]
    return []
