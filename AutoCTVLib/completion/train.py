"""Training the completion network (``autoctv complete-train``).

A thin loop of its own (the CTV trainer takes one-channel images): each iteration draws
``batch_size`` examples (:mod:`AutoCTVLib.completion.train_data`: a case, a structure, a random
sparse annotation, the inference-time input preparation, augmentation, a patch), computes BCE +
Dice over every voxel of the patch (the full structure is known in training; padding has weight
0), and takes one Adam step. Example ``s`` of iteration ``n`` uses the generator
``default_rng([seed, n, s])``, so a run is reproducible.

Every ``val_every`` iterations and at the end, the network completes fixed validation examples
(separate phantoms, training structures only) and the mean Dice on the model grid is logged,
beside the Dice of the interpolation channel alone (what the network has to beat);
the best network is exported as ``OUT/completion.safetensors`` + ``OUT/completion.json`` (card:
four input channels, its own preprocessing, training summary, validation Dice). The log is
``OUT/train_log.jsonl`` (one JSON object per line) and ``OUT/summary.json``.

Each validation also writes ``OUT/checkpoints/last`` (network, Adam state, progress) and, when
the score improved, ``OUT/checkpoints/best`` (:mod:`AutoCTVLib.training.checkpoint` folders).
An interrupted run continues with ``resume=True`` from its last validation: batches, dropout
and the learning rate are functions of the iteration, so the resumed run ends where an
uninterrupted one would have. Long runs can so be trained in several sittings.
A run can also be ended early with ``stop_at``: it stops after that iteration (with a
resumed run, possibly at once) and exports the best network so far; the learning-rate
schedule stays that of the full ``iterations``, and the card records where the run stopped.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from AutoCTVLib.completion.grid import INPUT_CHANNELS, CompletionGridConfig
from AutoCTVLib.completion.model import completion_card, completion_network_config
from AutoCTVLib.completion.sampling import AnnotationSampling
from AutoCTVLib.completion.train_data import (
    HELD_OUT_STRUCTURES,
    TRAINING_STRUCTURES,
    Example,
    PhantomGrid,
    TrainingCase,
    augment,
    choose_structure,
    collate,
    fit_patch,
    hdf5_cases,
    make_example,
    phantom_case,
)
from AutoCTVLib.errors import CancelledError, InputError, OutputError
from AutoCTVLib.io.atomic import atomic_path
from AutoCTVLib.metrics import dice
from AutoCTVLib.models import save_model
from AutoCTVLib.nn import build_network
from AutoCTVLib.training.checkpoint import (
    load_checkpoint,
    read_checkpoint_state,
    save_checkpoint,
)
from AutoCTVLib.training.losses import bce_dice_loss

logger = logging.getLogger(__name__)

MODEL_STEM = "completion"
CHECKPOINTS = "checkpoints"
#: ``progress(event)`` with ``event["event"]`` in "case", "iteration", "validation", "end".
Progress = Callable[[dict[str, Any]], None]
#: Validation phantoms use seeds from here on (training phantoms use ``seed + i``).
VALIDATION_SEED_OFFSET = 1_000_000


class CancelEvent(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class CompletionTrainConfig:
    """Settings of a training run (stored in ``summary.json`` and the model card).

    Attributes:
        cases: training phantoms (generated in memory; ignored with an HDF5 dataset).
        validation_cases: validation phantoms (separate seeds).
        validation_examples: fixed (structure, annotation) examples per validation case.
        iterations: optimiser steps.
        batch_size: examples per step.
        patch_size_zyx: model-grid patch per example (voxels).
        learning_rate: Adam learning rate (cosine decay to 5 % over the run).
        ctv_fraction: share of examples that complete the CTV.
        permute_probability: share of examples with permuted axes.
        intensity_probability: share of examples whose CT grey values are changed.
        val_every: iterations between validations.
        seed: base seed (phantoms, examples, initial weights).
        channels: U-Net channels per level.
        phantom_grid: random grids of the training phantoms.
        grid: model spacing, HU window, crop margin.
        sampling: how sparse annotations are drawn.
    """

    cases: int = 48
    validation_cases: int = 4
    validation_examples: int = 4
    iterations: int = 20000
    batch_size: int = 2
    patch_size_zyx: tuple[int, int, int] = (32, 96, 96)
    learning_rate: float = 1e-3
    ctv_fraction: float = 0.4
    permute_probability: float = 0.3
    intensity_probability: float = 0.5
    val_every: int = 500
    seed: int = 0
    channels: tuple[int, ...] = (8, 16, 32, 64, 128)
    phantom_grid: PhantomGrid = field(default_factory=PhantomGrid)
    grid: CompletionGridConfig = field(default_factory=CompletionGridConfig)
    sampling: AnnotationSampling = field(default_factory=AnnotationSampling)

    def __post_init__(self) -> None:
        for name in ("cases", "validation_cases", "iterations", "batch_size", "val_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("ctv_fraction", "permute_probability", "intensity_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["grid"] = self.grid.to_dict()
        return data


def quick_config(**changes: Any) -> CompletionTrainConfig:
    """A smoke-test run: two tiny phantoms, a few iterations on small patches (about a
    minute on a laptop CPU). Not a useful model."""
    base = CompletionTrainConfig(
        cases=2,
        validation_cases=1,
        validation_examples=2,
        iterations=6,
        batch_size=1,
        patch_size_zyx=(32, 48, 48),
        val_every=3,
        phantom_grid=PhantomGrid(pixel_mm=(3.0, 3.6), slice_mm=(4.0, 5.0)),
    )
    return replace(base, **changes) if changes else base


@dataclass(frozen=True)
class TrainSummary:
    """What a run produced."""

    iterations: int
    best_dice: float | None
    best_iteration: int | None
    seconds: float
    seconds_per_iteration: float
    model_path: str


def _report(progress: Progress | None, event: dict[str, Any]) -> None:
    if progress is not None:
        progress(event)


def load_cases(
    config: CompletionTrainConfig, dataset: str | Path | None, progress: Progress | None
) -> tuple[list[TrainingCase], list[TrainingCase]]:
    """Training and validation cases: phantoms (by seed) or an HDF5 dataset's cases."""
    if dataset is not None:
        cases = hdf5_cases(dataset)
        if len(cases) <= config.validation_cases:
            raise InputError(
                f"the dataset has {len(cases)} cases; training needs more than the "
                f"{config.validation_cases} kept for validation"
            )
        return cases[config.validation_cases :], cases[: config.validation_cases]
    seeds = [(config.seed + i, "train") for i in range(config.cases)]
    seeds += [
        (config.seed + VALIDATION_SEED_OFFSET + i, "validation")
        for i in range(config.validation_cases)
    ]
    train, validation = [], []
    for done, (seed, role) in enumerate(seeds, start=1):
        case = phantom_case(seed, config.phantom_grid, TRAINING_STRUCTURES)
        (train if role == "train" else validation).append(case)
        _report(progress, {"event": "case", "done": done, "total": len(seeds), "role": role})
    return train, validation


def validation_set(cases: list[TrainingCase], config: CompletionTrainConfig) -> list[Example]:
    """Fixed validation examples (training structures only; held-out ones stay unseen)."""
    examples = []
    for index, case in enumerate(cases):
        rng = np.random.default_rng([config.seed, VALIDATION_SEED_OFFSET, index])
        for _ in range(config.validation_examples):
            structure = choose_structure(case, rng, config.ctv_fraction, HELD_OUT_STRUCTURES)
            if structure is None:
                break
            examples.append(make_example(case, structure, rng, config.grid, config.sampling))
    return examples


def prior_dice(examples: list[Example]) -> float:
    """Mean Dice of the interpolation channel alone on the validation examples: the score the
    network has to beat."""
    prior = INPUT_CHANNELS.index("interpolation")
    scores = [dice(e.inputs[prior] > 0.5, e.target[0] > 0) for e in examples]
    return float(np.mean(scores)) if scores else float("nan")


@torch.no_grad()
def validate(network: torch.nn.Module, examples: list[Example], device: torch.device) -> float:
    """Mean Dice (threshold 0.5) of the network's completions on the model grid."""
    network.eval()
    scores = []
    for example in examples:
        logits = network(torch.from_numpy(example.inputs)[None].to(device))
        prediction = (torch.sigmoid(logits.float())[0, 0] >= 0.5).cpu().numpy()
        scores.append(dice(prediction, example.target[0] > 0))
    network.train()
    return float(np.mean(scores)) if scores else float("nan")


def training_batch(
    cases: list[TrainingCase], config: CompletionTrainConfig, iteration: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch ``iteration`` (seeded by ``(seed, iteration, sample)``)."""
    examples = []
    for sample in range(config.batch_size):
        rng = np.random.default_rng([config.seed, iteration, sample])
        case = cases[int(rng.integers(len(cases)))]
        structure = choose_structure(case, rng, config.ctv_fraction)
        if structure is None:
            raise InputError(f"case {case.case_id} holds no structure to train on")
        example = make_example(case, structure, rng, config.grid, config.sampling)
        example = augment(
            example,
            rng,
            config.permute_probability,
            config.grid.spacing_xyz_mm,
            config.intensity_probability,
        )
        examples.append(fit_patch(example, config.patch_size_zyx, rng))
    return collate(examples)


def _checkpoint(
    out: Path,
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    identity: dict[str, Any],
    iteration: int,
    record: dict[str, Any],
    best: tuple[float, int] | None,
    improved: bool,
) -> None:
    """Write ``checkpoints/best`` (when ``improved``) and then ``checkpoints/last``."""
    state = {
        **identity,
        "iteration": iteration,
        "seconds": record["seconds"],
        "best_dice": None if best is None or not math.isfinite(best[0]) else best[0],
        "best_iteration": None if best is None else best[1],
    }
    if improved:
        save_checkpoint(out / CHECKPOINTS / "best", network, state)
    save_checkpoint(out / CHECKPOINTS / "last", network, state, optimizer)


def _learning_rate(config: CompletionTrainConfig, iteration: int) -> float:
    progress = (iteration - 1) / max(1, config.iterations - 1)
    return config.learning_rate * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _run_identity(config: CompletionTrainConfig, dataset: str | Path | None) -> dict[str, Any]:
    """What a checkpoint must match to be resumed (JSON form)."""
    return json.loads(
        json.dumps(
            {"config": config.to_dict(), "dataset": None if dataset is None else str(dataset)}
        )
    )


def _resume_state(out: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """The trainer state of ``out``'s last checkpoint, checked against this run's settings."""
    last = out / CHECKPOINTS / "last"
    if not (last / "state.json").is_file():
        raise InputError(f"there is no interrupted run to resume in {out}")
    state = read_checkpoint_state(last)["trainer"]
    stored = {"config": state.get("config"), "dataset": state.get("dataset")}
    if stored != identity:
        differing = sorted(
            key
            for key in set(identity["config"]) | set(stored["config"] or {})
            if identity["config"].get(key) != (stored["config"] or {}).get(key)
        )
        if identity["dataset"] != stored["dataset"]:
            differing.append("dataset")
        raise InputError(
            f"the run in {out} was started with other settings ({', '.join(differing)}); "
            "resume it with the same settings or start a new one"
        )
    return state


def train_completion(
    config: CompletionTrainConfig,
    out_dir: str | Path,
    *,
    dataset: str | Path | None = None,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    cancel: CancelEvent | None = None,
    overwrite: bool = False,
    resume: bool = False,
    stop_at: int | None = None,
) -> TrainSummary:
    """Train the completion network and export the best one to ``out_dir`` (see module doc).

    ``resume`` continues the interrupted run in ``out_dir`` from its last checkpoint (same
    settings and data required). ``stop_at`` ends the run after that iteration (at most
    ``config.iterations``; a resumed run already there stops at once) and exports the best
    network so far.

    Raises:
        OutputError: ``out_dir`` holds a model or an interrupted run, and neither ``overwrite``
            nor ``resume`` was given.
        InputError: ``resume`` without a checkpoint, or with other settings; ``stop_at``
            outside 1..iterations or before the resumed run's last checkpoint.
        CancelledError: ``cancel`` was set (nothing is exported; the last checkpoint stays).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_stem = out / MODEL_STEM
    identity = _run_identity(config, dataset)
    state: dict[str, Any] | None = _resume_state(out, identity) if resume else None
    last = config.iterations if stop_at is None else int(stop_at)
    if not 1 <= last <= config.iterations:
        raise InputError(f"stop_at must lie in 1..{config.iterations}, got {stop_at}")
    if state is not None and int(state["iteration"]) > last:
        raise InputError(
            f"the run in {out} is already at iteration {state['iteration']}, past stop_at {last}"
        )
    if state is None and not overwrite:
        if model_stem.with_suffix(".json").exists():
            raise OutputError(
                f"{model_stem}.json already exists; choose another folder or overwrite"
            )
        if (out / CHECKPOINTS / "last").exists():
            raise OutputError(f"{out} holds an interrupted training run; resume it or overwrite it")
    device = torch.device(device)
    train_cases, validation_cases = load_cases(config, dataset, progress)
    validation = validation_set(validation_cases, config)
    interpolation_dice = prior_dice(validation)
    network = build_network(
        completion_network_config(channels=tuple(config.channels)), seed=config.seed
    ).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    best_state: dict[str, torch.Tensor] | None = None
    best: tuple[float, int] | None = None
    log_path = out / "train_log.jsonl"
    first, seconds_before = 1, 0.0
    if state is None:
        log_path.write_text("")
    else:
        load_checkpoint(out / CHECKPOINTS / "last", network, optimizer)
        first, seconds_before = int(state["iteration"]) + 1, float(state["seconds"])
        if state["best_iteration"] is not None:
            dice_value = state["best_dice"]
            best = (math.nan if dice_value is None else float(dice_value), state["best_iteration"])
            best_network = copy.deepcopy(network)
            load_checkpoint(out / CHECKPOINTS / "best", best_network)
            best_state = copy.deepcopy(best_network.state_dict())
        kept = (
            [
                line
                for line in log_path.read_text(encoding="utf-8").splitlines()
                if line and json.loads(line)["iteration"] < first
            ]
            if log_path.is_file()
            else []
        )
        log_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    started = time.perf_counter() - seconds_before
    network.train()
    for iteration in range(first, last + 1):
        if cancel is not None and cancel.is_set():
            raise CancelledError("training was cancelled")
        inputs, target, weight = (
            t.to(device) for t in training_batch(train_cases, config, iteration)
        )
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(config, iteration)
        torch.manual_seed(config.seed * 1_000_003 + iteration)
        optimizer.zero_grad(set_to_none=True)
        loss = bce_dice_loss(network(inputs).float(), target, weight)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the training loss became {loss.item()} at {iteration}")
        loss.backward()
        optimizer.step()
        record: dict[str, Any] = {
            "event": "iteration",
            "iteration": iteration,
            "iterations": config.iterations,
            "loss": float(loss.detach()),
            "seconds": time.perf_counter() - started,
        }
        validating = iteration % config.val_every == 0 or iteration == last
        improved = False
        if validating:
            score = validate(network, validation, device)
            record["validation_dice"] = score
            record["validation_interpolation_dice"] = interpolation_dice
            improved = best is None or (math.isfinite(score) and score > best[0])
            if improved:
                best = (score, iteration)
                best_state = copy.deepcopy(network.state_dict())
        with log_path.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(record) + "\n")
        if validating:  # after the log line, so a resumed log never misses one
            _checkpoint(out, network, optimizer, identity, iteration, record, best, improved)
        _report(progress, record)
    seconds = time.perf_counter() - started
    if best_state is not None:
        network.load_state_dict(best_state)
    network.eval()
    network.to("cpu")
    card = completion_card(
        network,
        config.grid,
        name="completion_phantom" if dataset is None else "completion",
        training_data={
            "source": "synthetic phantoms" if dataset is None else str(dataset),
            "training_cases": len(train_cases),
            "validation_cases": len(validation_cases),
            "structures": ["CTV", *TRAINING_STRUCTURES] if dataset is None else "all labels",
            "held_out_structures": list(HELD_OUT_STRUCTURES),
            "iterations": last,
            "schedule_iterations": config.iterations,
            "settings": config.to_dict(),
        },
        metrics={
            "validation_dice_model_grid": None if best is None else best[0],
            "validation_interpolation_dice_model_grid": interpolation_dice,
            "best_iteration": None if best is None else best[1],
        },
    )
    save_model(network, card, model_stem, overwrite=overwrite or resume)
    summary = TrainSummary(
        iterations=last,
        best_dice=None if best is None else best[0],
        best_iteration=None if best is None else best[1],
        seconds=seconds,
        seconds_per_iteration=seconds / last,
        model_path=str(model_stem) + ".safetensors",
    )
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(asdict(summary), indent=2) + "\n", encoding="utf-8")
    _report(progress, {"event": "end", **asdict(summary)})
    return summary
