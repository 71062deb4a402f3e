"""The phantom's patient frame and the scan grid placed around it.

The anatomy is defined in a *canonical* pelvis-centred frame (mm, LPS axes: +x patient left,
+y posterior, +z superior; origin on the midline at the height of the femoral-head centres).
Each case places that frame in the scanner's LPS space with a seeded similarity transform::

    p_lps = centre_lps + scale · R · p_canonical

(R a small rotation, ``scale`` about 0.92–1.08). The CT grid is then chosen independently of the
anatomy (size, spacing, flip, obliquity), so the same seed gives the same anatomy in mm on any
grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from AutoCTVLib.phantom.config import PhantomConfig
from AutoCTVLib.volume import Geometry

#: Canonical point (mm) the scan is centred on by default: mid-way between the top of the
#: nodal CTV (aortic bifurcation) and the lower vagina.
SCAN_CENTRE_CANONICAL = np.array([0.0, 10.0, 45.0])

#: Default grid: 512×512 pixels over a 500 mm field of view, 100 slices of 3 mm.
DEFAULT_SIZE_XYZ = (512, 512, 100)
DEFAULT_SPACING_XYZ_MM = (500.0 / 512.0, 500.0 / 512.0, 3.0)

#: Axis of the ``oblique`` rotation: mostly left-right (like a gantry tilt) with a small
#: in-plane component, so every index axis becomes oblique.
OBLIQUE_AXIS = np.array([1.0, 0.25, 0.35]) / np.linalg.norm([1.0, 0.25, 0.35])

#: Slice thicknesses (mm) drawn when the grid is varied.
VARIED_THICKNESSES_MM = (1.25, 1.5, 2.0, 2.5, 3.0, 5.0)


def rotation_matrix(axis_xyz: np.ndarray, angle_deg: float) -> np.ndarray:
    """Right-handed rotation (3×3) about ``axis_xyz`` by ``angle_deg`` degrees."""
    axis = np.asarray(axis_xyz, dtype=float)
    axis = axis / np.linalg.norm(axis)
    angle = np.deg2rad(angle_deg)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * (cross @ cross)


@dataclass(frozen=True, eq=False)
class PatientFrame:
    """Where the canonical pelvis frame lies in LPS: ``p_lps = centre + scale · R · p``.

    Attributes:
        centre_lps_mm: (3,) LPS position of the canonical origin.
        rotation: 3×3; column c is canonical axis c expressed in LPS.
        scale: isotropic size factor of the skeleton and organs.
    """

    centre_lps_mm: np.ndarray
    rotation: np.ndarray
    scale: float

    def to_lps(self, points_canonical: np.ndarray) -> np.ndarray:
        """Canonical mm (..., 3) → LPS mm (..., 3)."""
        points = np.asarray(points_canonical, dtype=float)
        return self.centre_lps_mm + self.scale * points @ self.rotation.T

    def to_canonical(self, points_lps: np.ndarray) -> np.ndarray:
        """LPS mm (..., 3) → canonical mm (..., 3)."""
        points = np.asarray(points_lps, dtype=float)
        return (points - self.centre_lps_mm) @ self.rotation / self.scale

    def summary(self) -> dict[str, object]:
        return {
            "centre_lps_mm": [round(float(v), 3) for v in self.centre_lps_mm],
            "rotation": [round(float(v), 6) for v in self.rotation.ravel()],
            "scale": round(float(self.scale), 4),
        }


def sample_frame(rng: np.random.Generator) -> PatientFrame:
    """A seeded patient position: small rotations, size factor and table position.

    Pitch (about the left-right axis) stays small because the back lies flat on the table."""
    yaw, pitch, roll = rng.uniform(-4.0, 4.0), rng.uniform(-2.0, 2.0), rng.uniform(-3.0, 3.0)
    rotation = (
        rotation_matrix((0, 0, 1), yaw)
        @ rotation_matrix((1, 0, 0), pitch)
        @ rotation_matrix((0, 1, 0), roll)
    )
    scale = float(rng.uniform(0.92, 1.08))
    centre = np.array(
        [rng.uniform(-15.0, 15.0), rng.uniform(-20.0, 20.0), rng.uniform(-400.0, 200.0)]
    )
    return PatientFrame(centre, rotation, scale)


def build_geometry(
    config: PhantomConfig, frame: PatientFrame, rng: np.random.Generator
) -> Geometry:
    """The CT grid for ``config``: its own ``grid``, or size/spacing/flip/oblique around the
    patient. Random choices (field-of-view offset, varied spacing) come from ``rng``."""
    if config.grid is not None:
        return config.grid
    offset_mm = np.array([rng.uniform(-20, 20), rng.uniform(-20, 20), rng.uniform(-15, 15)])
    pixel_mm = float(rng.uniform(0.7, 1.2))
    thickness_mm = float(rng.choice(VARIED_THICKNESSES_MM))
    coverage_mm = float(rng.uniform(260.0, 340.0))
    if config.vary_grid:
        spacing = [pixel_mm, pixel_mm, thickness_mm]
        size = [DEFAULT_SIZE_XYZ[0], DEFAULT_SIZE_XYZ[1], round(coverage_mm / thickness_mm)]
    else:
        spacing = list(DEFAULT_SPACING_XYZ_MM)
        size = list(DEFAULT_SIZE_XYZ)
    if config.spacing_xyz_mm is not None:
        spacing = list(config.spacing_xyz_mm)
    if config.slice_thickness_mm is not None:
        spacing[2] = config.slice_thickness_mm
        if config.size_xyz is None and config.spacing_xyz_mm is None:
            size[2] = max(1, round(DEFAULT_SIZE_XYZ[2] * DEFAULT_SPACING_XYZ_MM[2] / spacing[2]))
    if config.size_xyz is not None:
        size = list(config.size_xyz)

    direction = np.eye(3)
    if config.flip:
        direction = np.diag([-1.0, 1.0, -1.0]) @ direction
    if config.oblique_deg:
        direction = rotation_matrix(OBLIQUE_AXIS, config.oblique_deg) @ direction

    centre_lps = frame.to_lps(SCAN_CENTRE_CANONICAL) + offset_mm
    half_extent = np.asarray(spacing) * (np.asarray(size) - 1) / 2.0
    origin = centre_lps - direction @ half_extent
    return Geometry(
        shape_zyx=(int(size[2]), int(size[1]), int(size[0])),
        spacing_xyz_mm=tuple(float(s) for s in spacing),
        origin_xyz_mm=tuple(float(o) for o in origin),
        direction=tuple(direction.ravel()),
    )
