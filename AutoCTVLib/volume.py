"""The one volume type: an array indexed (z, y, x) plus its physical grid in LPS millimetres.

Conventions (identical to SimpleITK and DICOM patient coordinates):

* ``array[k, j, i]``: k is the slice index (z), j the row (y), i the column (x).
* ``spacing_xyz_mm = (di, dj, dk)``: voxel size along i, j, k in mm.
* ``origin_xyz_mm``: LPS position (mm) of the centre of voxel (i, j, k) = (0, 0, 0).
* ``direction``: 3×3 matrix, row-major, whose *columns* are the unit LPS directions of the
  i, j and k axes. A plain axial scan has the identity; a flipped or oblique scan does not.

So the LPS position of voxel index (i, j, k) is ``origin + direction @ (spacing * (i, j, k))``.
Slicer works in RAS; the conversion lives only at the MRML boundary (the Slicer module).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import SimpleITK as sitk

_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Geometry:
    """A voxel grid in physical space (see the module docstring for conventions).

    Attributes:
        shape_zyx: number of voxels along (k, j, i).
        spacing_xyz_mm: voxel size in mm along (i, j, k).
        origin_xyz_mm: LPS mm position of the first voxel's centre.
        direction: row-major 3×3 direction cosines; columns are the i, j, k axes in LPS.
    """

    shape_zyx: tuple[int, int, int]
    spacing_xyz_mm: tuple[float, float, float]
    origin_xyz_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = _IDENTITY

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.shape_zyx)
        spacing = tuple(float(s) for s in self.spacing_xyz_mm)
        origin = tuple(float(o) for o in self.origin_xyz_mm)
        direction = tuple(float(d) for d in np.asarray(self.direction, dtype=float).ravel())
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"shape_zyx must be three positive integers, got {self.shape_zyx}")
        if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
            raise ValueError(f"spacing_xyz_mm must be three positive numbers, got {spacing}")
        if len(origin) != 3 or not all(np.isfinite(origin)):
            raise ValueError(f"origin_xyz_mm must be three finite numbers, got {origin}")
        if len(direction) != 9:
            raise ValueError(f"direction must hold 9 values (3×3), got {len(direction)}")
        matrix = np.reshape(direction, (3, 3))
        if not np.allclose(matrix.T @ matrix, np.eye(3), atol=1e-4):
            raise ValueError("direction must be an orthonormal 3×3 matrix")
        object.__setattr__(self, "shape_zyx", shape)
        object.__setattr__(self, "spacing_xyz_mm", spacing)
        object.__setattr__(self, "origin_xyz_mm", origin)
        object.__setattr__(self, "direction", direction)

    @property
    def direction_matrix(self) -> np.ndarray:
        """3×3 direction cosines; column c is the LPS unit vector of index axis c (i, j, k)."""
        return np.reshape(np.asarray(self.direction, dtype=float), (3, 3))

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        """Number of voxels along (i, j, k), SimpleITK's ``GetSize()`` order."""
        return (self.shape_zyx[2], self.shape_zyx[1], self.shape_zyx[0])

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (cm³)."""
        return float(np.prod(self.spacing_xyz_mm)) / 1000.0

    @property
    def slice_normal(self) -> np.ndarray:
        """LPS unit vector along the k (slice) axis."""
        return self.direction_matrix[:, 2].copy()

    def index_to_physical_matrix(self) -> np.ndarray:
        """4×4 affine mapping homogeneous (i, j, k, 1) to LPS mm (x, y, z, 1)."""
        affine = np.eye(4)
        affine[:3, :3] = self.direction_matrix * np.asarray(self.spacing_xyz_mm)[None, :]
        affine[:3, 3] = self.origin_xyz_mm
        return affine

    def index_to_physical(self, ijk: np.ndarray) -> np.ndarray:
        """Map continuous indices, shape (..., 3) in (i, j, k) order, to LPS mm (..., 3)."""
        ijk = np.asarray(ijk, dtype=float)
        affine = self.index_to_physical_matrix()
        return ijk @ affine[:3, :3].T + affine[:3, 3]

    def physical_to_index(self, xyz_mm: np.ndarray) -> np.ndarray:
        """Map LPS mm points, shape (..., 3), to continuous (i, j, k) indices (..., 3)."""
        xyz_mm = np.asarray(xyz_mm, dtype=float)
        affine = self.index_to_physical_matrix()
        inverse = np.linalg.inv(affine[:3, :3])
        return (xyz_mm - affine[:3, 3]) @ inverse.T

    def is_close(self, other: Geometry, atol_mm: float = 1e-3, atol_dir: float = 1e-5) -> bool:
        """True when both grids have the same shape and agree within the given tolerances."""
        return (
            self.shape_zyx == other.shape_zyx
            and np.allclose(self.spacing_xyz_mm, other.spacing_xyz_mm, atol=atol_mm)
            and np.allclose(self.origin_xyz_mm, other.origin_xyz_mm, atol=atol_mm)
            and np.allclose(self.direction, other.direction, atol=atol_dir)
        )

    def describe(self) -> str:
        """One line for logs and error messages."""
        sz, sy, sx = self.shape_zyx
        di, dj, dk = self.spacing_xyz_mm
        return f"{sx}×{sy}×{sz} voxels at {di:.3g}×{dj:.3g}×{dk:.3g} mm"

    def to_sitk_reference(self, pixel_id: int = sitk.sitkUInt8) -> sitk.Image:
        """An empty SimpleITK image on this grid (handy as a resampling reference)."""
        image = sitk.Image(list(self.size_xyz), pixel_id)
        self.apply_to(image)
        return image

    def apply_to(self, image: sitk.Image) -> None:
        """Copy spacing, origin and direction onto a SimpleITK image of the same size."""
        if tuple(image.GetSize()) != self.size_xyz:
            raise ValueError(f"image size {image.GetSize()} does not match grid {self.size_xyz}")
        image.SetSpacing(self.spacing_xyz_mm)
        image.SetOrigin(self.origin_xyz_mm)
        image.SetDirection(self.direction)

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> Geometry:
        """The grid of a 3D SimpleITK image."""
        if image.GetDimension() != 3:
            raise ValueError(f"expected a 3D image, got {image.GetDimension()}D")
        size = image.GetSize()
        return cls(
            shape_zyx=(size[2], size[1], size[0]),
            spacing_xyz_mm=image.GetSpacing(),
            origin_xyz_mm=image.GetOrigin(),
            direction=image.GetDirection(),
        )


@dataclass(frozen=True)
class Volume:
    """An array on a physical grid. ``array`` is indexed (z, y, x) and matches ``geometry``.

    ``metadata`` holds free-form provenance strings (e.g. the source file hash); it is copied,
    never interpreted, by the library's computations.
    """

    array: np.ndarray
    geometry: Geometry
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if tuple(self.array.shape) != self.geometry.shape_zyx:
            raise ValueError(
                f"array shape {self.array.shape} does not match grid {self.geometry.shape_zyx}"
            )

    def with_array(self, array: np.ndarray) -> Volume:
        """The same grid and metadata with another array of the same shape."""
        return replace(self, array=array)

    def to_sitk(self) -> sitk.Image:
        """A SimpleITK image sharing this grid (the array is copied)."""
        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array), isVector=False)
        self.geometry.apply_to(image)
        return image

    @classmethod
    def from_sitk(cls, image: sitk.Image, metadata: dict[str, str] | None = None) -> Volume:
        """Wrap a 3D SimpleITK image (the voxel array is copied out)."""
        geometry = Geometry.from_sitk(image)
        return cls(sitk.GetArrayFromImage(image), geometry, dict(metadata or {}))
