"""Body outline, subcutaneous fat, the muscle envelope and the abdomino-pelvic cavity.

Three nested solids (canonical mm): the skin surface (``outer``), the inner surface of the
subcutaneous fat (``envelope``: everything inside is muscle unless something else is painted)
and the cavity (fat that holds the organs, vessels and nodes). Fat thickness varies with a
seeded habitus factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from AutoCTVLib.phantom.shapes import HalfSpace, Intersection, Profile, Shape, Tube, Union

# Muscle envelope (inner surface of the subcutaneous fat) of the torso: canonical z, half-width,
# anterior / posterior half-depth and centre y (mm).
_TORSO_Z = np.array([-125.0, -95.0, -60.0, -30.0, 0.0, 40.0, 100.0, 160.0, 220.0, 340.0])
_TORSO_A = np.array([45.0, 110.0, 148.0, 158.0, 160.0, 152.0, 146.0, 138.0, 134.0, 134.0])
_TORSO_BA = np.array([25.0, 55.0, 80.0, 88.0, 90.0, 92.0, 90.0, 86.0, 85.0, 85.0])
_TORSO_BP = np.array([55.0, 92.0, 100.0, 100.0, 98.0, 96.0, 92.0, 88.0, 86.0, 86.0])
_TORSO_CY = np.array([45.0, 25.0, 12.0, 10.0, 8.0, 10.0, 12.0, 12.0, 12.0, 12.0])

# Cavity (pelvic and abdominal fat holding the viscera), same layout. The anterior depth is set
# from the envelope so the abdominal wall is about 12 mm thick.
_CAVITY_Z = np.array([-80.0, -62.0, -40.0, -10.0, 20.0, 40.0, 60.0, 100.0, 160.0, 220.0, 340.0])
_CAVITY_A = np.array([6.0, 28.0, 42.0, 52.0, 60.0, 72.0, 88.0, 110.0, 118.0, 118.0, 118.0])
_CAVITY_BA = np.array([6.0, 24.0, 40.0, 56.0, 64.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
_CAVITY_BP = np.array([6.0, 40.0, 55.0, 64.0, 68.0, 76.0, 80.0, 48.0, 28.0, 24.0, 24.0])
_CAVITY_CY = np.array([30.0, 30.0, 20.0, 8.0, 4.0, 5.0, 6.0, 10.0, 12.0, 12.0, 12.0])
_WALL_MM = 12.0


@dataclass(frozen=True, eq=False)
class BodyShapes:
    """The nested body solids of one case (canonical frame)."""

    outer: Shape
    envelope: Shape
    cavity: Profile
    back_points: np.ndarray  # (n, 3) points on the lowest part of the back (for the table)
    parameters: dict[str, float]


def build_body(rng: np.random.Generator) -> BodyShapes:
    """Sample the habitus (fat thickness, width) and build the nested body solids."""
    habitus = float(rng.uniform(0.0, 1.0))
    fat_anterior = 12.0 + 43.0 * habitus + rng.normal(0.0, 4.0)
    fat_lateral = 10.0 + 35.0 * habitus + rng.normal(0.0, 4.0)
    fat_posterior = 8.0 + 30.0 * habitus + rng.normal(0.0, 3.0)
    fat_anterior, fat_lateral, fat_posterior = (
        float(np.clip(v, 6.0, 70.0)) for v in (fat_anterior, fat_lateral, fat_posterior)
    )
    width = float(rng.uniform(0.94, 1.06))
    depth = float(rng.uniform(0.94, 1.06))

    a = _TORSO_A * width
    ba = _TORSO_BA * depth
    bp = _TORSO_BP * depth
    envelope_torso = Profile(_TORSO_Z, a, ba, bp, _TORSO_CY.copy(), squareness=0.45)
    taper = np.clip((_TORSO_Z + 125.0) / 60.0, 0.3, 1.0)  # less fat at the perineum
    outer_torso = Profile(
        _TORSO_Z,
        a + fat_lateral * taper,
        ba + fat_anterior * taper,
        bp + fat_posterior * taper,
        _TORSO_CY.copy(),
        squareness=0.45,
    )
    thigh_radius = float(rng.uniform(62.0, 72.0))
    thigh_fat = 0.8 * fat_lateral
    thighs_inner, thighs_outer = [], []
    for side in (1.0, -1.0):
        points = np.array([[side * 96.0, 8.0, -40.0], [side * 94.0, 10.0, -200.0]])
        points = np.vstack([points, [side * 90.0, 12.0, -420.0]])
        inner_r = np.array([thigh_radius, thigh_radius * 0.92, thigh_radius * 0.8])
        thighs_inner.append(Tube(points, inner_r, flat_end=True))
        thighs_outer.append(Tube(points, inner_r + thigh_fat, flat_end=True))

    # The back lies flat on the table.
    back_limit = float(np.max(_TORSO_CY + bp) + fat_posterior - 10.0)
    flat_back = HalfSpace(np.array([0.0, 1.0, 0.0]), back_limit)
    outer = Intersection((Union((outer_torso, *thighs_outer)), flat_back))
    envelope = Intersection((Union((envelope_torso, *thighs_inner)), flat_back))

    cavity_ba = _CAVITY_BA.copy()
    lowered = cavity_ba == 0.0
    envelope_front = np.interp(_CAVITY_Z, _TORSO_Z, ba) - np.interp(_CAVITY_Z, _TORSO_Z, _TORSO_CY)
    cavity_ba[lowered] = envelope_front[lowered] + _CAVITY_CY[lowered] - _WALL_MM
    cavity = Profile(
        _CAVITY_Z,
        _CAVITY_A * width,
        cavity_ba,
        _CAVITY_BP * depth,
        _CAVITY_CY.copy(),
        squareness=0.3,
    )
    back_points = np.array(
        [[x, back_limit, z] for x in (-80.0, 80.0) for z in (-40.0, 60.0, 160.0)]
    )
    parameters = {
        "habitus": round(habitus, 3),
        "fat_anterior_mm": round(fat_anterior, 1),
        "fat_lateral_mm": round(fat_lateral, 1),
        "fat_posterior_mm": round(fat_posterior, 1),
        "width_factor": round(width, 3),
        "depth_factor": round(depth, 3),
    }
    return BodyShapes(outer, envelope, cavity, back_points, parameters)
