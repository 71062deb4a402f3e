"""Choose the one CT series to read from what a scan found (step 2 of
:mod:`AutoCTVLib.io.dicom_ct`): CT classes (multi-frame frames included), localizers dropped,
UIDs recovered or generated, series grouped, repeated images dropped."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from pydicom.uid import UID, CTImageStorage

from AutoCTVLib.errors import GeometryError, InputError, NotCTError, SeriesSelectionError
from AutoCTVLib.io.dicom_header import DicomHeader
from AutoCTVLib.io.dicom_multiframe import MULTIFRAME_CT_CLASSES, frame_headers
from AutoCTVLib.io.dicom_scan import DicomScan
from AutoCTVLib.io.dicom_series_grouping import group_ct_series, with_instance_uids
from AutoCTVLib.io.dicom_uids import instance_uid_from_content

ENHANCED_CT_CLASSES = MULTIFRAME_CT_CLASSES
CT_CLASSES = frozenset({CTImageStorage, *MULTIFRAME_CT_CLASSES})
"""SOP classes read as CT: CT Image Storage, Enhanced CT, Legacy Converted Enhanced CT."""
_MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"


def class_name(sop_class_uid: str) -> str:
    if sop_class_uid in ENHANCED_CT_CLASSES:
        return ENHANCED_CT_CLASSES[sop_class_uid]
    name = UID(sop_class_uid).name if sop_class_uid else ""
    return name or sop_class_uid or "unknown SOP class"


def _describe_objects(headers: Sequence[DicomHeader]) -> str:
    """'MR Image Storage (modality MR, 1 series, 3 files); ...' for error messages."""
    groups: dict[tuple[str, str], list[DicomHeader]] = defaultdict(list)
    for header in headers:
        groups[(class_name(header.sop_class_uid), header.modality or "?")].append(header)
    parts = []
    for (name, modality), members in sorted(groups.items()):
        series_count = len({member.series_uid for member in members})
        parts.append(f"{name} (modality {modality}, {series_count} series, {len(members)} file(s))")
    return "; ".join(parts)


def _describe_series(uid: str, headers: Sequence[DicomHeader]) -> str:
    description = str(headers[0].dataset.get("SeriesDescription", "") or "").strip()
    label = f'"{description}"' if description else "no description"
    return f"{uid} ({label}, {len(headers)} slices)"


def select_ct_series(
    scan: DicomScan, series_uid: str | None
) -> tuple[list[DicomHeader], tuple[str, ...]]:
    """The headers of the one CT series to read, and warnings about what was left out."""
    headers = [h for h in scan.headers if h.sop_class_uid != _MEDIA_DIRECTORY]
    if not headers and scan.unreadable_files:
        raise InputError(
            f"none of the {len(scan.unreadable_files)} DICOM file(s) in {scan.source} could be "
            "read; they may be truncated or damaged"
        )
    if not headers:
        raise InputError(
            f"no DICOM files found in {scan.source}; to read a NIfTI, NRRD or MHA file give "
            "the file itself"
        )
    warnings: list[str] = []
    ct_images: list[DicomHeader] = []
    localizers = 0
    for header in headers:
        if header.sop_class_uid not in CT_CLASSES:
            continue
        frames = (
            frame_headers(header.path, header.dataset)
            if header.sop_class_uid in MULTIFRAME_CT_CLASSES
            else [header]
        )
        for frame in frames:
            if frame.is_localizer:
                localizers += 1
            else:
                ct_images.append(frame)
    if localizers:
        warnings.append(f"ignored {localizers} CT localizer (scout) image(s)")
    ct_images, uid_warnings = with_instance_uids(ct_images)
    ct_series, grouping_warnings = group_ct_series(ct_images)
    warnings.extend(uid_warnings + grouping_warnings)

    if series_uid is not None:
        if series_uid in ct_series:
            return _unique_instances(ct_series[series_uid], warnings), tuple(warnings)
        others = [h for h in headers if h.series_uid == series_uid]
        if others:
            raise NotCTError(
                f"series {series_uid} is not a CT image series (not a CT): it holds "
                f"{_describe_objects(others)}"
            )
        available = "; ".join(_describe_series(uid, hs) for uid, hs in sorted(ct_series.items()))
        raise SeriesSelectionError(
            f"series {series_uid} was not found in {scan.source}; CT series there: "
            f"{available or 'none'}"
        )

    if not ct_series:
        if localizers:
            raise GeometryError(
                f"{scan.source} holds only CT localizer (scout) images, no CT volume series"
            )
        if scan.source.is_file():
            raise NotCTError(
                f"{scan.source.name} is not a CT image: it is "
                f"{class_name(headers[0].sop_class_uid)} (modality {headers[0].modality or '?'}); "
                "AutoCTV needs a CT Image Storage series"
            )
        raise NotCTError(
            f"{scan.source} holds no CT image series (not a CT): found "
            f"{_describe_objects(headers)}; AutoCTV needs a CT Image Storage series"
        )
    if len(ct_series) > 1:
        listed = "; ".join(_describe_series(uid, hs) for uid, hs in sorted(ct_series.items()))
        raise SeriesSelectionError(
            f"{scan.source} holds {len(ct_series)} CT series; choose one with --series-uid "
            f"(series_uid=...): {listed}"
        )
    (only,) = ct_series.values()
    return _unique_instances(only, warnings), tuple(warnings)


def _unique_instances(headers: list[DicomHeader], warnings: list[str]) -> list[DicomHeader]:
    """Drop repeated copies of the same image (same SOP instance, frame and position).

    Different images that share one SOP instance UID (a broken anonymiser) are all kept, under
    UIDs derived from their contents, so a series is never collapsed to one slice.
    """
    by_uid: dict[tuple[str, int | None], list[DicomHeader]] = defaultdict(list)
    for header in headers:
        by_uid[(header.sop_instance_uid, header.frame_index)].append(header)
    kept: list[DicomHeader] = []
    copies = 0
    renamed = 0
    for members in by_uid.values():
        positions = {_position_key(member) for member in members}
        if len(positions) == 1:
            kept.append(members[0])
            copies += len(members) - 1
            continue
        for member in members:
            uid = instance_uid_from_content(member.path, member.frame_index)
            kept.append(replace(member, generated_instance_uid=uid))
        renamed += len(members)
    if copies:
        warnings.append(f"ignored {copies} duplicate copies of CT images")
    if renamed:
        warnings.append(
            f"{renamed} CT images at different positions share SOP instance UIDs; new UIDs were "
            "derived from their contents"
        )
    return kept


def _position_key(header: DicomHeader) -> str:
    return str(list(header.dataset.get("ImagePositionPatient") or []))
