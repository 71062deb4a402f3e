"""Provenance of a result node, stored as MRML node attributes (saved with the scene).

Every segmentation and uncertainty node AutoCTV creates records which model made it, with which
settings, from which input. The attributes are namespaced with the prefix ``AutoCTV.``; plain
strings are stored as they are (readable in Slicer's node information panel), nested values as
JSON::

    AutoCTV.provenance_version   "1"
    AutoCTV.result_kind          "segmentation" | "mean_probability" | "entropy" | ...
    AutoCTV.model_name           e.g. "autoctv-pelvis-ctv"
    AutoCTV.model_version        e.g. "1.0.0"
    AutoCTV.model_sha256         hex SHA-256 of the weights file
    AutoCTV.software_version     AutoCTVLib version that produced the result
    AutoCTV.created_utc          ISO 8601 UTC time stamp
    AutoCTV.settings             JSON object: device, MC samples, threshold, ...
    AutoCTV.input                JSON object: identity of the input CT (see input_identity)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import slicer

from AutoCTVLib import __version__ as autoctv_version
from AutoCTVLib.volume import Volume

from .volume_nodes import volume_from_node

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


def write_provenance(node, provenance: Provenance) -> None:
    """Store ``provenance`` as ``AutoCTV.*`` attributes of ``node`` (replacing earlier ones).

    Raises:
        ValueError: ``settings`` or ``input_identity`` cannot be written as JSON (the node is
            left unchanged).
    """
    fields = provenance_fields(provenance)
    was_modifying = node.StartModify()
    try:
        clear_provenance(node)
        for key, value in fields.items():
            node.SetAttribute(ATTRIBUTE_PREFIX + key, value)
    finally:
        node.EndModify(was_modifying)


def read_provenance(node) -> Provenance | None:
    """The provenance stored on ``node``; ``None`` if it has none.

    Raises:
        ValueError: the attributes exist but are incomplete or not valid JSON (edited by hand).
    """
    fields = {
        name[len(ATTRIBUTE_PREFIX) :]: node.GetAttribute(name)
        for name in node.GetAttributeNames()
        if name.startswith(ATTRIBUTE_PREFIX)
    }
    return provenance_from_fields(fields, owner=node.GetName() or "")


def clear_provenance(node) -> None:
    """Remove every ``AutoCTV.*`` provenance attribute from ``node``."""
    for key in ("provenance_version", *_TEXT_FIELDS, *_JSON_FIELDS.values()):
        if node.GetAttribute(ATTRIBUTE_PREFIX + key) is not None:
            node.RemoveAttribute(ATTRIBUTE_PREFIX + key)


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


def input_identity(volume_node, volume: Volume | None = None) -> dict[str, Any]:
    """A JSON-able identity of an input CT volume node.

    Keys: ``kind`` ("dicom" when the node came from a DICOM series, "file" when it was read
    from a file, otherwise "scene"), ``node_name``, ``voxel_sha256``, and when known
    ``series_instance_uid``, ``study_instance_uid`` and ``file_path``.

    Args:
        volume_node: the CT volume node.
        volume: the same node already converted with ``volume_from_node`` (saves a copy).
    """
    volume = volume if volume is not None else volume_from_node(volume_node)
    identity: dict[str, Any] = {
        "kind": "scene",
        "node_name": volume_node.GetName() or "",
        "voxel_sha256": voxel_sha256(volume),
    }
    storage_node = volume_node.GetStorageNode()
    file_path = storage_node.GetFileName() if storage_node is not None else None
    if file_path:
        identity["kind"] = "file"
        identity["file_path"] = file_path
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(volume_node.GetScene())
    dicom_uid_name = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName()
    item = hierarchy.GetItemByDataNode(volume_node)
    if item != hierarchy.GetInvalidItemID():
        series_uid = hierarchy.GetItemUID(item, dicom_uid_name)
        if series_uid:
            identity["kind"] = "dicom"
            identity["series_instance_uid"] = series_uid
            study_uid = hierarchy.GetItemUID(hierarchy.GetItemParent(item), dicom_uid_name)
            if study_uid:
                identity["study_instance_uid"] = study_uid
    return identity
