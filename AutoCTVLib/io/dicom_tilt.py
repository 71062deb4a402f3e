"""Gantry-tilted CT series: find the tilt and resample onto an orthogonal grid.

With a tilted gantry every image is still a plane perpendicular to the slice normal
``n = row × column``, but consecutive images are shifted within their plane: the stack is sheared.
The shift grows linearly with the distance along ``n``; its angle is the gantry tilt. Like Slicer
(acquisition geometry regularisation) and dcm2niix, the reader keeps every image in its own plane
and shifts it within that plane onto one orthogonal grid (direction: row, column, ``n``).

The output grid's in-plane origin is centred between the first and last image, so no image moves
by more than half the total shear. Values come from linear interpolation within each image;
output pixels outside an image's field of view get the lowest value of the series (air or the
scanner's padding value). Slice k of the output lies in the plane of image k, so references to
image k (RTSTRUCT contours, SEG frames) stay right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Shear:
    """How far each image (k order) lies from the orthogonal output grid, in pixels.

    Attributes:
        offsets_ij: (n, 2) array; image k's pixel (i, j) is output pixel
            ``(i + offsets_ij[k, 0], j + offsets_ij[k, 1])`` of slice k.
        tilt_deg: the gantry tilt (angle between the stacking line and ``n``), degrees.
        largest_shift_mm: the largest in-plane shift of any image, mm.
    """

    offsets_ij: np.ndarray
    tilt_deg: float
    largest_shift_mm: float


def fit_shear(
    positions: np.ndarray,
    row_axis: np.ndarray,
    column_axis: np.ndarray,
    normal: np.ndarray,
    pixel_spacing_ij_mm: tuple[float, float],
    tolerance_mm: float,
) -> tuple[Shear | None, float]:
    """The linear shear of a stack of images, and the largest misfit of any image (mm).

    Args:
        positions: (n, 3) ImagePositionPatient of the images in k order (LPS mm).
        row_axis, column_axis, normal: unit vectors of i, j and the slice normal.
        pixel_spacing_ij_mm: spacing along i and along j (mm).
        tolerance_mm: in-plane offsets (and misfits) below this count as none.

    Returns:
        ``(shear, misfit_mm)``: shear is None when the images are stacked along ``n`` (no
        tilt). A misfit above the tolerance means the offsets are not one linear shear (shifted
        images rather than a tilt); the caller refuses such a series.
    """
    offsets = positions - positions[0]
    along = offsets @ normal
    in_plane = np.column_stack([offsets @ row_axis, offsets @ column_axis])
    if float(np.linalg.norm(in_plane, axis=1).max()) <= tolerance_mm:
        return None, 0.0
    span = float(along[-1] - along[0])
    slope = (along @ in_plane) / float(along @ along)  # mm in plane per mm along n
    misfit = float(np.linalg.norm(in_plane - np.outer(along, slope), axis=1).max())
    centre = np.outer(along, slope)  # fitted offset of each image from the first
    middle = (centre[0] + centre[-1]) / 2.0
    offsets_mm = centre - middle
    offsets_ij = offsets_mm / np.asarray(pixel_spacing_ij_mm, dtype=float)
    tilt_deg = float(np.degrees(np.arctan(np.linalg.norm(slope))))
    largest = float(np.linalg.norm(offsets_mm, axis=1).max()) if span else 0.0
    return Shear(offsets_ij, tilt_deg, largest), misfit


def origin_for_shear(
    first_position: np.ndarray,
    shear: Shear,
    row_axis: np.ndarray,
    column_axis: np.ndarray,
    pixel_spacing_ij_mm: tuple[float, float],
) -> np.ndarray:
    """LPS origin (mm) of the orthogonal grid: the first image's position moved in plane by
    its offset (so output slice 0 keeps image 0's plane)."""
    di, dj = pixel_spacing_ij_mm
    shift = shear.offsets_ij[0]
    return first_position - shift[0] * di * row_axis - shift[1] * dj * column_axis


def resample_sheared(ct_hu: np.ndarray, shear: Shear) -> np.ndarray:
    """Each slice of ``ct_hu`` (z, y, x) shifted in plane onto the orthogonal grid (float32)."""
    fill = float(ct_hu.min()) if ct_hu.size else 0.0
    out = np.empty_like(ct_hu, dtype=np.float32)
    for k in range(ct_hu.shape[0]):
        shift_i, shift_j = shear.offsets_ij[k]
        ndimage.shift(
            ct_hu[k].astype(np.float32, copy=False),
            shift=(float(shift_j), float(shift_i)),
            output=out[k],
            order=1,
            mode="constant",
            cval=fill,
            prefilter=False,
        )
    return out
