"""Resample every part of a sample through one affine index map (rotation, zoom).

The map takes an output index to an input index, ``input = matrix @ output + offset``, on the
spatial axes ((z, y, x) in 3D, (y, x) in 2D); channel axes are handled by ``per_channel``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from AutoCTVLib.augment.sample import Sample, per_channel

#: How a label is resampled: "linear_threshold" (interpolate, threshold at 0.5: smooth edges)
#: or "nearest" (copies label values; keeps multi-class labels).
LABEL_INTERPOLATIONS = ("linear_threshold", "nearest")


def resample_sample(
    sample: Sample,
    matrix: np.ndarray,
    offset: np.ndarray,
    label_interpolation: str = "linear_threshold",
) -> Sample:
    """``sample`` resampled through the map: the image linearly (edges repeat), the label as
    ``label_interpolation`` says (zero outside), the loss weight by nearest neighbour (zero
    outside)."""
    if label_interpolation not in LABEL_INTERPOLATIONS:
        raise ValueError(f"label_interpolation must be one of {', '.join(LABEL_INTERPOLATIONS)}")
    dims = sample.spatial_dims

    def resample(array: np.ndarray, order: int, mode: str) -> np.ndarray:
        return ndimage.affine_transform(
            array, matrix, offset=offset, order=order, mode=mode, cval=0.0, prefilter=False
        )

    image = per_channel(
        sample.image.astype(np.float32, copy=False), dims, lambda a: resample(a, 1, "nearest")
    )
    label = None
    if sample.label is not None:
        if label_interpolation == "nearest":
            label = per_channel(sample.label, dims, lambda a: resample(a, 0, "constant"))
        else:
            as_float = sample.label.astype(np.float32)
            smooth = per_channel(as_float, dims, lambda a: resample(a, 1, "constant"))
            label = (smooth >= 0.5).astype(sample.label.dtype)
    weight = None
    if sample.weight is not None:
        weight = per_channel(sample.weight, dims, lambda a: resample(a, 0, "constant"))
    return sample.replace(image=image, label=label, weight=weight)
