"""Aorta, inferior vena cava and the iliac arteries and veins (common, external, internal).

The aorta divides near L4 into the common iliac arteries; the veins join a little lower into
the vena cava. At the pelvic brim each common iliac vessel splits into an external branch
(running antero-laterally along the psoas to the groin, where it becomes the femoral vessel)
and an internal branch (running posteriorly down the pelvic side wall). The obturator path
runs along the side wall to the obturator canal. Canonical mm; side +1 is the patient's left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from AutoCTVLib.phantom.bones import SIDES
from AutoCTVLib.phantom.parts import NodalVessel, Part
from AutoCTVLib.phantom.shapes import Tube

ARTERY, VEIN = "artery", "vein"


@dataclass(frozen=True, eq=False)
class VesselTree:
    parts: tuple[Part, ...]
    nodal: tuple[NodalVessel, ...]
    bifurcation: np.ndarray  # aortic bifurcation, canonical mm
    uterine_origin: dict[str, np.ndarray]  # side → point on the internal iliac artery
    parameters: dict[str, float]


def _tissue(kind: str, contrast: bool) -> str:
    if not contrast:
        return "blood"
    return "artery_contrast" if kind == ARTERY else "vein_contrast"


def _cut_below(tube: Tube, z_limit: float) -> Tube:
    """The part of a downward-running tube above ``z_limit`` (flat end)."""
    points = np.asarray(tube.points)
    below = np.nonzero(points[:, 2] < z_limit)[0]
    if len(below) == 0:
        return tube
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    first = int(below[0])
    if first == 0:
        return tube.truncated(0.0)
    z0, z1 = points[first - 1, 2], points[first, 2]
    fraction = (z0 - z_limit) / max(z0 - z1, 1e-9)
    length = float(np.sum(steps[: first - 1]) + fraction * steps[first - 1])
    return tube.truncated(length, flat_end=True)


def build_vessels(
    rng: np.random.Generator,
    *,
    contrast: bool,
    femoral_head_top_z: float,
) -> VesselTree:
    """Sample the vessel tree. ``femoral_head_top_z`` ends the external iliac nodal region."""
    size = float(rng.uniform(0.85, 1.15))
    bif_z = float(rng.uniform(150.0, 170.0))
    bif = np.array([5.0 + rng.normal(0, 2), 6.0 + rng.normal(0, 2), bif_z])
    confluence = np.array([-16.0 + rng.normal(0, 2), 14.0 + rng.normal(0, 2), bif_z - 10.0])
    split_z = float(rng.uniform(96.0, 108.0))

    def jitter(points: list[list[float]], sd: float = 2.5) -> np.ndarray:
        array = np.asarray(points, dtype=float)
        noise = rng.normal(0.0, sd, size=array.shape)
        noise[0] = 0.0
        return array + noise

    parts: list[Part] = []
    nodal: list[NodalVessel] = []
    aorta = Tube.through(
        np.array([[10.0, 2.0, 340.0], [8.0, 4.0, 220.0], bif]), np.array([10.5, 10.0, 9.5]) * size
    )
    ivc = Tube.through(
        np.array([[-22.0, 8.0, 340.0], [-20.0, 10.0, 220.0], confluence]),
        np.array([[13.0, 9.0], [13.0, 9.0], [12.0, 9.0]]) * size,
    )
    parts.append(Part("aorta", aorta, _tissue(ARTERY, contrast)))
    parts.append(Part("inferior_vena_cava", ivc, _tissue(VEIN, contrast)))

    uterine_origin: dict[str, np.ndarray] = {}
    for side_name, side in SIDES.items():
        s = side
        artery_split = np.array([s * 46.0, 30.0, split_z]) + rng.normal(0, 2, 3)
        vein_split = artery_split + np.array([s * 2.0, 10.0, 0.0])
        if side > 0:
            cia = jitter([list(bif), [25.0, 14.0, bif_z - 20.0], [42.0, 24.0, split_z + 12.0]])
            civ = jitter([list(confluence), [5.0, 26.0, bif_z - 18.0], [30.0, 33.0, split_z + 22]])
        else:
            cia = jitter([list(bif), [-18.0, 10.0, bif_z - 20.0], [-40.0, 22.0, split_z + 12.0]])
            civ = jitter([list(confluence), [-32.0, 27.0, bif_z - 22.0]])
        cia = np.vstack([cia, artery_split])
        civ = np.vstack([civ, vein_split])
        eia = np.vstack(
            [
                artery_split,
                jitter([[s * 52.0, 20.0, 75.0], [s * 60.0, 0.0, 45.0], [s * 68.0, -25.0, 25.0]]),
                [s * 72.0, -40.0, 8.0],
            ]
        )
        eiv = np.vstack(
            [
                vein_split,
                jitter([[s * 46.0, 28.0, 75.0], [s * 52.0, 8.0, 45.0], [s * 60.0, -18.0, 25.0]]),
                [s * 64.0, -35.0, 8.0],
            ]
        )
        fem_a = np.array([[s * 72.0, -40.0, 8.0], [s * 78, -42, -30], [s * 80, -35, -120]])
        fem_a = np.vstack([fem_a, [s * 78.0, -25.0, -420.0]])
        fem_v = np.array([[s * 64.0, -35.0, 8.0], [s * 66, -38, -30], [s * 70, -32, -120]])
        fem_v = np.vstack([fem_v, [s * 70.0, -22.0, -420.0]])
        iia = np.vstack(
            [
                artery_split,
                jitter([[s * 52.0, 45.0, 85.0], [s * 55.0, 52.0, 65.0], [s * 52.0, 48.0, 45.0]]),
                [s * 48.0, 40.0, 30.0],
            ]
        )
        iiv = np.vstack(
            [
                vein_split,
                jitter([[s * 54.0, 56.0, 85.0], [s * 58.0, 63.0, 65.0], [s * 56.0, 60.0, 45.0]]),
                [s * 52.0, 54.0, 30.0],
            ]
        )
        obturator = jitter(
            [
                [s * 54.0, 45.0, 82.0],
                [s * 48.0, 25.0, 55.0],
                [s * 42.0, 0.0, 30.0],
                [s * 42, -20, 8],
            ],
            1.5,
        )
        uterine_origin[side_name] = iia[-1]

        a, v = _tissue(ARTERY, contrast), _tissue(VEIN, contrast)
        tubes = {
            "common_iliac_artery": (Tube.through(cia, np.array([6.0, 5.8, 5.5, 5.2]) * size), a),
            "common_iliac_vein": (Tube.through(civ, np.linspace(7.5, 7.0, len(civ)) * size), v),
            "external_iliac_artery": (Tube.through(eia, np.linspace(4.8, 4.5, 5) * size), a),
            "external_iliac_vein": (Tube.through(eiv, np.linspace(6.5, 6.0, 5) * size), v),
            "internal_iliac_artery": (Tube.through(iia, np.linspace(4.2, 3.2, 5) * size), a),
            "internal_iliac_vein": (Tube.through(iiv, np.linspace(5.8, 4.5, 5) * size), v),
            "femoral_artery": (Tube.through(fem_a, 4.5 * size), a),
            "femoral_vein": (Tube.through(fem_v, 6.0 * size), v),
        }
        for name, (tube, tissue) in tubes.items():
            parts.append(Part(f"{name}_{side_name}", tube, tissue))
        obturator_tube = Tube.through(obturator, 2.2)
        parts.append(Part("obturator_vessels", obturator_tube, a))

        # Nodal extents: the common iliac nodes start at the aortic bifurcation (flat),
        # the external iliac nodes stop at the top of the femoral head.
        nodal.append(NodalVessel("common_iliac", _flat_start(tubes["common_iliac_artery"][0])))
        nodal.append(NodalVessel("common_iliac", tubes["common_iliac_vein"][0]))
        for name in ("external_iliac_artery", "external_iliac_vein"):
            nodal.append(
                NodalVessel("external_iliac", _cut_below(tubes[name][0], femoral_head_top_z))
            )
        nodal.append(NodalVessel("internal_iliac", tubes["internal_iliac_artery"][0]))
        nodal.append(NodalVessel("internal_iliac", tubes["internal_iliac_vein"][0]))
        nodal.append(NodalVessel("obturator", _cut_below(obturator_tube, femoral_head_top_z - 15)))

    parameters = {
        "aortic_bifurcation_z_mm": round(bif_z, 1),
        "iliac_split_z_mm": round(split_z, 1),
        "vessel_size_factor": round(size, 3),
    }
    return VesselTree(tuple(parts), tuple(nodal), bif, uterine_origin, parameters)


def _flat_start(tube: Tube) -> Tube:
    return Tube(tube.points, tube.radii, tube.lateral, True, tube.flat_end)
