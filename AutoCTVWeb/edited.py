"""Saving the physician's edited CTV of a case beside the model's, in the same formats.

The viewer's "Save edited contour" writes ``<case>/out/edited/``: ``ctv.nii.gz``,
``ctv.seg.nrrd``, ``rtstruct.dcm`` and ``seg.dcm`` (a DICOM SEG, where this installation can
write one; both DICOM files reference the case's CT series, or for an image-file upload the
DICOM series ``autoctv predict --create-dicom-ct`` wrote), each marked as edited
(SEMIAUTOMATIC in the RTSTRUCT, "edited" in the SEG's description and algorithm parameters).
Downloads then give the edited contour unless the model's is asked for (``?version=model``).
Library writers only: no Slicer or VTK here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from AutoCTVLib import terminology
from AutoCTVLib.compat import dicom_seg_supported
from AutoCTVLib.io.ct_reader import LoadedCT, read_ct
from AutoCTVLib.io.dicom_seg_write import write_dicom_seg
from AutoCTVLib.io.identity import SeriesIdentity
from AutoCTVLib.io.image_files import write_labelmap
from AutoCTVLib.io.rtstruct_write import RoiSpec, write_rtstruct
from AutoCTVLib.io.seg_nrrd import CTV_TERMINOLOGY, Segment, write_seg_nrrd

EDITED_FOLDER = "edited"
#: Download kind → file name in ``out/edited`` (kinds without an edited file give the model's).
EDITED_FILES = {
    "nifti": "ctv.nii.gz",
    "segnrrd": "ctv.seg.nrrd",
    "rtstruct": "rtstruct.dcm",
    "seg": "seg.dcm",
}


def read_case_ct(case_dir: Path, input_path: str, series_uid: str) -> LoadedCT:
    """The CT that a case's DICOM outputs reference: the uploaded series, or for an image-file
    upload the DICOM series ``autoctv predict --create-dicom-ct`` wrote (``out/ct_dicom``)."""
    dicom_ct = case_dir / "out" / "ct_dicom"
    if dicom_ct.is_dir():
        return read_ct(dicom_ct)
    return read_ct(case_dir / input_path, series_uid=series_uid or None)


def write_edited_outputs(
    case_dir: Path,
    input_path: str,
    series_uid: str,
    label_zyx: np.ndarray,
    *,
    model_name: str = "AutoCTV",
    model_version: str = "",
) -> list[str]:
    """Write the edited CTV (uint8/bool, z, y, x on the CT grid); returns the kinds written.

    ``model_name`` / ``model_version`` name the model whose contour was edited (the DICOM
    SEG's algorithm identification).
    """
    target = case_dir / "out" / EDITED_FOLDER
    target.mkdir(parents=True, exist_ok=True)
    loaded = read_case_ct(case_dir, input_path, series_uid)
    geometry = loaded.volume.geometry
    mask = np.asarray(label_zyx) != 0
    if mask.shape != geometry.shape_zyx:
        raise ValueError(f"edited label {mask.shape} is not on the CT grid {geometry.shape_zyx}")
    provenance = {"edited": "yes", "editor": "AutoCTV web viewer"}
    write_labelmap(mask.astype(np.uint8), geometry, target / EDITED_FILES["nifti"], overwrite=True)
    segment = Segment(
        name=terminology.CTV_SEGMENT_NAME,
        mask_zyx=mask,
        color_rgb=tuple(c / 255.0 for c in terminology.CTV_COLOR_RGB),
        terminology=CTV_TERMINOLOGY,
        segment_id=terminology.CTV_SEGMENT_NAME,
        status="completed",
        tags={"AutoCTV.edited": "yes"},
    )
    write_seg_nrrd(
        [segment], geometry, target / EDITED_FILES["segnrrd"], provenance=provenance, overwrite=True
    )
    written = ["nifti", "segnrrd"]
    if isinstance(loaded.identity, SeriesIdentity):
        roi = RoiSpec(
            name=terminology.CTV_SEGMENT_NAME,
            mask_zyx=mask,
            color_rgb=tuple(terminology.CTV_COLOR_RGB),
            interpreted_type="CTV",
            generation_algorithm="SEMIAUTOMATIC",
            generation_description="AutoCTV model contour edited in the web viewer",
        )
        write_rtstruct(
            [roi],
            loaded.identity,
            geometry,
            target / EDITED_FILES["rtstruct"],
            series_description="AutoCTV CTV edited",
            structure_set_label="AutoCTV edited",
            provenance=provenance,
            overwrite=True,
        )
        written.append("rtstruct")
        if dicom_seg_supported()[0] and mask.any():
            write_dicom_seg(
                mask,
                loaded.identity,
                target / EDITED_FILES["seg"],
                algorithm_name=model_name or "AutoCTV",
                algorithm_version=model_version or "unknown",
                ct_folder=loaded.identity.source or None,
                segment_label=terminology.CTV_SEGMENT_NAME,
                segment_description="edited in the AutoCTV web viewer",
                series_description="AutoCTV CTV edited",
                content_description="CTV by AutoCTV, edited (semi-automatic)",
                algorithm_parameters=provenance,
                color_rgb=tuple(terminology.CTV_COLOR_RGB),
                overwrite=True,
            )
            written.append("seg")
        else:
            # never leave an older edit's SEG to be downloaded as the current one
            (target / EDITED_FILES["seg"]).unlink(missing_ok=True)
    return written
