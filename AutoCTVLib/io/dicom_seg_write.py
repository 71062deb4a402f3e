"""Write a CTV mask as a DICOM Segmentation (SEG) object referencing its CT series.

The mask is indexed (z, y, x) on the CT's own grid: ``mask_zyx[k, r, c]`` is row r, column c of
the k-th CT image in volume order (the order of ``SeriesIdentity.slices``). The SEG is
``BINARY`` with one segment, algorithm type ``AUTOMATIC`` and an Algorithm Identification
Sequence carrying the model's name, version and settings; slices without any CTV voxel are
omitted. Axial, flipped and oblique series are all written the same way, because every frame
points at its source CT image and copies that image's position and orientation.

Codes (why these): DICOM's "RT Segmentation Property Category" context group (CID 9580, which
extends the generic CID 7150 with radiotherapy categories) has ``(130041, DCM, "RT Target")``,
and "Radiotherapy Target" (CID 9534) has ``(228792002, SCT, "CTV")`` — the SNOMED CT concept
"Clinical target volume (observable entity)". The category/type pair therefore says "an RT
target, namely a CTV" in the standard's own terms. (Slicer's default DICOM terminology has no
radiotherapy target entries, so nothing closer exists there.) Both can be overridden.

The file is written atomically; highdicom is needed (``pip install highdicom``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid

from AutoCTVLib import __version__
from AutoCTVLib.compat import dicom_seg_supported, save_dicom_file
from AutoCTVLib.errors import InputError, OutputError
from AutoCTVLib.io.atomic import atomic_path
from AutoCTVLib.io.dicom_color import rgb_to_cielab
from AutoCTVLib.io.identity import SeriesIdentity
from AutoCTVLib.terminology import CTV_TYPE, RT_TARGET_CATEGORY, CodedConcept

if TYPE_CHECKING:
    from highdicom.sr import CodedConcept

logger = logging.getLogger(__name__)

_CONTENT_LABEL_MAX = 16  # DICOM CS
_LO_MAX = 64  # DICOM LO


@dataclass(frozen=True)
class DicomSegInfo:
    """What was written: the file, its UIDs and how many frames (non-empty slices) it holds."""

    path: Path
    series_instance_uid: str
    sop_instance_uid: str
    frame_count: int
    referenced_series_instance_uid: str
    frame_of_reference_uid: str


def make_content_label(text: str) -> str:
    """A valid DICOM ContentLabel (CS): upper case A–Z, digits, space and underscore, ≤ 16
    characters; other characters become underscores. Empty input gives ``"SEGMENTATION"``."""
    label = re.sub(r"[^A-Z0-9 _]", "_", text.upper()).strip()[:_CONTENT_LABEL_MAX].strip()
    return label or "SEGMENTATION"


def write_dicom_seg(
    mask_zyx: np.ndarray,
    ct: Sequence[Dataset] | SeriesIdentity,
    path: str | os.PathLike[str],
    *,
    algorithm_name: str,
    algorithm_version: str,
    ct_folder: str | os.PathLike[str] | None = None,
    segment_label: str = "CTV",
    segment_description: str | None = None,
    series_description: str | None = None,
    content_label: str | None = None,
    content_description: str | None = None,
    algorithm_parameters: Mapping[str, object] | None = None,
    color_rgb: tuple[int, int, int] = (255, 128, 0),
    category: CodedConcept = RT_TARGET_CATEGORY,
    segment_type: CodedConcept = CTV_TYPE,
    series_number: int = 901,
    uid_seed: str | None = None,
    overwrite: bool = True,
) -> DicomSegInfo:
    """Write ``mask_zyx`` as a one-segment binary DICOM SEG at ``path``.

    Args:
        mask_zyx: boolean mask (z, y, x) on the CT grid, slice k = k-th CT image in volume order.
        ct: the CT image datasets in volume k order (headers suffice, pixel data is not
            needed), or the series' :class:`SeriesIdentity`, whose images are then read from
            ``ct_folder`` (default ``ct.source``).
        path: output file (written atomically).
        algorithm_name, algorithm_version: the model's name and version (provenance).
        ct_folder: folder of the CT files when ``ct`` is a :class:`SeriesIdentity`.
        segment_label: the segment's name (SegmentLabel).
        segment_description: optional free text (SegmentDescription).
        series_description: default ``"<label> <name> <version>"`` (cut to 64 characters).
        content_label: default from the model's name and version, made DICOM-valid
            (:func:`make_content_label`).
        content_description: default ``"<label> by <name> <version> (automatic)"``.
        algorithm_parameters: settings recorded in the Algorithm Identification Sequence
            (model sha256, device, MC samples, threshold, ...); values become strings.
        color_rgb: recommended display colour, 0–255 each.
        category, segment_type: SegmentedPropertyCategory / SegmentedPropertyType codes.
        series_number: SeriesNumber of the new SEG series.
        uid_seed: when given, the new series and instance UIDs are derived from it (repeatable).
        overwrite: replace an existing file at ``path``.

    Returns:
        :class:`DicomSegInfo` with the new UIDs.

    Raises:
        InputError: the CT images cannot be found, or the mask does not match them.
        OutputError: the file cannot be written, or highdicom is missing.
    """
    supported, reason = dicom_seg_supported()
    if not supported:
        raise OutputError(reason)
    import highdicom as hd
    from pydicom.sr.codedict import codes

    datasets = _ct_datasets(ct, ct_folder)
    mask = _check_mask(mask_zyx, datasets)
    if not mask.any():
        raise OutputError(
            f"the {segment_label} segmentation is empty; a DICOM SEG needs at least one voxel"
        )

    name = str(algorithm_name).strip()
    version = str(algorithm_version).strip()
    if not name or not version:
        raise ValueError("algorithm_name and algorithm_version must not be empty")
    parameters = {str(k): str(v) for k, v in (algorithm_parameters or {}).items()}
    algorithm = hd.AlgorithmIdentificationSequence(
        name=name[:_LO_MAX],
        family=codes.cid7162.ArtificialIntelligence,
        version=version[:_LO_MAX],
        source="AutoCTV",
        parameters=parameters or None,
    )
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=segment_label[:_LO_MAX],
        segmented_property_category=_code(category),
        segmented_property_type=_code(segment_type),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    # Set directly: highdicom 0.22 (the release for pydicom 2.4) has no display_color argument.
    lab = hd.color.CIELabColor(*rgb_to_cielab(color_rgb)).value
    description.RecommendedDisplayCIELabValue = [int(v) for v in lab]
    if segment_description:
        description.SegmentDescription = segment_description[:_LO_MAX]

    if uid_seed is None:
        series_uid, instance_uid = generate_uid(), generate_uid()
    else:
        series_uid = generate_uid(entropy_srcs=[uid_seed, "autoctv-seg-series"])
        instance_uid = generate_uid(entropy_srcs=[uid_seed, "autoctv-seg-instance"])

    segmentation = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=mask.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=series_uid,
        series_number=int(series_number),
        sop_instance_uid=instance_uid,
        instance_number=1,
        manufacturer="AutoCTV",
        manufacturer_model_name=name[:_LO_MAX],
        software_versions=f"AutoCTVLib {__version__}",
        device_serial_number="0",
        content_label=make_content_label(content_label or f"{name}_{version}"),
        content_description=(
            content_description or f"{segment_label} by {name} {version} (automatic)"
        )[:_LO_MAX],
        omit_empty_frames=True,
    )
    segmentation.SeriesDescription = (series_description or f"{segment_label} {name} {version}")[
        :_LO_MAX
    ]

    target = Path(path)
    with atomic_path(target, overwrite=overwrite) as tmp:
        save_dicom_file(segmentation, tmp)
    frames = int(segmentation.NumberOfFrames)
    logger.info("wrote DICOM SEG %s (%d frames)", target, frames)
    return DicomSegInfo(
        path=target,
        series_instance_uid=str(series_uid),
        sop_instance_uid=str(instance_uid),
        frame_count=frames,
        referenced_series_instance_uid=str(datasets[0].SeriesInstanceUID),
        frame_of_reference_uid=str(datasets[0].FrameOfReferenceUID),
    )


def load_ct_datasets(
    identity: SeriesIdentity, folder: str | os.PathLike[str] | None = None
) -> list[Dataset]:
    """The headers of ``identity``'s CT images, read from ``folder`` (default
    ``identity.source``, searched recursively) and ordered like ``identity.slices``."""
    root = Path(folder if folder is not None else identity.source)
    if not str(root) or not root.is_dir():
        raise InputError(f"CT folder {root} not found; it is needed to reference the CT in a SEG")
    wanted = {ref.sop_instance_uid: index for index, ref in enumerate(identity.slices)}
    found: dict[int, Dataset] = {}
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            header = dcmread(file, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError):
            continue
        index = wanted.get(str(getattr(header, "SOPInstanceUID", "")))
        if index is not None:
            found[index] = header
    if len(found) != len(wanted):
        missing = len(wanted) - len(found)
        raise InputError(
            f"{missing} of the {len(wanted)} CT images of series "
            f"{identity.series_instance_uid} are missing from {root}"
        )
    return [found[i] for i in range(len(wanted))]


def _ct_datasets(
    ct: Sequence[Dataset] | SeriesIdentity, folder: str | os.PathLike[str] | None
) -> list[Dataset]:
    datasets = load_ct_datasets(ct, folder) if isinstance(ct, SeriesIdentity) else list(ct)
    if not datasets:
        raise InputError("no CT images were given to reference in the SEG")
    series = {str(ds.SeriesInstanceUID) for ds in datasets}
    if len(series) != 1:
        raise InputError(f"the CT images come from {len(series)} series; a SEG references one")
    return datasets


def _check_mask(mask_zyx: np.ndarray, datasets: Sequence[Dataset]) -> np.ndarray:
    mask = np.asarray(mask_zyx)
    expected = (len(datasets), int(datasets[0].Rows), int(datasets[0].Columns))
    if mask.shape != expected:
        raise InputError(
            f"the mask has shape {mask.shape} (z, y, x) but the CT series has {expected[0]} "
            f"images of {expected[1]}×{expected[2]} pixels"
        )
    return mask.astype(bool)


def _code(code: CodedConcept) -> CodedConcept:
    from highdicom.sr import CodedConcept

    return CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)
