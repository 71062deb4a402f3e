"""Provenance of a result node, stored as ``AutoCTV.*`` node attributes (saved with the scene).

Every segmentation and uncertainty node AutoCTV creates records which model made it, with which
settings, from which input (the fields of :mod:`AutoCTVLib.provenance`, each as
``AutoCTV.<key>``: plain strings readable in Slicer's node information panel, nested values as
JSON).
"""

from __future__ import annotations

from typing import Any

import slicer

from AutoCTVLib.provenance import (
    ATTRIBUTE_PREFIX,
    PROVENANCE_KEYS,
    Provenance,
    provenance_fields,
    provenance_from_fields,
    voxel_sha256,
)
from AutoCTVLib.volume import Volume

from .volume_nodes import volume_from_node

__all__ = ["Provenance", "input_identity", "read_provenance", "write_provenance"]


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
    for key in PROVENANCE_KEYS:
        if node.GetAttribute(ATTRIBUTE_PREFIX + key) is not None:
            node.RemoveAttribute(ATTRIBUTE_PREFIX + key)


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
