"""Overlap and distance metrics between two binary masks on the same grid.

Masks are (z, y, x) arrays (anything > 0 is inside); distances are in mm and use the grid
spacing ``spacing_xyz_mm`` (x, y, z). The direction cosines do not matter: they are orthonormal.

Empty masks, by convention:

* both empty → Dice 1.0, HD95 0.0 (the prediction agrees: there is nothing);
* exactly one empty → Dice 0.0, HD95 ``inf`` (no surface to measure a distance to). Averages
  over cases should report how many cases had an infinite HD95 rather than average ``inf``;
  :func:`summarize` does that.

HD95 is the symmetric 95th-percentile Hausdorff distance:
``max(P95(d(A→B)), P95(d(B→A)))`` where ``d(A→B)`` are the distances from every surface voxel of
A to the nearest surface voxel of B (centre to centre). A surface voxel is a mask voxel with at
least one 6-neighbour outside the mask; voxels on the array border count as surface.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage


def _as_masks(prediction: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prediction = np.asarray(prediction) > 0
    reference = np.asarray(reference) > 0
    if prediction.shape != reference.shape:
        raise ValueError(f"mask shapes differ: {prediction.shape} vs {reference.shape}")
    return prediction, reference


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice coefficient ``2|A∩B| / (|A| + |B|)``; 1.0 when both masks are empty."""
    prediction, reference = _as_masks(prediction, reference)
    total = int(prediction.sum()) + int(reference.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(prediction & reference)) / total


def surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels of a boolean (z, y, x) mask (6-connectivity, border counts as outside)."""
    mask = np.asarray(mask, dtype=bool)
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1))
    return mask & ~eroded


def _joint_box(*masks: np.ndarray) -> tuple[slice, ...]:
    """Bounding box (z, y, x) of the union of ``masks``, one voxel wider, within the grid."""
    union = np.logical_or.reduce(masks)
    box = []
    for axis in range(union.ndim):
        others = tuple(a for a in range(union.ndim) if a != axis)
        present = np.flatnonzero(union.any(axis=others))
        box.append(slice(max(0, int(present[0]) - 1), min(union.shape[axis], int(present[-1]) + 2)))
    return tuple(box)


def directed_surface_distances(
    source: np.ndarray, target: np.ndarray, spacing_xyz_mm: Sequence[float]
) -> np.ndarray:
    """Distance (mm) from every surface voxel of ``source`` to the nearest of ``target``.

    Both masks must be non-empty. Returns a 1-D ``float64`` array, one value per surface voxel.
    """
    source, target = _as_masks(source, target)
    if not source.any() or not target.any():
        raise ValueError("surface distances need two non-empty masks")
    # Every surface voxel of both masks lies in their joint bounding box; the distance transform
    # on that box grown by one voxel (kept inside the grid, so the grid border still counts as
    # outside) gives the same distances as on the whole grid, at a fraction of the cost.
    box = _joint_box(source, target)
    source, target = source[box], target[box]
    spacing_zyx = tuple(float(s) for s in spacing_xyz_mm)[::-1]
    distance_to_target = ndimage.distance_transform_edt(~surface(target), sampling=spacing_zyx)
    return distance_to_target[surface(source)]


def hd95(prediction: np.ndarray, reference: np.ndarray, spacing_xyz_mm: Sequence[float]) -> float:
    """Symmetric 95th-percentile Hausdorff distance in mm (see the module docstring).

    0.0 when both masks are empty, ``inf`` when exactly one is.
    """
    prediction, reference = _as_masks(prediction, reference)
    has_prediction, has_reference = bool(prediction.any()), bool(reference.any())
    if not has_prediction and not has_reference:
        return 0.0
    if has_prediction != has_reference:
        return math.inf
    forward = directed_surface_distances(prediction, reference, spacing_xyz_mm)
    backward = directed_surface_distances(reference, prediction, spacing_xyz_mm)
    return float(max(np.percentile(forward, 95), np.percentile(backward, 95)))


def surface_distance_metrics(
    prediction: np.ndarray,
    reference: np.ndarray,
    spacing_xyz_mm: Sequence[float],
    tolerance_mm: float = 2.0,
) -> dict[str, float]:
    """``{"hd95_mm", "surface_dice"}`` from one pair of distance transforms.

    The same values as :func:`hd95` and :func:`surface_dice` (and the same empty-mask
    conventions), at half the cost of calling both.
    """
    prediction, reference = _as_masks(prediction, reference)
    has_prediction, has_reference = bool(prediction.any()), bool(reference.any())
    if not has_prediction and not has_reference:
        return {"hd95_mm": 0.0, "surface_dice": 1.0}
    if has_prediction != has_reference:
        return {"hd95_mm": math.inf, "surface_dice": 0.0}
    forward = directed_surface_distances(prediction, reference, spacing_xyz_mm)
    backward = directed_surface_distances(reference, prediction, spacing_xyz_mm)
    within = int(np.count_nonzero(forward <= tolerance_mm)) + int(
        np.count_nonzero(backward <= tolerance_mm)
    )
    return {
        "hd95_mm": float(max(np.percentile(forward, 95), np.percentile(backward, 95))),
        "surface_dice": within / float(forward.size + backward.size),
    }


def surface_dice(
    prediction: np.ndarray,
    reference: np.ndarray,
    spacing_xyz_mm: Sequence[float],
    tolerance_mm: float = 2.0,
) -> float:
    """Surface Dice at ``tolerance_mm``: the share of both surfaces within tolerance of the other.

    ``(#{a in S_A: d(a, S_B) <= t} + #{b in S_B: d(b, S_A) <= t}) / (#S_A + #S_B)`` over the
    surface voxels defined above (a voxel count, not a mesh area: each surface voxel weighs the
    same). 1.0 when both masks are empty, 0.0 when exactly one is.
    """
    return surface_distance_metrics(prediction, reference, spacing_xyz_mm, tolerance_mm)[
        "surface_dice"
    ]


def segmentation_metrics(
    prediction: np.ndarray, reference: np.ndarray, spacing_xyz_mm: Sequence[float]
) -> dict[str, float]:
    """``{"dice", "hd95_mm", "volume_pred_ml", "volume_ref_ml"}`` for one case."""
    prediction, reference = _as_masks(prediction, reference)
    voxel_ml = float(np.prod([float(s) for s in spacing_xyz_mm])) / 1000.0
    return {
        "dice": dice(prediction, reference),
        "hd95_mm": hd95(prediction, reference, spacing_xyz_mm),
        "volume_pred_ml": float(prediction.sum()) * voxel_ml,
        "volume_ref_ml": float(reference.sum()) * voxel_ml,
    }


def summarize(per_case: Iterable[dict[str, float]]) -> dict[str, float | int | None]:
    """Mean Dice and mean/median HD95 over cases; infinite HD95 values are counted, not averaged.

    Returns ``{"cases", "dice_mean", "dice_sd", "hd95_mean_mm", "hd95_sd_mm", "hd95_median_mm",
    "hd95_infinite_cases"}``; standard deviations are over cases (ddof 1, ``None`` below two
    values); a statistic without any finite value is ``None``.
    """
    rows = list(per_case)
    dices = [float(row["dice"]) for row in rows]
    distances = [float(row["hd95_mm"]) for row in rows]
    finite = [d for d in distances if math.isfinite(d)]
    return {
        "cases": len(rows),
        "dice_mean": float(np.mean(dices)) if dices else None,
        "dice_sd": float(np.std(dices, ddof=1)) if len(dices) > 1 else None,
        "hd95_mean_mm": float(np.mean(finite)) if finite else None,
        "hd95_sd_mm": float(np.std(finite, ddof=1)) if len(finite) > 1 else None,
        "hd95_median_mm": float(np.median(finite)) if finite else None,
        "hd95_infinite_cases": len(distances) - len(finite),
    }
