"""Mask slice ⇄ closed planar polygons, with the even-odd rule evaluated at pixel centres.

Coordinates: a slice is a 2D boolean array indexed ``(j, i)`` (row, column), i.e. ``(y, x)`` of
the volume's ``(z, y, x)`` array. Polygons live in continuous *index* coordinates ``(i, j)``:
pixel ``(j, i)`` has its centre at ``(i, j)`` and covers ``[i ± 0.5] × [j ± 0.5]``.
:func:`polygons_to_lps` / :func:`lps_to_index` move polygons between index space on slice ``k``
and LPS millimetres using the volume's :class:`~AutoCTVLib.volume.Geometry`.

Mask → polygons (:func:`mask_to_polygons`) traces the pixel-edge boundary, so every vertex lies on
a pixel corner (``i ± 0.5``) and collinear vertices are merged. One polygon per island boundary
(``is_hole=False``) and one per hole boundary (``is_hole=True``). Islands are 4-connected: two
pixels that touch only at a corner belong to different islands (or the polygon passes that corner
twice); at such a *saddle* corner both polygons are cut back by ``saddle_cut`` pixels along their
edges so that no two polygons, and no polygon with itself, share a point. Pixel centres are 0.5
away from any corner, so this never changes the rasterised result.

Polygons → mask (:func:`polygons_to_mask`) applies the even-odd rule over *all* polygons of the
slice together (their interiors are XOR-combined), sampled at pixel centres. Round-tripping a mask
through both functions reproduces it exactly.

Orientation: traced outer boundaries are counter-clockwise and holes clockwise in the ``(i, j)``
plane (positive signed area = counter-clockwise). Rasterisation ignores orientation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from AutoCTVLib.volume import Geometry

# Unit steps of the four edge directions in (i, j): +i, +j, -i, -j (counter-clockwise order, so
# (d + 1) % 4 is a left turn).
_STEP_I = np.array([1, 0, -1, 0])
_STEP_J = np.array([0, 1, 0, -1])

#: Index-space tolerance under which coordinates count as lying exactly on a pixel centre row or
#: column (absorbs the rounding of a trip through LPS millimetres and DICOM decimal strings).
SNAP_TOLERANCE = 1e-6


@dataclass(frozen=True)
class SlicePolygon:
    """One closed polygon on a slice.

    Attributes:
        points_ij: (N, 2) float array of vertices in continuous index coordinates ``(i, j)``;
            the polygon is implicitly closed (the first vertex is not repeated).
        is_hole: True when the polygon bounds a hole of the mask, False for an island's outline.
    """

    points_ij: np.ndarray
    is_hole: bool

    @property
    def signed_area_px(self) -> float:
        """Signed area in pixels² (positive when counter-clockwise in the (i, j) plane)."""
        return signed_area(self.points_ij)


def signed_area(points_ij: np.ndarray) -> float:
    """Shoelace signed area of a closed polygon given as (N, 2) vertices (units of the input²)."""
    x = points_ij[:, 0]
    y = points_ij[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def mask_to_polygons(mask_yx: np.ndarray, *, saddle_cut: float = 0.1) -> list[SlicePolygon]:
    """Trace the boundaries of a 2D mask as closed polygons in ``(i, j)`` index coordinates.

    Args:
        mask_yx: 2D array indexed (j, i); non-zero means inside.
        saddle_cut: distance in pixels by which polygons are cut back at corners where two
            pixels touch only diagonally (0 keeps the shared corner; must be below 0.5).

    Returns:
        One :class:`SlicePolygon` per island outline and per hole outline, island outlines
        first. Empty list for an empty mask.
    """
    mask_yx = np.asarray(mask_yx)
    if mask_yx.ndim != 2:
        raise ValueError(f"mask_yx must be 2D (j, i), got shape {mask_yx.shape}")
    if not 0.0 <= saddle_cut < 0.5:
        raise ValueError(f"saddle_cut must lie in [0, 0.5), got {saddle_cut}")
    inside = mask_yx != 0
    rows = np.flatnonzero(inside.any(axis=1))
    if rows.size == 0:
        return []
    cols = np.flatnonzero(inside.any(axis=0))
    # Work on the bounding box, padded by one empty pixel on every side.
    j0, i0 = int(rows[0]), int(cols[0])
    crop = inside[j0 : int(rows[-1]) + 1, i0 : int(cols[-1]) + 1]
    padded = np.pad(crop, 1)

    start_c, start_r, direction = _boundary_edges(padded)
    n_corner_cols = padded.shape[1] + 1
    loops = _trace_loops(start_c, start_r, direction, padded.shape)

    # Corners shared by two boundary passes (diagonal-only contact).
    corner_key = start_r * n_corner_cols + start_c
    out_degree = np.bincount(corner_key)
    is_saddle_edge = out_degree[corner_key] > 1

    polygons = []
    for loop in loops:
        points = _loop_vertices(loop, start_c, start_r, direction, is_saddle_edge, saddle_cut)
        # Corner (c, r) of the padded crop sits at index (i0 + c - 1.5, j0 + r - 1.5).
        points[:, 0] += i0 - 1.5
        points[:, 1] += j0 - 1.5
        polygons.append(SlicePolygon(points, is_hole=signed_area(points) < 0))
    polygons.sort(key=lambda polygon: polygon.is_hole)
    return polygons


def _boundary_edges(padded: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All unit boundary edges of a zero-padded mask, directed with the inside on their left.

    Corner (c, r) is the (-i, -j) corner of padded pixel (r, c). Returns each edge's start corner
    column ``c`` and row ``r`` and its direction code (0: +i, 1: +j, 2: -i, 3: -j).
    """
    # Horizontal edges at corner row r between pixel rows r-1 and r, spanning columns c..c+1.
    below = padded[:-1, :]
    above = padded[1:, :]
    r_up, c_up = np.nonzero(above & ~below)  # inside towards +j: walk +i
    r_dn, c_dn = np.nonzero(below & ~above)  # inside towards -j: walk -i, start at c+1
    # Vertical edges at corner column c between pixel columns c-1 and c, spanning rows r..r+1.
    left = padded[:, :-1]
    right = padded[:, 1:]
    r_rt, c_rt = np.nonzero(right & ~left)  # inside towards +i: walk -j, start at r+1
    r_lf, c_lf = np.nonzero(left & ~right)  # inside towards -i: walk +j
    start_c = np.concatenate([c_up, c_dn + 1, c_rt + 1, c_lf + 1])
    start_r = np.concatenate([r_up + 1, r_dn + 1, r_rt + 1, r_lf])
    direction = np.concatenate(
        [
            np.zeros(c_up.size, int),
            np.full(c_dn.size, 2),
            np.full(c_rt.size, 3),
            np.ones(c_lf.size, int),
        ]
    )
    return start_c, start_r, direction


def _trace_loops(
    start_c: np.ndarray, start_r: np.ndarray, direction: np.ndarray, padded_shape: tuple[int, ...]
) -> list[np.ndarray]:
    """Chain the directed edges into closed loops; returns edge indices per loop, in order.

    At a corner with two outgoing edges the left turn is taken, which keeps the walk around the
    pixel it came along (4-connected islands).
    """
    n_corner_cols = padded_shape[1] + 1
    n_corners = (padded_shape[0] + 1) * n_corner_cols
    outgoing = np.full(n_corners * 4, -1, dtype=np.int64)
    outgoing[(start_r * n_corner_cols + start_c) * 4 + direction] = np.arange(direction.size)
    end_key = (start_r + _STEP_J[direction]) * n_corner_cols + (start_c + _STEP_I[direction])
    successor = outgoing[end_key * 4 + (direction + 1) % 4]  # left turn
    for turn in (0, 3):  # straight on, then right turn
        missing = successor < 0
        successor[missing] = outgoing[end_key[missing] * 4 + (direction[missing] + turn) % 4]
    if np.any(successor < 0):  # pragma: no cover - impossible for a closed pixel boundary
        raise RuntimeError("open boundary while tracing a mask")

    next_edge = successor.tolist()
    visited = bytearray(direction.size)
    loops = []
    for first in range(direction.size):
        if visited[first]:
            continue
        loop = []
        edge = first
        while not visited[edge]:
            visited[edge] = 1
            loop.append(edge)
            edge = next_edge[edge]
        loops.append(np.asarray(loop, dtype=np.int64))
    return loops


def _loop_vertices(
    loop: np.ndarray,
    start_c: np.ndarray,
    start_r: np.ndarray,
    direction: np.ndarray,
    is_saddle_edge: np.ndarray,
    saddle_cut: float,
) -> np.ndarray:
    """Corner vertices of one loop (collinear ones dropped), cut back at saddle corners."""
    loop_dir = direction[loop]
    turns = loop_dir != np.roll(loop_dir, 1)
    edges = loop[turns]
    points = np.column_stack([start_c[edges], start_r[edges]]).astype(float)
    saddle = is_saddle_edge[edges]
    if saddle_cut == 0.0 or not saddle.any():
        return points
    out_dir = direction[edges]
    in_dir = np.roll(loop_dir, 1)[turns]
    # At a saddle vertex v: emit v - cut·in_step, then v + cut·out_step.
    before = points - saddle_cut * np.column_stack([_STEP_I[in_dir], _STEP_J[in_dir]])
    after = points + saddle_cut * np.column_stack([_STEP_I[out_dir], _STEP_J[out_dir]])
    repeat = np.where(saddle, 2, 1)
    result = np.repeat(points, repeat, axis=0)
    first_slot = np.cumsum(repeat) - repeat
    result[first_slot[saddle]] = before[saddle]
    result[first_slot[saddle] + 1] = after[saddle]
    return result


def polygons_to_mask(polygons_ij: Sequence[np.ndarray], shape_yx: tuple[int, int]) -> np.ndarray:
    """Rasterise closed polygons by the even-odd rule at pixel centres.

    Args:
        polygons_ij: polygons as (N, 2) arrays of ``(i, j)`` vertices in continuous index
            coordinates (implicitly closed; a repeated closing vertex is harmless).
        shape_yx: output shape (rows j, columns i).

    Returns:
        2D bool array indexed (j, i): a pixel is inside when a ray from its centre crosses the
        polygons' edges an odd number of times, all polygons counted together (so overlapping
        polygons XOR, and a hole drawn inside an outline is empty). Centres lying exactly on an
        edge count as inside on left/bottom edges and outside on right/top edges, so polygons that
        share an edge never fill a pixel twice.
    """
    n_rows, n_cols = int(shape_yx[0]), int(shape_yx[1])
    edges = [_closed_edges(np.asarray(p, dtype=float)) for p in polygons_ij if len(p) >= 3]
    if not edges:
        return np.zeros((n_rows, n_cols), dtype=bool)
    x0, y0, x1, y1 = (np.concatenate(part) for part in zip(*edges))
    y0 = _snap(y0)
    y1 = _snap(y1)
    # Edge crosses the centre row j when min(y0, y1) <= j < max(y0, y1) (half-open, so a vertex
    # exactly on a row is counted once).
    y_low = np.minimum(y0, y1)
    y_high = np.maximum(y0, y1)
    first_row = np.maximum(np.ceil(y_low), 0).astype(np.int64)
    stop_row = np.minimum(np.ceil(y_high), n_rows).astype(np.int64)
    n_crossings = np.maximum(stop_row - first_row, 0)
    total = int(n_crossings.sum())
    if total == 0:
        return np.zeros((n_rows, n_cols), dtype=bool)
    edge_of = np.repeat(np.arange(n_crossings.size), n_crossings)
    offsets = np.arange(total) - np.repeat(np.cumsum(n_crossings) - n_crossings, n_crossings)
    row = first_row[edge_of] + offsets
    ex0, ey0 = x0[edge_of], y0[edge_of]
    slope = (x1[edge_of] - ex0) / (y1[edge_of] - ey0)
    x_cross = _snap(ex0 + (row - ey0) * slope)
    # Pixel i lies right of the crossing when i >= x_cross: toggle from column ceil(x_cross) on.
    column = np.clip(np.ceil(x_cross), 0, n_cols).astype(np.int64)
    toggles = np.bincount(row * (n_cols + 1) + column, minlength=n_rows * (n_cols + 1))
    parity = np.cumsum(toggles.reshape(n_rows, n_cols + 1)[:, :n_cols], axis=1) & 1
    return parity.astype(bool)


def _closed_edges(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Start and end coordinates (x0, y0, x1, y1) of every edge of a closed polygon."""
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"polygon vertices must have shape (N, 2), got {points.shape}")
    following = np.roll(points, -1, axis=0)
    return points[:, 0], points[:, 1], following[:, 0], following[:, 1]


def _snap(values: np.ndarray) -> np.ndarray:
    """Move values within SNAP_TOLERANCE of an integer onto it."""
    nearest = np.round(values)
    return np.where(np.abs(values - nearest) <= SNAP_TOLERANCE, nearest, values)


def mask_volume_to_polygons(
    mask_zyx: np.ndarray, *, saddle_cut: float = 0.1
) -> dict[int, list[SlicePolygon]]:
    """:func:`mask_to_polygons` for every non-empty slice k of a (z, y, x) mask."""
    mask_zyx = np.asarray(mask_zyx)
    if mask_zyx.ndim != 3:
        raise ValueError(f"mask_zyx must be 3D (z, y, x), got shape {mask_zyx.shape}")
    occupied = np.flatnonzero(mask_zyx.reshape(mask_zyx.shape[0], -1).any(axis=1))
    return {int(k): mask_to_polygons(mask_zyx[k], saddle_cut=saddle_cut) for k in occupied}


def polygons_to_lps(points_ij: np.ndarray, k: float, geometry: Geometry) -> np.ndarray:
    """(N, 2) index-space vertices on slice ``k`` → (N, 3) LPS mm points on ``geometry``."""
    points_ij = np.asarray(points_ij, dtype=float)
    ijk = np.column_stack([points_ij, np.full(len(points_ij), float(k))])
    return geometry.index_to_physical(ijk)


def lps_to_index(points_lps_mm: np.ndarray, geometry: Geometry) -> np.ndarray:
    """(N, 3) LPS mm points → (N, 3) continuous ``(i, j, k)`` indices on ``geometry``."""
    return geometry.physical_to_index(np.asarray(points_lps_mm, dtype=float).reshape(-1, 3))
