"""Save and load models as ``<name>.safetensors`` (weights) + ``<name>.json`` (model card).

Loading never unpickles anything: the weights are read with ``safetensors`` and the network is
rebuilt from the card's architecture config. Every problem a user can cause (missing file,
unknown format version, weights changed after saving, card and weights that do not fit
together) raises :class:`~AutoCTVLib.errors.ModelFileError` naming what is wrong.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from AutoCTVLib import __version__
from AutoCTVLib.errors import ModelFileError
from AutoCTVLib.io.atomic import OutputTransaction
from AutoCTVLib.models.card import (
    CardError,
    ModelCard,
    model_paths,
    read_card,
)
from AutoCTVLib.nn.config import NetworkConfig
from AutoCTVLib.nn.registry import build_network
from AutoCTVLib.nn.summary import count_parameters

logger = logging.getLogger(__name__)

_LISTED = 8  # names listed per kind of mismatch in an error message


def sha256_of_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _state_dict_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: tensor.detach().to("cpu").contiguous().clone()
        for name, tensor in model.state_dict().items()
    }


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def save_model(
    model: nn.Module, card: ModelCard, path_stem: str | os.PathLike[str], *, overwrite: bool = True
) -> ModelCard:
    """Write ``<path_stem>.safetensors`` and ``<path_stem>.json`` together, atomically.

    Args:
        model: a network from :func:`~AutoCTVLib.nn.registry.build_network` (it carries
            ``.config``); its architecture must equal ``card.architecture``.
        card: the card; integrity fields (weights file name and SHA-256, parameter count, tensor
            summary, software versions, and ``created_utc`` when empty) are filled in here.
        path_stem: output path without suffix (a ``.json``/``.safetensors`` suffix is dropped).
        overwrite: replace existing files of that name.

    Returns:
        The card as written.

    Raises:
        ValueError: the card does not describe this model (architecture, label count, input
            channels).
        OutputError: the files exist and ``overwrite`` is false, or the folder is missing.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, NetworkConfig):
        raise ValueError("the model has no NetworkConfig (.config); build it with build_network")
    if NetworkConfig.from_dict(card.architecture).to_dict() != config.to_dict():
        raise ValueError("card.architecture differs from the model's configuration")
    if len(card.labels) != config.out_channels:
        raise ValueError(
            f"the card lists {len(card.labels)} labels for {config.out_channels} output channels"
        )
    if len(card.input_channels) != config.in_channels:
        raise ValueError(
            f"the card names {len(card.input_channels)} input channels; the network takes "
            f"{config.in_channels}"
        )
    final_card = card.replace(architecture=config.to_dict())
    state = _state_dict_for_saving(model)
    return write_model_files(state, final_card, path_stem, count_parameters(model), overwrite)


def write_model_files(
    state: dict[str, torch.Tensor],
    card: ModelCard,
    path_stem: str | os.PathLike[str],
    parameter_count: int,
    overwrite: bool = True,
) -> ModelCard:
    """Write ``state`` and ``card`` (integrity fields filled in) as one file set, atomically."""
    weights_path, card_path = model_paths(path_stem)
    tensors = {
        name: {"dtype": _dtype_name(tensor.dtype), "shape": list(tensor.shape)}
        for name, tensor in state.items()
    }
    created = card.created_utc or datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    with OutputTransaction(overwrite=overwrite) as transaction:
        weights_tmp = transaction.path_for(weights_path)
        card_tmp = transaction.path_for(card_path)
        save_file(
            state,
            str(weights_tmp),
            metadata={"format": "pt", "autoctv_model": card.name, "autoctv_card": card_path.name},
        )
        _make_shareable(weights_tmp)
        final_card = card.replace(
            created_utc=created,
            software={"autoctv": __version__, "torch": torch.__version__},
            weights_file=weights_path.name,
            weights_sha256=sha256_of_file(weights_tmp),
            parameter_count=parameter_count,
            tensors=tensors,
        )
        card_tmp.write_text(
            json.dumps(final_card.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    logger.info("saved model %s %s to %s", card.name, card.version, weights_path)
    return final_card


def _make_shareable(path: Path) -> None:
    """Give a file the usual permissions (0666 less the umask); safetensors creates it 0600."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def verify_weights(path: str | os.PathLike[str], card: ModelCard) -> Path:
    """Check that the weights file exists and has the SHA-256 its card records; return its path."""
    weights_path, card_path = model_paths(path)
    if not weights_path.is_file():
        raise ModelFileError(f"model weights {weights_path} not found (beside {card_path.name})")
    if not card.weights_sha256:
        raise ModelFileError(f"model card {card_path} records no weights_sha256")
    actual = sha256_of_file(weights_path)
    if actual != card.weights_sha256:
        raise ModelFileError(
            f"model weights {weights_path} do not match their card (SHA-256 {actual[:12]}… "
            f"instead of {card.weights_sha256[:12]}…): the file was changed or belongs to "
            "another model"
        )
    return weights_path


def load_model(path: str | os.PathLike[str]) -> tuple[nn.Module, ModelCard]:
    """Load a model for inference: ``(network in eval mode on the CPU, card)``.

    ``path`` may be the ``.json`` card, the ``.safetensors`` weights, or their common stem.
    Checks, in order: both files exist, the card's format version is supported and its fields
    are valid (for a cascade: its stages fit together), the weights' SHA-256 matches the card,
    the architecture builds, and the stored tensors match the network exactly (names and
    shapes). A cascade card gives a :class:`~AutoCTVLib.models.cascade_file.CascadeModel`.
    """
    card = read_card(path)
    weights_path = verify_weights(path, card)
    if card.is_cascade:
        from AutoCTVLib.models.cascade_file import load_cascade_weights

        return load_cascade_weights(card, weights_path), card
    try:
        config = NetworkConfig.from_dict(card.architecture)
        model = build_network(config)
    except (ValueError, TypeError) as error:
        raise ModelFileError(
            f"model card of {weights_path.name}: bad architecture: {error}"
        ) from error
    if len(card.labels) != config.out_channels:
        raise ModelFileError(
            f"model card of {weights_path.name} lists {len(card.labels)} labels but the network "
            f"has {config.out_channels} output channels"
        )
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(
            f"model weights {weights_path} are not a safetensors file: {error}"
        ) from error
    load_state_dict_checked(model, state, source=weights_path.name)
    model.eval()
    return model, card


def check_model_file(path: str | os.PathLike[str]) -> ModelCard:
    """Every check of :func:`load_model` without reading the tensors' data: the card (and a
    cascade's stages), the weights' SHA-256, the architecture, and the stored tensor names and
    shapes. Cheap enough to run before a CT is read, so a bad model is refused first."""
    from safetensors import safe_open

    card = read_card(path)
    weights_path = verify_weights(path, card)
    try:
        if card.is_cascade:
            from AutoCTVLib.models.cascade_file import build_cascade

            model: nn.Module = build_cascade(card)
        else:
            model = build_network(NetworkConfig.from_dict(card.architecture))
    except (CardError, ValueError, TypeError) as error:
        raise ModelFileError(
            f"model card of {weights_path.name}: bad architecture: {error}"
        ) from error
    if not card.is_cascade and len(card.labels) != model.config.out_channels:
        raise ModelFileError(
            f"model card of {weights_path.name} lists {len(card.labels)} labels but the network "
            f"has {model.config.out_channels} output channels"
        )
    try:
        with safe_open(str(weights_path), framework="pt") as stored:
            shapes = {name: tuple(stored.get_slice(name).get_shape()) for name in stored.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(
            f"model weights {weights_path} are not a safetensors file: {error}"
        ) from error
    state = {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
    source = weights_path.name + (" (cascade)" if card.is_cascade else "")
    _check_tensor_names_and_shapes(model, state, source)
    return card


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def load_state_dict_checked(
    model: nn.Module, state: dict[str, torch.Tensor], *, source: str = "the weights"
) -> None:
    """``model.load_state_dict(state, strict=True)`` with a :class:`ModelFileError` that lists
    missing tensors, unexpected tensors and shape mismatches instead of torch's message."""
    expected = _check_tensor_names_and_shapes(model, state, source)
    converted: dict[str, Any] = {
        name: tensor.to(expected[name].dtype) for name, tensor in state.items()
    }
    model.load_state_dict(converted, strict=True)


def _check_tensor_names_and_shapes(
    model: nn.Module, state: dict[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor]:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{name} {list(state[name].shape)} vs {list(expected[name].shape)}"
        for name in set(expected) & set(state)
        if state[name].shape != expected[name].shape
    )
    problems: list[str] = []
    if missing:
        problems.append(f"missing tensors: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {_listed(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches (file vs network): {_listed(mismatched)}")
    if problems:
        raise ModelFileError(
            f"{source} do not fit the architecture in the model card; " + "; ".join(problems)
        )
    return expected
