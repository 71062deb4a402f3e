"""Network-independent inference building blocks: sliding windows, MC-dropout uncertainty,
the review list, calibration metrics and mask clean-up.

Arrays are indexed (z, y, x); tensors (N, C, Z, Y, X); spacings (x, y, z) in mm.
"""

from __future__ import annotations

from AutoCTVLib.inference.postprocess import (
    PostprocessConfig,
    fill_holes,
    keep_components,
    postprocess_mask,
)
from AutoCTVLib.inference.review import separation_in_slices, slices_to_review
from AutoCTVLib.inference.sliding_window import needs_sliding_window, sliding_window_inference
from AutoCTVLib.inference.uncertainty import (
    MCAccumulator,
    UncertaintyMaps,
    UncertaintySummary,
    summarise_uncertainty,
    uncertainty_from_samples,
)

__all__ = [
    "MCAccumulator",
    "PostprocessConfig",
    "UncertaintyMaps",
    "UncertaintySummary",
    "fill_holes",
    "keep_components",
    "needs_sliding_window",
    "postprocess_mask",
    "separation_in_slices",
    "slices_to_review",
    "sliding_window_inference",
    "summarise_uncertainty",
    "uncertainty_from_samples",
]
