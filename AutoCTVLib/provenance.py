"""Provenance of an AutoCTV result: which model made it, with which settings, from which input.

Front ends store it with their results as key → string pairs (the Slicer module as ``AutoCTV.*``
node attributes, the ``.seg.nrrd`` writer as header fields); plain strings as they are, nested
values as JSON::

    provenance_version   "1"
    result_kind          "segmentation" | "entropy" | ...
    model_name           e.g. "ctv_pelvis_phantom"
    model_version        e.g. "0.2.0"
    model_sha256         hex SHA-256 of the weights file
    software_version     AutoCTVLib version that produced the result
    created_utc          ISO 8601 UTC time stamp
    settings             JSON object: device, MC samples, threshold, ...
    input                JSON object: identity of the input CT (e.g. voxel_sha256)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from AutoCTVLib import __version__ as autoctv_version
from AutoCTVLib.volume import Volume

ATTRIBUTE_PREFIX = "AutoCTV."
PROVENANCE_VERSION = "1"

_TEXT_FIELDS = (
    "result_kind",
    "model_name",
    "model_version",
    "model_sha256",
    "software_version",
    "created_utc",
)
_JSON_FIELDS = {"settings": "settings", "input_identity": "input"}
#: Every key a stored provenance has.
PROVENANCE_KEYS = ("provenance_version", *_TEXT_FIELDS, *_JSON_FIELDS.values())


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Provenance:
    """Where a result came from. ``settings`` and ``input_identity`` hold JSON-able values."""

    model_name: str
    model_version: str
    model_sha256: str
    settings: Mapping[str, Any]
    input_identity: Mapping[str, Any]
    result_kind: str = "segmentation"
    software_version: str = autoctv_version
    created_utc: str = field(default_factory=_utc_now)


def provenance_fields(provenance: Provenance) -> dict[str, str]:
    """The provenance as key → string pairs (keys without the ``AutoCTV.`` prefix).

    The same pairs suit file writers that take free-form provenance strings (the ``.seg.nrrd``
    writer stores them as ``AutoCTV.<key>`` header fields).

    Raises:
        ValueError: ``settings`` or ``input_identity`` cannot be written as JSON.
    """
    fields = {"provenance_version": PROVENANCE_VERSION}
    for name in _TEXT_FIELDS:
        fields[name] = str(getattr(provenance, name))
    for name, key in _JSON_FIELDS.items():
        try:
            fields[key] = json.dumps(dict(getattr(provenance, name)), sort_keys=True)
        except (TypeError, ValueError) as error:
            raise ValueError(f"provenance {name} is not JSON-serialisable: {error}") from error
    return fields


def provenance_from_fields(fields: Mapping[str, str], owner: str = "") -> Provenance | None:
    """Inverse of :func:`provenance_fields`; ``None`` when ``fields`` hold no provenance.

    Args:
        fields: key → string pairs, keys without the ``AutoCTV.`` prefix.
        owner: what the fields belong to, for error messages (e.g. a node name).

    Raises:
        ValueError: the fields are incomplete, of another version, or not valid JSON.
    """
    where = f"'{owner}': " if owner else ""
    version = fields.get("provenance_version")
    if version is None:
        return None
    if version != PROVENANCE_VERSION:
        raise ValueError(f"{where}unknown AutoCTV provenance version {version}")
    missing = [key for key in (*_TEXT_FIELDS, *_JSON_FIELDS.values()) if key not in fields]
    if missing:
        names = ", ".join(ATTRIBUTE_PREFIX + key for key in missing)
        raise ValueError(f"{where}incomplete AutoCTV provenance, missing {names}")
    values: dict[str, Any] = {name: fields[name] for name in _TEXT_FIELDS}
    for name, key in _JSON_FIELDS.items():
        try:
            decoded = json.loads(fields[key])
        except json.JSONDecodeError as error:
            raise ValueError(f"{where}{ATTRIBUTE_PREFIX}{key} is not JSON") from error
        if not isinstance(decoded, dict):
            raise ValueError(f"{where}{ATTRIBUTE_PREFIX}{key} is not a JSON object")
        values[name] = decoded
    return Provenance(**values)


def voxel_sha256(volume: Volume) -> str:
    """Hex SHA-256 of a volume's voxel values, dtype, shape and LPS grid.

    Identifies an input even when it has no file or DICOM UID (e.g. edited in Slicer).
    """
    geometry = volume.geometry
    header = json.dumps(
        {
            "dtype": volume.array.dtype.str,
            "shape_zyx": list(geometry.shape_zyx),
            "spacing_xyz_mm": list(geometry.spacing_xyz_mm),
            "origin_xyz_mm": list(geometry.origin_xyz_mm),
            "direction": list(geometry.direction),
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(header.encode("utf-8"))
    digest.update(volume.array.tobytes(order="C"))
    return digest.hexdigest()
