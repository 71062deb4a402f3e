"""The segmenter's fine grid: a box around the locator's CTV, and the way back to the CT grid.

Arrays are (z, y, x); index boxes and spacings are (i, j, k) = (x, y, z); positions are LPS mm.

The fine grid is axis-aligned with a *frame*: the CT's own axes, or with ``reorient`` the CT's
axes permuted and mirrored towards L, P and S (as the preprocessing pipeline does), so an
oblique or feet-first scan reaches the segmenter the same way up as during training. A box is
given in frame coordinates (mm along the frame's axes, from the LPS origin) as ``(lo, hi)``.
:func:`fine_case` resamples the CT onto the fine grid and returns a
:class:`~AutoCTVLib.preprocess.PreprocessedCase` whose ``crop_box`` is the smallest box of input
voxels around the fine grid, so :meth:`~AutoCTVLib.preprocess.PreprocessedCase.to_input_grid`
pastes a fine-grid probability back onto the CT's exact grid (0 outside the box).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from AutoCTVLib.preprocess.body_crop import CropBox
from AutoCTVLib.preprocess.pipeline import PreprocessConfig, PreprocessedCase
from AutoCTVLib.preprocess.resample import AIR_HU, canonical_axes, resample_to_geometry
from AutoCTVLib.preprocess.window import apply_hu_window
from AutoCTVLib.volume import Geometry, Volume

FrameBox = tuple[np.ndarray, np.ndarray]
"""``(lo, hi)``: a box in frame coordinates (mm), each an array of three values (i, j, k)."""


def frame_direction(geometry: Geometry, reorient: bool) -> np.ndarray:
    """3×3 direction cosines (columns: frame axes in LPS) of the fine grid for this CT."""
    direction = geometry.direction_matrix
    if not reorient:
        return direction.copy()
    order, signs = canonical_axes(direction)
    return direction[:, list(order)] * signs[None, :]


def index_box_in_frame(
    geometry: Geometry, lo_ijk: Sequence[float], hi_ijk: Sequence[float], direction: np.ndarray
) -> FrameBox:
    """The frame box enclosing voxels ``lo_ijk..hi_ijk`` (inclusive, whole voxels) of a grid."""
    lo = np.asarray(lo_ijk, dtype=float) - 0.5
    hi = np.asarray(hi_ijk, dtype=float) + 0.5
    corners = np.array(
        [
            [(lo, hi)[b][axis] for axis, b in enumerate(bits)]
            for bits in itertools.product((0, 1), repeat=3)
        ]
    )
    frame = geometry.index_to_physical(corners) @ direction
    return frame.min(axis=0), frame.max(axis=0)


def grid_box_in_frame(geometry: Geometry, direction: np.ndarray) -> FrameBox:
    """The frame box enclosing a whole grid."""
    return index_box_in_frame(geometry, (0, 0, 0), np.asarray(geometry.size_xyz) - 1, direction)


def grow_and_clip(box: FrameBox, margin_mm: float | Sequence[float], limit: FrameBox) -> FrameBox:
    """``box`` grown by ``margin_mm`` on every side (one value, or one per frame axis), then
    clipped to ``limit`` (a box that does not overlap ``limit`` becomes ``limit``)."""
    margin = np.broadcast_to(np.asarray(margin_mm, dtype=float), (3,))
    lo = np.maximum(box[0] - margin, limit[0])
    hi = np.minimum(box[1] + margin, limit[1])
    if np.any(hi <= lo):
        return limit[0].copy(), limit[1].copy()
    return lo, hi


def fine_grid(box: FrameBox, direction: np.ndarray, spacing_xyz_mm: Sequence[float]) -> Geometry:
    """A grid of ``spacing_xyz_mm`` along the frame axes covering ``box`` (centred on it)."""
    spacing = np.asarray([float(s) for s in spacing_xyz_mm])
    lo, hi = box
    size = np.maximum(1, np.ceil((hi - lo) / spacing - 1e-6)).astype(int)
    centre = (lo + hi) / 2.0
    first = centre - (size - 1) / 2.0 * spacing
    origin = direction @ first
    return Geometry(
        shape_zyx=(int(size[2]), int(size[1]), int(size[0])),
        spacing_xyz_mm=tuple(float(s) for s in spacing),
        origin_xyz_mm=tuple(float(v) for v in origin),
        direction=tuple(float(d) for d in direction.ravel()),
    )


def input_box_around(grid: Geometry, input_geometry: Geometry) -> CropBox:
    """The smallest box of input voxels (plus one for interpolation) around ``grid``."""
    size = np.asarray(grid.size_xyz, dtype=float)
    corners = np.array(list(itertools.product(*[(-0.5, n - 0.5) for n in size])))
    ijk = input_geometry.physical_to_index(grid.index_to_physical(corners))
    shape_xyz = np.asarray(input_geometry.size_xyz)
    start = np.clip(np.floor(ijk.min(axis=0)).astype(int) - 1, 0, shape_xyz - 1)
    stop = np.clip(np.ceil(ijk.max(axis=0)).astype(int) + 2, start + 1, shape_xyz)
    return CropBox(
        tuple(int(v) for v in start[::-1]),
        tuple(int(v) for v in stop[::-1]),
        input_geometry.shape_zyx,
    )


def fine_case(ct: Volume, grid: Geometry, config: PreprocessConfig) -> PreprocessedCase:
    """The CT (HU, (z, y, x)) resampled onto ``grid`` and windowed, with the way back."""
    box = input_box_around(grid, ct.geometry)
    cropped = box.crop(ct.with_array(np.asarray(ct.array, dtype=np.float32)))
    resampled = resample_to_geometry(cropped, grid, "linear", AIR_HU)
    return PreprocessedCase(
        image=apply_hu_window(resampled.array, config.hu_window),
        network_geometry=grid,
        crop_box=box,
        cropped_geometry=cropped.geometry,
        input_geometry=ct.geometry,
        config=config,
    )


def locator_index_box(
    prob_zyx: np.ndarray, threshold: float, spacing_xyz_mm: Sequence[float], join_mm: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(lo_ijk, hi_ijk)`` (inclusive) of the locator's CTV, or ``None`` when it found none.

    The CTV is the largest 26-connected component of ``prob >= threshold`` plus every other
    component whose bounding box lies within ``join_mm`` of the largest one's (a CTV split in
    two by the coarse grid stays whole; a stray island far away does not stretch the box).
    """
    mask = np.asarray(prob_zyx) >= threshold
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    boxes = ndimage.find_objects(labels)
    largest = int(np.argmax(sizes))
    spacing_zyx = np.asarray([float(s) for s in spacing_xyz_mm])[::-1]

    def bounds(index: int) -> tuple[np.ndarray, np.ndarray]:
        found = boxes[index]
        return (
            np.array([s.start for s in found], dtype=float),
            np.array([s.stop - 1 for s in found], dtype=float),
        )

    lo, hi = bounds(largest)
    core_lo, core_hi = lo.copy(), hi.copy()
    for index in range(count):
        if index == largest:
            continue
        other_lo, other_hi = bounds(index)
        gap_voxels = np.maximum(0.0, np.maximum(other_lo - core_hi, core_lo - other_hi) - 1.0)
        if math.hypot(*(gap_voxels * spacing_zyx)) <= join_mm:
            lo, hi = np.minimum(lo, other_lo), np.maximum(hi, other_hi)
    return lo[::-1], hi[::-1]
