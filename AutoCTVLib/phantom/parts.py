"""What the anatomy builders produce: paintable parts and the landmarks the CTV rules need."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from AutoCTVLib.phantom.shapes import Shape, Tube

#: How a part is painted (see :mod:`AutoCTVLib.phantom.render`):
#: "solid" one tissue; "bone" cortex layer of ``wall_mm`` around ``tissue`` (marrow);
#: "hollow" wall of ``wall_mm`` (``wall_tissue``) around content ``tissue``, optionally mottled
#: (``mottled``) and with gas pockets (``gas``).
PAINT_STYLES = ("solid", "bone", "hollow")


@dataclass(frozen=True, eq=False)
class Part:
    """One shape painted with one structure label.

    Attributes:
        label: structure name (see :mod:`AutoCTVLib.phantom.labels`).
        shape: the region, canonical frame.
        tissue: HU tissue name (solid, bone marrow, hollow content).
        style: one of :data:`PAINT_STYLES`.
        wall_mm: cortex / wall thickness (canonical mm).
        wall_tissue: tissue of the wall or cortex.
        gas: gas pockets inside the lumen of a hollow part.
        mottled: content HU varies ±60 with gas bubbles (faeces).
        only_on: paint only over voxels that currently carry one of these labels.
    """

    label: str
    shape: Shape
    tissue: str
    style: str = "solid"
    wall_mm: float = 0.0
    wall_tissue: str = ""
    gas: tuple[Shape, ...] = ()
    mottled: bool = False
    only_on: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class NodalVessel:
    """A vessel whose surroundings are part of the nodal CTV.

    Attributes:
        group: "common_iliac", "external_iliac", "internal_iliac" or "obturator".
        tube: the vessel (or, for the obturator nodes, the nerve/vessel path), already cut to
            its nodal extent (external iliac: to the top of the femoral head).
    """

    group: str
    tube: Tube


@dataclass(frozen=True, eq=False)
class Anatomy:
    """A sampled pelvis: parts in painting order plus what the CTV rules refer to.

    All coordinates are canonical mm (see :mod:`AutoCTVLib.phantom.frame`).
    """

    parts: tuple[Part, ...]
    body: Shape
    nodal_vessels: tuple[NodalVessel, ...]
    visible_nodes: tuple[tuple[str, Shape], ...]
    nodal_top_z: float
    cervix_axis: np.ndarray  # (3,) unit vector, external os → internal os
    cervix_external_os: np.ndarray
    cervix_length: float
    cervix_radii: tuple[float, float]
    vagina: Tube
    vagina_os_arc_mm: float  # centre-line length from the vaginal vault to the external os
    sacrum_points: np.ndarray  # (n, 3) sacral centre line, top first
    sacrum_radii: np.ndarray  # (n, 2) lateral and AP half-sizes
    back_points: np.ndarray  # (n, 3) lowest points of the back (the CT table goes below)
    parameters: dict[str, object] = field(default_factory=dict)
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)
