"""Rotation about the array centre, in physical space when the voxel spacing is given.

Interpolation: image linear (edge values continue outside the field of view); label linear
then thresholded at 0.5 (smoother than nearest neighbour for binary masks; pass
``label_interpolation="nearest"`` for multi-valued label maps), 0 outside the field; weight map
nearest neighbour, 0 (unknown) outside the field.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from AutoCTVLib.augment.affine import LABEL_INTERPOLATIONS, resample_sample
from AutoCTVLib.augment.base import RandomTransform, check_probability
from AutoCTVLib.augment.sample import Sample


def _axis_rotation(angle_deg: float, plane: tuple[int, int]) -> np.ndarray:
    """3×3 rotation by ``angle_deg`` in the plane of two (z, y, x) axes."""
    matrix = np.eye(3)
    cosine, sine = np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))
    a, b = plane
    matrix[a, a], matrix[a, b], matrix[b, a], matrix[b, b] = cosine, -sine, sine, cosine
    return matrix


def rotation_matrix(angles_deg: Sequence[float]) -> np.ndarray:
    """Rotation matrix acting on (z, y, x) (3 angles) or (y, x) (1 angle) coordinates.

    3D: ``angles_deg = (about z, about y, about x)`` composed as R_z · R_y · R_x; a rotation
    about z turns the axial (y, x) plane. 2D: one angle in the (y, x) plane. A positive angle
    turns the plane's first axis toward its second (about z: +y toward +x; about y: +z toward
    +x; about x: +z toward +y), as ``np.rot90(array, axes=(first, second))`` does.
    """
    angles = [float(a) for a in angles_deg]
    if len(angles) == 1:
        return _axis_rotation(angles[0], (1, 2))[1:, 1:]
    if len(angles) != 3:
        raise ValueError(f"give 3 angles (about z, y, x) or 1 angle (2D), got {len(angles)}")
    about_z = _axis_rotation(angles[0], (1, 2))
    about_y = _axis_rotation(angles[1], (0, 2))
    about_x = _axis_rotation(angles[2], (0, 1))
    return about_z @ about_y @ about_x


def _index_transform(
    angles_deg: Sequence[float], shape: tuple[int, ...], spacing_zyx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(matrix, offset)`` mapping output index → input index for scipy's affine_transform."""
    rotation = rotation_matrix(angles_deg)
    to_mm = np.diag(spacing_zyx)
    to_index = np.diag(1.0 / spacing_zyx)
    matrix = to_index @ rotation.T @ to_mm  # inverse rotation, expressed on the voxel grid
    centre = (np.asarray(shape, dtype=float) - 1.0) / 2.0
    return matrix, centre - matrix @ centre


def rotate(
    sample: Sample,
    angles_deg: Sequence[float],
    *,
    spacing_xyz_mm: Sequence[float] | None = None,
    label_interpolation: str = "linear_threshold",
) -> Sample:
    """Rotate every array of ``sample`` by ``angles_deg`` about the grid centre.

    Args:
        sample: image, label and weight on one grid.
        angles_deg: (about z, about y, about x) in degrees for 3D, one angle for 2D.
        spacing_xyz_mm: voxel spacing (x, y, z) (or (x, y) in 2D) so the rotation is rigid in
            millimetres on anisotropic grids; ``None`` treats voxels as cubes.
        label_interpolation: "linear_threshold" (binary masks) or "nearest".
    """
    dims = sample.spatial_dims
    if len(angles_deg) != (3 if dims == 3 else 1):
        raise ValueError(f"a {dims}D rotation needs {3 if dims == 3 else 1} angle(s)")
    if label_interpolation not in LABEL_INTERPOLATIONS:
        raise ValueError(f"label_interpolation must be one of {', '.join(LABEL_INTERPOLATIONS)}")
    if spacing_xyz_mm is None:
        spacing_zyx = np.ones(dims)
    else:
        if len(spacing_xyz_mm) != dims or min(spacing_xyz_mm) <= 0:
            raise ValueError(f"spacing_xyz_mm needs {dims} positive values, got {spacing_xyz_mm}")
        spacing_zyx = np.asarray(spacing_xyz_mm, dtype=float)[::-1]
    if not any(angles_deg):
        return sample
    matrix, offset = _index_transform(angles_deg, sample.spatial_shape, spacing_zyx)

    return resample_sample(sample, matrix, offset, label_interpolation)


class RandomRotation(RandomTransform):
    """Rotate by angles drawn uniformly from [-max_angle_deg, max_angle_deg].

    Args:
        max_angle_deg: largest absolute angle (thesis: 10°).
        axes: in 3D, which rotation axes to draw angles for: indices into (z, y, x); others
            stay 0 (``(0,)`` = axial in-plane rotation only). Ignored in 2D.
        p: probability of rotating at all.
        spacing_xyz_mm, label_interpolation: passed to :func:`rotate`.
    """

    def __init__(
        self,
        *,
        max_angle_deg: float = 10.0,
        axes: Sequence[int] = (0, 1, 2),
        p: float = 1.0,
        spacing_xyz_mm: Sequence[float] | None = None,
        label_interpolation: str = "linear_threshold",
    ) -> None:
        if not 0.0 <= max_angle_deg <= 180.0:
            raise ValueError(f"max_angle_deg must be in [0, 180], got {max_angle_deg}")
        axes = tuple(axes)
        if not axes or any(axis not in (0, 1, 2) for axis in axes) or len(set(axes)) != len(axes):
            raise ValueError(f"axes must be distinct indices among 0, 1, 2 (z, y, x), got {axes}")
        if label_interpolation not in LABEL_INTERPOLATIONS:
            raise ValueError(
                f"label_interpolation must be one of {', '.join(LABEL_INTERPOLATIONS)}"
            )
        self.max_angle_deg = float(max_angle_deg)
        self.axes = axes
        self.p = check_probability(p)
        self.spacing_xyz_mm = spacing_xyz_mm
        self.label_interpolation = label_interpolation

    def sample_parameters(
        self, rng: np.random.Generator, spatial_dims: int
    ) -> tuple[float, ...] | None:
        if rng.random() >= self.p:
            return None
        if spatial_dims == 2:
            return (float(rng.uniform(-self.max_angle_deg, self.max_angle_deg)),)
        angles = [0.0, 0.0, 0.0]
        for axis in self.axes:
            angles[axis] = float(rng.uniform(-self.max_angle_deg, self.max_angle_deg))
        return tuple(angles)

    def apply(self, sample: Sample, parameters: tuple[float, ...]) -> Sample:
        return rotate(
            sample,
            parameters,
            spacing_xyz_mm=self.spacing_xyz_mm,
            label_interpolation=self.label_interpolation,
        )
