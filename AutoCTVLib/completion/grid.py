"""From the input grid to the completion network's grid, and back.

The network runs at a fixed *model spacing* (1.5 × 1.5 × 3 mm along the scan's i, j, k axes by
default: fine enough in-plane that a perfect model-grid result loses under 0.002 Dice when it
is resampled back onto a 0.98 mm CT grid, where 3 mm voxels lose 0.01–0.03) inside a crop
around the annotated extent, so its cost does not depend on the scan's resolution::

    input grid (e.g. 512×512×100 at 0.98×0.98×3 mm)
      │ crop: bounding box of the drawing and of every annotated slice, plus a margin (mm)
      ▼
    cropped input sub-grid ──► model grid: same direction, spacing ``spacing_xyz_mm``
                               (CT: linear; drawings: slice by slice, see below)

How annotated slices reach the model grid (the choice matters: the drawing is exact in-plane
but says nothing between slices):

* Along every axis that has annotated slices, the model grid is *shifted* so that one of its
  planes passes exactly through the first annotated slice. With the model spacing equal to the
  slice spacing (3 mm CT), every annotated slice then lies exactly on a model plane.
* Each annotated input slice goes to its nearest model plane along its axis. Only *in-plane*
  resampling is done: the slice's drawing is resampled (linear on 0/1, then ≥ 0.5) onto the
  model plane's in-plane sample points placed at the input slice's own position, so nothing is
  interpolated between slices. That plane is marked known in the annotated-mask channel.
  When two annotated slices reach the same model plane (input slices finer than the model
  spacing), their drawings are merged (union).
* Every other model voxel has sparse label 0 and mask 0 (unknown).
* The fourth channel is the shape-only guess on the model grid: shape-based interpolation
  between the model-grid annotated planes (:func:`~AutoCTVLib.completion.prior.shape_prior`).
  The network learns to correct it from the CT.

The network's probability goes back onto the cropped input sub-grid (linear), is pasted into
the full grid (0 outside the crop) and thresholded; the caller then writes the annotated slices
back exactly as drawn.

Arrays are (z, y, x); spacings (x, y, z) in mm; positions LPS mm.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from AutoCTVLib.completion.annotation import AXIS_NAMES, Annotation
from AutoCTVLib.completion.prior import shape_prior
from AutoCTVLib.preprocess.body_crop import CropBox
from AutoCTVLib.preprocess.resample import AIR_HU, resample_to_geometry
from AutoCTVLib.preprocess.window import apply_hu_window, check_hu_window
from AutoCTVLib.volume import Geometry, Volume

#: Names of the network's input channels, in order (the model card's ``input_channels``). The
#: interpolation stays last: the ``prior_unet3d`` network reads its prior from the last channel.
INPUT_CHANNELS: tuple[str, ...] = ("ct", "sparse_label", "annotated_mask", "interpolation")


@dataclass(frozen=True)
class CompletionGridConfig:
    """How a case becomes completion-network input (stored in the model card's preprocessing).

    Attributes:
        spacing_xyz_mm: model grid spacing (mm) along the scan's own i, j, k axes.
        hu_window: ``(lo, hi)`` HU mapped to [0, 1] (soft tissue to bone edges).
        margin_mm: margin added on every side of the annotated extent before cropping.
    """

    spacing_xyz_mm: tuple[float, float, float] = (1.5, 1.5, 3.0)
    hu_window: tuple[float, float] = (-200.0, 400.0)
    margin_mm: float = 15.0

    def __post_init__(self) -> None:
        spacing = tuple(float(s) for s in self.spacing_xyz_mm)
        if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(f"spacing_xyz_mm must be three positive numbers, got {spacing}")
        object.__setattr__(self, "spacing_xyz_mm", spacing)
        object.__setattr__(self, "hu_window", check_hu_window(tuple(self.hu_window)))
        margin = float(self.margin_mm)
        if not math.isfinite(margin) or margin < 0:
            raise ValueError(f"margin_mm must be a non-negative number, got {margin}")
        object.__setattr__(self, "margin_mm", margin)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists for tuples), with ``"task": "completion"``."""
        data = asdict(self)
        data["spacing_xyz_mm"] = list(self.spacing_xyz_mm)
        data["hu_window"] = list(self.hu_window)
        data["task"] = "completion"
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompletionGridConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        values = {key: value for key, value in data.items() if key != "task"}
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown completion preprocessing setting(s): {', '.join(unknown)}")
        for key in ("spacing_xyz_mm", "hu_window"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass(frozen=True)
class CompletionInputs:
    """One case on the model grid, plus what is needed to go back.

    Attributes:
        image: float32 (z, y, x), windowed CT in [0, 1].
        sparse: float32 (z, y, x), 1 where an annotated plane holds the structure.
        known: float32 (z, y, x), 1 on annotated planes (the annotated-mask channel).
        prior: float32 (z, y, x), the shape-based interpolation between the annotated planes (0/1).
        model_annotation: the annotated planes as model-grid slice indices.
        model_geometry: the model grid.
        crop_box: the crop on the input grid.
        cropped_geometry: the input sub-grid inside ``crop_box``.
        input_geometry: the input's full grid.
    """

    image: np.ndarray
    sparse: np.ndarray
    known: np.ndarray
    prior: np.ndarray
    model_annotation: Annotation
    model_geometry: Geometry
    crop_box: CropBox
    cropped_geometry: Geometry
    input_geometry: Geometry
    config: CompletionGridConfig = field(default_factory=CompletionGridConfig)

    def stacked(self) -> np.ndarray:
        """The network input, float32 (4, z, y, x) in :data:`INPUT_CHANNELS` order."""
        channels = [self.image, self.sparse, self.known, self.prior]
        return np.stack(channels).astype(np.float32, copy=False)

    def probability_to_input(self, probability_zyx: np.ndarray) -> np.ndarray:
        """A model-grid probability (z, y, x) → float32 on the full input grid (0 outside)."""
        if tuple(probability_zyx.shape) != self.model_geometry.shape_zyx:
            raise ValueError(
                f"probability shape {probability_zyx.shape} is not the model grid "
                f"{self.model_geometry.shape_zyx}"
            )
        on_crop = resample_to_geometry(
            Volume(np.asarray(probability_zyx, dtype=np.float32), self.model_geometry),
            self.cropped_geometry,
            "linear",
            0.0,
        ).array
        return self.crop_box.paste(on_crop, 0.0)


def crop_box_for(
    sparse_zyx: np.ndarray,
    annotation: Annotation,
    spacing_xyz_mm: tuple[float, float, float],
    margin_mm: float,
) -> CropBox:
    """Bounding box of the drawing and of every annotated slice, grown by ``margin_mm``.

    Along an axis with annotated slices the box covers them all (an annotated slice left empty
    still says where the structure is absent); along every axis it covers the drawing.
    """
    shape = tuple(int(n) for n in sparse_zyx.shape)
    drawn = np.asarray(sparse_zyx, dtype=bool)
    start, stop = [], []
    for axis, name in enumerate(AXIS_NAMES):
        positions = list(annotation.slices(name))
        painted = np.flatnonzero(drawn.any(axis=tuple(a for a in range(3) if a != axis)))
        if len(painted):
            positions += [int(painted[0]), int(painted[-1])]
        if not positions:
            positions = [0, shape[axis] - 1]
        spacing = float(spacing_xyz_mm[2 - axis])
        margin = math.ceil(margin_mm / spacing - 1e-9)
        start.append(max(0, min(positions) - margin))
        stop.append(min(shape[axis], max(positions) + margin + 1))
    return CropBox(tuple(start), tuple(stop), shape)


def _axis_plan(size: int, ratio: float, first_annotated: int | None) -> tuple[float, int]:
    """``(c0, n)``: model planes at crop index ``c0 + m·ratio`` for m < n, covering the crop.

    With an annotated slice, a plane passes through it; otherwise the planes are centred.
    """
    if first_annotated is None:
        count = max(1, round(size / ratio))
        return (size - 1) / 2.0 - (count - 1) / 2.0 * ratio, count
    steps_before = math.floor((first_annotated + 0.5) / ratio + 1e-9)
    c0 = first_annotated - steps_before * ratio
    count = math.floor((size - 0.5 - c0) / ratio + 1e-9) + 1
    return c0, max(1, count)


def model_grid_for(
    cropped_geometry: Geometry,
    annotation_in_crop: Annotation,
    spacing_xyz_mm: tuple[float, float, float],
) -> tuple[Geometry, tuple[float, float, float], tuple[float, float, float]]:
    """The model grid over a cropped input grid (see the module docstring).

    Returns:
        ``(model_geometry, c0_zyx, ratio_zyx)``: model plane ``m`` along array axis ``a`` lies
        at crop index ``c0_zyx[a] + m · ratio_zyx[a]``.
    """
    c0_zyx, ratio_zyx, count_zyx = [], [], []
    for axis, name in enumerate(AXIS_NAMES):
        ratio = float(spacing_xyz_mm[2 - axis]) / float(cropped_geometry.spacing_xyz_mm[2 - axis])
        indices = annotation_in_crop.slices(name)
        c0, count = _axis_plan(
            cropped_geometry.shape_zyx[axis], ratio, indices[0] if indices else None
        )
        c0_zyx.append(c0)
        ratio_zyx.append(ratio)
        count_zyx.append(count)
    origin = cropped_geometry.index_to_physical(np.asarray(c0_zyx[::-1], dtype=float))
    geometry = Geometry(
        shape_zyx=tuple(count_zyx),
        spacing_xyz_mm=tuple(float(s) for s in spacing_xyz_mm),
        origin_xyz_mm=tuple(float(v) for v in origin),
        direction=cropped_geometry.direction,
    )
    return geometry, tuple(c0_zyx), tuple(ratio_zyx)


def _shift_annotation(annotation: Annotation, start_zyx: tuple[int, int, int]) -> Annotation:
    return Annotation.from_mapping(
        {
            name: [i - start_zyx[axis] for i in annotation.slices(name)]
            for axis, name in enumerate(AXIS_NAMES)
        }
    )


def _plane_geometry(
    model: Geometry, cropped: Geometry, axis: int, crop_index: int, c0_zyx: tuple[float, ...]
) -> Geometry:
    """One model plane's in-plane sample points, placed at the input slice ``crop_index``."""
    shape = list(model.shape_zyx)
    shape[axis] = 1
    position_zyx = list(c0_zyx)
    position_zyx[axis] = float(crop_index)
    origin = cropped.index_to_physical(np.asarray(position_zyx[::-1], dtype=float))
    return Geometry(tuple(shape), model.spacing_xyz_mm, tuple(origin), model.direction)


def prepare_inputs(
    ct: Volume,
    sparse_zyx: np.ndarray,
    annotation: Annotation,
    config: CompletionGridConfig | None = None,
) -> CompletionInputs:
    """Crop, resample and stack a CT and its sparse drawing for the completion network.

    Args:
        ct: the CT (float HU, (z, y, x)).
        sparse_zyx: the drawing on the CT grid, boolean (z, y, x), only on annotated slices.
        annotation: the annotated slices (input-grid indices).
        config: model spacing, HU window and crop margin.
    """
    config = config or CompletionGridConfig()
    sparse = np.asarray(sparse_zyx, dtype=bool)
    if sparse.shape != ct.geometry.shape_zyx:
        raise ValueError(f"sparse shape {sparse.shape} differs from the CT {ct.geometry.shape_zyx}")
    box = crop_box_for(sparse, annotation, ct.geometry.spacing_xyz_mm, config.margin_mm)
    cropped_ct = box.crop(ct)
    cropped_ct = cropped_ct.with_array(np.asarray(cropped_ct.array, dtype=np.float32))
    cropped_sparse = np.ascontiguousarray(sparse[box.slices], dtype=np.uint8)
    in_crop = _shift_annotation(annotation, box.start_zyx)
    model, c0_zyx, ratio_zyx = model_grid_for(cropped_ct.geometry, in_crop, config.spacing_xyz_mm)
    image = apply_hu_window(
        resample_to_geometry(cropped_ct, model, "linear", AIR_HU).array, config.hu_window
    )
    model_sparse = np.zeros(model.shape_zyx, dtype=np.uint8)
    known = np.zeros(model.shape_zyx, dtype=bool)
    planes: dict[str, set[int]] = {name: set() for name in AXIS_NAMES}
    for axis, name in enumerate(AXIS_NAMES):
        for crop_index in in_crop.slices(name):
            plane = round((crop_index - c0_zyx[axis]) / ratio_zyx[axis])
            plane = min(max(plane, 0), model.shape_zyx[axis] - 1)
            window = [slice(None)] * 3
            window[axis] = slice(crop_index, crop_index + 1)
            source_geometry = CropBox(
                tuple(w.start or 0 for w in window),
                tuple(
                    w.stop if w.stop is not None else n
                    for w, n in zip(window, cropped_ct.geometry.shape_zyx)
                ),
                cropped_ct.geometry.shape_zyx,
            ).cropped_geometry(cropped_ct.geometry)
            target = _plane_geometry(model, cropped_ct.geometry, axis, crop_index, c0_zyx)
            drawn = resample_to_geometry(
                Volume(cropped_sparse[tuple(window)], source_geometry), target, "label_linear"
            ).array
            destination = [slice(None)] * 3
            destination[axis] = slice(plane, plane + 1)
            model_sparse[tuple(destination)] |= drawn
            known[tuple(destination)] = True
            planes[name].add(plane)
    model_annotation = Annotation.from_mapping({k: sorted(v) for k, v in planes.items()})
    return CompletionInputs(
        image=image,
        sparse=model_sparse.astype(np.float32),
        known=known.astype(np.float32),
        prior=shape_prior(model_sparse > 0, model_annotation, model.spacing_xyz_mm[::-1]).astype(
            np.float32
        ),
        model_annotation=model_annotation,
        model_geometry=model,
        crop_box=box,
        cropped_geometry=cropped_ct.geometry,
        input_geometry=ct.geometry,
        config=config,
    )
