"""The phantom's structure labels: value, name, kind, colour and RT ROI type.

Values are fixed across cases (``structures.json`` repeats them). ``kind`` groups structures for
the CTV rules: the nodal, parametrial and presacral parts of the CTV are cropped out of every
``bone``, ``muscle``, ``bladder`` and ``bowel`` voxel.

Overlap priority (which label a voxel gets where shapes overlap), lowest first: body (fat) →
other muscles → small bowel → colon → sigmoid → rectum → bladder → vagina → cervix → uterus →
named pelvic muscles → vessels → bones → spinal canal. Lymph-node regions are labelled last but
only on voxels still labelled body (fat), so they never cover anything else.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StructureLabel:
    """One structure of the label map."""

    value: int
    name: str
    kind: str  # body | muscle | bone | bladder | bowel | gyn | artery | vein | nodes | other
    color_rgb: tuple[int, int, int]
    roi_type: str = "ORGAN"  # DICOM RTROIInterpretedType


_RED, _BLUE = (200, 40, 40), (40, 80, 200)
_BONE, _MUSCLE = (241, 214, 145), (192, 104, 88)

STRUCTURES: tuple[StructureLabel, ...] = (
    StructureLabel(1, "body", "body", (177, 122, 101), "EXTERNAL"),
    StructureLabel(2, "other_muscles", "muscle", _MUSCLE),
    StructureLabel(3, "psoas_left", "muscle", (170, 90, 80)),
    StructureLabel(4, "psoas_right", "muscle", (170, 90, 80)),
    StructureLabel(5, "iliacus_left", "muscle", (180, 110, 90)),
    StructureLabel(6, "iliacus_right", "muscle", (180, 110, 90)),
    StructureLabel(7, "obturator_internus_left", "muscle", (200, 120, 100)),
    StructureLabel(8, "obturator_internus_right", "muscle", (200, 120, 100)),
    StructureLabel(9, "piriformis_left", "muscle", (160, 100, 100)),
    StructureLabel(10, "piriformis_right", "muscle", (160, 100, 100)),
    StructureLabel(11, "bladder", "bladder", (248, 200, 90), "AVOIDANCE"),
    StructureLabel(12, "rectum", "bowel", (140, 80, 40), "AVOIDANCE"),
    StructureLabel(13, "sigmoid_colon", "bowel", (160, 100, 60), "AVOIDANCE"),
    StructureLabel(14, "colon", "bowel", (180, 120, 70), "AVOIDANCE"),
    StructureLabel(15, "small_bowel", "bowel", (210, 160, 110), "AVOIDANCE"),
    StructureLabel(16, "uterus", "gyn", (230, 120, 160)),
    StructureLabel(17, "cervix", "gyn", (220, 80, 140)),
    StructureLabel(18, "vagina", "gyn", (200, 100, 180)),
    StructureLabel(19, "aorta", "artery", _RED),
    StructureLabel(20, "inferior_vena_cava", "vein", _BLUE),
    StructureLabel(21, "common_iliac_artery_left", "artery", _RED),
    StructureLabel(22, "common_iliac_artery_right", "artery", _RED),
    StructureLabel(23, "common_iliac_vein_left", "vein", _BLUE),
    StructureLabel(24, "common_iliac_vein_right", "vein", _BLUE),
    StructureLabel(25, "external_iliac_artery_left", "artery", _RED),
    StructureLabel(26, "external_iliac_artery_right", "artery", _RED),
    StructureLabel(27, "external_iliac_vein_left", "vein", _BLUE),
    StructureLabel(28, "external_iliac_vein_right", "vein", _BLUE),
    StructureLabel(29, "internal_iliac_artery_left", "artery", _RED),
    StructureLabel(30, "internal_iliac_artery_right", "artery", _RED),
    StructureLabel(31, "internal_iliac_vein_left", "vein", _BLUE),
    StructureLabel(32, "internal_iliac_vein_right", "vein", _BLUE),
    StructureLabel(33, "femoral_artery_left", "artery", _RED),
    StructureLabel(34, "femoral_artery_right", "artery", _RED),
    StructureLabel(35, "femoral_vein_left", "vein", _BLUE),
    StructureLabel(36, "femoral_vein_right", "vein", _BLUE),
    StructureLabel(37, "uterine_vessels", "artery", (220, 60, 90)),
    StructureLabel(38, "obturator_vessels", "artery", (220, 60, 90)),
    StructureLabel(39, "nodes_common_iliac", "nodes", (120, 200, 120)),
    StructureLabel(40, "nodes_external_iliac", "nodes", (100, 190, 140)),
    StructureLabel(41, "nodes_internal_iliac", "nodes", (80, 180, 160)),
    StructureLabel(42, "nodes_obturator", "nodes", (60, 170, 180)),
    StructureLabel(43, "nodes_presacral", "nodes", (140, 210, 100)),
    StructureLabel(44, "hip_left", "bone", _BONE),
    StructureLabel(45, "hip_right", "bone", _BONE),
    StructureLabel(46, "sacrum", "bone", (230, 200, 130)),
    StructureLabel(47, "lumbar_spine", "bone", (220, 190, 120)),
    StructureLabel(48, "femur_left", "bone", (250, 225, 160)),
    StructureLabel(49, "femur_right", "bone", (250, 225, 160)),
    StructureLabel(50, "spinal_canal", "other", (120, 160, 230)),
)

LABEL_BY_NAME: dict[str, StructureLabel] = {s.name: s for s in STRUCTURES}


def label_value(name: str) -> int:
    """The label value of a structure name (KeyError for unknown names)."""
    return LABEL_BY_NAME[name].value


def structure_names() -> dict[int, str]:
    """Label value → structure name, for every structure of the map."""
    return {s.value: s.name for s in STRUCTURES}


def values_of_kind(*kinds: str) -> tuple[int, ...]:
    """Label values of every structure of the given kinds."""
    return tuple(s.value for s in STRUCTURES if s.kind in kinds)
