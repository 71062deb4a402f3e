"""Structures completed from a few drawn slices in the viewer, saved with their case.

Each completed structure gets ``<case>/out/structures/<number>/``:

* ``structure.nii.gz``: the completed structure, a 0/1 labelmap on the CT's grid;
* ``structure.seg.nrrd``: the same as a Slicer segmentation (one segment, its name and
  colour, the completion method in its tags);
* ``rtstruct.dcm``: an RTSTRUCT with one ROI (SEMIAUTOMATIC, ``ORGAN`` type: the structure
  can be any structure) referencing the case's CT series, when the case has a DICOM series
  (an uploaded one, or the one ``autoctv predict --create-dicom-ct`` wrote);
* ``drawn.nii.gz``: the slices as the user drew them (the completion's input), so the result
  can be reproduced with ``autoctv complete CT drawn.nii.gz``.

Library writers only: no Slicer or VTK here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from AutoCTVLib.io.identity import SeriesIdentity
from AutoCTVLib.io.image_files import write_labelmap
from AutoCTVLib.io.rtstruct_write import RoiSpec, write_rtstruct
from AutoCTVLib.io.seg_nrrd import Segment, write_seg_nrrd

from .edited import read_case_ct

STRUCTURES_FOLDER = "structures"
#: Download kind → (file name in the structure's folder, content type).
STRUCTURE_DOWNLOADS = {
    "nifti": ("structure.nii.gz", "application/gzip"),
    "segnrrd": ("structure.seg.nrrd", "application/octet-stream"),
    "rtstruct": ("rtstruct.dcm", "application/dicom"),
    "drawn": ("drawn.nii.gz", "application/gzip"),
}


def structure_dir(case_dir: Path, number: int) -> Path:
    """The folder of structure ``number`` of a case (``out/structures/<number>``)."""
    if int(number) < 1:
        raise ValueError(f"structure numbers start at 1, got {number}")
    return case_dir / "out" / STRUCTURES_FOLDER / str(int(number))


def write_structure_outputs(
    case_dir: Path,
    input_path: str,
    series_uid: str,
    number: int,
    name: str,
    completed_zyx: np.ndarray,
    drawn_zyx: np.ndarray,
    *,
    method: str,
    color_rgb: tuple[float, float, float],
) -> list[str]:
    """Write a completed structure (0/1, z, y, x on the CT grid); returns the kinds written.

    ``drawn_zyx`` is the drawing it was completed from; ``color_rgb`` its colour (0–1).
    Every file is written to a temporary name first, then renamed (no half-written file).

    Raises:
        ValueError: the arrays are not on the CT's grid.
    """
    loaded = read_case_ct(case_dir, input_path, series_uid)
    geometry = loaded.volume.geometry
    mask = np.asarray(completed_zyx) != 0
    drawn = np.asarray(drawn_zyx) != 0
    for what, array in (("completed structure", mask), ("drawing", drawn)):
        if array.shape != geometry.shape_zyx:
            raise ValueError(f"the {what} {array.shape} is not on the CT grid {geometry.shape_zyx}")
    target = structure_dir(case_dir, number)
    target.mkdir(parents=True, exist_ok=True)
    provenance = {"completion_method": method, "editor": "AutoCTV web viewer"}
    write_labelmap(
        mask.astype(np.uint8),
        geometry,
        target / STRUCTURE_DOWNLOADS["nifti"][0],
        metadata=provenance,
        overwrite=True,
    )
    write_labelmap(
        drawn.astype(np.uint8), geometry, target / STRUCTURE_DOWNLOADS["drawn"][0], overwrite=True
    )
    segment = Segment(
        name=name,
        mask_zyx=mask,
        color_rgb=tuple(float(c) for c in color_rgb),
        segment_id=f"structure_{int(number)}",
        status="completed",
        tags={"AutoCTV.completion_method": method},
    )
    write_seg_nrrd(
        [segment],
        geometry,
        target / STRUCTURE_DOWNLOADS["segnrrd"][0],
        provenance=provenance,
        overwrite=True,
    )
    written = ["nifti", "segnrrd"]
    if isinstance(loaded.identity, SeriesIdentity) and mask.any():
        roi = RoiSpec(
            name=name,
            mask_zyx=mask,
            color_rgb=tuple(round(255 * float(c)) for c in color_rgb),
            interpreted_type="ORGAN",
            generation_algorithm="SEMIAUTOMATIC",
            generation_description=f"drawn on a few slices, completed by {method} (AutoCTV)",
        )
        write_rtstruct(
            [roi],
            loaded.identity,
            geometry,
            target / STRUCTURE_DOWNLOADS["rtstruct"][0],
            series_description=f"AutoCTV {name}",
            structure_set_label="AutoCTV structure",
            provenance=provenance,
            overwrite=True,
        )
        written.append("rtstruct")
    written.append("drawn")
    return written
