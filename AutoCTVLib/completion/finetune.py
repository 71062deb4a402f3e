"""The ``finetune`` method: Çiçek et al.'s semi-automatic mode, bounded in time.

Starting from the learned completion network (or a CTV network widened to four inputs, or a
fresh one), the network is trained on *this* volume's annotated slices only, then predicts.

Each step (on the model grid):

1. Hide a subset of the annotated planes from the input: their sparse label and mask
   channels are zeroed and the interpolation channel is recomputed from the remaining planes,
   so the network must predict the hidden planes from the others and the CT (the completion
   task, specialised to this patient). The subsets come from a fixed pool of
   ``hidden_subsets`` random draws, so each subset's interpolation is computed once.
2. Crop a random patch (at most ``patch_size_zyx``) holding at least one annotated plane.
3. Loss: weighted BCE + Dice with weight 1 on every annotated plane (hidden or not) and
   **weight 0 on every other voxel**: unannotated voxels are unknown and contribute nothing,
   neither to the loss nor to its gradient (:func:`finetune_loss`).

Training stops after ``time_budget_s`` seconds or ``max_steps`` steps, whichever comes first;
the prediction then sees every annotated plane. Normalisation layers with running statistics
(batch norm of a widened CTV network) are kept in evaluation mode while fine-tuning, so one
volume's statistics do not overwrite them. Randomness comes from ``seed``: with ``max_steps``
and no time limit reached, the result is reproducible on the CPU.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from AutoCTVLib.completion.annotation import AXIS_NAMES, Annotation
from AutoCTVLib.completion.grid import CompletionInputs
from AutoCTVLib.completion.prior import shape_prior
from AutoCTVLib.errors import CancelledError
from AutoCTVLib.training.losses import bce_dice_loss

logger = logging.getLogger(__name__)

#: ``progress(fraction_done, message)``.
Progress = Callable[[float, str], None]


class CancelEvent(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of :func:`finetune_network`.

    Attributes:
        time_budget_s: wall-clock seconds of fine-tuning (the prediction comes on top).
        max_steps: stop after this many steps (``None``: only the time budget counts).
        learning_rate: Adam learning rate.
        patch_size_zyx: largest patch (model voxels) per step; smaller crops are used whole.
        hidden_subsets: how many different subsets of hidden planes are drawn (each costs one
            interpolation of the remaining planes).
        seed: seeds patch placement and which planes are hidden.
    """

    time_budget_s: float = 40.0
    max_steps: int | None = None
    learning_rate: float = 2e-4
    patch_size_zyx: tuple[int, int, int] = (32, 64, 64)
    hidden_subsets: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.time_budget_s) and self.time_budget_s >= 0):
            raise ValueError(f"time_budget_s must be a non-negative number: {self.time_budget_s}")
        if self.max_steps is not None and (
            isinstance(self.max_steps, bool) or int(self.max_steps) < 0
        ):
            raise ValueError(f"max_steps must be a non-negative integer, got {self.max_steps}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        patch = tuple(int(p) for p in self.patch_size_zyx)
        if len(patch) != 3 or min(patch) < 1:
            raise ValueError(f"patch_size_zyx must be three positive sizes, got {patch}")
        object.__setattr__(self, "patch_size_zyx", patch)
        if isinstance(self.hidden_subsets, bool) or int(self.hidden_subsets) < 1:
            raise ValueError(f"hidden_subsets must be a positive integer: {self.hidden_subsets}")


@dataclass(frozen=True)
class FinetuneReport:
    """What fine-tuning did: steps taken, seconds spent, mean loss of the last 5 steps."""

    steps: int
    seconds: float
    final_loss: float | None


@dataclass(frozen=True)
class FinetuneSample:
    """One fine-tuning step's tensors, each (1, C, z, y, x) float32."""

    inputs: torch.Tensor
    target: torch.Tensor
    weight: torch.Tensor


def _planes(inputs: CompletionInputs) -> list[tuple[int, int]]:
    return [
        (axis, index)
        for axis, name in enumerate(AXIS_NAMES)
        for index in inputs.model_annotation.slices(name)
    ]


def _plane_mask(shape: tuple[int, ...], planes: list[tuple[int, int]]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for axis, index in planes:
        window = [slice(None)] * 3
        window[axis] = index
        mask[tuple(window)] = True
    return mask


def _patch_window(
    shape: tuple[int, ...], patch: tuple[int, ...], known: np.ndarray, rng: np.random.Generator
) -> tuple[slice, ...]:
    """A random patch window that holds at least one known voxel (centred on one)."""
    points = np.argwhere(known)
    centre = points[int(rng.integers(len(points)))] if len(points) else np.asarray(shape) // 2
    window = []
    for axis, (size, length) in enumerate(zip(shape, patch)):
        if size <= length:
            window.append(slice(0, size))
            continue
        jitter = int(rng.integers(-(length // 4), length // 4 + 1))
        start = int(np.clip(int(centre[axis]) - length // 2 + jitter, 0, size - length))
        window.append(slice(start, start + length))
    return tuple(window)


def draw_hidden_subsets(
    inputs: CompletionInputs, rng: np.random.Generator, count: int
) -> list[tuple[tuple[int, int], ...]]:
    """``count`` random subsets of annotated planes to hide, each leaving at least one shown.

    Each subset hides between one and half of the planes (none when there is a single plane).
    """
    planes = _planes(inputs)
    subsets = []
    for _ in range(count):
        hidden_count = int(rng.integers(1, max(1, math.ceil(len(planes) / 2)) + 1))
        hidden_count = min(hidden_count, max(0, len(planes) - 1))
        order = rng.permutation(len(planes))
        subsets.append(tuple(sorted(planes[i] for i in order[:hidden_count])))
    return subsets


def finetune_sample(
    inputs: CompletionInputs,
    rng: np.random.Generator,
    patch_size_zyx: tuple[int, int, int],
    hidden: tuple[tuple[int, int], ...] | None = None,
    priors: dict[tuple[tuple[int, int], ...], np.ndarray] | None = None,
) -> FinetuneSample:
    """Draw one step's input (the ``hidden`` planes hidden), target and weight.

    ``hidden`` defaults to one fresh random subset (:func:`draw_hidden_subsets`). ``priors``
    caches the interpolation of the shown planes per hidden subset. The target is the sparse
    label; the weight is 1 on annotated planes and 0 elsewhere.
    """
    if hidden is None:
        hidden = draw_hidden_subsets(inputs, rng, 1)[0]
    visible = [plane for plane in _planes(inputs) if plane not in set(hidden)]
    shape = inputs.model_geometry.shape_zyx
    visible_mask = _plane_mask(shape, visible)
    sparse_input = np.where(visible_mask, inputs.sparse, 0.0).astype(np.float32)
    prior = None if priors is None else priors.get(hidden)
    if prior is None:
        shown = Annotation.from_mapping(
            {name: [i for a, i in visible if a == axis] for axis, name in enumerate(AXIS_NAMES)}
        )
        spacing_zyx = inputs.model_geometry.spacing_xyz_mm[::-1]
        prior = shape_prior(sparse_input > 0, shown, spacing_zyx).astype(np.float32)
        if priors is not None:
            priors[hidden] = prior
    known = inputs.known > 0
    hidden_mask = _plane_mask(shape, list(hidden))
    window = _patch_window(shape, patch_size_zyx, hidden_mask if hidden else known, rng)
    channels = np.stack([inputs.image, sparse_input, visible_mask.astype(np.float32), prior])
    target = inputs.sparse[None]
    weight = known.astype(np.float32)[None]

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array[(slice(None), *window)]))[None]

    return FinetuneSample(tensor(channels), tensor(target), tensor(weight))


def finetune_loss(network: nn.Module, sample: FinetuneSample) -> torch.Tensor:
    """BCE + Dice of the network's prediction against the sparse target, weighted by
    ``sample.weight`` (0 = unknown voxel: no contribution to the loss or its gradient)."""
    logits = network(sample.inputs)
    return bce_dice_loss(logits.float(), sample.target, sample.weight)


def _freeze_running_statistics(network: nn.Module) -> None:
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def finetune_network(
    network: nn.Module,
    inputs: CompletionInputs,
    config: FinetuneConfig | None = None,
    *,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    cancel: CancelEvent | None = None,
) -> tuple[nn.Module, FinetuneReport]:
    """Fine-tune a *copy* of ``network`` on the annotated planes of ``inputs``.

    Returns:
        ``(fine-tuned network in evaluation mode, report)``; ``network`` itself is unchanged.

    Raises:
        CancelledError: ``cancel`` was set.
    """
    config = config or FinetuneConfig()
    device = torch.device(device)
    tuned = copy.deepcopy(network).to(device)
    tuned.train()
    _freeze_running_statistics(tuned)
    optimizer = torch.optim.Adam(tuned.parameters(), lr=config.learning_rate)
    rng = np.random.default_rng(config.seed)
    subsets = draw_hidden_subsets(inputs, rng, config.hidden_subsets)
    priors: dict[tuple[tuple[int, int], ...], np.ndarray] = {}
    started = time.perf_counter()
    losses: list[float] = []
    steps = 0
    while True:
        elapsed = time.perf_counter() - started
        if config.max_steps is not None and steps >= config.max_steps:
            break
        if elapsed >= config.time_budget_s:
            break
        if cancel is not None and cancel.is_set():
            raise CancelledError("completion was cancelled")
        hidden = subsets[int(rng.integers(len(subsets)))]
        sample = finetune_sample(inputs, rng, config.patch_size_zyx, hidden, priors)
        optimizer.zero_grad(set_to_none=True)
        loss = finetune_loss(
            tuned,
            FinetuneSample(
                sample.inputs.to(device), sample.target.to(device), sample.weight.to(device)
            ),
        )
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        steps += 1
        if progress is not None:
            fraction = elapsed / config.time_budget_s if config.time_budget_s > 0 else 1.0
            if config.max_steps:
                fraction = max(fraction, steps / config.max_steps)
            progress(min(1.0, fraction), f"fine-tuning step {steps}, loss {losses[-1]:.3f}")
    tuned.eval()
    seconds = time.perf_counter() - started
    final = float(np.mean(losses[-5:])) if losses else None
    logger.info("fine-tuned %d steps in %.1f s (loss %s)", steps, seconds, final)
    return tuned, FinetuneReport(steps=steps, seconds=seconds, final_loss=final)
