"""The cervical-cancer CTV as contouring guidelines build it, on the phantom's grid.

CTV = primary + parametria + nodal + presacral, one 0/1 label:

* primary: uterus and cervix, plus the vagina from its vault down to ``vagina_below_os_mm``
  (20 mm) below the external os;
* parametria: the soft tissue lateral to cervix and lower uterus out to the pelvic side walls;
* nodal: every voxel within ``nodal_margin_mm`` (7 mm, Euclidean, physical mm) of the common,
  external and internal iliac arteries and veins and of the obturator path, from the aortic
  bifurcation down (external iliac nodes stop at the top of the femoral heads);
* presacral: a band ``presacral_depth_mm`` (17.5 mm) deep in front of S1–S3.

Parametria, nodal and presacral parts are cropped out of bone, muscle, bladder and bowel
(rectum included). ``offset_mm`` finally grows (+) or shrinks (−) the whole CTV isotropically
(growth stays out of bone and air), which is how the annotator styles over- or under-contour.
Most of the CTV's surface therefore lies inside fat, as in real CTV work: the guideline edge is
not an intensity edge.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from AutoCTVLib.phantom.labels import label_value, values_of_kind
from AutoCTVLib.phantom.parts import Anatomy
from AutoCTVLib.phantom.raster import IndexBox, Rasteriser
from AutoCTVLib.phantom.regions import (
    nodal_distances,
    parametria_shape,
    presacral_shape,
    upper_vagina_shape,
)
from AutoCTVLib.phantom.shapes import union_bounds


@dataclass(frozen=True)
class CTVRules:
    """How a CTV is drawn (physical mm). The defaults are the guideline ("standard") CTV."""

    nodal_margin_mm: float = 7.0
    vagina_below_os_mm: float = 20.0
    presacral_depth_mm: float = 17.5
    nodal_top_shift_mm: float = 0.0  # + moves the upper nodal border cranially
    offset_mm: float = 0.0  # isotropic grow (+) / shrink (−) of the whole CTV

    def summary(self) -> dict[str, float]:
        return {key: round(float(value), 2) for key, value in asdict(self).items()}


def _lut(values: tuple[int, ...]) -> np.ndarray:
    table = np.zeros(256, dtype=bool)
    table[list(values)] = True
    return table


#: Labels the parametrial, nodal and presacral parts never enter (air too).
_EXCLUDED = _lut((0, *values_of_kind("bone", "muscle", "bladder", "bowel", "other")))
_PRIMARY = _lut((label_value("uterus"), label_value("cervix")))
_VAGINA = label_value("vagina")
_BONE_OR_AIR = _lut((0, *values_of_kind("bone", "other")))


def build_ctv(
    anatomy: Anatomy, raster: Rasteriser, labels: np.ndarray, rules: CTVRules
) -> np.ndarray:
    """The CTV (uint8 0/1, indexed z, y, x, on ``raster.geometry``) drawn by ``rules``.

    ``labels`` is the painted structure map of the same case.
    """
    scale = raster.mm_per_unit
    reach = rules.nodal_margin_mm + max(rules.offset_mm, 0.0)
    nodal = nodal_distances(raster, anatomy, rules.nodal_margin_mm)
    parametria = parametria_shape(anatomy)
    presacral = presacral_shape(anatomy, rules.presacral_depth_mm / scale)
    upper_vagina = upper_vagina_shape(anatomy, rules.vagina_below_os_mm / scale)
    gyn = [p.shape for p in anatomy.parts if p.label in ("uterus", "cervix")]

    lo, hi = union_bounds([parametria, presacral, upper_vagina, *gyn])
    box = raster.box_for(lo, hi, pad_mm=reach / scale + 2.0)
    for group_box, _ in nodal.values():
        box = group_box if box is None else _hull(box, group_box)
    ctv = np.zeros(labels.shape, dtype=np.uint8)
    if box is None:
        return ctv
    box = _grow(box, rules.offset_mm, raster)

    crop_labels = labels[box.slices]
    allowed = ~_EXCLUDED[crop_labels]
    mask = _PRIMARY[crop_labels]
    for shape, restrict in ((upper_vagina, crop_labels == _VAGINA), (parametria, allowed)):
        result = raster.distance(shape, pad_mm=1.0, within=box, band=(0.0, 0.0))
        if result is not None:
            sub_box, sd = result
            sub = sub_box.relative_to(box)
            mask[sub] |= (sd < 0) & restrict[sub]
    result = raster.distance(presacral, pad_mm=1.0, within=box, band=(0.0, 0.0))
    if result is not None:
        sub_box, sd = result
        sub = sub_box.relative_to(box)
        mask[sub] |= (sd < 0) & allowed[sub]
    top_z = np.float32(anatomy.nodal_top_z + rules.nodal_top_shift_mm / scale)
    for group_box, distance in nodal.values():
        inner = group_box.intersect(box)
        if inner is None:
            continue
        near = distance[inner.relative_to(group_box)] <= np.float32(rules.nodal_margin_mm)
        z = raster.coords(inner)[2]
        sub = inner.relative_to(box)
        mask[sub] |= near & (z <= top_z) & allowed[sub]

    if rules.offset_mm:
        mask = _offset(mask, rules.offset_mm, raster.geometry.spacing_xyz_mm, crop_labels)
    ctv[box.slices] = mask
    return ctv


def _offset(
    mask: np.ndarray,
    offset_mm: float,
    spacing_xyz_mm: tuple[float, float, float],
    labels: np.ndarray,
) -> np.ndarray:
    """Grow (offset > 0, not into bone or air) or shrink (offset < 0) by |offset| mm."""
    sampling = (spacing_xyz_mm[2], spacing_xyz_mm[1], spacing_xyz_mm[0])
    if offset_mm > 0:
        distance = ndimage.distance_transform_edt(~mask, sampling=sampling)
        return mask | ((distance <= offset_mm) & ~_BONE_OR_AIR[labels])
    distance = ndimage.distance_transform_edt(mask, sampling=sampling)
    return distance > -offset_mm


def _hull(a: IndexBox, b: IndexBox) -> IndexBox:
    return IndexBox(
        tuple(min(x, y) for x, y in zip(a.start, b.start)),  # type: ignore[arg-type]
        tuple(max(x, y) for x, y in zip(a.stop, b.stop)),  # type: ignore[arg-type]
    )


def _grow(box: IndexBox, offset_mm: float, raster: Rasteriser) -> IndexBox:
    """``box`` grown by enough voxels for a grow of ``offset_mm`` (plus one), clipped."""
    if offset_mm <= 0:
        return box
    spacing_kji = raster.geometry.spacing_xyz_mm[::-1]
    pad = [int(np.ceil(offset_mm / s)) + 1 for s in spacing_kji]
    shape = raster.geometry.shape_zyx
    start = tuple(max(a - p, 0) for a, p in zip(box.start, pad))
    stop = tuple(min(b + p, n) for b, p, n in zip(box.stop, pad, shape))
    return IndexBox(start, stop)  # type: ignore[arg-type]
