"""Regions the CTV rules are built from: nodal surroundings, parametria, presacral band, upper
vagina. Shapes are canonical mm; distances are converted from physical mm with the frame scale.
"""

from __future__ import annotations

import numpy as np

from AutoCTVLib.phantom.parts import Anatomy
from AutoCTVLib.phantom.raster import IndexBox, Rasteriser
from AutoCTVLib.phantom.shapes import Box, Shape, Tube, Union

NODAL_GROUPS = ("common_iliac", "external_iliac", "internal_iliac", "obturator")

#: S1–S3: the presacral band runs from the top of S1 down this far (canonical mm).
PRESACRAL_LENGTH_MM = 58.0


def nodal_distances(
    raster: Rasteriser, anatomy: Anatomy, reach_mm: float
) -> dict[str, tuple[IndexBox, np.ndarray]]:
    """Per nodal group, the distance (physical mm) from the group's vessel walls, for comparing
    with ``reach_mm``: exact near ``reach_mm``, elsewhere only on the right side of it (the
    rasteriser skips voxels far from that level)."""
    out = {}
    scale = raster.mm_per_unit
    for group in NODAL_GROUPS:
        tubes = tuple(v.tube for v in anatomy.nodal_vessels if v.group == group)
        if not tubes:
            continue
        threshold = reach_mm / scale
        result = raster.distance(Union(tubes), pad_mm=threshold + 1.0, band=(threshold, threshold))
        if result is not None:
            box, distance = result
            distance *= np.float32(scale)
            out[group] = (box, distance)
    return out


def parametria_shape(anatomy: Anatomy, lateral_mm: float = 75.0) -> Shape:
    """Soft tissue beside the cervix and lower uterus out to the pelvic side walls: a box in the
    cervix frame from 10 mm below the external os to 15 mm above the internal os, as deep
    (antero-posterior) as the cervix plus 10 mm; bone and muscle crop it laterally."""
    axis = np.asarray(anatomy.cervix_axis, dtype=float)
    lateral = np.array([1.0, 0.0, 0.0]) - axis * axis[0]
    lateral /= np.linalg.norm(lateral)
    depth_axis = np.cross(axis, lateral)
    below, above = 10.0, anatomy.cervix_length + 15.0  # mm below the os / above the os
    centre = np.asarray(anatomy.cervix_external_os) + axis * (above - below) / 2.0
    half = np.array([lateral_mm, anatomy.cervix_radii[1] + 10.0, (above + below) / 2.0])
    return Box(centre, half, np.column_stack([lateral, depth_axis, axis]), rounding=6.0)


def presacral_shape(anatomy: Anatomy, depth_mm: float, half_width_mm: float = 25.0) -> Shape:
    """A band ``depth_mm`` deep (canonical mm) and ``2 × half_width_mm`` wide in front of the
    sacrum, from the top of S1 to the end of S3; it reaches 3 mm into the bone so that, once
    cropped out of bone, it hugs the curved sacral surface."""
    points = np.asarray(anatomy.sacrum_points, dtype=float)
    radii = np.asarray(anatomy.sacrum_radii, dtype=float)
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    keep = arc <= PRESACRAL_LENGTH_MM
    points, radii = points[keep], radii[keep]
    tangents = np.gradient(points, axis=0)
    band_points = []
    overlap = 3.0  # reach a little into the bone so the band hugs the curved surface
    for point, tangent, (_, half_depth) in zip(points, tangents, radii):
        tangent = tangent / np.linalg.norm(tangent)
        anterior = np.array([0.0, -1.0, 0.0]) - tangent * (-tangent[1])
        anterior /= np.linalg.norm(anterior)
        band_points.append(point + anterior * (half_depth + depth_mm / 2.0 - overlap))
    band_radii = np.tile([half_width_mm, depth_mm / 2.0 + overlap], (len(band_points), 1))
    return Tube(np.array(band_points), band_radii, np.array([1.0, 0.0, 0.0]), True, True)


def upper_vagina_shape(anatomy: Anatomy, below_os_mm: float) -> Tube:
    """The vagina from its vault down to ``below_os_mm`` (canonical mm, along its centre line)
    below the external os."""
    return anatomy.vagina.truncated(anatomy.vagina_os_arc_mm + below_os_mm, flat_end=True)
