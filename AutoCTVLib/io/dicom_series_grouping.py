"""Group CT images into series, also when their SeriesInstanceUID is blank.

Images with a valid SeriesInstanceUID are grouped by it. Images whose SeriesInstanceUID is blank
(or not a valid UID) are grouped by what makes one volume: FrameOfReferenceUID,
ImageOrientationPatient (to 1e-4), Rows, Columns and PixelSpacing (to 0.001 mm). Each such
group gets a series UID derived from its key and its images' SOP instance UIDs, so the same
files always give the same UID (and ``--series-uid`` can choose it). A group is never split
further, so a series whose images share one blank UID is never collapsed to one slice.

Images without a usable SOP instance UID (blank in the data set and in the file meta) get one
derived from the file's bytes before grouping; copies of one image then share a UID, and
different images sharing one UID (a broken anonymiser) are told apart by their position.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from AutoCTVLib.io.dicom_header import DicomHeader
from AutoCTVLib.io.dicom_uids import instance_uid_from_content, series_uid_from_members

_MAX_LISTED = 3


def with_instance_uids(headers: Sequence[DicomHeader]) -> tuple[list[DicomHeader], list[str]]:
    """Give every image without a usable SOP instance UID one derived from its file's bytes."""
    done: list[DicomHeader] = []
    generated = 0
    for header in headers:
        if header.sop_instance_uid:
            done.append(header)
            continue
        uid = instance_uid_from_content(header.path, header.frame_index)
        done.append(replace(header, generated_instance_uid=uid))
        generated += 1
    warnings = []
    if generated:
        warnings.append(
            f"{generated} image(s) have no SOPInstanceUID, neither in the data set nor in the "
            "file meta; new UIDs were derived from their contents"
        )
    return done, warnings


def _geometry_key(header: DicomHeader) -> str:
    dataset = header.dataset

    def rounded(keyword: str, decimals: int) -> str:
        try:
            values = [round(float(v), decimals) + 0.0 for v in dataset.get(keyword) or []]
        except (TypeError, ValueError):
            return "?"
        return ",".join(f"{v:.{decimals}f}" for v in values)

    return "|".join(
        [
            str(dataset.get("FrameOfReferenceUID", "") or ""),
            rounded("ImageOrientationPatient", 4),
            str(dataset.get("Rows", "")),
            str(dataset.get("Columns", "")),
            rounded("PixelSpacing", 3),
        ]
    )


def group_ct_series(
    headers: Sequence[DicomHeader],
) -> tuple[dict[str, list[DicomHeader]], list[str]]:
    """CT images grouped into series: ``({series UID: images}, warnings)``.

    Images must already carry SOP instance UIDs (see :func:`with_instance_uids`).
    """
    series: dict[str, list[DicomHeader]] = defaultdict(list)
    blank_by_key: dict[str, list[DicomHeader]] = defaultdict(list)
    for header in headers:
        if header.series_uid:
            series[header.series_uid].append(header)
        else:
            blank_by_key[_geometry_key(header)].append(header)
    generated = []
    for key, members in sorted(blank_by_key.items()):
        uid = series_uid_from_members(key, [member.sop_instance_uid for member in members])
        series[uid].extend(replace(member, generated_series_uid=uid) for member in members)
        generated.append(uid)
    warnings = []
    if generated:
        count = sum(len(members) for members in blank_by_key.values())
        listed = ", ".join(generated[:_MAX_LISTED]) + (" ..." if len(generated) > 3 else "")
        warnings.append(
            f"{count} CT image(s) have no SeriesInstanceUID; grouped them into "
            f"{len(generated)} series by frame of reference, orientation and pixel grid, with "
            f"generated series UID(s) {listed}"
        )
    return dict(series), warnings
