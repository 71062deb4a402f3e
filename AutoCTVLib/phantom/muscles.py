"""Named pelvic muscles: psoas, iliacus, obturator internus and piriformis (both sides).

The remaining muscle mass (abdominal wall, back, gluteal and thigh muscles, pelvic floor) is
the space between the subcutaneous fat and the cavity (see :mod:`AutoCTVLib.phantom.body`).
Canonical mm; side +1 is the patient's left.
"""

from __future__ import annotations

import numpy as np

from AutoCTVLib.phantom.bones import SIDES, Skeleton, wing_box
from AutoCTVLib.phantom.frame import rotation_matrix
from AutoCTVLib.phantom.parts import Part
from AutoCTVLib.phantom.shapes import Clipped, Ellipsoid, Intersection, Shell, Tube

_PSOAS = np.array(
    [
        [28.0, 42.0, 340.0],
        [34.0, 42.0, 250.0],
        [42.0, 42.0, 180.0],
        [56.0, 42.0, 125.0],
        [74.0, 24.0, 80.0],
        [87.0, 3.0, 45.0],
        [91.0, -18.0, 20.0],
        [91.0, -28.0, 0.0],
        [87.0, -15.0, -40.0],
        [82.0, 2.0, -55.0],
    ]
)
_PSOAS_RADII = np.array([12.0, 15.0, 19.0, 21.0, 20.0, 17.0, 16.0, 15.0, 12.0, 9.0])


def build_muscles(rng: np.random.Generator, skeleton: Skeleton) -> tuple[Part, ...]:
    """Sample the named muscles of both sides (painted over organs, under vessels and bone)."""
    bulk = float(rng.uniform(0.85, 1.15))
    parts = []
    for side_name, side in SIDES.items():
        mirror = np.array([side, 1.0, 1.0])
        psoas_points = _PSOAS * mirror + rng.normal(0.0, 1.5, size=_PSOAS.shape)
        psoas = Tube.through(psoas_points, _PSOAS_RADII * bulk, step_mm=10.0)
        parts.append(Part(f"psoas_{side_name}", psoas, "muscle"))

        ilium = skeleton.ilium[side_name]
        iliacus = Clipped(
            Intersection((Shell(ilium, 16.0 * bulk, offset=10.0), *skeleton.ilium_cuts[side_name])),
            *wing_box(side),
        )
        parts.append(Part(f"iliacus_{side_name}", iliacus, "muscle"))

        head, head_radius = skeleton.femoral_heads[side_name]
        wall_x = abs(float(head[0])) - head_radius - 14.0
        tilt = rotation_matrix((0.0, 1.0, 0.0), side * 12.0)
        obturator = Ellipsoid(
            np.array([side * (wall_x - 2.0), 2.0, 10.0]) + rng.normal(0.0, 1.0, 3),
            np.array([7.0 * bulk, 38.0, 38.0]),
            tilt,
        )
        parts.append(Part(f"obturator_internus_{side_name}", obturator, "muscle"))

        piriformis = Tube.through(
            np.array(
                [[28.0, 60.0, 55.0], [52.0, 70.0, 42.0], [82.0, 55.0, 24.0], [118.0, 28.0, 2.0]]
            )
            * mirror,
            np.array([10.0, 13.0, 12.0, 7.0]) * bulk,
        )
        parts.append(Part(f"piriformis_{side_name}", piriformis, "muscle"))
    return tuple(parts)
