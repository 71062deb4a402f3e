"""A coarse-to-fine cascade as one model file set: the two networks, saving and loading.

:class:`CascadeModel` holds the locator and the segmenter as sub-modules, so its state dict
names every tensor ``locator.…`` or ``segmenter.…`` — the prefixes the card's stages record.
:func:`save_cascade` writes one ``.safetensors`` + one ``.json`` card (format 2, see
:mod:`AutoCTVLib.models.cascade_card`); :func:`AutoCTVLib.models.load_model` reads it back
(through :func:`load_cascade_weights`), so every front end loads a cascade as it loads a
single network.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from AutoCTVLib.errors import ModelFileError
from AutoCTVLib.models.card import CASCADE_FORMAT_VERSION, CardError, ModelCard
from AutoCTVLib.models.cascade_card import (
    CASCADE_ARCHITECTURE,
    CT_INPUT,
    LOCATOR_PROBABILITY_INPUT,
    CascadeStage,
    CropSettings,
    cascade_stages,
)
from AutoCTVLib.nn.config import NetworkConfig
from AutoCTVLib.nn.registry import build_network
from AutoCTVLib.nn.summary import count_parameters
from AutoCTVLib.preprocess.pipeline import PreprocessConfig


class CascadeModel(nn.Module):
    """The locator (coarse grid, whole body) and the segmenter (fine grid, a box around the CTV).

    Attributes:
        locator: network on the CT alone, (N, 1, z, y, x) → (N, 1, z, y, x) logits.
        segmenter: network on the CT (and optionally the locator's probability) inside the box.
        stages: the parsed card stages ``(locator, segmenter)``.
    """

    def __init__(
        self, locator: nn.Module, segmenter: nn.Module, stages: tuple[CascadeStage, CascadeStage]
    ) -> None:
        super().__init__()
        self.locator = locator
        self.segmenter = segmenter
        self.stages = stages

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # pragma: no cover - guard only
        raise TypeError(
            "a cascade runs its stages on different grids; use AutoCTVLib.predict.Predictor"
        )


def stage_dict(
    name: str,
    network: NetworkConfig,
    preprocessing: PreprocessConfig,
    input_channels: tuple[str, ...] | list[str],
    crop: CropSettings | None = None,
    parameter_count: int | None = None,
) -> dict[str, Any]:
    """A card ``stages`` entry (JSON-ready)."""
    data: dict[str, Any] = {
        "name": name,
        "tensor_prefix": f"{name}.",
        "architecture": network.to_dict(),
        "preprocessing": preprocessing.to_dict(),
        "input_channels": list(input_channels),
    }
    if crop is not None:
        data["crop"] = crop.to_dict()
    if parameter_count is not None:
        data["parameter_count"] = int(parameter_count)
    return data


def cascade_card(
    base: ModelCard,
    locator: nn.Module,
    locator_preprocessing: PreprocessConfig,
    segmenter: nn.Module,
    segmenter_preprocessing: PreprocessConfig,
    crop: CropSettings,
) -> ModelCard:
    """``base`` (name, labels, training data, metrics, ...) turned into a cascade card.

    Both networks must come from :func:`~AutoCTVLib.nn.registry.build_network` (they carry
    ``.config``); the segmenter takes the locator's probability when it has two input channels.
    """
    configs = []
    for name, network in (("locator", locator), ("segmenter", segmenter)):
        config = getattr(network, "config", None)
        if not isinstance(config, NetworkConfig):
            raise ValueError(f"the {name} has no NetworkConfig (.config); use build_network")
        configs.append(config)
    segmenter_inputs = (CT_INPUT, LOCATOR_PROBABILITY_INPUT)[: configs[1].in_channels]
    stages = (
        stage_dict(
            "locator",
            configs[0],
            locator_preprocessing,
            (CT_INPUT,),
            None,
            count_parameters(locator),
        ),
        stage_dict(
            "segmenter",
            configs[1],
            segmenter_preprocessing,
            segmenter_inputs,
            crop,
            count_parameters(segmenter),
        ),
    )
    return base.replace(
        architecture=dict(CASCADE_ARCHITECTURE),
        preprocessing=segmenter_preprocessing.to_dict(),
        input_channels=(CT_INPUT,),
        stages=stages,
        format_version=CASCADE_FORMAT_VERSION,
    )


def save_cascade(
    model: CascadeModel | tuple[nn.Module, nn.Module],
    card: ModelCard,
    path_stem: str | os.PathLike[str],
    *,
    overwrite: bool = True,
) -> ModelCard:
    """Write a cascade (``CascadeModel`` or ``(locator, segmenter)``) and its card (from
    :func:`cascade_card`) as ``<path_stem>.safetensors`` + ``<path_stem>.json``.

    Raises:
        ValueError: the card is not a cascade card or does not describe these networks.
    """
    from AutoCTVLib.models.model_file import write_model_files

    if isinstance(model, CascadeModel):
        locator, segmenter = model.locator, model.segmenter
    else:
        locator, segmenter = model
    if not card.is_cascade:
        raise ValueError("the card describes no cascade stages; build it with cascade_card")
    stages = cascade_stages(card)
    for stage, network in ((stages[0], locator), (stages[1], segmenter)):
        config = getattr(network, "config", None)
        if not isinstance(config, NetworkConfig) or config.to_dict() != stage.network.to_dict():
            raise ValueError(f"the card's {stage.name} architecture differs from the network's")
    state: dict[str, torch.Tensor] = {}
    for prefix, network in (("locator.", locator), ("segmenter.", segmenter)):
        for name, tensor in network.state_dict().items():
            state[prefix + name] = tensor.detach().to("cpu").contiguous().clone()
    count = count_parameters(locator) + count_parameters(segmenter)
    return write_model_files(state, card, path_stem, count, overwrite)


def build_cascade(card: ModelCard) -> CascadeModel:
    """Untrained networks for the card's stages (``CardError`` when they do not fit)."""
    stages = cascade_stages(card)
    locator, segmenter = (build_network(stage.network) for stage in stages)
    return CascadeModel(locator, segmenter, stages)


def load_cascade_weights(card: ModelCard, weights_path: os.PathLike[str] | str) -> CascadeModel:
    """Build the card's stages and load their prefixed tensors (checked by name and shape)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from AutoCTVLib.models.model_file import load_state_dict_checked

    name = os.path.basename(os.fspath(weights_path))
    try:
        model = build_cascade(card)
    except (CardError, ValueError, TypeError) as error:
        raise ModelFileError(f"model card of {name}: {error}") from error
    try:
        state = load_file(os.fspath(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(
            f"model weights {weights_path} are not a safetensors file: {error}"
        ) from error
    stray = sorted(key for key in state if not key.startswith(("locator.", "segmenter.")))
    if stray:
        raise ModelFileError(
            f"{name} holds tensors of no cascade stage (names must start with 'locator.' or "
            f"'segmenter.'): {', '.join(stray[:5])}"
        )
    load_state_dict_checked(model, state, source=f"{name} (cascade)")
    model.eval()
    return model
