"""Tissue densities (Hounsfield units) of the phantom.

Each case draws one value per tissue uniformly from its range (seeded), paints it, then adds
partial-volume blur and image noise (:mod:`AutoCTVLib.phantom.render`). Ranges follow adult
non-contrast pelvic CT at 120 kV:

=====================  ================  ===============================================
tissue                 HU range          where
=====================  ================  ===============================================
air                    -1000             outside the body
gas                    -1000 .. -800     pockets in rectum, colon and small bowel
fat                    -120 .. -80       subcutaneous, pelvic and mesenteric fat
muscle                 40 .. 60          all skeletal muscle
urine                  0 .. 15           bladder content
bladder_wall           30 .. 45          3 mm bladder wall
uterus                 40 .. 60          myometrium (soft tissue like muscle and bowel wall)
cervix                 40 .. 60          cervix (and tumour)
vagina                 35 .. 50          collapsed vaginal walls
blood                  35 .. 45          vessels without contrast
artery_contrast        150 .. 250        arteries with intravenous contrast (optional)
vein_contrast          120 .. 180        veins with intravenous contrast (optional)
lymph_node             30 .. 50          visible nodes in the nodal regions
bowel_wall             35 .. 50          2–3 mm wall of rectum and bowel
bowel_fluid            5 .. 30           small-bowel content
faeces                 -80 .. 20         colon/rectum content (mottled ±60, with gas)
cortex                 700 .. 1200       cortical bone (2–6 mm layer)
marrow                 200 .. 350        cancellous bone
disc                   70 .. 100         intervertebral discs
csf                    0 .. 15           spinal canal
table_shell            200 .. 400        CT table carbon-fibre shell
table_core             -950 .. -850      CT table foam core
=====================  ================  ===============================================
"""

from __future__ import annotations

import numpy as np

TISSUE_HU_RANGES: dict[str, tuple[float, float]] = {
    "air": (-1000.0, -1000.0),
    "gas": (-1000.0, -800.0),
    "fat": (-120.0, -80.0),
    "muscle": (40.0, 60.0),
    "urine": (0.0, 15.0),
    "bladder_wall": (30.0, 45.0),
    "uterus": (40.0, 60.0),
    "cervix": (40.0, 60.0),
    "vagina": (35.0, 50.0),
    "blood": (35.0, 45.0),
    "artery_contrast": (150.0, 250.0),
    "vein_contrast": (120.0, 180.0),
    "lymph_node": (30.0, 50.0),
    "bowel_wall": (35.0, 50.0),
    "bowel_fluid": (5.0, 30.0),
    "faeces": (-80.0, 20.0),
    "cortex": (700.0, 1200.0),
    "marrow": (200.0, 350.0),
    "disc": (70.0, 100.0),
    "csf": (0.0, 15.0),
    "table_shell": (200.0, 400.0),
    "table_core": (-950.0, -850.0),
}

#: Sub-ranges actually drawn, kept away from the edges of the documented ranges so that the
#: painted value stays inside the range after partial-volume mixing with neighbours.
_DRAW_RANGES: dict[str, tuple[float, float]] = {
    "gas": (-990.0, -950.0),
    "fat": (-110.0, -90.0),
    "muscle": (44.0, 56.0),
    "urine": (3.0, 12.0),
    "uterus": (44.0, 56.0),
    "cervix": (44.0, 56.0),
    "vagina": (38.0, 47.0),
    "cortex": (900.0, 1100.0),
    "marrow": (230.0, 320.0),
}


def sample_tissue_hu(rng: np.random.Generator) -> dict[str, float]:
    """One HU value per tissue for a case, drawn inside the documented ranges."""
    values = {}
    for name, (low, high) in TISSUE_HU_RANGES.items():
        draw_low, draw_high = _DRAW_RANGES.get(name, (low, high))
        values[name] = round(float(rng.uniform(draw_low, draw_high)), 1)
    return values
