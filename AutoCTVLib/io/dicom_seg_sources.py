"""The CT images a DICOM SEG references, as the reader saw them, and the mask in their order.

A SEG copies patient, study and geometry from its source images. For inputs the reader had to
repair, the files alone would give the SEG wrong references, so the source headers are read from
the very files the reader used (``SliceRef.source_file``) and then given what the reader decided:

* the SOP class, SOP instance, series, study and frame-of-reference UIDs of the series identity
  (generated ones where the input's were blank, so the SEG and the RTSTRUCT name the same UIDs);
* for a gantry-tilted series, the position of the grid slice each image was resampled onto (the
  SEG frame then lies where the mask voxels lie, in the plane of its source image);
* for a multi-frame CT, the one multi-frame data set, with the mask reordered into its frames.

The copies live in memory only; the CT files are never changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.valuerep import format_number_as_ds

from AutoCTVLib.io.dicom_files import read_dicom
from AutoCTVLib.io.identity import SeriesIdentity, SliceRef

_SAME_POSITION_MM = 1e-4


def has_source_files(identity: SeriesIdentity) -> bool:
    """True when every image of ``identity`` names a file that still exists."""
    return bool(identity.slices) and all(
        ref.source_file and Path(ref.source_file).is_file() for ref in identity.slices
    )


def seg_sources(identity: SeriesIdentity, mask_zyx: np.ndarray) -> tuple[list[Dataset], np.ndarray]:
    """``(source headers, mask)``: the headers in the order the mask's frames follow.

    Args:
        identity: the series as read (``has_source_files(identity)`` must hold).
        mask_zyx: the mask on the CT grid, slice k = ``identity.slices[k]``.
    """
    multiframe = any(ref.frame_number is not None for ref in identity.slices)
    if multiframe:
        return _multiframe_sources(identity, mask_zyx)
    datasets = []
    for ref in identity.slices:
        dataset = read_dicom(Path(ref.source_file), header_only=True)
        _set_uids(dataset, identity, ref)
        _set_position(dataset, ref)
        datasets.append(dataset)
    return datasets, np.asarray(mask_zyx)


def _set_position(item: Dataset, ref: SliceRef) -> None:
    """ImagePositionPatient := the grid slice's position, where it differs (tilted series)."""
    written = [float(v) for v in item.get("ImagePositionPatient") or []]
    wanted = [float(v) for v in ref.position_lps_mm]
    if len(written) == 3 and np.allclose(written, wanted, atol=_SAME_POSITION_MM):
        return
    item.ImagePositionPatient = [format_number_as_ds(value) for value in wanted]


def _set_uids(dataset: Dataset, identity: SeriesIdentity, ref: SliceRef) -> None:
    dataset.SOPClassUID = ref.sop_class_uid
    dataset.SOPInstanceUID = ref.sop_instance_uid
    dataset.SeriesInstanceUID = identity.series_instance_uid
    dataset.StudyInstanceUID = identity.study_instance_uid
    dataset.FrameOfReferenceUID = identity.frame_of_reference_uid


def _multiframe_sources(
    identity: SeriesIdentity, mask_zyx: np.ndarray
) -> tuple[list[Dataset], np.ndarray]:
    files = {ref.source_file for ref in identity.slices}
    if len(files) != 1:
        raise ValueError("a multi-frame CT series must come from one file")
    (source,) = files
    dataset = read_dicom(Path(source), header_only=True)
    _set_uids(dataset, identity, identity.slices[0])
    frames = int(dataset.NumberOfFrames)
    mask = np.asarray(mask_zyx)
    ordered = np.zeros((frames, *mask.shape[1:]), dtype=mask.dtype)
    per_frame: Sequence[Dataset] = dataset.get("PerFrameFunctionalGroupsSequence") or []
    for k, ref in enumerate(identity.slices):
        index = int(ref.frame_number or 0) - 1
        ordered[index] = mask[k]
        if per_frame and "PlanePositionSequence" in per_frame[index]:
            _set_position(per_frame[index].PlanePositionSequence[0], ref)
    return [dataset], ordered
