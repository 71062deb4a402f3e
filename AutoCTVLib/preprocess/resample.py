"""Resampling volumes between grids: to a target spacing, and back onto an exact grid.

Arrays are indexed (z, y, x); spacings are (x, y, z) in mm; positions are LPS mm (see
:mod:`AutoCTVLib.volume`). :func:`grid_for_spacing` either keeps the direction cosines (an
oblique or flipped scan stays so on the new grid) or, with ``reorient=True``, permutes and
mirrors the scan's axes so that the new grid's i, j, k axes point as close as possible to
L, P and S (:func:`canonical_axes`): a feet-first, prone or sagittally acquired scan then
reaches the network the same way up as a head-first supine axial one. A rotation that is not a
multiple of 90° (a tilted oblique scan) is kept.

Interpolation modes:

* ``"linear"``: trilinear, output ``float32`` (CT in HU, probabilities).
* ``"nearest"``: nearest neighbour, output keeps the input dtype (integer labelmaps).
* ``"label_linear"``: for a binary mask; trilinear on 0/1 then ``>= 0.5``, output ``uint8``.
  Smoother than nearest neighbour when the spacing changes by a non-integer factor.
"""

from __future__ import annotations

import itertools
from typing import Literal

import numpy as np
import SimpleITK as sitk

from AutoCTVLib.volume import Geometry, Volume

Interpolation = Literal["linear", "nearest", "label_linear"]
INTERPOLATIONS: tuple[str, ...] = ("linear", "nearest", "label_linear")

#: Value given to CT voxels that fall outside the input grid (air, HU).
AIR_HU = -1024.0


def canonical_axes(direction_matrix: np.ndarray) -> tuple[tuple[int, int, int], np.ndarray]:
    """The axis permutation and signs that bring a grid closest to the L, P, S axes.

    Args:
        direction_matrix: 3×3 direction cosines (columns: the i, j, k axes in LPS).

    Returns:
        ``(order, signs)``: new axis ``n`` is old axis ``order[n]`` times ``signs[n]`` (±1),
        chosen among the 48 signed permutations to maximise the sum of
        ``|direction[n, order[n]]|`` (new axis n along LPS axis n).
    """
    matrix = np.asarray(direction_matrix, dtype=float)
    order = max(
        itertools.permutations(range(3)),
        key=lambda candidate: sum(abs(matrix[n, candidate[n]]) for n in range(3)),
    )
    signs = np.array([1.0 if matrix[n, order[n]] >= 0 else -1.0 for n in range(3)])
    return tuple(int(axis) for axis in order), signs  # type: ignore[return-value]


def grid_for_spacing(
    geometry: Geometry, spacing_xyz_mm: tuple[float, float, float], *, reorient: bool = False
) -> Geometry:
    """A grid with the given spacing covering the same physical extent and centre.

    The direction is the input's, or with ``reorient`` its :func:`canonical_axes` version
    (``spacing_xyz_mm`` then applies to the reoriented axes, i.e. roughly L, P and S). The
    number of voxels along each axis is ``round(extent / new_spacing)`` (at least 1); the new
    grid is centred on the old one, so rounding is shared by both ends.
    """
    new_spacing = np.asarray([float(s) for s in spacing_xyz_mm], dtype=float)
    if new_spacing.shape != (3,) or not np.all(np.isfinite(new_spacing)) or new_spacing.min() <= 0:
        raise ValueError(f"target spacing must be three positive numbers, got {spacing_xyz_mm}")
    old_size = np.asarray(geometry.size_xyz, dtype=float)
    old_spacing = np.asarray(geometry.spacing_xyz_mm, dtype=float)
    direction = geometry.direction_matrix
    order, signs = (0, 1, 2), np.ones(3)
    if reorient:
        order, signs = canonical_axes(direction)
    new_direction = direction[:, list(order)] * signs[None, :]
    extent = (old_size * old_spacing)[list(order)]
    new_size = np.maximum(1, np.round(extent / new_spacing)).astype(int)
    centre_lps = geometry.index_to_physical((old_size - 1.0) / 2.0)
    half_extent_index = (new_size - 1.0) / 2.0 * new_spacing
    new_origin = centre_lps - new_direction @ half_extent_index
    return Geometry(
        shape_zyx=(int(new_size[2]), int(new_size[1]), int(new_size[0])),
        spacing_xyz_mm=tuple(float(s) for s in new_spacing),
        origin_xyz_mm=tuple(float(o) for o in new_origin),
        direction=tuple(float(d) for d in new_direction.ravel()),
    )


def _sitk_interpolator(interpolation: str) -> int:
    if interpolation == "nearest":
        return sitk.sitkNearestNeighbor
    if interpolation in ("linear", "label_linear"):
        return sitk.sitkLinear
    raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")


def resample_to_geometry(
    volume: Volume,
    reference: Geometry,
    interpolation: Interpolation = "linear",
    default_value: float = 0.0,
) -> Volume:
    """Resample ``volume`` onto exactly the ``reference`` grid.

    Args:
        volume: the input; its array is indexed (z, y, x).
        reference: the output grid (shape, spacing, origin and direction are taken as is).
        interpolation: ``"linear"``, ``"nearest"`` or ``"label_linear"`` (module docstring).
        default_value: value of output voxels whose centre lies outside the input grid.

    Returns:
        A volume on ``reference`` with the input's metadata: ``float32`` for ``"linear"``,
        ``uint8`` for ``"label_linear"``, the input dtype for ``"nearest"``.
    """
    interpolator = _sitk_interpolator(interpolation)
    source = volume.array
    if interpolation == "linear":
        source = source.astype(np.float32, copy=False)
    elif interpolation == "label_linear":
        source = (source > 0).astype(np.float32)
    elif source.dtype == np.bool_:
        source = source.astype(np.uint8)
    image = sitk.GetImageFromArray(np.ascontiguousarray(source), isVector=False)
    volume.geometry.apply_to(image)
    resampler = sitk.ResampleImageFilter()
    resampler.SetReferenceImage(reference.to_sitk_reference(image.GetPixelID()))
    resampler.SetInterpolator(interpolator)
    resampler.SetDefaultPixelValue(float(default_value))
    array = sitk.GetArrayFromImage(resampler.Execute(image))
    if interpolation == "label_linear":
        array = (array >= 0.5).astype(np.uint8)
    elif interpolation == "nearest" and volume.array.dtype == np.bool_:
        array = array.astype(np.bool_)
    return Volume(array, reference, dict(volume.metadata))


def resample_to_spacing(
    volume: Volume,
    spacing_xyz_mm: tuple[float, float, float],
    interpolation: Interpolation = "linear",
    default_value: float = 0.0,
) -> Volume:
    """Resample onto the grid of :func:`grid_for_spacing` (same extent, direction and centre)."""
    target = grid_for_spacing(volume.geometry, spacing_xyz_mm)
    return resample_to_geometry(volume, target, interpolation, default_value)
