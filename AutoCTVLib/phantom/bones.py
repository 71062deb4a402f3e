"""Pelvic bones: hip bones (ilium, acetabulum, pubis, ischium), sacrum, lumbar spine, femora.

Canonical mm (see :mod:`AutoCTVLib.phantom.frame`); side +1 is the patient's left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from AutoCTVLib.phantom.parts import Part
from AutoCTVLib.phantom.shapes import (
    Clipped,
    Ellipsoid,
    HalfSpace,
    Intersection,
    Shape,
    Shell,
    Tube,
    Union,
)

SIDES = {"left": 1.0, "right": -1.0}


@dataclass(frozen=True, eq=False)
class Skeleton:
    """Bone parts in painting order plus landmarks other builders need."""

    parts: tuple[Part, ...]
    femoral_heads: dict[str, tuple[np.ndarray, float]]  # side → (centre, radius)
    ilium: dict[str, Ellipsoid]  # side → the ellipsoid whose shell is the iliac wing
    ilium_cuts: dict[str, tuple[Shape, ...]]
    sacrum_points: np.ndarray
    sacrum_radii: np.ndarray
    canal: Tube
    parameters: dict[str, float]


def _jitter(rng: np.random.Generator, sd: float, size: int = 3) -> np.ndarray:
    return rng.normal(0.0, sd, size=size)


def build_skeleton(rng: np.random.Generator) -> Skeleton:
    """Sample and build every bone of one case."""
    head_half_distance = float(rng.uniform(86.0, 96.0))
    head_radius = float(rng.uniform(21.0, 25.0))
    pelvis_width = float(rng.uniform(0.95, 1.05))
    parts: list[Part] = []
    heads: dict[str, tuple[np.ndarray, float]] = {}
    ilia: dict[str, Ellipsoid] = {}
    cuts: dict[str, tuple[Shape, ...]] = {}
    for side_name, side in SIDES.items():
        head = np.array([side * head_half_distance, 8.0, 0.0]) + _jitter(rng, 1.5)
        heads[side_name] = (head, head_radius)
        hip, ilium, ilium_cuts = _hip_bone(rng, side, head, head_radius, pelvis_width)
        ilia[side_name] = ilium
        cuts[side_name] = ilium_cuts
        parts.append(Part(f"hip_{side_name}", hip, "marrow", "bone", 2.0, "cortex"))
        femur = _femur(rng, side, head, head_radius)
        parts.append(Part(f"femur_{side_name}", femur, "marrow", "bone", 3.0, "cortex"))

    sacrum_points, sacrum_radii = _sacrum_centre_line(rng, pelvis_width)
    sacrum = Tube(sacrum_points, sacrum_radii, flat_start=True)
    parts.append(Part("sacrum", sacrum, "marrow", "bone", 2.0, "cortex"))
    spine_parts, canal = _lumbar_spine(rng, sacrum_points[0])
    parts.extend(spine_parts)
    parts.append(Part("spinal_canal", canal, "csf"))
    parameters = {
        "femoral_head_half_distance_mm": round(head_half_distance, 1),
        "femoral_head_radius_mm": round(head_radius, 1),
        "pelvis_width_factor": round(pelvis_width, 3),
    }
    return Skeleton(tuple(parts), heads, ilia, cuts, sacrum_points, sacrum_radii, canal, parameters)


def wing_box(side: float) -> tuple[np.ndarray, np.ndarray]:
    """Canonical box (lo, hi) holding one iliac wing and the iliacus in front of it."""
    lo = np.array([40.0, -40.0, 30.0])
    hi = np.array([140.0, 90.0, 175.0])
    if side < 0:
        lo, hi = np.array([-hi[0], lo[1], lo[2]]), np.array([-lo[0], hi[1], hi[2]])
    return lo, hi


def _hip_bone(
    rng: np.random.Generator, side: float, head: np.ndarray, head_radius: float, width: float
) -> tuple[Shape, Ellipsoid, tuple[Shape, ...]]:
    """Iliac wing (a shell cut from an ellipsoid), acetabulum, pubis and ischium of one side."""
    hx = abs(float(head[0]))
    # The wing is part of a large ellipsoid shell centred medially and anteriorly, so the iliac
    # fossa is concave towards the pelvis; it runs from the sacro-iliac joint to the ASIS.
    ilium = Ellipsoid(
        np.array([-side * 3.0, -50.0, 150.0]) + _jitter(rng, 2.0),
        np.array([120.0 * width, 120.0, 190.0]) * rng.uniform(0.96, 1.04),
    )
    crest = Ellipsoid(
        np.array([0.0, 20.0, 60.0]), np.array([400.0, 90.0, 100.0 + rng.normal(0.0, 4.0)])
    )
    ilium_cuts: tuple[Shape, ...] = (
        crest,
        HalfSpace(np.array([0.0, -1.0, 0.0]), 38.0),  # anterior border (ASIS)
        HalfSpace(np.array([-side, 0.0, 0.0]), -42.0),  # medial border (sacro-iliac joint)
        HalfSpace(np.array([0.0, 0.0, -1.0]), -36.0),  # down to the acetabular roof
    )
    wing = Clipped(Intersection((Shell(ilium, 10.0), *ilium_cuts)), *wing_box(side))
    ilium_body = Tube.through(
        np.array([[side * 70.0, 18.0, 60.0], [side * (hx - 14.0), 8.0, 24.0]]), [13.0, 15.0]
    )
    brim = Tube.through(
        np.array(
            [
                [side * 50.0, 42.0, 88.0],
                [side * 58.0, 20.0, 50.0],
                [side * (hx - 28.0), -12.0, 14.0],
            ]
        )
        + rng.normal(0.0, 1.5, size=(3, 3)),
        [9.0, 8.0, 9.0],
    )
    opening = np.array([side * 1.0, -0.5, -0.75])
    opening /= np.linalg.norm(opening)
    acetabulum = Intersection(
        (
            Shell(Ellipsoid(head, np.full(3, head_radius + 12.0)), 10.0),
            HalfSpace(opening, float(opening @ head) + 0.15 * head_radius),
        )
    )
    superior_ramus = Tube.through(
        np.array(
            [
                [side * (hx - 26.0), -14.0, 10.0],
                [side * 40.0, -48.0, 4.0],
                [side * 14.0, -62.0, -2.0],
            ]
        )
        + rng.normal(0.0, 1.5, size=(3, 3)),
        [11.0, 10.0, 9.0],
    )
    pubic_body = Ellipsoid(np.array([side * 14.0, -64.0, -14.0]), np.array([12.0, 12.0, 22.0]))
    inferior_ramus = Tube.through(
        np.array(
            [[side * 14.0, -58.0, -32.0], [side * 34.0, -36.0, -50.0], [side * (hx - 40), -2, -58]]
        ),
        7.0,
    )
    ischium = Tube.through(
        np.array(
            [
                [side * (hx - 17.0), 25.0, -8.0],
                [side * (hx - 30), 22, -35],
                [side * (hx - 37), 20, -52],
            ]
        ),
        [14.0, 12.0, 12.0],
    )
    tuberosity = Ellipsoid(
        np.array([side * (hx - 37.0), 22.0, -56.0]), np.array([14.0, 18.0, 13.0])
    )
    hip = Union(
        (
            wing,
            ilium_body,
            brim,
            acetabulum,
            superior_ramus,
            pubic_body,
            inferior_ramus,
            ischium,
            tuberosity,
        )
    )
    return hip, ilium, ilium_cuts


def _femur(rng: np.random.Generator, side: float, head: np.ndarray, head_radius: float) -> Shape:
    """Femoral head, neck, trochanters and shaft."""
    hx = abs(float(head[0]))
    neck_end = np.array([side * (hx + 38.0), 12.0, -22.0])
    shaft = Tube.through(
        np.array(
            [
                [side * (hx + 36.0), 12.0, -30.0],
                [side * (hx + 30.0), 10.0, -120.0],
                [side * (hx + 22.0), 12.0, -420.0],
            ]
        ),
        [16.0, 14.0, 13.0],
    )
    return Union(
        (
            Ellipsoid(head, np.full(3, head_radius)),
            Tube.through(np.array([head, neck_end]), [15.0, 16.0]),
            Ellipsoid(
                np.array([side * (hx + 42.0), 16.0, -18.0]) + _jitter(rng, 1.5),
                np.array([14.0, 20.0, 22.0]),
            ),
            Ellipsoid(np.array([side * (hx + 22.0), 20.0, -52.0]), np.array([9.0, 9.0, 10.0])),
            shaft,
        )
    )


_SACRUM_POINTS = np.array(
    [
        [0.0, 55.0, 102.0],
        [0.0, 64.0, 75.0],
        [0.0, 72.0, 48.0],
        [0.0, 78.0, 22.0],
        [0.0, 78.0, 2.0],
        [0.0, 72.0, -15.0],
        [0.0, 62.0, -30.0],
    ]
)
_SACRUM_RADII = np.array(
    [[52.0, 22.0], [50.0, 18.0], [38.0, 14.0], [22.0, 11.0], [14.0, 9.0], [9.0, 7.0], [6.0, 5.0]]
)


def _sacrum_centre_line(rng: np.random.Generator, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Sampled sacral centre line (top = S1 end plate first) and its half-sizes."""
    control = _SACRUM_POINTS + np.column_stack(
        [rng.normal(0.0, 1.0, 7), rng.normal(0.0, 2.0, 7), np.zeros(7)]
    )
    control[:, 1] += rng.normal(0.0, 3.0)
    radii = _SACRUM_RADII * np.array([width, 1.0])
    tube = Tube.through(control, radii, step_mm=6.0)
    return np.asarray(tube.points), np.asarray(tube.radii)


# Lumbar vertebrae: body bottom z, top z, centre y (canonical mm), transverse process reach.
_VERTEBRAE = (
    ("L5", 110.0, 138.0, 45.0, 50.0),
    ("L4", 146.0, 174.0, 38.0, 44.0),
    ("L3", 182.0, 210.0, 34.0, 40.0),
    ("L2", 218.0, 246.0, 33.0, 38.0),
    ("L1", 254.0, 282.0, 34.0, 36.0),
    ("T12", 290.0, 318.0, 36.0, 30.0),
)


def _lumbar_spine(rng: np.random.Generator, s1_top: np.ndarray) -> tuple[list[Part], Tube]:
    """Vertebral bodies, discs and posterior elements from L5 up, and the spinal canal."""
    bone_shapes: list[Shape] = []
    disc_shapes: list[Shape] = []
    canal_points = []
    shift_y = float(rng.normal(0.0, 2.0))
    below_top = float(s1_top[2])
    below_y = float(s1_top[1]) - 8.0
    for _name, z_bottom, z_top, y, reach in _VERTEBRAE:
        y = y + shift_y
        body_radii = np.array([25.0, 18.0])
        bone_shapes.append(
            Tube(
                np.array([[0.0, y, z_bottom], [0.0, y, z_top]]),
                np.array([body_radii, body_radii]),
                flat_start=True,
                flat_end=True,
            )
        )
        disc_radii = np.array([26.0, 19.0])
        disc_y = 0.5 * (y + below_y)
        disc_shapes.append(
            Tube(
                np.array([[0.0, disc_y, below_top], [0.0, disc_y, z_bottom]]),
                np.array([disc_radii, disc_radii]),
                flat_start=True,
                flat_end=True,
            )
        )
        centre_z = 0.5 * (z_bottom + z_top)
        canal_y = y + 18.0 + 11.0
        canal_points.append([0.0, canal_y, centre_z])
        bone_shapes.append(
            Ellipsoid(np.array([0.0, canal_y + 3.0, centre_z]), np.array([22.0, 15.0, 11.0]))
        )
        bone_shapes.append(
            Ellipsoid(np.array([0.0, canal_y + 26.0, centre_z - 4.0]), np.array([5.0, 16.0, 10.0]))
        )
        bone_shapes.append(
            Ellipsoid(np.array([0.0, y + 20.0, centre_z]), np.array([reach, 7.0, 7.0]))
        )
        below_top, below_y = z_top, y
    canal_points = [
        *canal_points[::-1],
        [0.0, float(s1_top[1]) + 14.0, float(s1_top[2]) - 10.0],
        [0.0, float(s1_top[1]) + 18.0, float(s1_top[2]) - 40.0],
    ]
    canal = Tube.through(
        np.array(canal_points),
        np.array([[11.0, 8.0]] * (len(canal_points) - 2) + [[9.0, 5.0], [6.0, 3.0]]),
        flat_end=True,
    )
    parts = [
        Part("lumbar_spine", Union(tuple(bone_shapes)), "marrow", "bone", 2.0, "cortex"),
        Part("lumbar_spine", Union(tuple(disc_shapes)), "disc"),
    ]
    return parts, canal
