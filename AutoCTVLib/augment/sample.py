"""The unit every transform maps: an image with its label and optional weight map."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Sample:
    """Arrays on one grid. Spatial axes are the last ``spatial_dims`` axes: (z, y, x) or (y, x).

    Attributes:
        image: ``float32`` intensities, (*S) or (C, *S) (e.g. the [0, 1]-scaled CT).
        label: binary mask(s), (*S) or (C, *S), any numeric/bool dtype (kept on output);
            ``None`` for image-only augmentation.
        weight: per-voxel loss weight (*S) or (C, *S), 0 = unknown; ``None`` if not used.
            Voxels that a transform brings in from outside the field of view get weight 0.
        spatial_dims: 3 (volumes) or 2 (images).
    """

    image: np.ndarray
    label: np.ndarray | None = None
    weight: np.ndarray | None = None
    spatial_dims: int = 3

    def __post_init__(self) -> None:
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        for name in ("image", "label", "weight"):
            array = getattr(self, name)
            if array is None:
                continue
            if not isinstance(array, np.ndarray):
                raise ValueError(f"{name} must be a numpy array, got {type(array).__name__}")
            if array.ndim not in (self.spatial_dims, self.spatial_dims + 1):
                raise ValueError(
                    f"{name} must have {self.spatial_dims} spatial axes (plus an optional "
                    f"channel axis first), got shape {array.shape}"
                )
            if array.shape[-self.spatial_dims :] != self.spatial_shape:
                raise ValueError(
                    f"{name} spatial shape {array.shape[-self.spatial_dims :]} differs from "
                    f"the image's {self.spatial_shape}"
                )

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The spatial size, (z, y, x) or (y, x)."""
        return tuple(self.image.shape[-self.spatial_dims :])

    def replace(self, **changes: Any) -> Sample:
        """A copy with some arrays replaced."""
        return dataclasses.replace(self, **changes)


def per_channel(array: np.ndarray, spatial_dims: int, function: Any) -> np.ndarray:
    """Apply ``function`` (spatial array → spatial array) to each channel of ``array``."""
    if array.ndim == spatial_dims:
        return function(array)
    return np.stack([function(channel) for channel in array], axis=0)
