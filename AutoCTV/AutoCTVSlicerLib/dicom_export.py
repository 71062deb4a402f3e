"""DICOM RTSTRUCT and DICOM SEG export of segmentation nodes through the AutoCTV library.

The export references the CT's own DICOM series when the CT node came from Slicer's DICOM module
(which records ``DICOM.instanceUIDs`` on the node), else a CT series written for the export (see
:mod:`AutoCTVLib.io.export_reference`). Masks come from the segments on the CT's exact grid;
the segmentation's provenance (model, settings, input) goes into the RTSTRUCT's
StructureSetDescription and the SEG's algorithm parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import slicer
import vtk

from AutoCTVLib import terminology as ctv_codes
from AutoCTVLib.compat import dicom_seg_supported
from AutoCTVLib.errors import InputError, OutputError
from AutoCTVLib.io.export_reference import (
    FileForInstance,
    ReferencedCT,
    dicom_name_part,
    new_object_file,
    series_of_instances,
    write_reference_ct,
)
from AutoCTVLib.provenance import provenance_fields

from .provenance import read_provenance
from .segmentation_nodes import labelmap_from_segment, segment_ids
from .volume_nodes import volume_from_node

__all__ = ["ExportResult", "dicom_seg_supported", "export_dicom_seg", "export_rtstruct"]

logger = logging.getLogger(__name__)

#: Node attribute Slicer's DICOM import sets: the SOP instance UIDs of the volume's images.
DICOM_INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"

#: Generic coded meaning for a segment that is not the CTV (SNOMED CT "Tissue", as Slicer's
#: default terminology uses for both category and type).
GENERIC_TISSUE = ctv_codes.CodedConcept("85756007", "SCT", "Tissue")


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Attributes:
        files: the RTSTRUCT/SEG file and, when a CT series had to be written, its images.
        object_file: the RTSTRUCT or SEG file itself.
        ct_series_instance_uid: the CT series the object references.
        ct_series_written: True when the CT was written as a new series for this export.
    """

    object_file: Path
    ct_series_instance_uid: str
    ct_series_written: bool
    files: tuple[Path, ...] = field(default_factory=tuple)


def default_file_for_instance() -> FileForInstance | None:
    """Slicer's DICOM database lookup (SOP instance UID → file), if the application has one."""
    database = getattr(slicer, "dicomDatabase", None)
    if database is None or not getattr(database, "isOpen", False):
        return None
    return database.fileForInstance


def referenced_ct(
    volume_node, out_dir: Path, file_for_instance: FileForInstance | None
) -> ReferencedCT:
    """The CT series to reference: the DICOM series the node was loaded from (its
    ``DICOM.instanceUIDs``, checked against the node's grid by
    :func:`AutoCTVLib.io.export_reference.series_of_instances`), else a newly written one."""
    uids = (volume_node.GetAttribute(DICOM_INSTANCE_UIDS_ATTRIBUTE) or "").split()
    if uids and file_for_instance is not None:
        geometry = volume_from_node(volume_node).geometry
        return series_of_instances(uids, file_for_instance, geometry, volume_node.GetName())
    ct = volume_from_node(volume_node, dtype=np.float32)
    return write_reference_ct(ct, volume_node.GetName() or "CT", out_dir)


def _write_object(
    segmentation_node, ct_node, out_dir, file_for_instance, prefix: str, write
) -> ExportResult:
    """The steps both exports share: the referenced CT, a new file name, ``write(reference,
    name, path)``, and the result."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if file_for_instance is None:
        file_for_instance = default_file_for_instance()
    reference = referenced_ct(ct_node, out_dir, file_for_instance)
    name = dicom_name_part(segmentation_node.GetName() or "AutoCTV", 40)
    path = new_object_file(out_dir, prefix, name)
    write(reference, name, path)
    logger.info("exported %s to %s", segmentation_node.GetName(), path)
    return ExportResult(
        object_file=path,
        ct_series_instance_uid=reference.identity.series_instance_uid,
        ct_series_written=reference.written,
        files=(path, *reference.files),
    )


def _segment_color_255(segment) -> tuple[int, int, int]:
    return tuple(round(min(1.0, max(0.0, float(c))) * 255) for c in segment.GetColor())


def is_ctv_segment(segment) -> bool:
    """True for a segment named "CTV…" or coded as Clinical Target Volume (SCT 228792002)."""
    tag = vtk.reference("")
    coded = segment.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), tag) and (
        ctv_codes.CTV_TYPE.value in str(tag)
    )
    return bool(coded) or segment.GetName().strip().upper().startswith("CTV")


def _provenance(segmentation_node):
    """The node's provenance; None when it has none or it was edited into an unreadable state."""
    try:
        return read_provenance(segmentation_node)
    except ValueError:
        return None


def _generation(provenance) -> tuple[str, str]:
    """(RT ROI generation algorithm, description) from a node's provenance (or None)."""
    if provenance is None:
        return "MANUAL", ""
    algorithm = "SEMIAUTOMATIC" if provenance.result_kind.startswith("completion") else "AUTOMATIC"
    return algorithm, f"{provenance.model_name} {provenance.model_version}"[:64]


def _chosen_segment_ids(segmentation_node, wanted: Sequence[str] | None) -> list[str]:
    available = segment_ids(segmentation_node)
    if wanted is None:
        return available
    unknown = [segment_id for segment_id in wanted if segment_id not in available]
    if unknown:
        raise InputError(
            f"segmentation '{segmentation_node.GetName()}' has no segment(s) {', '.join(unknown)}"
        )
    return list(wanted)


def export_rtstruct(
    segmentation_node,
    ct_node,
    out_dir: str | Path,
    *,
    segment_ids_to_export: Sequence[str] | None = None,
    file_for_instance: FileForInstance | None = None,
) -> ExportResult:
    """Write the non-empty segments of ``segmentation_node`` as an RTSTRUCT on ``ct_node``.

    Args:
        segmentation_node: the segmentation to export (every segment, or the chosen ones).
        ct_node: the CT the segments were drawn on.
        out_dir: folder to write into (created if missing).
        segment_ids_to_export: segment IDs to export (default: all non-empty segments).
        file_for_instance: SOP instance UID → file lookup for CTs loaded from DICOM (default:
            Slicer's DICOM database when the application has one).

    Raises:
        OutputError: nothing to export (every chosen segment is empty).
        InputError, ReferenceMismatchError: see :func:`referenced_ct`.
    """
    from AutoCTVLib.io.rtstruct_write import RoiSpec, write_rtstruct

    provenance = _provenance(segmentation_node)
    algorithm, description = _generation(provenance)
    segmentation = segmentation_node.GetSegmentation()
    rois = []
    for segment_id in _chosen_segment_ids(segmentation_node, segment_ids_to_export):
        mask = labelmap_from_segment(segmentation_node, segment_id, ct_node).astype(bool)
        if not mask.any():
            continue
        segment = segmentation.GetSegment(segment_id)
        rois.append(
            RoiSpec(
                name=segment.GetName()[:64],
                mask_zyx=mask,
                color_rgb=_segment_color_255(segment),
                interpreted_type="CTV" if is_ctv_segment(segment) else "ORGAN",
                generation_algorithm=algorithm,
                generation_description=description,
            )
        )
    if not rois:
        raise OutputError(
            f"every segment of '{segmentation_node.GetName()}' is empty; nothing to export"
        )
    geometry = volume_from_node(ct_node).geometry

    def write(reference: ReferencedCT, name: str, path: Path) -> None:
        write_rtstruct(
            rois,
            reference.identity,
            geometry,
            path,
            series_description=f"AutoCTV {name} {description}".strip()[:64],
            structure_set_label="AutoCTV",
            provenance=provenance_fields(provenance) if provenance is not None else None,
            overwrite=False,
        )

    return _write_object(segmentation_node, ct_node, out_dir, file_for_instance, "RS", write)


def export_dicom_seg(
    segmentation_node,
    ct_node,
    out_dir: str | Path,
    *,
    segment_id: str | None = None,
    file_for_instance: FileForInstance | None = None,
) -> ExportResult:
    """Write one segment (default: the CTV segment, else the first) as a DICOM SEG on ``ct_node``.

    Raises:
        OutputError: the segment is empty, or highdicom is missing.
        InputError, ReferenceMismatchError: see :func:`referenced_ct`.
    """
    from AutoCTVLib.io.dicom_seg_write import write_dicom_seg

    segmentation = segmentation_node.GetSegmentation()
    available = segment_ids(segmentation_node)
    if not available:
        raise OutputError(f"segmentation '{segmentation_node.GetName()}' has no segments")
    if segment_id is None:
        ctv_ids = [i for i in available if is_ctv_segment(segmentation.GetSegment(i))]
        segment_id = (ctv_ids or available)[0]
    segment = segmentation.GetSegment(segment_id)
    if segment is None:
        raise InputError(
            f"segmentation '{segmentation_node.GetName()}' has no segment {segment_id}"
        )
    mask = labelmap_from_segment(segmentation_node, segment_id, ct_node).astype(bool)
    if not mask.any():
        raise OutputError(f"segment '{segment.GetName()}' is empty; nothing to export")
    provenance = _provenance(segmentation_node)
    parameters = dict(provenance.settings) if provenance else {}
    if provenance:
        parameters["model_sha256"] = provenance.model_sha256
    coded = (
        {}
        if is_ctv_segment(segment)
        else {"category": GENERIC_TISSUE, "segment_type": GENERIC_TISSUE}
    )

    def write(reference: ReferencedCT, name: str, path: Path) -> None:
        write_dicom_seg(
            mask,
            list(reference.datasets),
            path,
            algorithm_name=provenance.model_name if provenance else "manual",
            algorithm_version=provenance.model_version if provenance else "1",
            segment_label=segment.GetName()[:64],
            content_label="AUTOCTV",
            algorithm_parameters=parameters,
            color_rgb=_segment_color_255(segment),
            overwrite=False,
            **coded,
        )

    return _write_object(segmentation_node, ct_node, out_dir, file_for_instance, "SEG", write)
