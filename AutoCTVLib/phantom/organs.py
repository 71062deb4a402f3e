"""Pelvic organs: bladder, cervix, uterus, vagina, rectum, sigmoid, colon and small bowel.

The bladder's filling sets its size and pushes the uterus up; the uterus is anteverted and
anteflexed by a seeded angle, then lifted until it clears the bladder. Bowel loops are smooth
random walks inside the cavity that avoid the bladder and uterus. Canonical mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from AutoCTVLib.phantom.frame import rotation_matrix
from AutoCTVLib.phantom.parts import Part
from AutoCTVLib.phantom.shapes import Ellipsoid, Profile, Shape, Tube, Union, Wobble


@dataclass(frozen=True, eq=False)
class Organs:
    parts_low: tuple[Part, ...]  # bowel, rectum, bladder, vagina, cervix, uterus (in order)
    uterine_vessels: tuple[Part, ...]
    cervix_axis: np.ndarray
    cervix_external_os: np.ndarray
    cervix_length: float
    cervix_radii: tuple[float, float]
    vagina: Tube
    vagina_os_arc_mm: float
    parameters: dict[str, float]
    landmarks: dict[str, np.ndarray]


def _points_distance(shape: Shape, points: np.ndarray) -> np.ndarray:
    """Signed distance of a few canonical points (n, 3)."""
    points = np.asarray(points, dtype=np.float32)
    return shape.distance(points[:, 0], points[:, 1], points[:, 2])


def build_organs(
    rng: np.random.Generator,
    cavity: Profile,
    uterine_origin: dict[str, np.ndarray],
    *,
    contrast: bool,
) -> Organs:
    """Sample the organs of one case."""
    # Bladder: an ellipsoid of the drawn volume resting on the pelvic floor behind the pubis.
    bladder_ml = float(rng.uniform(80.0, 450.0))
    ratios = np.array([1.25, 0.95, 0.9])
    base_radius = (3.0 * bladder_ml * 1000.0 / (4.0 * np.pi * np.prod(ratios))) ** (1.0 / 3.0)
    radii = base_radius * ratios
    base_z = -24.0 + rng.normal(0.0, 3.0) + 0.25 * (radii[2] - 28.0)
    bladder_centre = np.array(
        [rng.normal(0.0, 3.0), -30.0 + rng.normal(0.0, 3.0) - 0.2 * (radii[1] - 26.0), 0.0]
    )
    bladder_centre[2] = base_z + radii[2]
    bladder = Ellipsoid(
        bladder_centre, radii, np.eye(3), Wobble.random(rng, 0.08, terms=3, frequency=1.8)
    )

    # Cervix: a short tube from the external os up to the internal os, tilted forward.
    external_os = np.array([rng.normal(0.0, 4.0), 18.0 + rng.normal(0.0, 3.0), -2.0])
    external_os[2] += rng.normal(0.0, 4.0)
    version = float(rng.uniform(10.0, 40.0))  # degrees forward from vertical
    lateral_tilt = float(rng.normal(0.0, 6.0))
    cervix_axis = (
        rotation_matrix((0.0, 1.0, 0.0), lateral_tilt)
        @ rotation_matrix((1.0, 0.0, 0.0), version)
        @ np.array([0.0, 0.0, 1.0])
    )
    cervix_length = float(rng.uniform(25.0, 35.0))
    cervix_radius = float(rng.uniform(12.0, 22.0))  # larger = bulky tumour
    cervix_radii = (cervix_radius, 0.85 * cervix_radius)
    internal_os = external_os + cervix_length * cervix_axis
    cervix = Tube(
        np.array([external_os, internal_os]),
        np.array([cervix_radii, cervix_radii]),
        np.array([1.0, 0.0, 0.0]),
    )

    # Uterus: anteflexed body on the internal os, lifted until it clears the bladder.
    body_length = float(rng.uniform(45.0, 70.0))
    half_width = float(rng.uniform(20.0, 28.0))
    half_depth = float(rng.uniform(14.0, 20.0))
    flexion = float(rng.uniform(20.0, 75.0))
    yaw = float(rng.normal(0.0, 8.0))
    uterus_radii = np.array(
        [
            [max(cervix_radius, 0.6 * half_width), max(0.85 * cervix_radius, 0.6 * half_depth)],
            [half_width, half_depth],
            [half_width * 0.95, half_depth * 0.95],
        ]
    )
    uterus, flexion_used = None, flexion
    for attempt in range(16):
        flexion_used = max(flexion - 6.0 * attempt, -10.0)
        direction = (
            rotation_matrix((0.0, 0.0, 1.0), yaw)
            @ rotation_matrix((1.0, 0.0, 0.0), flexion_used)
            @ cervix_axis
        )
        lift = np.array([0.0, 0.0, max(0.0, 4.0 * (attempt - 10))])
        centre_line = np.array(
            [
                internal_os + lift,
                internal_os + lift + 0.5 * body_length * direction,
                internal_os + lift + (body_length - half_depth) * direction,
            ]
        )
        uterus = Tube.through(centre_line, uterus_radii, step_mm=6.0)
        clearance = _points_distance(bladder, np.asarray(uterus.points)[1:])
        if np.all(clearance > 0.8 * half_depth):
            break
    assert uterus is not None

    # Vagina: a flattened tube from the vault (around the portio) to the introitus.
    vault = external_os + 10.0 * cervix_axis
    introitus = np.array([rng.normal(0.0, 2.0), -28.0 + rng.normal(0.0, 4.0), -72.0])
    middle = 0.5 * (vault + introitus) + np.array([0.0, 10.0, 0.0])
    vagina = Tube.through(
        np.array([vault, external_os - 8.0 * cervix_axis, middle, introitus]),
        np.array(
            [
                [cervix_radius + 6.0, 0.85 * cervix_radius + 5.0],
                [cervix_radius + 4.0, 0.85 * cervix_radius + 2.0],
                [16.0, 7.0],
                [12.0, 6.0],
            ]
        ),
        step_mm=6.0,
    )
    vagina_os_arc = 10.0

    # Rectum along the sacral curve; sigmoid loop into the left iliac fossa; colon; small bowel.
    rectum_points = np.array(
        [
            [0.0, 38.0, -85.0],
            [0.0, 45.0, -60.0],
            [0.0, 53.0, -35.0],
            [0.0, 55.0, -10.0],
            [2.0, 50.0, 15.0],
            [5.0, 40.0, 38.0],
            [10.0, 28.0, 58.0],
        ]
    )
    rectum_points[1:] += rng.normal(0.0, 2.5, size=(6, 3)) * np.array([1.5, 1.0, 0.5])
    rectum_radii = np.array([8.0, 12.0, 17.0, 19.0, 18.0, 16.0, 15.0]) * rng.uniform(0.8, 1.2)
    rectum = Tube.through(rectum_points, rectum_radii, step_mm=8.0)
    sigmoid_points = np.array(
        [
            rectum_points[-1],
            [25.0, 5.0, 68.0],
            [50.0, -15.0, 62.0],
            [72.0, -5.0, 82.0],
            [88.0, 15.0, 115.0],
            [95.0, 28.0, 160.0],
        ]
    )
    sigmoid_points[1:] += rng.normal(0.0, 6.0, size=(5, 3))
    sigmoid = Tube.through(sigmoid_points, np.full(6, rng.uniform(13.0, 17.0)), step_mm=8.0)
    descending = Tube.through(
        np.array([sigmoid_points[-1], [100.0, 35.0, 240.0], [102.0, 38.0, 340.0]]), 15.0
    )
    caecum_centre = np.array([-75.0, -10.0, 92.0]) + rng.normal(0.0, 5.0, 3)
    caecum = Ellipsoid(caecum_centre, np.array([28.0, 26.0, 30.0]) * rng.uniform(0.85, 1.1))
    ascending = Tube.through(
        np.array([caecum_centre, [-90.0, 12.0, 200.0], [-95.0, 25.0, 340.0]]), 22.0
    )

    avoid: list[tuple[Shape, float]] = [(bladder, 4.0), (uterus, 4.0), (cervix, 4.0)]
    bowel_loops = _small_bowel(rng, cavity, avoid)

    def gas_pockets(tube: Tube, chance: float, size: float) -> tuple[Shape, ...]:
        points = np.asarray(tube.points)
        radii = np.asarray(tube.radii)
        pockets = []
        for index in np.nonzero(rng.uniform(size=len(points)) < chance)[0]:
            radius = float(np.min(radii[index]))
            centre = points[index] + np.array([0.0, -0.45 * radius, 0.0])  # gas rises anteriorly
            pockets.append(Ellipsoid(centre, np.array([0.6, 0.4, 0.6]) * radius * size))
        return tuple(pockets)

    faeces = dict(style="hollow", wall_mm=3.0, wall_tissue="bowel_wall", mottled=True)
    parts_low = (
        Part(
            "small_bowel",
            Union(tuple(bowel_loops)),
            "bowel_fluid",
            "hollow",
            2.5,
            "bowel_wall",
            gas=tuple(pocket for loop in bowel_loops for pocket in gas_pockets(loop, 0.1, 0.9)),
        ),
        Part("colon", ascending, "faeces", gas=gas_pockets(ascending, 0.3, 1.0), **faeces),
        Part("colon", caecum, "faeces", **faeces),
        Part("colon", descending, "faeces", gas=gas_pockets(descending, 0.2, 1.0), **faeces),
        Part("sigmoid_colon", sigmoid, "faeces", gas=gas_pockets(sigmoid, 0.25, 1.0), **faeces),
        Part("rectum", rectum, "faeces", gas=gas_pockets(rectum, 0.12, 1.1), **faeces),
        Part("bladder", bladder, "urine", "hollow", 3.0, "bladder_wall"),
        Part("vagina", vagina, "vagina"),
        Part("cervix", cervix, "cervix"),
        Part("uterus", uterus, "uterus"),
    )

    tissue = "artery_contrast" if contrast else "blood"
    uterine_parts = []
    isthmus = internal_os + 0.15 * body_length * (uterus.points[-1] - internal_os) / np.linalg.norm(
        uterus.points[-1] - internal_os
    )
    for side_name, origin in uterine_origin.items():
        side = 1.0 if side_name == "left" else -1.0
        end = isthmus + np.array([side * (cervix_radius + 2.0), 0.0, 0.0])
        middle_point = 0.5 * (origin + end) + np.array([0.0, -8.0, -6.0])
        uterine_parts.append(
            Part(
                "uterine_vessels", Tube.through(np.array([origin, middle_point, end]), 2.2), tissue
            )
        )

    parameters = {
        "bladder_ml_nominal": round(bladder_ml, 1),
        "cervix_length_mm": round(cervix_length, 1),
        "cervix_radius_mm": round(cervix_radius, 1),
        "version_deg": round(version, 1),
        "flexion_deg": round(float(flexion_used), 1),
        "uterus_length_mm": round(body_length, 1),
        "uterus_width_mm": round(2 * half_width, 1),
        "uterus_depth_mm": round(2 * half_depth, 1),
        "small_bowel_loops": len(bowel_loops),
    }
    landmarks = {
        "external_os": external_os,
        "internal_os": internal_os,
        "fundus": np.asarray(uterus.points[-1]),
        "bladder_centre": bladder_centre,
    }
    return Organs(
        parts_low,
        tuple(uterine_parts),
        cervix_axis,
        external_os,
        cervix_length,
        cervix_radii,
        vagina,
        vagina_os_arc,
        parameters,
        landmarks,
    )


def _bowel_point_ok(
    point: np.ndarray, radius: float, cavity: Profile, avoid: list[tuple[Shape, float]]
) -> bool:
    """Inside the abdominal part of the cavity and clear of the pelvic organs."""
    if point[2] < 15.0 or point[1] > 22.0 or point[2] > 330.0:
        return False
    if _points_distance(cavity, point[None])[0] > -(radius + 6.0):
        return False
    return all(_points_distance(shape, point[None])[0] > radius + margin for shape, margin in avoid)


def _small_bowel(
    rng: np.random.Generator, cavity: Profile, avoid: list[tuple[Shape, float]]
) -> list[Tube]:
    """Smooth random-walk loops of small bowel (radius 10–14 mm) filling the upper cavity."""
    loops = []
    for _ in range(int(rng.integers(5, 10))):
        radius = float(rng.uniform(10.0, 14.0))
        start = None
        for _attempt in range(200):
            candidate = rng.uniform([-100.0, -90.0, 30.0], [100.0, 20.0, 300.0])
            if _bowel_point_ok(candidate, radius, cavity, avoid):
                start = candidate
                break
        if start is None:
            continue
        points = [start]
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        for _step in range(int(rng.integers(5, 9))):
            for _attempt in range(20):
                turned = direction + rng.normal(0.0, 0.8, 3)
                turned /= np.linalg.norm(turned)
                candidate = points[-1] + 30.0 * turned
                if _bowel_point_ok(candidate, radius, cavity, avoid):
                    points.append(candidate)
                    direction = turned
                    break
            else:
                break
        if len(points) >= 3:
            loops.append(Tube.through(np.array(points), radius, step_mm=12.0))
    return loops
