"""The ``stages`` of a cascade model card, and the checks that its stages fit together.

A coarse-to-fine cascade is one model: a *locator* finds the CTV on a coarse grid over the whole
body, a *segmenter* contours it on a fine grid inside a box around the locator's CTV. Both live
in one safetensors file (tensor names prefixed ``locator.`` and ``segmenter.``) described by one
card (format :data:`~AutoCTVLib.models.card.CASCADE_FORMAT_VERSION`)::

    "architecture": {"architecture": "cascade", "stages": ["locator", "segmenter"]},
    "preprocessing": {...the segmenter's...},
    "input_channels": ["ct"],
    "stages": [
      {"name": "locator", "tensor_prefix": "locator.", "input_channels": ["ct"],
       "architecture": {...NetworkConfig...}, "preprocessing": {...6 mm grid...}},
      {"name": "segmenter", "tensor_prefix": "segmenter.",
       "input_channels": ["ct", "locator_probability"],
       "architecture": {...}, "preprocessing": {...2×2×3 mm grid...},
       "crop": {"margin_mm": 20.0, "threshold": 0.5}}
    ]

``crop.margin_mm`` is added on every side of the locator's CTV box (mm) so that the segmenter
still sees the whole CTV where the locator was wrong; ``crop.threshold`` turns the locator's
probability into the CTV whose box is taken. The segmenter's optional second input is the
locator's probability resampled onto the fine grid.

Every check here reads the card alone (no weights, no CT), so a file set whose stages do not fit
is refused before any CT is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from AutoCTVLib.models.card import ModelCard
    from AutoCTVLib.nn.config import NetworkConfig
    from AutoCTVLib.preprocess.pipeline import PreprocessConfig

STAGE_NAMES = ("locator", "segmenter")
CT_INPUT = "ct"
LOCATOR_PROBABILITY_INPUT = "locator_probability"
CASCADE_ARCHITECTURE = {"architecture": "cascade", "stages": list(STAGE_NAMES)}
_STAGE_KEYS = {"name", "architecture", "preprocessing", "input_channels"}
_OPTIONAL_STAGE_KEYS = {"tensor_prefix", "crop", "parameter_count"}
_CROP_KEYS = {"margin_mm", "threshold"}


def _card_error(message: str) -> Exception:
    from AutoCTVLib.models.card import CardError

    return CardError(message)


@dataclass(frozen=True)
class CropSettings:
    """How the segmenter's box is found from the locator's probability.

    Attributes:
        margin_mm: added on every side of the box of the locator's CTV (mm).
        threshold: locator probability at or above which a voxel is CTV.
    """

    margin_mm: float = 20.0
    threshold: float = 0.5

    def __post_init__(self) -> None:
        margin, threshold = self.margin_mm, self.threshold
        if not _is_number(margin) or margin < 0:
            raise _card_error(f"crop.margin_mm must be a non-negative number of mm, got {margin!r}")
        if not _is_number(threshold) or not 0.0 < threshold < 1.0:
            raise _card_error(f"crop.threshold must be a number in (0, 1), got {threshold!r}")
        object.__setattr__(self, "margin_mm", float(margin))
        object.__setattr__(self, "threshold", float(threshold))

    def to_dict(self) -> dict[str, float]:
        return {"margin_mm": self.margin_mm, "threshold": self.threshold}


@dataclass(frozen=True)
class CascadeStage:
    """One stage of a cascade, parsed and checked.

    Attributes:
        name: ``"locator"`` or ``"segmenter"``.
        network: the stage's network configuration.
        preprocessing: the stage's grid and intensity settings.
        input_channels: the network's inputs in channel order.
        crop: the segmenter's box settings (``None`` for the locator).
    """

    name: str
    network: NetworkConfig
    preprocessing: PreprocessConfig
    input_channels: tuple[str, ...]
    crop: CropSettings | None

    @property
    def tensor_prefix(self) -> str:
        """Prefix of this stage's tensor names in the weights file."""
        return f"{self.name}."

    @property
    def uses_locator_probability(self) -> bool:
        """True when the segmenter takes the locator's probability as a second input."""
        return LOCATOR_PROBABILITY_INPUT in self.input_channels


def parse_stage(data: Any, index: int) -> CascadeStage:
    """Parse stage ``index`` of a card's ``stages`` (``CardError`` names what is wrong)."""
    from AutoCTVLib.nn.config import NetworkConfig
    from AutoCTVLib.preprocess.pipeline import PreprocessConfig

    expected = STAGE_NAMES[index] if index < len(STAGE_NAMES) else "?"
    where = f"stage {index + 1} ({expected})"
    if not isinstance(data, dict):
        raise _card_error(f"{where} must be a JSON object")
    missing = sorted(_STAGE_KEYS - set(data))
    if missing:
        raise _card_error(f"{where} lacks {', '.join(missing)}")
    unknown = sorted(set(data) - _STAGE_KEYS - _OPTIONAL_STAGE_KEYS)
    if unknown:
        raise _card_error(f"{where} has unknown field(s) {', '.join(unknown)}")
    if data["name"] != expected:
        raise _card_error(f"{where} must be named {expected!r}, got {data['name']!r}")
    if data.get("tensor_prefix", f"{expected}.") != f"{expected}.":
        raise _card_error(f"{where}: tensor_prefix must be {expected + '.'!r}")
    try:
        network = NetworkConfig.from_dict(data["architecture"])
    except (TypeError, ValueError) as error:
        raise _card_error(f"{where}: bad architecture: {error}") from error
    try:
        preprocessing = PreprocessConfig.from_dict(dict(data["preprocessing"]))
    except (TypeError, ValueError) as error:
        raise _card_error(f"{where}: bad preprocessing (grid) settings: {error}") from error
    inputs = data["input_channels"]
    if not isinstance(inputs, list) or not all(isinstance(name, str) for name in inputs):
        raise _card_error(f"{where}: input_channels must be a list of names")
    allowed = [CT_INPUT] if expected == "locator" else [CT_INPUT, LOCATOR_PROBABILITY_INPUT]
    if inputs not in (allowed[:1], allowed):
        raise _card_error(
            f"{where}: input_channels must be {allowed[:1]}"
            + (f" or {allowed}" if len(allowed) > 1 else "")
            + f", got {inputs}"
        )
    if len(inputs) != network.in_channels:
        raise _card_error(
            f"{where}: the card names {len(inputs)} input channel(s) ({', '.join(inputs)}) but "
            f"its architecture takes {network.in_channels}"
        )
    crop = None
    if expected == "segmenter":
        crop_data = data.get("crop")
        if not isinstance(crop_data, dict):
            raise _card_error(
                f"{where} has no crop settings (crop.margin_mm, crop.threshold): the segmenter "
                "cannot know where to look"
            )
        unknown = sorted(set(crop_data) - _CROP_KEYS)
        if unknown or "margin_mm" not in crop_data:
            raise _card_error(
                f"{where}: crop needs margin_mm (and optionally threshold), got {sorted(crop_data)}"
            )
        crop = CropSettings(**crop_data)
    elif "crop" in data:
        raise _card_error(f"{where}: only the segmenter has crop settings")
    return CascadeStage(expected, network, preprocessing, tuple(inputs), crop)


def cascade_stages(card: ModelCard) -> tuple[CascadeStage, CascadeStage]:
    """The card's ``(locator, segmenter)``; ``CardError`` when they are missing or do not fit."""
    from AutoCTVLib.preprocess.pipeline import PreprocessConfig

    if len(card.stages) != len(STAGE_NAMES):
        raise _card_error(
            f"a cascade has {len(STAGE_NAMES)} stages ({', '.join(STAGE_NAMES)}), "
            f"the card lists {len(card.stages)}"
        )
    locator, segmenter = (parse_stage(data, index) for index, data in enumerate(card.stages))
    if locator.network.out_channels != 1:
        raise _card_error(
            f"stage 1 (locator) must have one output channel (the CTV), its architecture has "
            f"{locator.network.out_channels}"
        )
    if segmenter.network.out_channels != len(card.labels):
        raise _card_error(
            f"stage 2 (segmenter) has {segmenter.network.out_channels} output channel(s) but the "
            f"card lists {len(card.labels)} label(s)"
        )
    try:
        top_level = PreprocessConfig.from_dict(dict(card.preprocessing)).to_dict()
    except (TypeError, ValueError) as error:
        raise _card_error(f"bad preprocessing settings: {error}") from error
    if top_level != segmenter.preprocessing.to_dict():
        raise _card_error(
            "the card's preprocessing must be the segmenter's (stage 2) grid settings; they differ"
        )
    return locator, segmenter


def check_cascade_card(card: ModelCard) -> None:
    """Card-level checks of a cascade (called when a card with ``stages`` is created)."""
    from AutoCTVLib.models.card import CASCADE_FORMAT_VERSION

    if card.format_version < CASCADE_FORMAT_VERSION:
        raise _card_error(
            f"a cascade card needs format_version {CASCADE_FORMAT_VERSION}, got "
            f"{card.format_version}"
        )
    if dict(card.architecture) != CASCADE_ARCHITECTURE:
        raise _card_error(f"a cascade card's architecture must be {CASCADE_ARCHITECTURE}")
    if tuple(card.input_channels) != (CT_INPUT,):
        raise _card_error("a cascade takes the CT alone: input_channels must be ['ct']")
    cascade_stages(card)


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
