"""The completion network: its architecture, its model card, and loading a model file.

A completion model is an ordinary AutoCTV model file (``<name>.safetensors`` + ``<name>.json``)
whose card names four input channels, :data:`~AutoCTVLib.completion.grid.INPUT_CHANNELS`
(CT, sparse label, annotated-slice mask, interpolation between the drawn slices), and whose
``preprocessing`` is a :class:`~AutoCTVLib.completion.grid.CompletionGridConfig`
(``"task": "completion"``). Its one output channel is the completed structure, whatever
structure was drawn.

The bundled model lives at ``Resources/Models/completion_phantom.{safetensors,json}``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from AutoCTVLib.completion.grid import INPUT_CHANNELS, CompletionGridConfig
from AutoCTVLib.errors import ModelFileError
from AutoCTVLib.models import SYNTHETIC_DISCLAIMER, CodeTriplet, LabelInfo, ModelCard, load_model
from AutoCTVLib.models.model_file import model_paths
from AutoCTVLib.nn import NetworkConfig, build_network

logger = logging.getLogger(__name__)

BUNDLED_MODEL_NAME = "completion_phantom"
#: The completed structure's coded meaning (any anatomical structure).
STRUCTURE_CODE = CodeTriplet("91723000", "SCT", "Anatomical Structure")


def completion_network_config(**changes: Any) -> NetworkConfig:
    """The completion U-Net: 4 input channels, 5 levels (8/16/32/64/128: narrow at full
    resolution, where a 1.5 mm model grid makes wide layers slow on a CPU), residual blocks,
    instance normalisation (no batch statistics, so fine-tuning on one volume behaves the
    same in training and evaluation mode), one output logit that corrects the interpolation
    channel (``"prior_unet3d"``, :mod:`AutoCTVLib.nn.prior_residual`)."""
    base = NetworkConfig(
        architecture="prior_unet3d",
        in_channels=len(INPUT_CHANNELS),
        out_channels=1,
        channels=(8, 16, 32, 64, 128),
        residual=True,
        norm="instance",
    )
    return base.replace(**changes) if changes else base


def structure_label() -> LabelInfo:
    """The single output label of a completion model."""
    return LabelInfo(
        name="completed structure",
        color_rgb=(80, 200, 220),
        category=STRUCTURE_CODE,
        type=STRUCTURE_CODE,
        channel=0,
    )


def completion_card(
    network: nn.Module,
    grid: CompletionGridConfig,
    *,
    name: str = BUNDLED_MODEL_NAME,
    version: str = "1.0.0",
    training_data: str | dict[str, Any] = "",
    metrics: dict[str, Any] | None = None,
) -> ModelCard:
    """A model card for a completion network (integrity fields are filled in on saving)."""
    config = network.config
    return ModelCard(
        name=name,
        version=version,
        architecture=config.to_dict(),
        preprocessing=grid.to_dict(),
        labels=(structure_label(),),
        input_channels=INPUT_CHANNELS,
        training_data=training_data,
        metrics=dict(metrics or {}),
        inference={"threshold": 0.5, "task": "sparse-slice completion"},
        intended_use=(
            "Completes a structure drawn on a few CT slices (any orientation) into a 3D "
            "contour for review and editing; research use."
        ),
        disclaimer=SYNTHETIC_DISCLAIMER,
    )


@dataclass(frozen=True)
class CompletionModel:
    """A loaded completion network with its card and preprocessing."""

    network: nn.Module
    card: ModelCard | None
    grid: CompletionGridConfig

    def provenance(self) -> dict[str, str]:
        """Name, version and weights SHA-256 (empty strings for an unsaved network)."""
        if self.card is None:
            return {"model_name": "(untrained network)", "model_version": "", "model_sha256": ""}
        return {
            "model_name": self.card.name,
            "model_version": self.card.version,
            "model_sha256": self.card.weights_sha256,
        }


def load_completion_model(
    path: str | os.PathLike[str], *, allow_ctv: bool = False
) -> CompletionModel:
    """Load a completion model file; :class:`ModelFileError` when it is not one.

    With ``allow_ctv``, a CTV model (one CT input channel) is accepted too and widened into a
    completion network (:func:`widen_ctv_network`): a starting point for fine-tuning.
    """
    network, card = load_model(path)
    if allow_ctv and tuple(card.input_channels) == ("ct",):
        widened = widen_ctv_network(network)
        grid = CompletionGridConfig(
            spacing_xyz_mm=tuple(card.preprocessing["spacing_xyz_mm"]),
            hu_window=tuple(card.preprocessing["hu_window"]),
        )
        return CompletionModel(network=widened, card=card, grid=grid)
    if tuple(card.input_channels) != INPUT_CHANNELS:
        raise ModelFileError(
            f"{Path(path).name} is not a completion model: it takes "
            f"{', '.join(card.input_channels)} as input, a completion model takes "
            f"{', '.join(INPUT_CHANNELS)}"
        )
    try:
        grid = CompletionGridConfig.from_dict(card.preprocessing)
    except (TypeError, ValueError) as error:
        raise ModelFileError(
            f"model card of {Path(path).name}: bad completion preprocessing: {error}"
        ) from error
    return CompletionModel(network=network, card=card, grid=grid)


def bundled_model_candidates() -> list[Path]:
    """Where the bundled completion model's weights are looked for, in order: the
    ``Resources/Models`` folder beside the library (repository root, or the installed Slicer
    module's folder), then the Slicer module's source folder ``AutoCTV/Resources/Models``."""
    root = Path(__file__).resolve().parents[2]
    folders = (root / "Resources" / "Models", root / "AutoCTV" / "Resources" / "Models")
    return [model_paths(folder / BUNDLED_MODEL_NAME)[0] for folder in folders]


def bundled_model_path() -> Path:
    """The bundled completion model's weights: the first candidate holding weights and card
    (the first candidate when none does)."""
    candidates = bundled_model_candidates()
    for weights in candidates:
        if all(path.is_file() for path in model_paths(weights)):
            return weights
    return candidates[0]


def bundled_model_available() -> bool:
    """True when both files of the bundled completion model are present."""
    return all(path.is_file() for path in model_paths(bundled_model_path()))


def resolve_model(
    model: str | os.PathLike[str] | CompletionModel | None, *, allow_ctv: bool = False
) -> CompletionModel:
    """A :class:`CompletionModel` from a path, a loaded model, or ``None`` (the bundled one).

    ``allow_ctv`` also accepts a CTV model file (see :func:`load_completion_model`).

    Raises:
        ModelFileError: ``None`` was given and the bundled model is not installed, or the file
            is not a usable completion model.
    """
    if isinstance(model, CompletionModel):
        return model
    if model is None:
        if not bundled_model_available():
            raise ModelFileError(
                f"no completion model given and the bundled one ({bundled_model_path().name}) "
                "is not installed; give a model file, or use the 'interpolate' method"
            )
        model = bundled_model_path()
    return load_completion_model(model, allow_ctv=allow_ctv)


def untrained_model(
    seed: int = 0, grid: CompletionGridConfig | None = None, **changes: Any
) -> CompletionModel:
    """A freshly initialised completion network (for fine-tuning from scratch and tests).

    ``changes`` adjust :func:`completion_network_config` (e.g. ``channels=(4, 8)``).
    """
    config = completion_network_config(**changes)
    network = build_network(config, seed=seed)
    network.eval()
    return CompletionModel(network=network, card=None, grid=grid or CompletionGridConfig())


def widen_ctv_network(ctv_network: nn.Module) -> nn.Module:
    """A completion network initialised from a CTV network (one CT input channel).

    Every tensor is copied; the layers that read the input (first conv, residual projection)
    get zero weights for the new channels (sparse label, annotated mask, interpolation), so the
    widened network initially predicts exactly what the CTV network predicts. With recurrent
    refinement the fed-back probability channel keeps its weights after the new channels.
    """
    old_config = ctv_network.config
    if old_config.in_channels != 1:
        raise ModelFileError(
            f"a CTV model with {old_config.in_channels} input channels cannot be widened"
        )
    added = len(INPUT_CHANNELS) - old_config.in_channels
    config = old_config.replace(in_channels=len(INPUT_CHANNELS))
    network = build_network(config, seed=0)
    old_state = ctv_network.state_dict()
    new_state = network.state_dict()
    if set(old_state) != set(new_state):
        raise ModelFileError(
            f"this CTV network cannot be widened to {len(INPUT_CHANNELS)} inputs without "
            "changing its layers"
        )
    for key, tensor in new_state.items():
        old = old_state[key]
        if old.shape == tensor.shape:
            new_state[key] = old.clone()
            continue
        if old.ndim < 2 or tensor.shape[1] != old.shape[1] + added:
            raise ModelFileError(f"cannot widen tensor {key} {list(old.shape)}")
        widened = tensor.new_zeros(tensor.shape)
        widened[:, : old_config.in_channels] = old[:, : old_config.in_channels]
        widened[:, old_config.in_channels + added :] = old[:, old_config.in_channels :]
        new_state[key] = widened
    network.load_state_dict(new_state)
    network.eval()
    return network
