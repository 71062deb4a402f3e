"""The preprocessing pipeline shared by training and inference, and its way back.

``preprocess(ct, config)``:

1. body crop on the input grid (:mod:`.body_crop`), a box of whole input voxels;
2. resample the cropped CT to ``config.spacing_xyz_mm`` (:mod:`.resample`, linear, same
   physical extent); with ``config.reorient`` (the default) the network grid's axes are the
   scan's axes permuted and mirrored to point along L, P and S, so every scan reaches the
   network head up and anterior first whatever its patient position or slice orientation;
3. HU window → [0, 1] (:mod:`.window`).

The returned :class:`PreprocessedCase` keeps every grid involved, so a probability map on the
network grid goes back onto the input's exact grid with :meth:`PreprocessedCase.to_input_grid`
(linear resampling onto the cropped input sub-grid, then pasting into the full grid), and a
label on the input grid goes to the network grid with :meth:`PreprocessedCase.label_to_network`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from AutoCTVLib.preprocess.body_crop import DEFAULT_BODY_THRESHOLD_HU, CropBox, find_body_box
from AutoCTVLib.preprocess.resample import (
    AIR_HU,
    grid_for_spacing,
    resample_to_geometry,
)
from AutoCTVLib.preprocess.window import DEFAULT_HU_WINDOW, apply_hu_window, check_hu_window
from AutoCTVLib.volume import Geometry, Volume

logger = logging.getLogger(__name__)

LABEL_INTERPOLATIONS = ("label_linear", "nearest")


@dataclass(frozen=True)
class PreprocessConfig:
    """How a CT becomes network input; stored in the model card.

    Attributes:
        spacing_xyz_mm: network grid spacing in mm along (x, y, z) of the scan's own axes.
        hu_window: ``(lo, hi)`` in HU, mapped to [0, 1] with clipping.
        body_crop: crop to the body's bounding box before resampling.
        body_threshold_hu: HU above which a voxel may belong to the body.
        crop_margin_mm: margin (mm) added around the body's bounding box.
        label_interpolation: how labels reach the network grid: ``"label_linear"`` (linear on
            0/1, then >= 0.5) or ``"nearest"``.
        reorient: give the network grid axes along L, P and S (see
            :func:`~AutoCTVLib.preprocess.resample.canonical_axes`); ``spacing_xyz_mm`` is then
            along those axes.
    """

    spacing_xyz_mm: tuple[float, float, float] = (2.0, 2.0, 3.0)
    hu_window: tuple[float, float] = DEFAULT_HU_WINDOW
    body_crop: bool = True
    body_threshold_hu: float = DEFAULT_BODY_THRESHOLD_HU
    crop_margin_mm: float = 10.0
    label_interpolation: str = "label_linear"
    reorient: bool = True

    def __post_init__(self) -> None:
        spacing = tuple(float(s) for s in self.spacing_xyz_mm)
        if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(f"spacing_xyz_mm must be three positive numbers, got {spacing}")
        object.__setattr__(self, "spacing_xyz_mm", spacing)
        object.__setattr__(self, "hu_window", check_hu_window(tuple(self.hu_window)))
        object.__setattr__(self, "body_crop", bool(self.body_crop))
        object.__setattr__(self, "reorient", bool(self.reorient))
        object.__setattr__(self, "body_threshold_hu", float(self.body_threshold_hu))
        margin = float(self.crop_margin_mm)
        if not math.isfinite(margin) or margin < 0:
            raise ValueError(f"crop_margin_mm must be a non-negative number, got {margin}")
        object.__setattr__(self, "crop_margin_mm", margin)
        if self.label_interpolation not in LABEL_INTERPOLATIONS:
            raise ValueError(
                f"label_interpolation must be one of {LABEL_INTERPOLATIONS}, "
                f"got {self.label_interpolation!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        data = asdict(self)
        data["spacing_xyz_mm"] = list(self.spacing_xyz_mm)
        data["hu_window"] = list(self.hu_window)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing setting(s): {', '.join(unknown)}")
        values = dict(data)
        for key in ("spacing_xyz_mm", "hu_window"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass(frozen=True)
class PreprocessedCase:
    """One CT on the network grid plus what is needed to map results back.

    Attributes:
        image: ``float32`` (z, y, x) array in [0, 1] on ``network_geometry``.
        network_geometry: the grid the network sees (``config.spacing_xyz_mm``).
        crop_box: the body crop as a box of input voxels.
        cropped_geometry: the input sub-grid inside ``crop_box``.
        input_geometry: the input's full grid.
        config: the settings used.
    """

    image: np.ndarray
    network_geometry: Geometry
    crop_box: CropBox
    cropped_geometry: Geometry
    input_geometry: Geometry
    config: PreprocessConfig = field(default_factory=PreprocessConfig)

    def label_to_network(self, label: Volume) -> np.ndarray:
        """A binary label on the input grid → ``uint8`` 0/1 (z, y, x) on the network grid."""
        if not label.geometry.is_close(self.input_geometry):
            raise ValueError("the label does not lie on the CT grid it is paired with")
        cropped = self.crop_box.crop(label.with_array((label.array > 0).astype(np.uint8)))
        on_network = resample_to_geometry(
            cropped, self.network_geometry, self.config.label_interpolation, 0.0
        )
        return on_network.array.astype(np.uint8, copy=False)

    def to_input_grid(
        self, network_values: np.ndarray, kind: str = "probability", fill_value: float = 0.0
    ) -> np.ndarray:
        """Map a (z, y, x) array on the network grid onto the input's exact grid.

        Args:
            network_values: array of shape ``network_geometry.shape_zyx``.
            kind: ``"probability"`` (linear, ``float32``) or ``"label"`` (nearest, input dtype).
            fill_value: value outside the body crop.

        Returns:
            An array of shape ``input_geometry.shape_zyx``.
        """
        return self.crop_box.paste(self.to_crop_grid(network_values, kind, fill_value), fill_value)

    def to_crop_grid(
        self, network_values: np.ndarray, kind: str = "probability", fill_value: float = 0.0
    ) -> np.ndarray:
        """:meth:`to_input_grid` inside the crop box only: an array of ``crop_box.shape_zyx``
        (``crop_box.paste`` completes it)."""
        if tuple(network_values.shape) != self.network_geometry.shape_zyx:
            raise ValueError(
                f"array shape {network_values.shape} is not the network grid "
                f"{self.network_geometry.shape_zyx}"
            )
        if kind not in ("probability", "label"):
            raise ValueError(f"kind must be 'probability' or 'label', got {kind!r}")
        interpolation = "linear" if kind == "probability" else "nearest"
        return resample_to_geometry(
            Volume(network_values, self.network_geometry),
            self.cropped_geometry,
            interpolation,
            fill_value,
        ).array


def preprocess(ct: Volume, config: PreprocessConfig | None = None) -> PreprocessedCase:
    """Body crop, resample to ``config.spacing_xyz_mm`` and window a CT (array (z, y, x), HU)."""
    config = config or PreprocessConfig()
    ct_hu = ct.with_array(np.asarray(ct.array, dtype=np.float32))
    if config.body_crop:
        box = find_body_box(ct_hu, config.body_threshold_hu, config.crop_margin_mm)
    else:
        box = CropBox.full(ct.geometry.shape_zyx)
    cropped = box.crop(ct_hu)
    network_geometry = grid_for_spacing(
        cropped.geometry, config.spacing_xyz_mm, reorient=config.reorient
    )
    resampled = resample_to_geometry(cropped, network_geometry, "linear", AIR_HU)
    image = apply_hu_window(resampled.array, config.hu_window)
    logger.debug(
        "preprocessed %s → crop %s → network grid %s",
        ct.geometry.describe(),
        box.shape_zyx,
        network_geometry.describe(),
    )
    return PreprocessedCase(
        image=image,
        network_geometry=network_geometry,
        crop_box=box,
        cropped_geometry=cropped.geometry,
        input_geometry=ct.geometry,
        config=config,
    )
