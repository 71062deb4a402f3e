"""Training checkpoints without pickles: safetensors for tensors, JSON for everything else.

A checkpoint is a folder::

    weights.safetensors     the network's state dict (parameters and buffers)
    optimizer.safetensors   the optimiser's tensor state, keys "state.<param index>.<name>"
                            (absent in "best" checkpoints, which only serve for export)
    state.json              format tag, trainer state, optimiser skeleton (param groups and
                            non-tensor state), grad-scaler state, sha256 of both tensor files
    <name>.safetensors      state dicts of extra modules trained beside the network (e.g. the
                            quality network of loss weighting, "quality.safetensors"), if any

The three files are published together (:class:`AutoCTVLib.io.atomic.OutputTransaction`) and
``state.json``'s hashes are checked on load, so a torn or edited checkpoint is refused with a
:class:`~AutoCTVLib.errors.ModelFileError` instead of silently resuming from mixed files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from AutoCTVLib.errors import ModelFileError
from AutoCTVLib.io.atomic import OutputTransaction

CHECKPOINT_FORMAT = "autoctv-checkpoint"
CHECKPOINT_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as independent, contiguous CPU tensors (safe for safetensors)."""
    return {
        name: value.detach().cpu().contiguous().clone()
        for name, value in model.state_dict().items()
    }


def flatten_optimizer_state(
    state_dict: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors and a JSON-ready skeleton."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton_state: dict[str, dict[str, Any]] = {}
    for param_index, values in state_dict["state"].items():
        entry: dict[str, Any] = {}
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                key = f"state.{param_index}.{name}"
                tensors[key] = value.detach().cpu().contiguous().clone()
                entry[name] = {"tensor": key}
            else:
                json.dumps(value)  # raises TypeError for anything JSON cannot hold
                entry[name] = {"value": value}
        skeleton_state[str(param_index)] = entry
    skeleton = {"state": skeleton_state, "param_groups": state_dict["param_groups"]}
    json.dumps(skeleton)
    return tensors, skeleton


def unflatten_optimizer_state(
    tensors: dict[str, torch.Tensor], skeleton: dict[str, Any]
) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for param_index, entry in skeleton["state"].items():
        values = {}
        for name, stored in entry.items():
            values[name] = tensors[stored["tensor"]] if "tensor" in stored else stored["value"]
        state[int(param_index)] = values
    return {"state": state, "param_groups": skeleton["param_groups"]}


def save_checkpoint(
    directory: str | Path,
    model: nn.Module,
    trainer_state: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    scaler_state: dict[str, Any] | None = None,
    extra_modules: Mapping[str, nn.Module] | None = None,
) -> None:
    """Write a checkpoint folder (created if needed; existing files are replaced together).

    ``extra_modules`` maps a name to a module whose state dict goes to ``<name>.safetensors``
    (listed in ``state.json`` under ``"extra_modules"`` and checked like the other files).
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    with OutputTransaction(overwrite=True) as transaction:
        weights_tmp = transaction.path_for(folder / WEIGHTS_FILE)
        save_file(model_tensors(model), str(weights_tmp), metadata={"format": CHECKPOINT_FORMAT})
        state: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "trainer": trainer_state,
            "scaler": scaler_state,
            "sha256": {WEIGHTS_FILE: _sha256(weights_tmp)},
            "optimizer": None,
        }
        if optimizer is not None:
            tensors, skeleton = flatten_optimizer_state(optimizer.state_dict())
            optimizer_tmp = transaction.path_for(folder / OPTIMIZER_FILE)
            save_file(tensors, str(optimizer_tmp), metadata={"format": CHECKPOINT_FORMAT})
            state["optimizer"] = skeleton
            state["sha256"][OPTIMIZER_FILE] = _sha256(optimizer_tmp)
        elif (folder / OPTIMIZER_FILE).exists():
            (folder / OPTIMIZER_FILE).unlink()
        for name, module in (extra_modules or {}).items():
            file_name = _extra_file(name)
            extra_tmp = transaction.path_for(folder / file_name)
            save_file(model_tensors(module), str(extra_tmp), metadata={"format": CHECKPOINT_FORMAT})
            state.setdefault("extra_modules", []).append(name)
            state["sha256"][file_name] = _sha256(extra_tmp)
        state_tmp = transaction.path_for(folder / STATE_FILE)
        state_tmp.write_text(json.dumps(state, indent=1, allow_nan=False), encoding="utf-8")


def _extra_file(name: str) -> str:
    if not name.isidentifier() or name in ("weights", "optimizer", "state"):
        raise ValueError(f"an extra checkpoint module needs a plain name, got {name!r}")
    return f"{name}.safetensors"


def read_checkpoint_state(directory: str | Path) -> dict[str, Any]:
    """The parsed ``state.json`` of a checkpoint, after checking its format and file hashes."""
    folder = Path(directory)
    state_path = folder / STATE_FILE
    if not state_path.is_file():
        raise ModelFileError(f"no checkpoint in {folder} ({STATE_FILE} is missing)")
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"checkpoint state {state_path} is unreadable ({error})") from error
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{state_path} is not an AutoCTV training checkpoint")
    if state.get("format_version") != CHECKPOINT_VERSION:
        raise ModelFileError(
            f"{state_path} has checkpoint version {state.get('format_version')}; "
            f"this AutoCTV reads version {CHECKPOINT_VERSION}"
        )
    for name, expected in state.get("sha256", {}).items():
        path = folder / name
        if not path.is_file():
            raise ModelFileError(f"checkpoint file {path} is missing")
        if _sha256(path) != expected:
            raise ModelFileError(f"checkpoint file {path} does not match its recorded checksum")
    return state


def load_checkpoint(
    directory: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    extra_modules: Mapping[str, nn.Module] | None = None,
) -> dict[str, Any]:
    """Load weights (and optimiser state) into the given objects; returns the ``state.json``.

    ``extra_modules`` (name → module) are loaded from the files :func:`save_checkpoint` wrote
    for them; a name the checkpoint does not hold raises :class:`ModelFileError`.

    Raises:
        ModelFileError: missing/corrupt files, or weights that do not fit ``model``.
    """
    folder = Path(directory)
    state = read_checkpoint_state(folder)
    try:
        weights = load_file(str(folder / WEIGHTS_FILE))
    except (SafetensorError, OSError) as error:
        raise ModelFileError(f"checkpoint weights in {folder} are unreadable ({error})") from error
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        raise ModelFileError(
            f"checkpoint {folder} was saved from another network configuration ({first_line})"
        ) from error
    if optimizer is not None:
        if state.get("optimizer") is None:
            raise ModelFileError(f"checkpoint {folder} holds no optimiser state to resume from")
        try:
            tensors = load_file(str(folder / OPTIMIZER_FILE))
        except (SafetensorError, OSError) as error:
            raise ModelFileError(f"optimiser state in {folder} is unreadable ({error})") from error
        optimizer.load_state_dict(unflatten_optimizer_state(tensors, state["optimizer"]))
    for name, module in (extra_modules or {}).items():
        if name not in state.get("extra_modules", []):
            raise ModelFileError(f"checkpoint {folder} holds no weights for the {name} module")
        try:
            module.load_state_dict(load_file(str(folder / _extra_file(name))), strict=True)
        except (SafetensorError, OSError) as error:
            raise ModelFileError(f"{name} weights in {folder} are unreadable ({error})") from error
        except RuntimeError as error:
            first_line = str(error).splitlines()[0]
            raise ModelFileError(
                f"the {name} weights in {folder} do not fit this configuration ({first_line})"
            ) from error
    return state
