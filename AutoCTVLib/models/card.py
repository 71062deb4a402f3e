"""The model card: what a model is, how its input must be prepared, and what it was trained on.

A model is two files side by side: ``<name>.safetensors`` (the weights) and ``<name>.json``
(this card). The card is plain JSON (format version :data:`FORMAT_VERSION`)::

    {
      "format_version": 1,
      "name": "autoctv-ctv", "version": "1.0.0",
      "architecture": {...NetworkConfig.to_dict()...},
      "preprocessing": {"spacing_xyz_mm": [2, 2, 3], "hu_window": [-1000, 1600], ...},
      "input_channels": ["ct"], "intensity_scaling": "hu_window_linear_0_1",
      "labels": [{"name": "CTV", "color_rgb": [255, 170, 0], "channel": 0,
                  "category": {"value": "130041", "scheme": "DCM", "meaning": "..."},
                  "type": {"value": "228792002", "scheme": "SCT", "meaning": "..."}}],
      "training_data": "...", "metrics": {"dice_mean": 0.8}, "inference": {"threshold": 0.5},
      "intended_use": "...", "disclaimer": "trained on synthetic phantoms only — not for ...",
      "created_utc": "2026-01-01T00:00:00Z", "software": {"autoctv": "0.1.0", "torch": "..."},
      "weights_file": "autoctv-ctv.safetensors", "weights_sha256": "…64 hex…",
      "parameter_count": 2831593, "tensors": {"network.head.weight": {"dtype": "float32",
                                               "shape": [1, 16, 1, 1, 1]}, ...}
    }

A cascade (a coarse *locator* and a fine *segmenter* in one weights file, card format 2) adds
``"stages"``: one entry per stage with its own architecture, preprocessing and inputs (see
:mod:`AutoCTVLib.models.cascade_card`); its top-level ``architecture`` is
``{"architecture": "cascade", "stages": ["locator", "segmenter"]}``, its ``preprocessing`` is the
segmenter's (the grid of the output and the heat map) and its ``input_channels`` are ``["ct"]``.

``preprocessing`` is the preprocessing pipeline's settings dict (it must hold
``spacing_xyz_mm`` and ``hu_window``; the pipeline validates the rest). The integrity fields
(``weights_file``, ``weights_sha256``, ``parameter_count``, ``tensors``, ``created_utc``) are
filled in by :func:`AutoCTVLib.models.model_file.save_model`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from AutoCTVLib import terminology
from AutoCTVLib.errors import ModelFileError

FORMAT_VERSION = 1
#: Format of a cascade card (format 1 has no ``stages``).
CASCADE_FORMAT_VERSION = 2
SUPPORTED_FORMAT_VERSIONS = (1, 2)
SYNTHETIC_DISCLAIMER = "trained on synthetic phantoms only — not for clinical use"
WEIGHTS_SUFFIX = ".safetensors"
CARD_SUFFIX = ".json"
INTENSITY_SCALINGS = ("hu_window_linear_0_1",)
"""``"hu_window_linear_0_1"``: clip HU to ``hu_window`` and map it linearly onto [0, 1]."""
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class CardError(ValueError):
    """A card field is missing or malformed (the loader turns this into a ModelFileError)."""


@dataclass(frozen=True)
class CodeTriplet:
    """A coded concept as DICOM writes it: (CodeValue, CodingSchemeDesignator, CodeMeaning)."""

    value: str
    scheme: str
    meaning: str

    def __post_init__(self) -> None:
        for name in ("value", "scheme", "meaning"):
            text = getattr(self, name)
            if not isinstance(text, str) or not text.strip():
                raise CardError(f"a code needs a non-empty {name}, got {text!r}")

    def to_dict(self) -> dict[str, str]:
        return {"value": self.value, "scheme": self.scheme, "meaning": self.meaning}

    @classmethod
    def from_dict(cls, data: Any) -> CodeTriplet:
        _require_keys("code", data, {"value", "scheme", "meaning"}, optional=set())
        return cls(value=data["value"], scheme=data["scheme"], meaning=data["meaning"])


@dataclass(frozen=True)
class LabelInfo:
    """One output channel of the network: a segment's name, display colour and codes.

    Attributes:
        name: segment name shown to users ("CTV").
        color_rgb: display colour, three integers 0–255.
        category: segmented property category (e.g. DCM 130041 "RT Target").
        type: segmented property type (e.g. SCT 228792002 "Clinical target volume").
        channel: the network output channel holding this label's logit.
    """

    name: str
    color_rgb: tuple[int, int, int]
    category: CodeTriplet
    type: CodeTriplet
    channel: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise CardError(f"a label needs a non-empty name, got {self.name!r}")
        colour = tuple(self.color_rgb)
        if len(colour) != 3 or not all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in colour
        ):
            raise CardError(f"label {self.name!r}: color_rgb must be three integers 0-255")
        object.__setattr__(self, "color_rgb", colour)
        if isinstance(self.channel, bool) or not isinstance(self.channel, int) or self.channel < 0:
            raise CardError(f"label {self.name!r}: channel must be a non-negative integer")
        for name in ("category", "type"):
            if not isinstance(getattr(self, name), CodeTriplet):
                raise CardError(f"label {self.name!r}: {name} must be a code triplet")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "color_rgb": list(self.color_rgb),
            "channel": self.channel,
            "category": self.category.to_dict(),
            "type": self.type.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> LabelInfo:
        _require_keys(
            "label", data, {"name", "color_rgb", "category", "type"}, optional={"channel"}
        )
        if not isinstance(data["color_rgb"], list):
            raise CardError("label color_rgb must be a list of three integers")
        return cls(
            name=data["name"],
            color_rgb=tuple(data["color_rgb"]),
            category=CodeTriplet.from_dict(data["category"]),
            type=CodeTriplet.from_dict(data["type"]),
            channel=data.get("channel", 0),
        )


def ctv_label(
    color_rgb: tuple[int, int, int] = terminology.CTV_COLOR_RGB, channel: int = 0
) -> LabelInfo:
    """The CTV segment with its codes (see :mod:`AutoCTVLib.terminology`)."""
    category, ctv_type = terminology.RT_TARGET_CATEGORY, terminology.CTV_TYPE
    return LabelInfo(
        name=terminology.CTV_SEGMENT_NAME,
        color_rgb=color_rgb,
        category=CodeTriplet(category.value, category.scheme, category.meaning),
        type=CodeTriplet(ctv_type.value, ctv_type.scheme, ctv_type.meaning),
        channel=channel,
    )


@dataclass(frozen=True)
class ModelCard:
    """Everything the JSON card holds (see the module docstring for the layout)."""

    name: str
    version: str
    architecture: dict[str, Any]
    preprocessing: dict[str, Any]
    labels: tuple[LabelInfo, ...]
    input_channels: tuple[str, ...] = ("ct",)
    intensity_scaling: str = "hu_window_linear_0_1"
    training_data: str | dict[str, Any] = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    inference: dict[str, Any] = field(default_factory=dict)
    intended_use: str = ""
    disclaimer: str = ""
    created_utc: str = ""
    software: dict[str, str] = field(default_factory=dict)
    weights_file: str = ""
    weights_sha256: str = ""
    parameter_count: int = 0
    tensors: dict[str, dict[str, Any]] = field(default_factory=dict)
    stages: tuple[dict[str, Any], ...] = ()
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        for name in ("name", "version"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise CardError(f"the model card needs a non-empty {name}")
        if "/" in self.name or "\\" in self.name:
            raise CardError(f"the model name may not contain path separators: {self.name!r}")
        if not isinstance(self.architecture, dict):
            raise CardError("architecture must be a JSON object (the network configuration)")
        _check_preprocessing(self.preprocessing)
        labels = tuple(self.labels)
        if not labels or not all(isinstance(label, LabelInfo) for label in labels):
            raise CardError("the model card needs at least one label")
        channels = sorted(label.channel for label in labels)
        if channels != list(range(len(labels))):
            raise CardError(f"label channels must be 0..{len(labels) - 1}, got {channels}")
        object.__setattr__(self, "labels", labels)
        inputs = tuple(self.input_channels)
        if not inputs or not all(isinstance(meaning, str) and meaning for meaning in inputs):
            raise CardError("input_channels must name every network input channel")
        object.__setattr__(self, "input_channels", inputs)
        if self.intensity_scaling not in INTENSITY_SCALINGS:
            raise CardError(
                f"intensity_scaling must be one of {', '.join(INTENSITY_SCALINGS)}, "
                f"got {self.intensity_scaling!r}"
            )
        if not isinstance(self.training_data, (str, dict)):
            raise CardError("training_data must be a text or a JSON object")
        for name in ("metrics", "inference", "software", "tensors"):
            if not isinstance(getattr(self, name), dict):
                raise CardError(f"{name} must be a JSON object")
        for name in ("intended_use", "disclaimer", "created_utc", "weights_file"):
            if not isinstance(getattr(self, name), str):
                raise CardError(f"{name} must be text")
        if self.weights_sha256 and not _SHA256.match(self.weights_sha256):
            raise CardError("weights_sha256 must be 64 lower-case hexadecimal digits")
        count = self.parameter_count
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise CardError("parameter_count must be a non-negative integer")
        version = self.format_version
        if isinstance(version, bool) or not isinstance(version, int):
            raise CardError(f"format_version must be an integer, got {version!r}")
        stages = self.stages
        if not isinstance(stages, (list, tuple)) or not all(isinstance(s, dict) for s in stages):
            raise CardError("stages must be a list of JSON objects")
        object.__setattr__(self, "stages", tuple(stages))
        if self.stages:
            from AutoCTVLib.models.cascade_card import check_cascade_card

            check_cascade_card(self)
        elif self.architecture.get("architecture") == "cascade":
            raise CardError("the architecture is a cascade but the card describes no stages")

    @property
    def is_cascade(self) -> bool:
        """True for a coarse-to-fine cascade (the card has ``stages``)."""
        return bool(self.stages)

    @property
    def label_names(self) -> tuple[str, ...]:
        """Label names in output-channel order."""
        return tuple(label.name for label in sorted(self.labels, key=lambda lab: lab.channel))

    def replace(self, **changes: Any) -> ModelCard:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, ``format_version`` first."""
        data: dict[str, Any] = {"format_version": self.format_version}
        for item in dataclasses.fields(self):
            if item.name == "format_version":
                continue
            value = getattr(self, item.name)
            if item.name == "labels":
                value = [label.to_dict() for label in self.labels]
            elif item.name == "input_channels":
                value = list(value)
            elif item.name == "stages":
                if not value:
                    continue  # single-stage cards keep their format-1 layout
                value = [dict(stage) for stage in value]
            data[item.name] = value
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ModelCard:
        """Parse a card dict; ``CardError`` names any missing, unknown or malformed field.

        The format version is *not* checked here (see :func:`check_format_version`).
        """
        names = {item.name for item in dataclasses.fields(cls)}
        required = {"name", "version", "architecture", "preprocessing", "labels"}
        _require_keys("model card", data, required, optional=names - required)
        if not isinstance(data["labels"], list):
            raise CardError("labels must be a list")
        values = dict(data)
        values["labels"] = tuple(LabelInfo.from_dict(label) for label in data["labels"])
        if "input_channels" in values:
            if not isinstance(values["input_channels"], list):
                raise CardError("input_channels must be a list of names")
            values["input_channels"] = tuple(values["input_channels"])
        if "stages" in values:
            if not isinstance(values["stages"], list):
                raise CardError("stages must be a list of JSON objects")
            values["stages"] = tuple(values["stages"])
        return cls(**values)


def check_format_version(data: Mapping[str, Any]) -> int:
    """Return the card's format version; ``CardError`` if absent or not supported."""
    version = data.get("format_version") if isinstance(data, Mapping) else None
    if version is None:
        raise CardError("the model card has no format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS or isinstance(version, bool):
        supported = ", ".join(str(v) for v in SUPPORTED_FORMAT_VERSIONS)
        raise CardError(
            f"model card format version {version!r} is not supported by this AutoCTV "
            f"(supported: {supported}); update AutoCTV or use a matching model file"
        )
    return int(version)


def _require_keys(what: str, data: Any, required: set[str], optional: set[str]) -> None:
    if not isinstance(data, Mapping):
        raise CardError(f"{what} must be a JSON object, got {type(data).__name__}")
    missing = sorted(required - set(data))
    if missing:
        raise CardError(f"{what} lacks {', '.join(missing)}")
    unknown = sorted(set(data) - required - optional)
    if unknown:
        raise CardError(f"{what} has unknown field(s) {', '.join(unknown)}")


def _check_preprocessing(preprocessing: Any) -> None:
    if not isinstance(preprocessing, dict):
        raise CardError("preprocessing must be a JSON object")
    spacing = preprocessing.get("spacing_xyz_mm")
    if (
        not isinstance(spacing, (list, tuple))
        or len(spacing) != 3
        or not all(_is_number(s) and s > 0 for s in spacing)
    ):
        raise CardError(f"preprocessing.spacing_xyz_mm must be three positive numbers: {spacing!r}")
    window = preprocessing.get("hu_window")
    if (
        not isinstance(window, (list, tuple))
        or len(window) != 2
        or not all(_is_number(v) for v in window)
        or not window[0] < window[1]
    ):
        raise CardError(f"preprocessing.hu_window must be [lo, hi] with lo < hi: {window!r}")


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def model_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(weights, card)`` paths for a ``.safetensors`` path, a ``.json`` path, or a stem."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (WEIGHTS_SUFFIX, CARD_SUFFIX) else path
    return stem.with_name(stem.name + WEIGHTS_SUFFIX), stem.with_name(stem.name + CARD_SUFFIX)


def read_card(path: str | os.PathLike[str]) -> ModelCard:
    """Read and validate the card of a model (``.json``, ``.safetensors`` or stem path).

    Needs no torch (a GUI can describe a model before PyTorch is installed). The weights are
    not opened; :func:`AutoCTVLib.models.model_file.load_model` checks them.

    Raises:
        ModelFileError: the card is missing, not JSON, or not a valid card.
    """
    _, card_path = model_paths(path)
    if not card_path.is_file():
        raise ModelFileError(f"model card {card_path} not found")
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"model card {card_path} is not readable JSON: {error}") from error
    try:
        check_format_version(data)
        return ModelCard.from_dict(data)
    except (CardError, TypeError) as error:
        raise ModelFileError(f"model card {card_path}: {error}") from error
