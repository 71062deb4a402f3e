"""Model files: ``<name>.safetensors`` weights plus a ``<name>.json`` model card.

The card names (and :func:`read_card`) need no torch; ``load_model`` and ``save_model`` load
torch on first use, so a GUI can read and show a model card before PyTorch is installed.
"""

from __future__ import annotations

import importlib
from typing import Any

from AutoCTVLib.models.card import (
    FORMAT_VERSION,
    SUPPORTED_FORMAT_VERSIONS,
    SYNTHETIC_DISCLAIMER,
    CodeTriplet,
    LabelInfo,
    ModelCard,
    ctv_label,
    model_paths,
    read_card,
)

_NEEDS_TORCH = ("load_model", "save_model")

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


def __getattr__(name: str) -> Any:
    if name not in _NEEDS_TORCH:
        raise AttributeError(f"module 'AutoCTVLib.models' has no attribute {name!r}")
    return getattr(importlib.import_module("AutoCTVLib.models.model_file"), name)
