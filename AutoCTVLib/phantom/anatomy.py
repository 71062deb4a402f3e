"""Sample one female pelvis: body, bones, muscles, vessels and organs, in painting order.

All shapes are in the canonical pelvis frame (mm; see :mod:`AutoCTVLib.phantom.frame`). The
order of :attr:`Anatomy.parts` is the overlap priority documented in
:mod:`AutoCTVLib.phantom.labels` (later parts win).
"""

from __future__ import annotations

import numpy as np

from AutoCTVLib.phantom.body import build_body
from AutoCTVLib.phantom.bones import build_skeleton
from AutoCTVLib.phantom.muscles import build_muscles
from AutoCTVLib.phantom.organs import build_organs
from AutoCTVLib.phantom.parts import Anatomy, NodalVessel, Part
from AutoCTVLib.phantom.shapes import Ellipsoid, Shape
from AutoCTVLib.phantom.vessels import build_vessels


def sample_anatomy(rng: np.random.Generator, *, contrast: bool = False) -> Anatomy:
    """Draw every anatomical parameter from ``rng`` and build the parts.

    The draws do not depend on the CT grid, so one seed gives one anatomy on every grid.
    """
    body = build_body(rng)
    skeleton = build_skeleton(rng)
    head_top_z = max(
        float(centre[2]) + radius for centre, radius in skeleton.femoral_heads.values()
    )
    vessels = build_vessels(rng, contrast=contrast, femoral_head_top_z=head_top_z)
    organs = build_organs(rng, body.cavity, vessels.uterine_origin, contrast=contrast)
    muscles = build_muscles(rng, skeleton)
    visible_nodes = _visible_nodes(rng, vessels.nodal)

    parts: list[Part] = [
        Part("body", body.outer, "fat"),
        Part("other_muscles", body.envelope, "muscle", only_on=("body",)),
        Part("body", body.cavity, "fat", only_on=("other_muscles",)),
        *organs.parts_low,
        *muscles,
        *organs.uterine_vessels,
        *vessels.parts,
        *skeleton.parts,
    ]
    parameters: dict[str, object] = {
        **body.parameters,
        **skeleton.parameters,
        **vessels.parameters,
        **organs.parameters,
        "visible_lymph_nodes": len(visible_nodes),
    }
    landmarks = dict(organs.landmarks)
    for side, (centre, _radius) in skeleton.femoral_heads.items():
        landmarks[f"femoral_head_{side}"] = centre
    landmarks["aortic_bifurcation"] = vessels.bifurcation
    landmarks["sacral_promontory"] = skeleton.sacrum_points[0] - np.array(
        [0.0, skeleton.sacrum_radii[0, 1], 0.0]
    )
    return Anatomy(
        parts=tuple(parts),
        body=body.outer,
        nodal_vessels=vessels.nodal,
        visible_nodes=visible_nodes,
        nodal_top_z=float(vessels.bifurcation[2]),
        cervix_axis=organs.cervix_axis,
        cervix_external_os=organs.cervix_external_os,
        cervix_length=organs.cervix_length,
        cervix_radii=organs.cervix_radii,
        vagina=organs.vagina,
        vagina_os_arc_mm=organs.vagina_os_arc_mm,
        sacrum_points=skeleton.sacrum_points,
        sacrum_radii=skeleton.sacrum_radii,
        back_points=body.back_points,
        parameters=parameters,
        landmarks=landmarks,
    )


def _visible_nodes(
    rng: np.random.Generator, nodal: tuple[NodalVessel, ...]
) -> tuple[tuple[str, Shape], ...]:
    """Small soft-tissue lymph nodes (3–7 mm radius) in the fat beside the nodal vessels."""
    nodes = []
    for vessel in nodal:
        points = np.asarray(vessel.tube.points)
        radii = np.asarray(vessel.tube.radii)
        if len(points) < 2:
            continue
        for _ in range(int(rng.integers(0, 3))):
            index = int(rng.integers(0, len(points) - 1))
            tangent = points[index + 1] - points[index]
            tangent /= max(np.linalg.norm(tangent), 1e-9)
            offset = rng.normal(size=3)
            offset -= tangent * float(offset @ tangent)
            offset /= max(np.linalg.norm(offset), 1e-9)
            node_radii = rng.uniform([3.0, 3.0, 4.0], [6.0, 5.0, 8.0])
            distance = float(np.max(radii[index])) + float(node_radii[0]) + rng.uniform(1.0, 4.0)
            centre = points[index] + distance * offset
            axes = np.column_stack([offset, np.cross(tangent, offset), tangent])
            nodes.append((vessel.group, Ellipsoid(centre, node_radii, axes)))
    return tuple(nodes)
