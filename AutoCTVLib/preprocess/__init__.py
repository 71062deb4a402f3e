"""Preprocessing: body crop, resampling to the model's spacing, HU windowing, and the way back.

Arrays are (z, y, x); spacings (x, y, z) in mm; positions LPS mm.
"""

from __future__ import annotations

from AutoCTVLib.preprocess.body_crop import CropBox, body_mask, find_body_box
from AutoCTVLib.preprocess.pipeline import PreprocessConfig, PreprocessedCase, preprocess
from AutoCTVLib.preprocess.resample import (
    canonical_axes,
    grid_for_spacing,
    resample_to_geometry,
    resample_to_spacing,
)
from AutoCTVLib.preprocess.window import apply_hu_window

__all__ = [
    "CropBox",
    "PreprocessConfig",
    "PreprocessedCase",
    "apply_hu_window",
    "body_mask",
    "canonical_axes",
    "find_body_box",
    "grid_for_spacing",
    "preprocess",
    "resample_to_geometry",
    "resample_to_spacing",
]
