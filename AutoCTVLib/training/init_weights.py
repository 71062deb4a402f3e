"""Start a training run from an existing model file set (fine-tuning) instead of random weights.

``"init_weights"`` in a training configuration names the model: a path to a model file set
(``.safetensors`` + card), or ``"bundled"`` for the bundled model of the configured stage (the
CTV cascade for ``"stage": "segmenter"``, the 6 mm CTV model for ``"single"``). The weights are
taken only when they were trained for the same job: the same network architecture (every
field of the network configuration) and the same preprocessing grid and HU window. For a
segmenter, the file must be a cascade and its segmenter stage is taken; a single-stage run
takes a single-stage model. Everything is checked before any training data is read, so a
mismatch is refused with a message naming it.

The model card of the result records where the run started (:func:`init_record`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from AutoCTVLib.errors import InputError, ModelFileError
from AutoCTVLib.models.card import ModelCard
from AutoCTVLib.nn import NetworkConfig
from AutoCTVLib.preprocess import PreprocessConfig
from AutoCTVLib.training.config import TrainConfig

BUNDLED = "bundled"
#: preprocessing settings that change what the network sees (the rest only crop or reorient)
_GRID_KEYS = ("spacing_xyz_mm", "hu_window")


def init_model_path(config: TrainConfig) -> Path:
    """The model file set ``config.init_weights`` names (``"bundled"`` resolved per stage)."""
    from AutoCTVLib.models.bundled import (
        BUNDLED_MODEL_STEM,
        LOCATOR_MODEL_STEM,
        find_bundled_model,
        resolve_model_path,
    )

    assert config.init_weights is not None
    if config.init_weights == BUNDLED:
        stem = BUNDLED_MODEL_STEM if config.stage == "segmenter" else LOCATOR_MODEL_STEM
        return find_bundled_model(stem)
    return resolve_model_path(config.init_weights)


def load_initial_weights(config: TrainConfig) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict to start from and its provenance record.

    Raises:
        InputError: the model does not fit the configuration (stage kind, architecture,
            preprocessing), naming the difference.
        ModelFileError: the model file set itself is missing or broken.
    """
    from AutoCTVLib.models import load_model

    path = init_model_path(config)
    network, card = load_model(path)
    where = f"init_weights {path.name}"
    if config.stage == "segmenter":
        if not card.is_cascade:
            raise InputError(
                f"{where}: a segmenter starts from a cascade model (its segmenter stage); "
                f"{card.name} is a single-stage model"
            )
        segmenter_stage = network.stages[1]
        source, stage_name = network.segmenter, "segmenter"
        found_network = segmenter_stage.network
        found_grid = segmenter_stage.preprocessing
    else:
        if card.is_cascade:
            raise InputError(
                f"{where}: a single-stage run starts from a single-stage model; "
                f"{card.name} is a cascade"
            )
        source, stage_name = network, "single"
        try:
            found_network = NetworkConfig.from_dict(dict(card.architecture))
            found_grid = PreprocessConfig.from_dict(dict(card.preprocessing))
        except (TypeError, ValueError) as error:
            raise ModelFileError(f"{where}: its card is unreadable: {error}") from error
    _check_same_network(where, config.network_config(), found_network)
    _check_same_grid(where, config.preprocess_config(), found_grid)
    state = {name: tensor.detach().clone() for name, tensor in source.state_dict().items()}
    return state, init_record(card, path, stage_name)


def init_record(card: ModelCard, path: Path, stage: str) -> dict[str, Any]:
    """What the model card says about the weights a run started from."""
    return {
        "model": path.name,
        "name": card.name,
        "version": card.version,
        "weights_sha256": card.weights_sha256,
        "stage": stage,
    }


def _check_same_network(where: str, wanted: NetworkConfig, found: NetworkConfig) -> None:
    if found == wanted:
        return
    mine, theirs = wanted.to_dict(), found.to_dict()
    differences = [
        f"{key} {theirs.get(key)!r} (configured: {mine.get(key)!r})"
        for key in sorted(set(mine) | set(theirs))
        if mine.get(key) != theirs.get(key)
    ]
    raise InputError(
        f"{where} has another network than this configuration: " + "; ".join(differences)
    )


def _check_same_grid(where: str, wanted: PreprocessConfig, found: PreprocessConfig) -> None:
    mine, theirs = wanted.to_dict(), found.to_dict()
    differences = [
        f"{key} {theirs[key]} (configured: {mine[key]})"
        for key in _GRID_KEYS
        if list(mine[key]) != list(theirs[key])
    ]
    if differences:
        raise InputError(
            f"{where} was trained on another grid than this configuration: "
            + "; ".join(differences)
        )
