"""Clean-up of a predicted CTV mask: drop small islands, fill holes.

Masks are boolean arrays indexed (z, y, x). Volumes are in millilitres (cm³) from the voxel
spacing. Connectivity counts which neighbours join two voxels into one component: 6 (faces),
18 (faces and edges) or 26 (faces, edges and corners, the default: a CTV touching itself
diagonally between slices is one structure).

One connected CTV: with ``near_largest_mm`` set, only the largest component is kept together with
any component that comes within that distance (mm, between voxel centres) of it — a CTV split by
a thin gap stays whole, a stray island elsewhere in the body goes.

Hole filling: "3d" fills background regions not connected to the volume's border in 3D;
"slice" fills, on every axial slice k, background regions enclosed within that slice (what a
contour drawn per slice, as in RTSTRUCT, would enclose); "both" applies the two; "none" keeps
holes. The settings are a :class:`PostprocessConfig`, recorded in provenance with ``to_dict``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from AutoCTVLib.volume import Geometry

logger = logging.getLogger(__name__)

FILL_MODES = ("none", "3d", "slice", "both")
_CONNECTIVITY_RANK = {6: 1, 18: 2, 26: 3}


@dataclass(frozen=True)
class PostprocessConfig:
    """How a predicted mask is cleaned (applied by :func:`postprocess_mask`).

    Attributes:
        min_component_ml: components smaller than this (mL) are removed; 0 keeps all.
        keep_largest: keep only this many largest components (``None``: no limit).
        fill_holes: one of ``FILL_MODES``.
        connectivity: 6, 18 or 26.
        near_largest_mm: keep only the largest component and the components within this
            distance of it (mm); ``None`` keeps components wherever they are.
    """

    min_component_ml: float = 0.0
    keep_largest: int | None = None
    fill_holes: str = "3d"
    connectivity: int = 26
    near_largest_mm: float | None = None

    def __post_init__(self) -> None:
        if not self.min_component_ml >= 0:
            raise ValueError(f"min_component_ml must be >= 0, got {self.min_component_ml}")
        if self.keep_largest is not None and (
            isinstance(self.keep_largest, bool) or self.keep_largest < 1
        ):
            raise ValueError(f"keep_largest must be None or >= 1, got {self.keep_largest}")
        if self.fill_holes not in FILL_MODES:
            raise ValueError(f"fill_holes must be one of {FILL_MODES}, got {self.fill_holes!r}")
        if self.connectivity not in _CONNECTIVITY_RANK:
            raise ValueError(f"connectivity must be 6, 18 or 26, got {self.connectivity}")
        if self.near_largest_mm is not None and not (
            isinstance(self.near_largest_mm, (int, float))
            and not isinstance(self.near_largest_mm, bool)
            and 0 <= self.near_largest_mm < float("inf")
        ):
            raise ValueError(
                f"near_largest_mm must be None or a non-negative number, got {self.near_largest_mm}"
            )

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly settings for provenance."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> PostprocessConfig:
        """Rebuild from :meth:`to_dict` output (unknown keys are an error)."""
        return cls(**data)  # type: ignore[arg-type]


def postprocess_mask(
    mask: np.ndarray, spacing: Geometry | Sequence[float], config: PostprocessConfig
) -> np.ndarray:
    """Apply ``config`` to ``mask`` (bool, z, y, x): remove components, then fill holes.

    The work is done inside the mask's bounding box grown by one voxel: every step (components,
    distances between them, holes enclosed in 3D or in a slice) depends only on the mask and
    the background ring around it, so the result equals the whole-grid computation.
    """
    binary = _as_mask(mask)
    window = _padded_box(binary)
    if window is None:
        return binary.copy()
    result = np.zeros_like(binary)
    result[window] = _postprocess_box(binary[window], spacing, config)
    return result


def _padded_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The mask's bounding box plus one voxel on every side (clipped), or None when empty."""
    if not mask.any():
        return None
    box = []
    for axis in range(mask.ndim):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(0, present[0] - 1), min(mask.shape[axis], present[-1] + 2)))
    return tuple(box)


def _postprocess_box(
    mask: np.ndarray, spacing: Geometry | Sequence[float], config: PostprocessConfig
) -> np.ndarray:
    cleaned = keep_components(
        mask,
        spacing,
        min_volume_ml=config.min_component_ml,
        keep_largest=config.keep_largest,
        connectivity=config.connectivity,
    )
    if config.near_largest_mm is not None:
        cleaned = keep_near_largest(
            cleaned, spacing, config.near_largest_mm, connectivity=config.connectivity
        )
    return fill_holes(cleaned, mode=config.fill_holes)


def keep_near_largest(
    mask: np.ndarray,
    spacing: Geometry | Sequence[float],
    distance_mm: float,
    *,
    connectivity: int = 26,
) -> np.ndarray:
    """The largest connected component of ``mask`` plus every component that comes within
    ``distance_mm`` of it (distance between voxel centres, in mm).

    The distance map is computed only in the largest component's bounding box grown by
    ``distance_mm``: a component outside that box is farther away than ``distance_mm``.

    Args:
        mask: boolean (or 0/1) array (z, y, x).
        spacing: a :class:`Geometry` or voxel size (x, y, z) in mm.
        distance_mm: greatest gap (mm) between the largest component and one that is kept.
        connectivity: 6, 18 or 26.

    Returns:
        A new boolean array (z, y, x).
    """
    binary = _as_mask(mask)
    if not distance_mm >= 0:
        raise ValueError(f"distance_mm must be >= 0, got {distance_mm}")
    labels, count = ndimage.label(binary, structure=_structure(connectivity))
    if count <= 1:
        return binary.copy()
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    largest = int(np.argmax(sizes))
    spacing_zyx = np.asarray(_spacing_xyz(spacing)[::-1])
    found = ndimage.find_objects(labels)[largest - 1]
    reach = np.ceil(distance_mm / spacing_zyx - 1e-9).astype(int)
    window = tuple(
        slice(
            max(0, part.start - int(reach[axis])),
            min(binary.shape[axis], part.stop + int(reach[axis])),
        )
        for axis, part in enumerate(found)
    )
    local = labels[window]
    distance = ndimage.distance_transform_edt(local != largest, sampling=spacing_zyx)
    near = np.unique(local[(distance <= distance_mm + 1e-6) & (local > 0)])
    keep = np.zeros(count + 1, dtype=bool)
    keep[near] = True
    keep[largest] = True
    keep[0] = False
    logger.debug("near-largest: %d components, %d kept", count, int(keep.sum()))
    return keep[labels]


def keep_components(
    mask: np.ndarray,
    spacing: Geometry | Sequence[float],
    *,
    min_volume_ml: float = 0.0,
    keep_largest: int | None = None,
    connectivity: int = 26,
) -> np.ndarray:
    """Connected components of ``mask`` that are at least ``min_volume_ml`` large, and at most
    the ``keep_largest`` largest of those (ties broken by label order).

    Args:
        mask: boolean (or 0/1) array (z, y, x).
        spacing: a :class:`Geometry` or voxel size (x, y, z) in mm.
        min_volume_ml: smallest component kept, in mL.
        keep_largest: how many of the largest components to keep; ``None`` keeps all.
        connectivity: 6, 18 or 26.

    Returns:
        A new boolean array (z, y, x).
    """
    binary = _as_mask(mask)
    if keep_largest is not None and (isinstance(keep_largest, bool) or keep_largest < 1):
        raise ValueError(f"keep_largest must be None or >= 1, got {keep_largest}")
    if min_volume_ml < 0:
        raise ValueError(f"min_volume_ml must be >= 0, got {min_volume_ml}")
    voxel_ml = _voxel_volume_ml(spacing)
    labels, count = ndimage.label(binary, structure=_structure(connectivity))
    if count == 0:
        return binary.copy()
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    volumes_ml = sizes * voxel_ml
    keep = volumes_ml >= min_volume_ml - 1e-12
    if keep_largest is not None:
        order = np.argsort(-sizes, kind="stable")
        ranked = np.zeros(count, dtype=bool)
        ranked[order[:keep_largest]] = True
        keep &= ranked
    logger.debug(
        "components: %d found, %d kept (min %.3g mL, largest %s)",
        count,
        int(keep.sum()),
        min_volume_ml,
        keep_largest,
    )
    lookup = np.concatenate([[False], keep])
    return lookup[labels]


def fill_holes(mask: np.ndarray, mode: str = "3d") -> np.ndarray:
    """Fill holes of ``mask`` (bool, z, y, x) in 3D, per axial slice, both, or not at all."""
    if mode not in FILL_MODES:
        raise ValueError(f"fill mode must be one of {FILL_MODES}, got {mode!r}")
    filled = _as_mask(mask).copy()
    if mode in ("3d", "both"):
        filled = ndimage.binary_fill_holes(filled)
    if mode in ("slice", "both"):
        for k in range(filled.shape[0]):
            if filled[k].any():
                filled[k] = ndimage.binary_fill_holes(filled[k])
    return filled


def component_volumes_ml(
    mask: np.ndarray, spacing: Geometry | Sequence[float], connectivity: int = 26
) -> list[float]:
    """Volumes (mL) of the connected components of ``mask``, largest first."""
    labels, count = ndimage.label(_as_mask(mask), structure=_structure(connectivity))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    return sorted((float(s) * _voxel_volume_ml(spacing) for s in sizes), reverse=True)


def _structure(connectivity: int) -> np.ndarray:
    if connectivity not in _CONNECTIVITY_RANK:
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    return ndimage.generate_binary_structure(3, _CONNECTIVITY_RANK[connectivity])


def _as_mask(mask: np.ndarray) -> np.ndarray:
    array = np.asarray(mask)
    if array.ndim != 3:
        raise ValueError(f"mask must be 3D (z, y, x), got shape {array.shape}")
    return array.astype(bool)


def _spacing_xyz(spacing: Geometry | Sequence[float]) -> tuple[float, float, float]:
    if isinstance(spacing, Geometry):
        return tuple(float(s) for s in spacing.spacing_xyz_mm)  # type: ignore[return-value]
    values = tuple(float(s) for s in spacing)
    if len(values) != 3 or min(values) <= 0:
        raise ValueError(f"spacing must be three positive numbers (x, y, z) in mm, got {spacing}")
    return values  # type: ignore[return-value]


def _voxel_volume_ml(spacing: Geometry | Sequence[float]) -> float:
    if isinstance(spacing, Geometry):
        return spacing.voxel_volume_ml
    return float(np.prod(_spacing_xyz(spacing))) / 1000.0
