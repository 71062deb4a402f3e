"""A compact 2D training loop for the noisy-label experiments (thesis table 3.1 is 2D).

It reuses the library's pieces: the U-Net (registry name ``"unet2d"``), the losses of
:mod:`AutoCTVLib.training.losses` (or the noise-robust Dice loss) and the loss-weighting
strategies of :mod:`AutoCTVLib.noisy.weighting`. Multi-class output is one sigmoid channel per
structure (the structures overlap, e.g. the bladder lies inside the body), with the loss
averaged over channels; Dice is measured per structure.

Iteration ``n`` (1-based) trains on the images ``default_rng([seed, n]).choice(N, batch_size,
replace=False)`` and reseeds torch from ``(seed, n)``, so a run is repeatable bit for bit on
the CPU. No augmentation (the thesis states none for JSRT). Shapes: images (N, y, x) float32 in
[0, 1]; labels (N, n, y, x) 0/1.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from AutoCTVLib.errors import CancelledError
from AutoCTVLib.metrics import dice
from AutoCTVLib.nn import NetworkConfig, build_network
from AutoCTVLib.noisy.ocm import DEFAULT_OCM_LAMBDA
from AutoCTVLib.noisy.robust_losses import noise_robust_dice_loss
from AutoCTVLib.noisy.weighting import WEIGHTING_NAMES, LossWeighting, build_loss_weighting
from AutoCTVLib.training.losses import get_loss
from AutoCTVLib.training.trainer import derived_seed

logger = logging.getLogger(__name__)

LOSSES_2D = ("bce", "dice", "bce_dice", "nr_dice")

#: ``progress(iteration, iterations, loss)`` after every step.
Progress = Callable[[int, int, float], None]


class CancelEvent(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class Train2DConfig:
    """Settings of one 2D training run.

    Attributes:
        iterations: optimiser steps.
        batch_size: images per step (thesis: 32); at least 2 for the quality weighting.
        lr: Adam learning rate of the segmentation network.
        loss: ``"bce"`` (thesis chapter 3), ``"dice"``, ``"bce_dice"`` or ``"nr_dice"``
            (noise-robust Dice, Wang et al. 2020).
        loss_weighting: ``"none"``, ``"qam"`` or ``"qam_ocm"``.
        qam_lr: Adam learning rate of the quality network (thesis: 1e-4).
        ocm_lambda: λ of the OCM (thesis: 2).
        channels: U-Net channels per level.
        qam_channels: quality-network channels per VGG block.
        seed: seeds weights, batches and torch's random state.
    """

    iterations: int = 600
    batch_size: int = 16
    lr: float = 1e-3
    loss: str = "bce"
    loss_weighting: str = "none"
    qam_lr: float = 1e-4
    ocm_lambda: float = DEFAULT_OCM_LAMBDA
    channels: tuple[int, ...] = (8, 16, 32, 64)
    qam_channels: tuple[int, ...] = (8, 16, 32, 32)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lr", "qam_lr"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if self.loss not in LOSSES_2D:
            raise ValueError(f"loss must be one of {', '.join(LOSSES_2D)}, got {self.loss!r}")
        if self.loss_weighting not in WEIGHTING_NAMES:
            raise ValueError(
                f"loss_weighting must be one of {', '.join(WEIGHTING_NAMES)}, "
                f"got {self.loss_weighting!r}"
            )
        if self.loss_weighting != "none" and self.batch_size < 2:
            raise ValueError("quality weighting compares samples: batch_size must be at least 2")
        object.__setattr__(self, "channels", tuple(self.channels))
        object.__setattr__(self, "qam_channels", tuple(self.qam_channels))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["channels"] = list(self.channels)
        data["qam_channels"] = list(self.qam_channels)
        return data


@dataclass
class Train2DResult:
    """What :func:`train_2d` returns.

    Attributes:
        network: the trained segmentation network (eval mode, CPU or the given device).
        weighting: the loss-weighting strategy (its quality network, if any, trained too).
        losses: the batch loss of every iteration.
        batch_indices: (iterations, batch_size) training-image indices of every batch.
        batch_weights: (iterations, batch_size) the weights Θ given to those images.
        seconds: wall time of the training loop.
    """

    network: nn.Module
    weighting: LossWeighting
    losses: list[float] = field(default_factory=list)
    batch_indices: np.ndarray | None = None
    batch_weights: np.ndarray | None = None
    seconds: float = 0.0


def per_sample_loss_2d(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``loss(logits (N, n, y, x), target) -> (N,)`` for a :data:`LOSSES_2D` name."""
    if name == "nr_dice":
        return lambda logits, target: noise_robust_dice_loss(logits, target, reduction="per_sample")
    base = get_loss(name)
    return lambda logits, target: base(logits, target, None, reduction="per_sample")


def _check_data(images: np.ndarray, labels: np.ndarray) -> None:
    if images.ndim != 3 or labels.ndim != 4 or len(images) != len(labels):
        raise ValueError(
            f"images must be (N, y, x) and labels (N, n, y, x), got {images.shape}, {labels.shape}"
        )
    if images.shape[1:] != labels.shape[2:]:
        raise ValueError(
            f"image size {images.shape[1:]} differs from label size {labels.shape[2:]}"
        )


def train_2d(
    images: np.ndarray,
    labels: np.ndarray,
    config: Train2DConfig,
    *,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    cancel: CancelEvent | None = None,
) -> Train2DResult:
    """Train a 2D U-Net on (possibly noisy) labels with the configured loss weighting.

    Batch loss: ``loss_fn`` gives one loss per image (mean over its channels); the strategy
    turns them into the batch loss (plain mean, or Σ Θ_i·L_i with the quality network trained
    jointly through the same loss, its parameters in a second Adam group with ``qam_lr``).
    """
    _check_data(images, labels)
    if config.batch_size > len(images):
        raise ValueError(f"batch_size {config.batch_size} exceeds the {len(images)} images")
    device = torch.device(device)
    n_classes = labels.shape[1]
    network = build_network(
        NetworkConfig(
            architecture="unet2d",
            spatial_dims=2,
            in_channels=1,
            out_channels=n_classes,
            channels=config.channels,
        ),
        seed=config.seed,
    ).to(device)
    weighting = build_loss_weighting(
        config.loss_weighting,
        spatial_dims=2,
        label_channels=n_classes,
        ocm_lambda=config.ocm_lambda,
        qam_channels=config.qam_channels,
        seed=derived_seed(config.seed, 1),
    ).to(device)
    groups: list[dict[str, Any]] = [{"params": list(network.parameters())}]
    quality_parameters = list(weighting.parameters())
    if quality_parameters:
        groups.append({"params": quality_parameters, "lr": config.qam_lr})
    optimizer = torch.optim.Adam(groups, lr=config.lr)
    loss_fn = per_sample_loss_2d(config.loss)
    image_tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    label_tensor = torch.from_numpy((np.asarray(labels) > 0).astype(np.float32))
    indices = np.zeros((config.iterations, config.batch_size), dtype=np.int64)
    weights = np.zeros((config.iterations, config.batch_size), dtype=np.float32)
    losses: list[float] = []
    network.train()
    weighting.train()
    started = time.perf_counter()
    for iteration in range(1, config.iterations + 1):
        if cancel is not None and cancel.is_set():
            raise CancelledError("training was cancelled")
        chosen = np.random.default_rng([config.seed, iteration]).choice(
            len(images), size=config.batch_size, replace=False
        )
        torch.manual_seed(derived_seed(config.seed, iteration))
        image = image_tensor[chosen].to(device)
        label = label_tensor[chosen].to(device)
        optimizer.zero_grad(set_to_none=True)
        per_sample = loss_fn(network(image), label)
        result = weighting(per_sample, image, label)
        if not torch.isfinite(result.loss):
            raise FloatingPointError(
                f"the training loss became {result.loss.item()} at iteration {iteration}"
            )
        result.loss.backward()
        optimizer.step()
        losses.append(float(result.loss.detach()))
        indices[iteration - 1] = chosen
        weights[iteration - 1] = result.weights.cpu().numpy()
        if progress is not None:
            progress(iteration, config.iterations, losses[-1])
    seconds = time.perf_counter() - started
    network.eval()
    weighting.eval()
    logger.info("2D training (%s) took %.1f s", config.loss_weighting, seconds)
    return Train2DResult(network, weighting, losses, indices, weights, seconds)


@torch.no_grad()
def predict_2d(
    network: nn.Module,
    images: np.ndarray,
    *,
    batch_size: int = 16,
    threshold: float = 0.5,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Binary predictions (N, n, y, x) ``bool`` for images (N, y, x) (sigmoid ≥ threshold)."""
    if images.ndim != 3:
        raise ValueError(f"images must be (N, y, x), got {images.shape}")
    was_training = network.training
    network.eval()
    parts = []
    try:
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
            logits = network(batch[:, None].float().to(device))
            parts.append((torch.sigmoid(logits) >= threshold).cpu().numpy())
    finally:
        network.train(was_training)
    return np.concatenate(parts)


def dice_per_structure(prediction: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Dice (N, n) of every image and structure (both empty → 1, see :mod:`AutoCTVLib.metrics`)."""
    if prediction.shape != reference.shape or prediction.ndim != 4:
        raise ValueError(
            f"prediction and reference must be equal (N, n, y, x) shapes, got "
            f"{prediction.shape} and {reference.shape}"
        )
    return np.array(
        [
            [dice(prediction[i, c], reference[i, c]) for c in range(prediction.shape[1])]
            for i in range(len(prediction))
        ]
    )


def weight_trajectory(
    batch_indices: np.ndarray,
    batch_weights: np.ndarray,
    noisy: Sequence[bool] | np.ndarray,
    window: int = 1,
) -> dict[str, np.ndarray]:
    """Mean and variance of the weights given to clean and to noisy images, per iteration.

    Weights are scaled by the batch size (``N·Θ``: 1 means "as in the plain mean"), then
    averaged over a trailing ``window`` of iterations. Returns ``{"iteration", "clean_mean",
    "clean_var", "noisy_mean", "noisy_var"}`` arrays (NaN where a group had no image).
    """
    noisy = np.asarray(noisy, dtype=bool)
    scaled = batch_weights * batch_weights.shape[1]
    is_noisy = noisy[batch_indices]
    iterations = len(batch_indices)
    out: dict[str, np.ndarray] = {"iteration": np.arange(1, iterations + 1)}
    for name, group in (("clean", ~is_noisy), ("noisy", is_noisy)):
        means = np.full(iterations, np.nan)
        variances = np.full(iterations, np.nan)
        for end in range(1, iterations + 1):
            begin = max(0, end - int(window))
            values = scaled[begin:end][group[begin:end]]
            if values.size:
                means[end - 1] = values.mean()
                variances[end - 1] = values.var()
        out[f"{name}_mean"] = means
        out[f"{name}_var"] = variances
    return out
