"""The AutoCTV training dataset file (HDF5), format version 1: writing and reading.

Layout (arrays indexed (z, y, x), geometry in LPS mm)::

    /                       attrs: format="autoctv-dataset", format_version=1, created_by,
                                   created_utc, roi_pattern, label_names (JSON list, label order),
                                   skipped_cases (JSON: case ID -> reason it was left out)
    /cases/<case_id>/ct                    int16 Hounsfield units, chunked + gzip
    /cases/<case_id>/labels/<label_name>   uint8 0/1, same grid ("CTV" first)
    /cases/<case_id>        attrs: spacing_xyz_mm (3), origin_xyz_mm (3), direction (9, row-major),
                                   source, source_kind ("dicom" | "nifti"), identity (JSON),
                                   roi_names (JSON: label name -> ROI or file actually used),
                                   qc (JSON, see AutoCTVLib.dataset.qc)

CT values are stored as whole Hounsfield units in int16 (rounded, clipped to -32768..32767).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Union

import h5py
import numpy as np

from AutoCTVLib import __version__
from AutoCTVLib.errors import InputError
from AutoCTVLib.volume import Geometry, Volume

FORMAT_NAME = "autoctv-dataset"
FORMAT_VERSION = 1
CASES_GROUP = "cases"
SOURCE_KINDS = ("dicom", "nifti")

_INT16_MIN, _INT16_MAX = np.iinfo(np.int16).min, np.iinfo(np.int16).max
_GZIP_LEVEL = 4
_JSON_ATTRS = ("identity", "roi_names", "qc")

PathOrHandle = Union[str, os.PathLike[str], h5py.File]


def hu_to_int16(ct_hu: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Round Hounsfield units to whole numbers and clip them to the int16 range.

    Args:
        ct_hu: CT values in HU, any real dtype, indexed (z, y, x).

    Returns:
        The int16 array and warnings: one when any voxel changed by more than 0.5 HU (values
        outside -32768..32767 were clipped).

    Raises:
        InputError: the CT holds NaN or infinite values.
    """
    values = np.asarray(ct_hu)
    if np.issubdtype(values.dtype, np.floating) and not np.all(np.isfinite(values)):
        count = int(np.count_nonzero(~np.isfinite(values)))
        raise InputError(f"the CT holds {count} voxel(s) that are not finite numbers (NaN/inf)")
    stored = np.clip(np.rint(values.astype(np.float64)), _INT16_MIN, _INT16_MAX).astype(np.int16)
    warnings = []
    changed = np.abs(stored.astype(np.float64) - values) > 0.5
    if changed.any():
        warnings.append(
            f"{int(changed.sum())} CT voxel(s) changed by more than 0.5 HU when stored as int16 "
            f"(values {float(values.min()):g}..{float(values.max()):g} HU clipped to "
            f"{_INT16_MIN}..{_INT16_MAX})"
        )
    return stored, warnings


def write_dataset_header(
    h5file: h5py.File, *, roi_pattern: str, label_names: Sequence[str]
) -> h5py.Group:
    """Write the root attributes of a new dataset file and create the ``cases`` group."""
    for name in label_names:
        _check_name(name, "label name")
    h5file.attrs["format"] = FORMAT_NAME
    h5file.attrs["format_version"] = FORMAT_VERSION
    h5file.attrs["created_by"] = f"AutoCTV {__version__}"
    h5file.attrs["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    h5file.attrs["roi_pattern"] = roi_pattern
    h5file.attrs["label_names"] = json.dumps(list(label_names))
    h5file.attrs["skipped_cases"] = json.dumps({})
    return h5file.require_group(CASES_GROUP)


def record_skipped_cases(h5file: h5py.File, reasons: Mapping[str, str]) -> None:
    """Store which case folders were left out of the dataset, and why (root attribute)."""
    h5file.attrs["skipped_cases"] = json.dumps(dict(reasons))


def write_case(
    h5file: h5py.File,
    case_id: str,
    ct_hu_int16: np.ndarray,
    labels: Mapping[str, np.ndarray],
    geometry: Geometry,
    *,
    source: str,
    source_kind: str,
    identity: Mapping[str, object],
    roi_names: Mapping[str, str],
    qc: Mapping[str, object],
) -> None:
    """Add one case: int16 CT, uint8 labels (in the given order) and its attributes."""
    _check_name(case_id, "case ID")
    if source_kind not in SOURCE_KINDS:
        raise ValueError(f"source_kind must be one of {SOURCE_KINDS}, got {source_kind!r}")
    if ct_hu_int16.dtype != np.int16 or tuple(ct_hu_int16.shape) != geometry.shape_zyx:
        raise ValueError("the CT must be int16 with the grid's shape")
    cases = h5file.require_group(CASES_GROUP)
    if case_id in cases:
        raise ValueError(f"case {case_id!r} is already in the dataset")
    group = cases.create_group(case_id)
    chunks = tuple(min(n, c) for n, c in zip(geometry.shape_zyx, (16, 128, 128)))
    storage = {"chunks": chunks, "compression": "gzip", "compression_opts": _GZIP_LEVEL}
    group.create_dataset("ct", data=ct_hu_int16, shuffle=True, **storage)
    label_group = group.create_group("labels")
    for name, mask in labels.items():
        _check_name(name, "label name")
        if tuple(mask.shape) != geometry.shape_zyx:
            raise ValueError(f"label {name!r} does not have the CT's shape")
        label_group.create_dataset(name, data=np.asarray(mask, dtype=np.uint8), **storage)
    group.attrs["spacing_xyz_mm"] = np.asarray(geometry.spacing_xyz_mm, dtype=np.float64)
    group.attrs["origin_xyz_mm"] = np.asarray(geometry.origin_xyz_mm, dtype=np.float64)
    group.attrs["direction"] = np.asarray(geometry.direction, dtype=np.float64)
    group.attrs["source"] = str(source)
    group.attrs["source_kind"] = source_kind
    group.attrs["identity"] = json.dumps(dict(identity), default=str)
    group.attrs["roi_names"] = json.dumps(dict(roi_names))
    group.attrs["qc"] = json.dumps(dict(qc), default=_json_default)


def open_dataset(path: str | os.PathLike[str]) -> h5py.File:
    """Open an AutoCTV dataset read-only, after checking its format and version.

    Use as a context manager (``with open_dataset(path) as dataset: ...``).

    Raises:
        InputError: missing file, not HDF5, not an AutoCTV dataset, or written by a newer
            version of the format.
    """
    source = Path(path)
    if not source.is_file():
        raise InputError(f"dataset file {source} does not exist")
    if not h5py.is_hdf5(source):
        raise InputError(f"{source.name} is not an HDF5 file")
    h5file = h5py.File(source, "r")
    try:
        check_format(h5file, source.name)
    except Exception:
        h5file.close()
        raise
    return h5file


def check_format(h5file: h5py.File, label: str = "the file") -> None:
    """Raise :class:`InputError` unless ``h5file`` is a dataset this version can read."""
    found_format = _text(h5file.attrs.get("format", ""))
    if found_format != FORMAT_NAME:
        raise InputError(f"{label} is an HDF5 file but not an AutoCTV dataset")
    try:
        version = int(h5file.attrs.get("format_version", -1))
    except (TypeError, ValueError):
        version = -1
    if version < 1:
        raise InputError(f"{label} has no valid AutoCTV dataset format version")
    if version > FORMAT_VERSION:
        raise InputError(
            f"{label} uses dataset format version {version}, written by a newer AutoCTV; "
            f"this version reads up to version {FORMAT_VERSION}"
        )
    if CASES_GROUP not in h5file:
        raise InputError(f"{label} is an AutoCTV dataset without a '{CASES_GROUP}' group")


def dataset_attrs(path_or_handle: PathOrHandle) -> dict[str, object]:
    """The dataset's root attributes, ``label_names`` and ``skipped_cases`` decoded from JSON."""
    with _opened(path_or_handle) as h5file:
        attrs = {key: _plain(value) for key, value in h5file.attrs.items()}
    attrs["label_names"] = json.loads(str(attrs.get("label_names", "[]")))
    attrs["skipped_cases"] = json.loads(str(attrs.get("skipped_cases", "{}")))
    return attrs


def list_cases(path_or_handle: PathOrHandle) -> list[str]:
    """Case IDs in the dataset, sorted."""
    with _opened(path_or_handle) as h5file:
        return sorted(h5file[CASES_GROUP].keys())


def case_attrs(path_or_handle: PathOrHandle, case_id: str) -> dict[str, object]:
    """One case's attributes (JSON fields decoded, vectors as tuples) without reading voxels."""
    with _opened(path_or_handle) as h5file:
        return _decoded_attrs(_case_group(h5file, case_id))


def read_case(
    path_or_handle: PathOrHandle, case_id: str
) -> tuple[Volume, dict[str, Volume], dict[str, object]]:
    """Read one case.

    Returns:
        ``(ct, labels, attrs)``: the CT as a float32 HU :class:`Volume`, a dict label name →
        uint8 :class:`Volume` on the same grid (dataset label order), and the decoded attributes.
    """
    with _opened(path_or_handle) as h5file:
        group = _case_group(h5file, case_id)
        attrs = _decoded_attrs(group)
        geometry = Geometry(
            shape_zyx=group["ct"].shape,
            spacing_xyz_mm=attrs["spacing_xyz_mm"],
            origin_xyz_mm=attrs["origin_xyz_mm"],
            direction=attrs["direction"],
        )
        metadata = {"case_id": case_id, "source": str(attrs.get("source", ""))}
        ct = Volume(group["ct"][...].astype(np.float32), geometry, dict(metadata))
        label_order = json.loads(str(_plain(h5file.attrs.get("label_names", "[]"))))
        names = [n for n in label_order if n in group["labels"]]
        names += sorted(n for n in group["labels"] if n not in names)
        labels = {
            name: Volume(group["labels"][name][...].astype(np.uint8), geometry, dict(metadata))
            for name in names
        }
    return ct, labels, attrs


def iter_cases(
    path_or_handle: PathOrHandle,
) -> Iterator[tuple[str, Volume, dict[str, Volume], dict[str, object]]]:
    """Yield ``(case_id, ct, labels, attrs)`` for every case, one at a time."""
    with _opened(path_or_handle) as h5file:
        for case_id in sorted(h5file[CASES_GROUP].keys()):
            ct, labels, attrs = read_case(h5file, case_id)
            yield case_id, ct, labels, attrs


@contextmanager
def _opened(path_or_handle: PathOrHandle) -> Iterator[h5py.File]:
    if isinstance(path_or_handle, h5py.File):
        check_format(path_or_handle)
        yield path_or_handle
        return
    h5file = open_dataset(path_or_handle)
    try:
        yield h5file
    finally:
        h5file.close()


def _case_group(h5file: h5py.File, case_id: str) -> h5py.Group:
    cases = h5file[CASES_GROUP]
    if case_id not in cases:
        raise InputError(f"the dataset has no case {case_id!r}")
    return cases[case_id]


def _decoded_attrs(group: h5py.Group) -> dict[str, object]:
    attrs: dict[str, object] = {}
    for key, value in group.attrs.items():
        value = _plain(value)
        if key in _JSON_ATTRS:
            value = json.loads(str(value))
        elif isinstance(value, list):
            value = tuple(value)
        attrs[key] = value
    return attrs


def _plain(value: object) -> object:
    """h5py attribute value as plain Python (str, int, float, list)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _text(value: object) -> str:
    return str(_plain(value))


def _check_name(name: str, what: str) -> None:
    if not name or "/" in name or name in (".", "..") or name != name.strip():
        raise ValueError(f"invalid {what} {name!r} for an HDF5 dataset (no '/', no blanks at ends)")


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return str(value)
