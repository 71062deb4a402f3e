"""Evaluate canonical-frame shapes on a CT grid, each only inside its own index box.

Voxel centres come from the grid (``Geometry``: index → LPS mm) and the patient frame (LPS mm
→ canonical mm), composed into one affine map, so any spacing, flip or obliquity is handled the
same way. Arrays are indexed (z, y, x) like every volume of the library.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from AutoCTVLib.phantom.frame import PatientFrame
from AutoCTVLib.phantom.shapes import Shape
from AutoCTVLib.volume import Geometry


@dataclass(frozen=True)
class IndexBox:
    """A box of voxels: ``start`` and ``stop`` in array order (k, j, i), stop exclusive."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    def intersect(self, other: IndexBox) -> IndexBox | None:
        start = tuple(max(a, b) for a, b in zip(self.start, other.start))
        stop = tuple(min(a, b) for a, b in zip(self.stop, other.stop))
        if any(b <= a for a, b in zip(start, stop)):
            return None
        return IndexBox(start, stop)  # type: ignore[arg-type]

    def relative_to(self, outer: IndexBox) -> tuple[slice, slice, slice]:
        """Slices selecting this box inside an array covering ``outer``."""
        return tuple(slice(a - o, b - o) for a, b, o in zip(self.start, self.stop, outer.start))  # type: ignore[return-value]


#: Coarse-to-fine evaluation: in-plane step (voxels) and the safety factor applied to each
#: shape's declared Lipschitz bound.
COARSE_STEP = 4
SAFETY = 1.5


class Rasteriser:
    """Canonical-frame shapes → arrays on ``geometry``.

    Args:
        geometry: the CT grid.
        frame: where the canonical frame lies in LPS (shapes are defined in canonical mm).
    """

    def __init__(self, geometry: Geometry, frame: PatientFrame) -> None:
        self.geometry = geometry
        self.frame = frame
        index_to_lps = geometry.index_to_physical_matrix()
        rotation_t = np.asarray(frame.rotation, dtype=float).T
        # canonical = M @ (i, j, k) + b
        self._matrix = rotation_t @ index_to_lps[:3, :3] / frame.scale
        self._offset = rotation_t @ (index_to_lps[:3, 3] - frame.centre_lps_mm) / frame.scale
        self._inverse = np.linalg.inv(self._matrix)
        self.full_box = IndexBox((0, 0, 0), geometry.shape_zyx)

    @property
    def mm_per_unit(self) -> float:
        """Physical millimetres per canonical millimetre (the frame's scale)."""
        return float(self.frame.scale)

    def box_for(self, lo: np.ndarray, hi: np.ndarray, pad_mm: float = 0.0) -> IndexBox | None:
        """The voxels whose centres may lie in the canonical box [lo, hi] (grown by pad_mm)."""
        lo = np.asarray(lo, dtype=float) - pad_mm
        hi = np.asarray(hi, dtype=float) + pad_mm
        lo = np.maximum(lo, -1e6)
        hi = np.minimum(hi, 1e6)
        corners = np.array([[c[0], c[1], c[2]] for c in _corners(lo, hi)])
        ijk = (corners - self._offset) @ self._inverse.T
        first = np.floor(ijk.min(axis=0)).astype(int)
        last = np.ceil(ijk.max(axis=0)).astype(int) + 1
        size_kji = self.geometry.shape_zyx
        start = (max(first[2], 0), max(first[1], 0), max(first[0], 0))
        stop = (min(last[2], size_kji[0]), min(last[1], size_kji[1]), min(last[0], size_kji[2]))
        if any(b <= a for a, b in zip(start, stop)):
            return None
        return IndexBox(start, stop)

    def coords(self, box: IndexBox) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Canonical (x, y, z) in mm of the voxel centres of ``box``, float32, shape box.shape."""
        return self.coords_grid(
            np.arange(box.start[0], box.stop[0], dtype=np.float64),
            np.arange(box.start[1], box.stop[1], dtype=np.float64),
            np.arange(box.start[2], box.stop[2], dtype=np.float64),
        )

    def coords_grid(
        self, k: np.ndarray, j: np.ndarray, i: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Canonical (x, y, z) on the grid spanned by index vectors k, j, i (any values)."""
        out = []
        for row in range(3):
            m_i, m_j, m_k = self._matrix[row]
            along_k = (self._offset[row] + m_k * k).astype(np.float32)[:, None, None]
            along_j = (m_j * j).astype(np.float32)[None, :, None]
            along_i = (m_i * i).astype(np.float32)[None, None, :]
            out.append((along_k + along_j) + along_i)
        return out[0], out[1], out[2]

    def coords_at(
        self, box: IndexBox, indices: tuple[np.ndarray, np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Canonical (x, y, z) of selected voxels of ``box`` (``indices``: k, j, i within the
        box, as from ``np.nonzero``), float32 1-D arrays, bit-identical to :meth:`coords`."""
        k = np.arange(box.start[0], box.stop[0], dtype=np.float64)
        j = np.arange(box.start[1], box.stop[1], dtype=np.float64)
        i = np.arange(box.start[2], box.stop[2], dtype=np.float64)
        out = []
        for row in range(3):
            m_i, m_j, m_k = self._matrix[row]
            along_k = (self._offset[row] + m_k * k).astype(np.float32)
            along_j = (m_j * j).astype(np.float32)
            along_i = (m_i * i).astype(np.float32)
            values = along_k[indices[0]]
            values += along_j[indices[1]]
            values += along_i[indices[2]]
            out.append(values)
        return out[0], out[1], out[2]

    def distance(
        self,
        shape: Shape,
        pad_mm: float = 1.0,
        within: IndexBox | None = None,
        band: tuple[float, float] | None = None,
    ) -> tuple[IndexBox, np.ndarray] | None:
        """Signed distance (canonical mm) of ``shape`` on the voxels near it.

        Each piece of the shape is evaluated in its own box grown by ``pad_mm``; voxels of the
        returned box that no piece reaches hold +inf. Returns None when the shape misses the
        grid (or ``within``).

        ``band`` = (lo, hi): the caller only compares values with thresholds in [lo, hi], so
        voxels certainly below ``lo`` may hold -1e4 and voxels certainly above ``hi`` +1e4.
        Large boxes are then evaluated coarse-to-fine (see :meth:`_banded`), which is much
        faster for big solids such as the body.
        """
        pieces = list(shape.pieces())
        piece_boxes = []
        for piece in pieces:
            box = self.box_for(*piece.bounds(), pad_mm=pad_mm)
            if box is not None and within is not None:
                box = box.intersect(within)
            piece_boxes.append(box)
        present = [(p, b) for p, b in zip(pieces, piece_boxes) if b is not None]
        if not present:
            return None
        outer = IndexBox(
            tuple(min(b.start[a] for _, b in present) for a in range(3)),  # type: ignore[arg-type]
            tuple(max(b.stop[a] for _, b in present) for a in range(3)),  # type: ignore[arg-type]
        )
        if len(present) == 1:
            piece, box = present[0]
            return box, self._evaluate(piece, box, band)
        buffer = np.full(outer.shape, np.inf, dtype=np.float32)
        for piece, box in present:
            view = buffer[box.relative_to(outer)]
            np.minimum(view, self._evaluate(piece, box, band), out=view)
        return outer, buffer

    def _evaluate(
        self, piece: Shape, box: IndexBox, band: tuple[float, float] | None
    ) -> np.ndarray:
        nk, nj, ni = box.shape
        if band is None or nj < 4 * COARSE_STEP or ni < 4 * COARSE_STEP or nk * nj * ni < 2e5:
            return piece.distance(*self.coords(box))
        return self._banded(piece, box, band)

    def _banded(self, piece: Shape, box: IndexBox, band: tuple[float, float]) -> np.ndarray:
        """Coarse-to-fine evaluation: the shape is evaluated on every ``COARSE_STEP``-th voxel
        in-plane; cells whose four corners all lie further below ``band[0]`` (above
        ``band[1]``) than the shape's value can change within half a cell (its Lipschitz bounds
        × half the cell diagonal and × the z change across it, times ``SAFETY``) are filled
        with -1e4 (+1e4) without evaluation; the rest is evaluated exactly."""
        step = COARSE_STEP
        nk, nj, ni = box.shape
        spacing = np.asarray(self.geometry.spacing_xyz_mm) / self.frame.scale
        half_diagonal = 0.5 * step * float(np.hypot(spacing[0], spacing[1]))
        # Canonical z change across half a cell (the grid's rows may be tilted against z).
        half_dz = 0.5 * step * (abs(self._matrix[2, 0]) + abs(self._matrix[2, 1]))
        reach = piece.lipschitz * half_diagonal + piece.z_lipschitz * half_dz
        margin = np.float32(SAFETY * reach + 0.5)
        cells_j, cells_i = -(-nj // step), -(-ni // step)
        corners = self.coords_grid(
            np.arange(box.start[0], box.stop[0], dtype=np.float64),
            box.start[1] + step * np.arange(cells_j + 1, dtype=np.float64),
            box.start[2] + step * np.arange(cells_i + 1, dtype=np.float64),
        )
        coarse = piece.distance(*corners)
        upper = np.maximum(
            np.maximum(coarse[:, :-1, :-1], coarse[:, 1:, :-1]),
            np.maximum(coarse[:, :-1, 1:], coarse[:, 1:, 1:]),
        )
        lower = np.minimum(
            np.minimum(coarse[:, :-1, :-1], coarse[:, 1:, :-1]),
            np.minimum(coarse[:, :-1, 1:], coarse[:, 1:, 1:]),
        )
        cell_value = np.zeros(upper.shape, dtype=np.float32)
        cell_value[upper < np.float32(band[0]) - margin] = -1e4
        cell_value[lower > np.float32(band[1]) + margin] = 1e4
        # Fill every fine voxel with its cell's value in one write (padded to whole cells).
        padded = np.empty((nk, cells_j, step, cells_i, step), dtype=np.float32)
        padded[...] = cell_value[:, :, None, :, None]
        fine = padded.reshape(nk, cells_j * step, cells_i * step)[:, :nj, :ni]
        # Evaluate exactly only the uncertain cells, as (cells, step, step) blocks.
        cell_k, cell_j, cell_i = np.nonzero(cell_value == 0)
        if len(cell_k):
            offsets = np.arange(step)
            rows = box.start[1] + cell_j[:, None] * step + offsets[None, :]
            columns = box.start[2] + cell_i[:, None] * step + offsets[None, :]
            slices = box.start[0] + cell_k
            coordinates = []
            for row in range(3):
                m_i, m_j, m_k = self._matrix[row]
                along_k = (self._offset[row] + m_k * slices).astype(np.float32)
                along_j = (m_j * rows).astype(np.float32)
                along_i = (m_i * columns).astype(np.float32)
                coordinates.append(
                    (along_k[:, None, None] + along_j[:, :, None]) + along_i[:, None, :]
                )
            padded[cell_k, cell_j, :, cell_i, :] = piece.distance(*coordinates)
        return fine


def _corners(lo: np.ndarray, hi: np.ndarray) -> list[tuple[float, float, float]]:
    return [(x, y, z) for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
