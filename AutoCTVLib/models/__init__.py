"""Model files: ``<name>.safetensors`` weights plus a ``<name>.json`` model card."""

from __future__ import annotations

from AutoCTVLib.models.card import (
    FORMAT_VERSION,
    SUPPORTED_FORMAT_VERSIONS,
    SYNTHETIC_DISCLAIMER,
    CodeTriplet,
    LabelInfo,
    ModelCard,
    ctv_label,
)
from AutoCTVLib.models.model_file import load_model, model_paths, read_card, save_model

__all__ = [
    "FORMAT_VERSION",
    "SUPPORTED_FORMAT_VERSIONS",
    "SYNTHETIC_DISCLAIMER",
    "CodeTriplet",
    "LabelInfo",
    "ModelCard",
    "ctv_label",
    "load_model",
    "model_paths",
    "read_card",
    "save_model",
]
