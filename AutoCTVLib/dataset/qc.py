"""Quality checks for one dataset case: label volumes, extent and warnings a physicist should see.

The QC record is a JSON-friendly dict stored with each case::

    {"volume_ml": {label: mL}, "label_slice_count": {label: slices containing it},
     "slice_count": int, "shape_zyx": [z, y, x], "spacing_xyz_mm": [di, dj, dk],
     "hu_range": [min, max], "warnings": [...]}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from AutoCTVLib.volume import Geometry

#: A label smaller than this (mL) is flagged as suspiciously small.
TINY_LABEL_ML = 1.0


def label_warnings(
    name: str, mask_zyx: np.ndarray, geometry: Geometry, tiny_ml: float = TINY_LABEL_ML
) -> list[str]:
    """Warnings for one binary label: empty, smaller than ``tiny_ml``, touching the grid border."""
    voxel_count = int(np.count_nonzero(mask_zyx))
    if voxel_count == 0:
        return [f"{name} is empty"]
    found = []
    volume_ml = voxel_count * geometry.voxel_volume_ml
    if volume_ml < tiny_ml:
        found.append(f"{name} is tiny ({volume_ml:.2g} mL < {tiny_ml:g} mL)")
    touched = touched_borders(mask_zyx)
    if touched:
        found.append(f"{name} touches the volume border ({', '.join(touched)}); it may be cut off")
    return found


def touched_borders(mask_zyx: np.ndarray) -> list[str]:
    """Which outer faces of the grid the mask reaches: 'first slice', 'last slice', 'image edge'."""
    faces = []
    if mask_zyx[0].any():
        faces.append("first slice")
    if mask_zyx[-1].any():
        faces.append("last slice")
    if (
        mask_zyx[:, 0, :].any()
        or mask_zyx[:, -1, :].any()
        or mask_zyx[:, :, 0].any()
        or (mask_zyx[:, :, -1].any())
    ):
        faces.append("image edge")
    return faces


def case_qc(
    ct_hu: np.ndarray,
    labels: Mapping[str, np.ndarray],
    geometry: Geometry,
    warnings: Sequence[str] = (),
    tiny_ml: float = TINY_LABEL_ML,
) -> dict[str, object]:
    """The QC record of one case (see the module docstring).

    Args:
        ct_hu: the CT as stored (HU), indexed (z, y, x).
        labels: label name → binary mask on the same grid.
        geometry: the case's grid.
        warnings: warnings gathered earlier (reader, HU conversion), listed first.
        tiny_ml: threshold for the "tiny label" warning, mL.
    """
    all_warnings = list(warnings)
    volume_ml: dict[str, float] = {}
    label_slices: dict[str, int] = {}
    for name, mask in labels.items():
        volume_ml[name] = round(float(np.count_nonzero(mask)) * geometry.voxel_volume_ml, 3)
        label_slices[name] = int(np.count_nonzero(mask.any(axis=(1, 2))))
        all_warnings.extend(label_warnings(name, mask, geometry, tiny_ml))
    return {
        "volume_ml": volume_ml,
        "label_slice_count": label_slices,
        "slice_count": int(geometry.shape_zyx[0]),
        "shape_zyx": list(geometry.shape_zyx),
        "spacing_xyz_mm": [round(s, 4) for s in geometry.spacing_xyz_mm],
        "hu_range": [float(ct_hu.min()), float(ct_hu.max())],
        "warnings": all_warnings,
    }
