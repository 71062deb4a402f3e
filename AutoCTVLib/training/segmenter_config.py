"""Settings for training a cascade's segmenter (stage 2): the ``"cascade"`` key of a training
configuration whose ``"stage"`` is ``"segmenter"``.

Example (``benchmarks/configs/ctv_segmenter.json``)::

    "stage": "segmenter",
    "cascade": {"locator_model": "bundled", "margin_mm": 20, "jitter_mm": 12,
                "use_locator_probability": false},
    "boundary_fraction": 0.33, "foreground_fraction": 0.33,
    "preprocess": {"spacing_xyz_mm": [2, 2, 3]}

The training crops surround the reference CTV with ``margin_mm + jitter_mm`` on every side;
patches are centred on the CTV's box shifted by up to ``jitter_mm`` (the error of a locator), on
its surface, or on a CTV voxel. The finished run exports one cascade model file set: the
locator's weights copied from ``locator_model`` and the trained segmenter, with ``margin_mm`` as
the crop margin in the card.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

STAGES = ("single", "segmenter")
BUNDLED_LOCATOR = "bundled"


@dataclass(frozen=True)
class SegmenterSettings:
    """How the segmenter's training crops are made and which locator it is paired with.

    Attributes:
        locator_model: the locator's model file (``.safetensors``/``.json``), or ``"bundled"``
            for the bundled single-stage 6 mm CTV model (``ctv_pelvis_phantom``).
        margin_mm: crop margin around the locator's CTV at inference (recorded in the card).
        jitter_mm: largest shift (mm, per axis) of the crop centre in training (locator error).
        use_locator_probability: give the segmenter the locator's probability as a second
            input channel (the locator is run on every training case once).
        threshold: locator probability that counts as CTV when the box is taken.
    """

    locator_model: str = BUNDLED_LOCATOR
    margin_mm: float = 20.0
    jitter_mm: float = 12.0
    use_locator_probability: bool = False
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.locator_model, str) or not self.locator_model:
            raise ValueError("cascade.locator_model must name a model file or 'bundled'")
        for name in ("margin_mm", "jitter_mm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"cascade.{name} must be a number of mm, got {value!r}")
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"cascade.{name} must be a non-negative number, got {value}")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.use_locator_probability, bool):
            raise ValueError("cascade.use_locator_probability must be true or false")
        if not (isinstance(self.threshold, (int, float)) and 0 < self.threshold < 1):
            raise ValueError(f"cascade.threshold must be in (0, 1), got {self.threshold!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmenterSettings:
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown cascade setting(s): {', '.join(unknown)}")
        return cls(**data)

    def locator_path(self) -> Path:
        """The locator's weights file (the bundled model for ``"bundled"``)."""
        from AutoCTVLib.models.bundled import (
            LOCATOR_MODEL_STEM,
            find_bundled_model,
            resolve_model_path,
        )

        if self.locator_model == BUNDLED_LOCATOR:
            return find_bundled_model(LOCATOR_MODEL_STEM)
        return resolve_model_path(self.locator_model)
