"""The ``interpolate`` baseline: ITK morphological contour interpolation, the algorithm behind
3D Slicer's "Fill between slices" (Albu et al. 2008; ``itk-morphologicalcontourinterpolation``).

Settings follow Slicer's effect: heuristic alignment on, repeated dilations with a cross
structuring element (no distance transform). Differences, both deliberate:

* The annotated slices are passed explicitly (the filter's "custom slice positions"), so a
  slice the user marked as annotated but left empty counts as "the structure is absent here".
* The filter's own all-axes mode (axis −1) corrupts memory in the packaged build, so each
  annotated axis is interpolated by its own filter run and the results are united — exactly
  what the all-axes mode does internally (a voxel set along any axis is set).
* The filter runs single-threaded: its multi-threaded interpolation intermittently corrupts
  the heap in the packaged build (seen as an abort at interpreter exit). The crop around the
  drawing keeps it fast.

An axis needs at least two annotated slices to interpolate along it; voxels beyond the first
and last annotated slice stay empty (no extrapolation, as in Slicer). The annotated slices are
written back exactly as drawn.

ITK is imported on first use (it takes several seconds to load).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from AutoCTVLib.completion.annotation import AXIS_NAMES, Annotation
from AutoCTVLib.errors import InputError

logger = logging.getLogger(__name__)

_LABEL = 1


def _itk() -> Any:
    try:
        import itk
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise InputError(
            "the 'interpolate' method needs the itk-morphologicalcontourinterpolation package "
            "(pip install itk-morphologicalcontourinterpolation)"
        ) from error
    return itk


def _bounding_window(sparse: np.ndarray, annotation: Annotation) -> tuple[slice, ...]:
    """A box holding the drawing and every annotated slice, one voxel wider on each side."""
    points = np.argwhere(sparse)
    window = []
    for axis, name in enumerate(AXIS_NAMES):
        positions = [*annotation.slices(name)]
        if len(points):
            positions += [int(points[:, axis].min()), int(points[:, axis].max())]
        low = max(0, min(positions) - 1)
        high = min(sparse.shape[axis], max(positions) + 2)
        window.append(slice(low, high))
    return tuple(window)


def interpolate_along(sparse_zyx: np.ndarray, axis: int, slice_indices: list[int]) -> np.ndarray:
    """Morphological contour interpolation between the given slices along one array axis.

    Args:
        sparse_zyx: boolean (z, y, x); only the listed slices are read.
        axis: array axis (0 = z, 1 = y, 2 = x).
        slice_indices: annotated slice indices along ``axis`` (at least two).

    Returns:
        Boolean (z, y, x): the listed slices and the interpolated slices between them.
    """
    itk = _itk()
    only_these = np.zeros(sparse_zyx.shape, dtype=np.uint8)
    window = [slice(None)] * 3
    window[axis] = list(slice_indices)
    only_these[tuple(window)] = np.asarray(sparse_zyx, dtype=bool)[tuple(window)]
    image = itk.image_from_array(np.ascontiguousarray(only_these))
    threader = itk.MultiThreaderBase
    previous_threads = threader.GetGlobalDefaultNumberOfThreads()
    threader.SetGlobalDefaultNumberOfThreads(1)
    try:
        interpolator = itk.MorphologicalContourInterpolator[type(image)].New()
        interpolator.SetNumberOfWorkUnits(1)
        interpolator.SetInput(image)
        interpolator.SetLabel(_LABEL)
        interpolator.SetAxis(2 - axis)  # ITK orders axes (i, j, k)
        interpolator.SetHeuristicAlignment(True)
        interpolator.SetUseDistanceTransform(False)
        interpolator.SetUseBallStructuringElement(False)
        interpolator.SetUseCustomSlicePositions(True)
        interpolator.SetLabeledSliceIndices(2 - axis, _LABEL, [int(i) for i in slice_indices])
        interpolator.Update()
        return np.asarray(itk.array_from_image(interpolator.GetOutput())) > 0
    finally:
        threader.SetGlobalDefaultNumberOfThreads(previous_threads)


#: ``along(sparse_zyx, axis, slice_indices) -> filled_zyx``: one axis's interpolation.
AxisInterpolator = Callable[[np.ndarray, int, list[int]], np.ndarray]


def interpolate_completion(
    sparse_zyx: np.ndarray, annotation: Annotation, along: AxisInterpolator | None = None
) -> np.ndarray:
    """Fill between the annotated slices of every axis; boolean (z, y, x).

    ``along`` runs the filter along one axis (default :func:`interpolate_along`, ITK Python);
    the Slicer module passes the same filter as Slicer builds it (vtkITK), so that it needs
    no ITK Python there.

    Raises:
        InputError: no axis has two annotated slices (nothing to interpolate between).
    """
    sparse = np.asarray(sparse_zyx, dtype=bool)
    usable = [name for name in AXIS_NAMES if len(annotation.slices(name)) >= 2]
    if not usable:
        raise InputError(
            f"interpolation needs at least two annotated slices along one axis "
            f"({annotation.describe()}); use the 'learned' method or draw another slice"
        )
    window = _bounding_window(sparse, annotation)
    starts = [w.start for w in window]
    local = sparse[window]
    filled = np.zeros(local.shape, dtype=bool)
    for name in usable:
        axis = AXIS_NAMES.index(name)
        indices = [i - starts[axis] for i in annotation.slices(name)]
        filled |= (along or interpolate_along)(local, axis, indices)
        logger.debug("interpolated along %s between %d slices", name, len(indices))
    result = np.zeros(sparse.shape, dtype=bool)
    result[window] = filled
    known = annotation.known_mask(sparse.shape)
    result[known] = sparse[known]
    return result
