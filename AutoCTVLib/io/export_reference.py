"""The DICOM CT series an RTSTRUCT or SEG export references, and the exported file's name.

An RTSTRUCT or SEG must reference the CT images it was drawn on:

* a CT that came from DICOM: :func:`series_of_instances` reads the headers of its images (by
  SOP instance UID, e.g. from a DICOM database), sorts them into slice order and checks that
  they form the CT's grid; the export then references the *original* series, which is what a
  planning system needs (no copy of the CT, no new study);
* any other CT (NIfTI, NRRD, a phantom, an edited volume): :func:`write_reference_ct` writes it
  as a new DICOM CT series under the export folder, with UIDs derived from its voxels, so that
  exporting the same CT again into the same folder reuses that series.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from AutoCTVLib.errors import InputError, OutputError, ReferenceMismatchError
from AutoCTVLib.io.identity import SeriesIdentity
from AutoCTVLib.provenance import voxel_sha256
from AutoCTVLib.volume import Geometry, Volume

logger = logging.getLogger(__name__)

#: SOP instance UID → path of its file ("" when unknown).
FileForInstance = Callable[[str], str]


@dataclass(frozen=True)
class ReferencedCT:
    """The DICOM CT series an export references, with its image headers in slice order.

    Attributes:
        identity: series UIDs and the per-slice SOP instance references.
        datasets: the images' headers (pydicom datasets, no pixels), in slice order.
        written: True when the series was written for this export.
        files: the written images (empty for an existing series).
    """

    identity: SeriesIdentity
    datasets: tuple
    written: bool
    files: tuple[Path, ...] = ()


def series_of_instances(
    uids: Sequence[str], file_for_instance: FileForInstance, geometry: Geometry, name: str
) -> ReferencedCT:
    """The DICOM series of the images ``uids``, checked to form ``geometry`` (LPS grid).

    Raises:
        InputError: an image cannot be found or read.
        ReferenceMismatchError: the images do not form ``geometry`` (the CT ``name`` was
            resampled, cropped or moved after loading): contours would land in the wrong place.
    """
    import pydicom

    from AutoCTVLib.io.dicom_ct import DicomHeader, series_identity, sort_and_check_slices

    headers = []
    for uid in uids:
        path = file_for_instance(uid) or ""
        if not path or not Path(path).is_file():
            raise InputError(
                f"the DICOM image {uid} of '{name}' is not in the DICOM database any more; "
                "re-import the CT series and load it again"
            )
        headers.append(DicomHeader(Path(path), pydicom.dcmread(path, stop_before_pixels=True)))
    series = sort_and_check_slices(headers)
    if not series.geometry.is_close(geometry):
        raise ReferenceMismatchError(
            f"'{name}' no longer lies on the grid of its DICOM series (it was resampled, "
            "cropped or moved); export the segmentation on the original CT"
        )
    identity = series_identity(series, Path(headers[0].path).parent)
    return ReferencedCT(identity, tuple(h.dataset for h in series.headers), written=False)


def dicom_name_part(text: str, limit: int) -> str:
    """``text`` reduced to letters, digits, space, ``_`` and ``-``, at most ``limit`` long."""
    cleaned = re.sub(r"[^A-Za-z0-9 _-]", "", text).strip()
    return cleaned[:limit] or "Unnamed"


def _series_in_folder(folder: Path, geometry: Geometry) -> ReferencedCT | None:
    """The CT series an earlier export wrote in ``folder``, if it lies on ``geometry``."""
    from AutoCTVLib.io.dicom_ct import scan_dicom_files, series_identity, sort_and_check_slices

    scan = scan_dicom_files(folder)
    if not scan.headers:
        return None
    series = sort_and_check_slices(list(scan.headers))
    if not series.geometry.is_close(geometry):
        return None
    files = tuple(sorted(header.path for header in series.headers))
    datasets = tuple(header.dataset for header in series.headers)
    return ReferencedCT(series_identity(series, folder), datasets, written=True, files=files)


def write_reference_ct(ct: Volume, name: str, out_dir: Path) -> ReferencedCT:
    """Write ``ct`` (float HU, no DICOM origin) as a new DICOM CT series under ``out_dir``.

    The UIDs, the folder name (``CT_<12 hex digits>``) and the patient ID derive from the
    voxels and grid: exporting the same CT again into the same folder reuses that series. The
    patient name is ``name``.

    Raises:
        OutputError: the folder exists and holds other files.
    """
    import pydicom

    from AutoCTVLib.io.dicom_ct_write import write_ct_series

    digest = voxel_sha256(ct)
    folder = out_dir / f"CT_{digest[:12]}"
    if folder.is_dir() and any(folder.iterdir()):
        existing = _series_in_folder(folder, ct.geometry)
        if existing is not None:
            logger.info("reusing CT series %s in %s", existing.identity.series_instance_uid, folder)
            return existing
        raise OutputError(f"{folder} already holds other files; export into another folder")
    name = dicom_name_part(name or "CT", 40)
    identity = write_ct_series(
        ct,
        folder,
        patient_id=f"AUTOCTV-{digest[:10].upper()}",
        patient_name=f"AutoCTV^{name}",
        study_description=f"AutoCTV export of {name}"[:64],
        series_description=f"{name} (written by AutoCTV)"[:64],
        uid_seed=digest,
    )
    files = tuple(sorted(path for path in folder.iterdir() if path.is_file()))
    by_uid = {}
    for path in files:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        by_uid[str(dataset.SOPInstanceUID)] = dataset
    datasets = tuple(by_uid[ref.sop_instance_uid] for ref in identity.slices)
    logger.info("wrote CT series %s to %s", identity.series_instance_uid, folder)
    return ReferencedCT(identity, datasets, written=True, files=files)


def new_object_file(out_dir: Path, prefix: str, name: str) -> Path:
    """``<prefix>_<name>_<date-time>.dcm`` in ``out_dir``, numbered if that name is taken."""
    stem = f"{prefix}_{name.replace(' ', '_')}_{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path, number = out_dir / f"{stem}.dcm", 2
    while path.exists():
        path, number = out_dir / f"{stem}_{number}.dcm", number + 1
    return path
