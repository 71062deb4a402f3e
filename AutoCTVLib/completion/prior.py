"""The completion network's fourth input: a shape-only guess between the annotated slices.

Shape-based interpolation (Raya & Udupa 1990; Herman et al. 1992): every annotated slice becomes
a signed distance map in millimetres (negative inside the drawing), the maps of two consecutive
annotated slices along an axis are blended linearly by position, and a voxel between them is
inside where the blend is negative. Axes are interpolated independently and united, as
Slicer's "Fill between slices" does. Nothing lies beyond the first and last annotated slice of
an axis. An annotated slice left empty counts as "absent here": its map is a constant as deep
as the neighbouring drawing, so the shape shrinks to nothing halfway towards it.

It is the guess the network learns to correct from the CT. It is not the ``interpolate``
baseline (ITK's morphological contour interpolation, :mod:`.interpolate`): that filter takes
about 0.3–1.5 s on a model-grid crop single-threaded, which would triple the cost of a
training example, while this takes milliseconds; the network makes up for what it does less
well (shapes that move sideways between slices).

Arrays are (z, y, x); spacings (z, y, x) in mm here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from AutoCTVLib.completion.annotation import AXIS_NAMES, Annotation


def signed_distance_mm(mask_2d: np.ndarray, spacing_2d_mm: Sequence[float]) -> np.ndarray | None:
    """Signed distance (mm) of a 2D mask: negative inside, positive outside; ``None`` if empty."""
    mask = np.asarray(mask_2d, dtype=bool)
    if not mask.any():
        return None
    sampling = [float(s) for s in spacing_2d_mm]
    outside = ndimage.distance_transform_edt(~mask, sampling=sampling)
    inside = ndimage.distance_transform_edt(mask, sampling=sampling)
    return (outside - inside).astype(np.float32)


def _between(first: np.ndarray | None, second: np.ndarray | None, gap: int) -> np.ndarray | None:
    """Inside masks (gap − 1, h, w) of the slices strictly between two annotated slices."""
    if gap < 2 or (first is None and second is None):
        return None
    if first is None:
        first = np.full_like(second, -float(second.min()))
    if second is None:
        second = np.full_like(first, -float(first.min()))
    t = (np.arange(1, gap, dtype=np.float32) / gap)[:, None, None]
    return (1.0 - t) * first[None] + t * second[None] < 0.0


def interpolate_axis(
    sparse_zyx: np.ndarray, axis: int, slice_indices: Sequence[int], spacing_zyx_mm: Sequence[float]
) -> np.ndarray:
    """Shape-based interpolation between the given slices along one array axis; boolean
    (z, y, x) holding the listed slices as drawn and the slices between them."""
    sparse = np.asarray(sparse_zyx, dtype=bool)
    moved = np.moveaxis(sparse, axis, 0)
    in_plane = [float(s) for i, s in enumerate(spacing_zyx_mm) if i != axis]
    indices = sorted(int(i) for i in slice_indices)
    result = np.zeros_like(moved)
    distances = [signed_distance_mm(moved[i], in_plane) for i in indices]
    for position, index in enumerate(indices):
        result[index] = moved[index]
        if position + 1 < len(indices):
            following = indices[position + 1]
            filled = _between(distances[position], distances[position + 1], following - index)
            if filled is not None:
                result[index + 1 : following] = filled
    return np.moveaxis(result, 0, axis)


def shape_prior(
    sparse_zyx: np.ndarray, annotation: Annotation, spacing_zyx_mm: Sequence[float]
) -> np.ndarray:
    """The union over annotated axes of :func:`interpolate_axis`; boolean (z, y, x).

    With one annotated slice on an axis, that axis contributes its drawing only. On every
    annotated slice the result is exactly the drawing.
    """
    sparse = np.asarray(sparse_zyx, dtype=bool)
    result = np.zeros(sparse.shape, dtype=bool)
    for axis, name in enumerate(AXIS_NAMES):
        indices = annotation.slices(name)
        if indices:
            result |= interpolate_axis(sparse, axis, indices, spacing_zyx_mm)
    known = annotation.known_mask(sparse.shape)
    result[known] = sparse[known]
    return result
