"""Labelmaps and float maps as NIfTI (``.nii``, ``.nii.gz``) or NRRD (``.nrrd``) files.

Every writer puts the array on the exact grid it is given (size, spacing, origin and direction,
including flipped and oblique scans) and picks the format by the file name's suffix. Arrays are
indexed (z, y, x); physical coordinates are LPS millimetres (see :mod:`AutoCTVLib.volume`).

Precision of the stored grid: NRRD keeps spacing, origin and direction as decimal text with full
double precision, so a round trip is exact. NIfTI-1 stores them as 32-bit floats, so a round trip
agrees to about 1e-6 relative (sub-micrometre); values are exact in both.

Files are written atomically (temporary name, then rename) and compressed (gzip) except for a
plain ``.nii``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from AutoCTVLib.errors import GeometryError, InputError, OutputError
from AutoCTVLib.io.atomic import atomic_path
from AutoCTVLib.volume import Geometry, Volume

logger = logging.getLogger(__name__)

#: File name endings the writers understand, and the format each selects.
SUPPORTED_SUFFIXES: dict[str, str] = {".nii.gz": "NIfTI", ".nii": "NIfTI", ".nrrd": "NRRD"}


def image_format_for(path: str | os.PathLike[str]) -> str:
    """The format ("NIfTI" or "NRRD") a file name selects; :class:`OutputError` if none.

    A Slicer segmentation (``.seg.nrrd``) is refused here: write it with
    :func:`AutoCTVLib.io.seg_nrrd.write_seg_nrrd`.
    """
    name = Path(path).name.lower()
    if name.endswith(".seg.nrrd"):
        raise OutputError(
            f"{Path(path).name}: a .seg.nrrd file is a Slicer segmentation; "
            "write it as a segmentation, or choose a .nii.gz or .nrrd name for a labelmap"
        )
    for suffix, image_format in SUPPORTED_SUFFIXES.items():
        if name.endswith(suffix):
            return image_format
    allowed = ", ".join(SUPPORTED_SUFFIXES)
    raise OutputError(f"{Path(path).name}: unsupported file type; use one of {allowed}")


def write_labelmap(
    array_zyx: np.ndarray,
    geometry: Geometry,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a labelmap (uint8, 0 = background) on ``geometry`` to ``path``.

    Args:
        array_zyx: integer or boolean array indexed (z, y, x), values 0..255, shape
            ``geometry.shape_zyx``.
        geometry: the grid (LPS mm) the labelmap lies on.
        path: ``.nii.gz``, ``.nii`` or ``.nrrd`` file name.
        metadata: provenance strings. NRRD keeps every key as a header field; NIfTI keeps only
            ``descrip`` (80 characters).
        overwrite: replace an existing file; otherwise :class:`OutputError`.

    Returns:
        The path written.
    """
    labels = _as_uint8_labels(np.asarray(array_zyx))
    return _write(labels, geometry, path, metadata, overwrite)


def write_float_map(
    array_zyx: np.ndarray,
    geometry: Geometry,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a float32 map (probability, entropy, ...) on ``geometry`` to ``path``.

    Args:
        array_zyx: real-valued array indexed (z, y, x) with shape ``geometry.shape_zyx``;
            stored as float32.
        geometry: the grid (LPS mm) the map lies on.
        path: ``.nii.gz``, ``.nii`` or ``.nrrd`` file name.
        metadata: provenance strings (see :func:`write_labelmap`).
        overwrite: replace an existing file; otherwise :class:`OutputError`.

    Returns:
        The path written.
    """
    values = np.asarray(array_zyx)
    if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        raise ValueError(f"a float map needs real numbers, got dtype {values.dtype}")
    return _write(values.astype(np.float32, copy=False), geometry, path, metadata, overwrite)


def read_labelmap(path: str | os.PathLike[str], reference: Geometry | None = None) -> Volume:
    """Read a labelmap file as a uint8 :class:`Volume` indexed (z, y, x).

    Args:
        path: any 3D image SimpleITK reads (NIfTI, NRRD, MHA, ...) holding whole numbers 0..255.
        reference: when given, the file's grid must match it (shape exactly; spacing and origin
            within 1e-3 mm, direction within 1e-5), otherwise :class:`GeometryError`.

    Raises:
        InputError: the file is missing, unreadable, not 3D, or not a labelmap.
        GeometryError: the grid differs from ``reference``.
    """
    source = Path(path)
    if not source.is_file():
        raise InputError(f"labelmap file {source} does not exist")
    try:
        image = sitk.ReadImage(str(source))
    except RuntimeError as error:
        raise InputError(f"{source.name} cannot be read as an image file") from error
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{source.name} is not a 3D single-channel labelmap "
            f"({image.GetDimension()}D, {image.GetNumberOfComponentsPerPixel()} channel(s))"
        )
    values = sitk.GetArrayFromImage(image)
    try:
        labels = _as_uint8_labels(values)
    except ValueError as error:
        raise InputError(f"{source.name} is not a labelmap: {error}") from error
    geometry = Geometry.from_sitk(image)
    if reference is not None and not geometry.is_close(reference):
        difference = describe_grid_difference(geometry, reference)
        raise GeometryError(f"{source.name} does not lie on the expected grid: {difference}")
    return Volume(labels, geometry, {"source_path": str(source)})


def describe_grid_difference(found: Geometry, expected: Geometry) -> str:
    """A short phrase naming how two grids differ (for error messages)."""
    if found.shape_zyx != expected.shape_zyx:
        return f"it has {found.describe()}, the reference {expected.describe()}"
    parts = []
    spacing_diff = np.abs(np.subtract(found.spacing_xyz_mm, expected.spacing_xyz_mm)).max()
    origin_diff = np.linalg.norm(np.subtract(found.origin_xyz_mm, expected.origin_xyz_mm))
    direction_diff = np.abs(np.subtract(found.direction, expected.direction)).max()
    if spacing_diff > 1e-3:
        parts.append(f"spacing differs by up to {spacing_diff:.3g} mm")
    if origin_diff > 1e-3:
        parts.append(f"origin is {origin_diff:.3g} mm away")
    if direction_diff > 1e-5:
        parts.append(f"orientation differs (largest cosine difference {direction_diff:.3g})")
    return "; ".join(parts) or "the grids differ"


def _as_uint8_labels(values: np.ndarray) -> np.ndarray:
    """Whole numbers 0..255 (bool, integer or integral floats) as uint8; ValueError otherwise."""
    if values.dtype == np.bool_:
        return values.astype(np.uint8)
    if values.dtype == np.uint8:
        return values
    if np.issubdtype(values.dtype, np.floating):
        if not np.all(np.isfinite(values)) or not np.array_equal(values, np.round(values)):
            raise ValueError("it holds fractional or non-finite values")
    elif not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"unsupported value type {values.dtype}")
    if values.size and (values.min() < 0 or values.max() > 255):
        raise ValueError(
            f"label values must lie in 0..255, found {values.min():g}..{values.max():g}"
        )
    return values.astype(np.uint8)


def _write(
    array_zyx: np.ndarray,
    geometry: Geometry,
    path: str | os.PathLike[str],
    metadata: Mapping[str, str] | None,
    overwrite: bool,
) -> Path:
    target = Path(path)
    image_format = image_format_for(target)
    if tuple(array_zyx.shape) != geometry.shape_zyx:
        raise ValueError(
            f"array shape {array_zyx.shape} does not match grid shape {geometry.shape_zyx}"
        )
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_zyx), isVector=False)
    geometry.apply_to(image)
    for key, value in (metadata or {}).items():
        image.SetMetaData(str(key), str(value))
    compress = not target.name.lower().endswith(".nii")
    with atomic_path(target, overwrite=overwrite) as tmp:
        try:
            sitk.WriteImage(image, str(tmp), useCompression=compress)
        except RuntimeError as error:
            raise OutputError(f"{target} could not be written ({image_format})") from error
    logger.debug("wrote %s (%s, %s)", target, image_format, geometry.describe())
    return target
