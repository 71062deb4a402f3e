"""Hounsfield-unit windowing: clip CT values to a window and scale them linearly to [0, 1].

The thesis clipped stored values above 1600 and scaled linearly to [0, 1]; we use an explicit
window ``(lo_hu, hi_hu)`` recorded in the model card, so training and inference agree.
"""

from __future__ import annotations

import numpy as np

#: Default window (HU): air up to dense bone, following the thesis' clip at 1600.
DEFAULT_HU_WINDOW: tuple[float, float] = (-1000.0, 1600.0)


def check_hu_window(window_hu: tuple[float, float]) -> tuple[float, float]:
    """Return the window as two floats; ``ValueError`` unless ``lo < hi`` and both are finite."""
    if len(window_hu) != 2:
        raise ValueError(f"the HU window needs two values (lo, hi), got {window_hu}")
    lo_hu, hi_hu = (float(v) for v in window_hu)
    if not (np.isfinite(lo_hu) and np.isfinite(hi_hu)) or lo_hu >= hi_hu:
        raise ValueError(f"the HU window needs finite lo < hi, got ({lo_hu}, {hi_hu})")
    return lo_hu, hi_hu


def apply_hu_window(ct_hu: np.ndarray, window_hu: tuple[float, float]) -> np.ndarray:
    """Map HU to [0, 1]: ``lo`` and below → 0, ``hi`` and above → 1, linear in between.

    Args:
        ct_hu: CT values in Hounsfield units, any shape (volumes are (z, y, x)).
        window_hu: ``(lo_hu, hi_hu)``.

    Returns:
        A new ``float32`` array of the same shape with values in [0, 1].
    """
    lo_hu, hi_hu = check_hu_window(window_hu)
    scaled = (np.asarray(ct_hu, dtype=np.float32) - np.float32(lo_hu)) / np.float32(hi_hu - lo_hu)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32, copy=False)
