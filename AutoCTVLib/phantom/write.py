"""Write a phantom to a folder: images, label maps, their names, provenance, optional DICOM.

Files (``.nii.gz`` shown; ``image_format="nrrd"`` writes ``.nrrd`` instead):

================================  ===========================================================
``ct.nii.gz``                     CT, int16 Hounsfield units
``ctv.nii.gz``                    uint8 0/1, the CTV as the configured annotator drew it
``ctv_reference.nii.gz``          uint8 0/1, the guideline CTV (only when the style differs)
``structures.nii.gz``             uint8, one label per structure (0 outside the body)
``structures.json``               label value → structure name
``phantom.json``                  settings, sampled anatomy, tissue HU, landmarks (LPS mm)
``dicom/ct/``                     with ``dicom=True``: the CT as a DICOM series
``dicom/rtstruct.dcm``            with ``dicom=True``: RTSTRUCT with ROI "CTV" + structures
================================  ===========================================================

Every output appears together or not at all (temporary names, renamed at the end).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from AutoCTVLib.errors import OutputError
from AutoCTVLib.io.atomic import OutputTransaction
from AutoCTVLib.io.image_files import write_labelmap
from AutoCTVLib.phantom.generate import Phantom
from AutoCTVLib.phantom.labels import LABEL_BY_NAME
from AutoCTVLib.volume import Volume

logger = logging.getLogger(__name__)

IMAGE_FORMATS = {"nii.gz": ".nii.gz", "nrrd": ".nrrd"}

#: Fixed study date of generated DICOM, so the same seed gives the same files.
_DICOM_DATE = datetime(2020, 1, 1, 8, 0, 0)
_CTV_COLOR = (255, 0, 0)


def output_names(phantom: Phantom, image_format: str = "nii.gz") -> dict[str, str]:
    """File names ``write_phantom`` produces for ``phantom`` (keys as in its result)."""
    suffix = IMAGE_FORMATS[image_format]
    names = {
        "ct": f"ct{suffix}",
        "ctv": f"ctv{suffix}",
        "structures": f"structures{suffix}",
        "structures_json": "structures.json",
        "parameters": "phantom.json",
    }
    if phantom.config.annotator_style != "standard":
        names["ctv_reference"] = f"ctv_reference{suffix}"
    return names


def write_phantom(
    phantom: Phantom,
    out_dir: str | os.PathLike[str],
    *,
    dicom: bool = False,
    image_format: str = "nii.gz",
    overwrite: bool = True,
) -> dict[str, Path]:
    """Write ``phantom`` into ``out_dir`` (created if missing); returns name → path.

    Args:
        phantom: a generated phantom.
        out_dir: output folder.
        dicom: also write ``dicom/ct/`` (CT series) and ``dicom/rtstruct.dcm`` (ROI "CTV" and
            one ROI per structure present).
        image_format: "nii.gz" or "nrrd".
        overwrite: replace existing outputs; otherwise :class:`OutputError` if any exists.

    Raises:
        OutputError: an output exists and ``overwrite`` is False, or the folder cannot be
            created or written.
    """
    if image_format not in IMAGE_FORMATS:
        raise OutputError(
            f"unknown image format {image_format!r}; choose {' or '.join(IMAGE_FORMATS)}"
        )
    folder = Path(out_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create the output folder {folder}: {error.strerror}") from None
    names = output_names(phantom, image_format)
    targets = {key: folder / name for key, name in names.items()}
    dicom_dir = folder / "dicom"
    if not overwrite:
        for path in [*targets.values(), *([dicom_dir] if dicom else [])]:
            if path.exists():
                raise OutputError(
                    f"{path} already exists; choose another folder or allow overwriting"
                )

    staging = folder / f".dicom.partial-{uuid.uuid4().hex[:8]}"
    try:
        if dicom:
            _write_dicom(phantom, staging)
        metadata = {"source": phantom.ct.metadata.get("source", "AutoCTV synthetic phantom")}
        geometry = phantom.ct.geometry
        with OutputTransaction(overwrite=overwrite) as transaction:
            _write_ct(phantom.ct, transaction.path_for(targets["ct"]))
            for key, volume in (
                ("ctv", phantom.ctv),
                ("ctv_reference", phantom.ctv_reference),
                ("structures", phantom.structures),
            ):
                if key in targets:
                    write_labelmap(
                        volume.array,
                        geometry,
                        transaction.path_for(targets[key]),
                        metadata=metadata,
                        overwrite=True,
                    )
            transaction.path_for(targets["structures_json"]).write_text(
                json.dumps({str(k): v for k, v in phantom.structure_names.items()}, indent=1) + "\n"
            )
            provenance = {
                "config": phantom.config.summary(),
                "grid": {
                    "size_xyz": list(geometry.size_xyz),
                    "spacing_xyz_mm": list(geometry.spacing_xyz_mm),
                    "origin_xyz_mm": list(geometry.origin_xyz_mm),
                    "direction": list(geometry.direction),
                },
                "ctv_ml": round(float(phantom.ctv.array.sum()) * geometry.voxel_volume_ml, 2),
                "ctv_reference_ml": round(
                    float(phantom.ctv_reference.array.sum()) * geometry.voxel_volume_ml, 2
                ),
                **phantom.anatomy,
            }
            transaction.path_for(targets["parameters"]).write_text(
                json.dumps(provenance, indent=1, default=_json_default) + "\n"
            )
            if dicom:
                _publish_folder(staging, dicom_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    written = dict(targets)
    if dicom:
        written["dicom_ct"] = dicom_dir / "ct"
        written["rtstruct"] = dicom_dir / "rtstruct.dcm"
    logger.info("wrote phantom seed %d to %s", phantom.config.seed, folder)
    return written


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _write_ct(ct: Volume, path: Path) -> None:
    """CT as int16 HU (the phantom's HU are whole numbers within the int16 range)."""
    stored = np.clip(np.rint(ct.array), -32768, 32767).astype(np.int16)
    image = sitk.GetImageFromArray(stored)
    ct.geometry.apply_to(image)
    try:
        sitk.WriteImage(image, str(path), True)
    except RuntimeError as error:
        raise OutputError(f"cannot write {path.name}: {error}") from None


def _write_dicom(phantom: Phantom, staging: Path) -> None:
    """CT series and RTSTRUCT into ``staging`` (a new folder)."""
    from AutoCTVLib.io.dicom_ct_write import write_ct_series
    from AutoCTVLib.io.rtstruct_write import RoiSpec, write_rtstruct

    staging.mkdir()
    seed = int(phantom.config.seed)
    uid_seed = f"autoctv-phantom-{seed}-{phantom.config.annotator_style}"
    description = f"AutoCTV phantom seed {seed}"
    identity = write_ct_series(
        phantom.ct,
        staging / "ct",
        patient_id=f"PHANTOM{seed}",
        patient_name=f"AutoCTV^Phantom{seed}",
        patient_sex="F",
        series_description=description,
        study_description="AutoCTV synthetic pelvic CT",
        uid_seed=uid_seed,
        study_datetime=_DICOM_DATE,
    )
    labels = phantom.structures.array
    rois = [RoiSpec("CTV", phantom.ctv.array.astype(bool), _CTV_COLOR, "CTV")]
    # One pass finds each label's box; masks are filled only there (np.zeros pages outside the
    # box are never touched, so ~50 full-size masks cost little memory).
    for index, box in enumerate(ndimage.find_objects(labels)):
        name = phantom.structure_names.get(index + 1)
        if box is None or not name:
            continue
        mask = np.zeros(labels.shape, dtype=bool)
        mask[box] = labels[box] == index + 1
        structure = LABEL_BY_NAME[name]
        rois.append(RoiSpec(name, mask, structure.color_rgb, structure.roi_type))
    write_rtstruct(
        rois,
        identity,
        phantom.ct.geometry,
        staging / "rtstruct.dcm",
        series_description=f"{description} structures ({phantom.config.annotator_style})",
        structure_set_label="PHANTOM",
        uid_seed=uid_seed,
        created=_DICOM_DATE,
        provenance={
            "generator": "AutoCTVLib.phantom",
            "seed": str(seed),
            "annotator_style": phantom.config.annotator_style,
        },
    )


def _publish_folder(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``, replacing an existing ``target`` folder."""
    retired = None
    if target.exists():
        retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, retired)
    try:
        os.replace(staging, target)
    except OSError:
        if retired is not None:
            os.replace(retired, target)
        raise
    if retired is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(retired)
