"""``generate_phantom(config) -> Phantom``: one seeded synthetic female pelvic CT with labels."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from AutoCTVLib.phantom.anatomy import sample_anatomy
from AutoCTVLib.phantom.config import PhantomConfig
from AutoCTVLib.phantom.ctv import CTVRules, build_ctv
from AutoCTVLib.phantom.frame import build_geometry, sample_frame
from AutoCTVLib.phantom.labels import structure_names
from AutoCTVLib.phantom.raster import Rasteriser
from AutoCTVLib.phantom.render import Painter, Texture, blur_and_noise
from AutoCTVLib.phantom.style import annotator_rules
from AutoCTVLib.phantom.tissues import sample_tissue_hu
from AutoCTVLib.volume import Volume

logger = logging.getLogger(__name__)

# Independent random streams per purpose: changing the grid never changes the anatomy.
_STREAMS = {"frame": 1, "anatomy": 2, "grid": 3, "tissue": 4, "texture": 5, "noise": 6, "style": 7}


def stream_rng(seed: int, stream: str) -> np.random.Generator:
    """The random generator of one purpose (frame, anatomy, grid, tissue, texture, noise,
    style) for ``seed``; the streams are independent of each other."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), _STREAMS[stream]]))


@dataclass(frozen=True, eq=False)
class Phantom:
    """A generated case. Every volume shares one grid (``ct.geometry``), arrays (z, y, x).

    Attributes:
        config: the settings it was generated from.
        ct: float32 Hounsfield units (whole numbers in -1024..3071).
        ctv: uint8 0/1, the CTV as the configured annotator style draws it.
        ctv_reference: uint8 0/1, the guideline ("standard") CTV.
        structures: uint8 label map (0 = outside the body; see ``structure_names``).
        structure_names: label value → structure name, for every label of the map.
        anatomy: provenance (JSON-friendly): sampled parameters, landmarks in LPS mm, tissue
            HU, noise, annotator rules, patient frame.
    """

    config: PhantomConfig
    ct: Volume
    ctv: Volume
    ctv_reference: Volume
    structures: Volume
    structure_names: dict[int, str]
    anatomy: dict[str, object] = field(default_factory=dict)


def generate_phantom(config: PhantomConfig | None = None) -> Phantom:
    """Generate the phantom described by ``config`` (default: seed 0, 512×512×100 grid)."""
    config = config or PhantomConfig()
    started = time.perf_counter()
    frame = sample_frame(stream_rng(config.seed, "frame"))
    anatomy = sample_anatomy(stream_rng(config.seed, "anatomy"), contrast=config.contrast)
    geometry = build_geometry(config, frame, stream_rng(config.seed, "grid"))
    tissue_hu = sample_tissue_hu(stream_rng(config.seed, "tissue"))
    noise_rng = stream_rng(config.seed, "noise")
    noise_hu = (
        float(config.noise_hu) if config.noise_hu is not None else float(noise_rng.uniform(10, 25))
    )
    raster = Rasteriser(geometry, frame)
    painter = Painter(raster, tissue_hu, Texture.random(stream_rng(config.seed, "texture")))
    for part in anatomy.parts:
        painter.paint(part)
    painter.paint_node_regions(anatomy)
    painter.paint_table(frame, anatomy.back_points)
    painted = time.perf_counter()

    reference_rules = CTVRules()
    style_rules = annotator_rules(config.annotator_style, stream_rng(config.seed, "style"))
    ctv_reference = build_ctv(anatomy, raster, painter.labels, reference_rules)
    if style_rules == reference_rules:
        ctv_annotated = ctv_reference
    else:
        ctv_annotated = build_ctv(anatomy, raster, painter.labels, style_rules)
    contoured = time.perf_counter()

    ct_hu = blur_and_noise(painter.hu, geometry.spacing_xyz_mm, noise_hu, noise_rng)
    finished = time.perf_counter()
    logger.debug(
        "phantom seed %d on %s: painted %.2f s, CTV %.2f s, noise %.2f s",
        config.seed,
        geometry.describe(),
        painted - started,
        contoured - painted,
        finished - contoured,
    )

    provenance: dict[str, object] = {
        "generator": "AutoCTVLib.phantom",
        "seed": int(config.seed),
        "parameters": anatomy.parameters,
        "landmarks_lps_mm": {
            name: [round(float(v), 2) for v in frame.to_lps(point)]
            for name, point in anatomy.landmarks.items()
        },
        "tissue_hu": tissue_hu,
        "noise_hu": round(noise_hu, 2),
        "annotator_style": config.annotator_style,
        "annotator_rules": style_rules.summary(),
        "reference_rules": reference_rules.summary(),
        "patient_frame": frame.summary(),
    }
    metadata = {"source": f"AutoCTV synthetic phantom, seed {config.seed}"}
    return Phantom(
        config=config,
        ct=Volume(ct_hu, geometry, dict(metadata)),
        ctv=Volume(ctv_annotated, geometry, dict(metadata)),
        ctv_reference=Volume(ctv_reference, geometry, dict(metadata)),
        structures=Volume(painter.labels, geometry, dict(metadata)),
        structure_names=structure_names(),
        anatomy=provenance,
    )
