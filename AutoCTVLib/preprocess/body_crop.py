"""Body crop: find the patient's body by thresholding and keep its bounding box plus a margin.

Voxels above ``threshold_hu`` (default -500 HU: tissue, not air) form the body candidates; the
largest 6-connected component is the body (the couch and small debris are usually separate).
The crop is a box of whole voxels on the input grid, so a prediction made on the cropped grid
is pasted back exactly (:meth:`CropBox.paste`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from AutoCTVLib.volume import Geometry, Volume

logger = logging.getLogger(__name__)

DEFAULT_BODY_THRESHOLD_HU = -500.0


@dataclass(frozen=True)
class CropBox:
    """A box of voxels ``[start, stop)`` along (z, y, x) of a grid of shape ``full_shape_zyx``."""

    start_zyx: tuple[int, int, int]
    stop_zyx: tuple[int, int, int]
    full_shape_zyx: tuple[int, int, int]

    def __post_init__(self) -> None:
        start = tuple(int(v) for v in self.start_zyx)
        stop = tuple(int(v) for v in self.stop_zyx)
        full = tuple(int(v) for v in self.full_shape_zyx)
        if not (len(start) == len(stop) == len(full) == 3):
            raise ValueError("a crop box needs three start, stop and shape values")
        if any(not (0 <= a < b <= n) for a, b, n in zip(start, stop, full)):
            raise ValueError(f"crop box {start}..{stop} does not fit in shape {full}")
        object.__setattr__(self, "start_zyx", start)
        object.__setattr__(self, "stop_zyx", stop)
        object.__setattr__(self, "full_shape_zyx", full)

    @classmethod
    def full(cls, shape_zyx: tuple[int, int, int]) -> CropBox:
        """The box covering the whole grid (no crop)."""
        return cls((0, 0, 0), tuple(shape_zyx), tuple(shape_zyx))

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        """Number of voxels inside the box along (z, y, x)."""
        return tuple(b - a for a, b in zip(self.start_zyx, self.stop_zyx))

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """Index the full (z, y, x) array with this to get the cropped part."""
        return tuple(slice(a, b) for a, b in zip(self.start_zyx, self.stop_zyx))

    def cropped_geometry(self, geometry: Geometry) -> Geometry:
        """The sub-grid of ``geometry`` inside the box (same spacing and direction)."""
        if geometry.shape_zyx != self.full_shape_zyx:
            raise ValueError(
                f"crop box is for shape {self.full_shape_zyx}, not {geometry.shape_zyx}"
            )
        start_ijk = np.asarray(self.start_zyx[::-1], dtype=float)
        origin = geometry.index_to_physical(start_ijk)
        return Geometry(
            self.shape_zyx,
            geometry.spacing_xyz_mm,
            tuple(float(v) for v in origin),
            geometry.direction,
        )

    def crop(self, volume: Volume) -> Volume:
        """The part of ``volume`` inside the box, on its sub-grid (the array is copied)."""
        array = np.ascontiguousarray(volume.array[self.slices])
        return Volume(array, self.cropped_geometry(volume.geometry), dict(volume.metadata))

    def paste(self, cropped: np.ndarray, fill_value: float = 0.0) -> np.ndarray:
        """A full-shape array holding ``cropped`` inside the box and ``fill_value`` elsewhere."""
        if tuple(cropped.shape) != self.shape_zyx:
            raise ValueError(f"array shape {cropped.shape} does not match crop {self.shape_zyx}")
        if fill_value == 0:  # zeroed pages from the allocator: no pass over the whole array
            full = np.zeros(self.full_shape_zyx, dtype=cropped.dtype)
        else:
            full = np.full(self.full_shape_zyx, fill_value, dtype=cropped.dtype)
        full[self.slices] = cropped
        return full

    def to_dict(self) -> dict[str, list[int]]:
        return {
            "start_zyx": list(self.start_zyx),
            "stop_zyx": list(self.stop_zyx),
            "full_shape_zyx": list(self.full_shape_zyx),
        }

    @classmethod
    def from_dict(cls, data: dict[str, list[int]]) -> CropBox:
        return cls(tuple(data["start_zyx"]), tuple(data["stop_zyx"]), tuple(data["full_shape_zyx"]))


def body_mask(ct_hu: np.ndarray, threshold_hu: float = DEFAULT_BODY_THRESHOLD_HU) -> np.ndarray:
    """The largest 6-connected component of ``ct_hu > threshold_hu`` (bool, same shape).

    All ``False`` when no voxel exceeds the threshold.
    """
    candidates = np.asarray(ct_hu) > threshold_hu
    components, count = ndimage.label(candidates)
    if count == 0:
        return candidates
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(np.argmax(sizes))


def find_body_box(
    ct: Volume,
    threshold_hu: float = DEFAULT_BODY_THRESHOLD_HU,
    margin_mm: float = 10.0,
) -> CropBox:
    """Bounding box of the body (:func:`body_mask`) grown by ``margin_mm`` on every side.

    The margin is converted to voxels per axis with the grid spacing (rounded up) and the box is
    clipped to the grid. When nothing exceeds the threshold the whole grid is returned.
    """
    if margin_mm < 0 or not math.isfinite(margin_mm):
        raise ValueError(f"crop margin must be a non-negative number of mm, got {margin_mm}")
    shape = ct.geometry.shape_zyx
    mask = body_mask(ct.array, threshold_hu)
    if not mask.any():
        logger.warning("no voxel above %.0f HU; the body crop keeps the whole image", threshold_hu)
        return CropBox.full(shape)
    spacing_zyx = ct.geometry.spacing_xyz_mm[::-1]
    start, stop = [], []
    for axis in range(3):
        other_axes = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(mask.any(axis=other_axes))
        margin_voxels = math.ceil(margin_mm / spacing_zyx[axis] - 1e-9)
        start.append(max(0, int(present[0]) - margin_voxels))
        stop.append(min(shape[axis], int(present[-1]) + 1 + margin_voxels))
    return CropBox(tuple(start), tuple(stop), shape)
