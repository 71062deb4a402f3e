"""Shared pytest fixtures: tiny synthetic volumes on axial, flipped and oblique grids."""

from __future__ import annotations

import os

# slicer-core's vtkITK filters (Fill between slices) run on ITK's pool threader, whose worker
# threads keep thread-local filter objects until the process exits; they are destroyed after
# ITK's own globals and the process dies with SIGSEGV after the test summary (reproduced with a
# bare script that runs vtkITKMorphologicalContourInterpolator once). ITK's "Platform" threader
# joins its threads at the end of each call, so nothing outlives ITK. It must be chosen before
# ITK creates its first threader, hence here, before any test imports slicer; child processes
# inherit it.
os.environ.setdefault("ITK_GLOBAL_DEFAULT_THREADER", "Platform")

import numpy as np
import pytest

from AutoCTVLib.volume import Geometry, Volume


def rotation_matrix(axis_xyz: tuple[float, float, float], angle_deg: float) -> np.ndarray:
    """Right-handed rotation (3×3) about ``axis_xyz`` by ``angle_deg`` degrees."""
    axis = np.asarray(axis_xyz, dtype=float)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(angle_deg)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * (cross @ cross)


GRIDS = {
    "axial": np.eye(3),
    # Feet-first / mirrored acquisitions: x and z axes reversed.
    "flipped": np.diag([-1.0, 1.0, -1.0]),
    # A gently oblique scan: rotated 12° about an off-axis direction.
    "oblique": rotation_matrix((0.3, 0.2, 1.0), 12.0),
}


def make_geometry(
    kind: str = "axial",
    shape_zyx: tuple[int, int, int] = (12, 40, 48),
    spacing_xyz_mm: tuple[float, float, float] = (0.9, 0.9, 2.5),
    origin_xyz_mm: tuple[float, float, float] = (-21.3, -15.7, 40.0),
) -> Geometry:
    """A small grid of the named kind (see ``GRIDS``)."""
    return Geometry(shape_zyx, spacing_xyz_mm, origin_xyz_mm, tuple(GRIDS[kind].ravel()))


def feet_first_twin(volume: Volume) -> Volume:
    """The same voxels stored feet first and mirrored left-right (x and z reversed).

    Only for an axis-aligned ``volume`` (identity direction): every voxel keeps its LPS position.
    """
    geometry = volume.geometry
    last = geometry.index_to_physical(np.array(geometry.size_xyz) - 1.0)
    mirrored = Geometry(
        geometry.shape_zyx,
        geometry.spacing_xyz_mm,
        (last[0], geometry.origin_xyz_mm[1], last[2]),
        tuple(np.diag([-1.0, 1.0, -1.0]).ravel()),
    )
    return Volume(np.ascontiguousarray(volume.array[::-1, :, ::-1]), mirrored)


@pytest.fixture(params=sorted(GRIDS))
def grid_kind(request: pytest.FixtureRequest) -> str:
    """Parametrises a test over the axial, flipped and oblique grid kinds."""
    return str(request.param)
