"""Segmentation losses on logits with a per-voxel weight map: BCE, soft Dice, BCE + Dice, and
the noise-robust Dice loss (``"nr_dice"``, for training on disagreeing labels).

Shapes: ``logits`` and ``target`` are (N, C, *S) (C sigmoid outputs, S = (z, y, x) or (y, x));
``target`` holds 0/1 (soft labels in [0, 1] work too). ``weight`` is ``None`` (all ones) or a
non-negative tensor broadcastable to (N, C, *S), e.g. (N, 1, *S).

Weight 0 marks *unknown* voxels (Çiçek et al. 2016, sparse annotation): they add nothing to any
sum, numerator or denominator, so changing their logits or labels changes neither the loss nor
its gradient. Other weights scale a voxel's contribution.

Reductions (the ``reduction`` argument):

* ``"per_sample"``: a (N,) tensor, one loss per sample (the noisy-label work weights these).
* ``"mean"``: the mean of the per-sample losses over samples that have any weight > 0
  (a patch without a single known voxel neither adds nor dilutes); 0 if there are none.
* ``"sum"``: the sum of the per-sample losses.

Per sample, BCE is the weighted mean over voxels and channels,
``Σ w·bce / Σ w``; soft Dice is ``1 - (2 Σ w·p·t + s) / (Σ w·p + Σ w·t + s)`` per channel,
averaged over channels, with ``p = sigmoid(logits)`` and smoothing ``s``. Losses are computed
in float32 even for float16/bfloat16 logits (mixed precision).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.nn import functional

from AutoCTVLib.noisy.robust_losses import noise_robust_dice_loss

REDUCTIONS = ("mean", "sum", "per_sample")

LossFunction = Callable[..., torch.Tensor]


def _check_inputs(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, reduction: str
) -> torch.Tensor:
    """Validate shapes/reduction; return the weight expanded to the logits' shape."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    if logits.ndim < 3:
        raise ValueError(f"logits must be (N, C, *spatial), got shape {tuple(logits.shape)}")
    if target.shape != logits.shape:
        raise ValueError(
            f"target shape {tuple(target.shape)} differs from logits shape {tuple(logits.shape)}"
        )
    if weight is None:
        return torch.ones_like(logits)
    if weight.ndim != logits.ndim:
        raise ValueError(
            f"weight must have {logits.ndim} axes like the logits, got shape {tuple(weight.shape)}"
        )
    try:
        expanded = weight.to(logits.dtype).expand_as(logits)
    except RuntimeError as error:
        raise ValueError(
            f"weight shape {tuple(weight.shape)} does not broadcast to {tuple(logits.shape)}"
        ) from error
    if bool((weight < 0).any()):
        raise ValueError("weight must be non-negative (0 = unknown voxel)")
    return expanded


def _full_precision(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits (mixed-precision training) become float32: sums over a million
    voxels overflow float16 and lose digits in bfloat16."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        return logits.float()
    return logits


def _reduce(per_sample: torch.Tensor, has_known: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "per_sample":
        return per_sample
    if reduction == "sum":
        return per_sample.sum()
    known = has_known.to(per_sample.dtype)
    return (per_sample * known).sum() / known.sum().clamp_min(1.0)


def _sample_sums(x: torch.Tensor) -> torch.Tensor:
    """Sum over every axis but the batch axis → (N,)."""
    return x.flatten(1).sum(dim=1)


def bce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    *,
    reduction: str = "mean",
) -> torch.Tensor:
    """Weighted binary cross-entropy on logits (numerically stable form).

    Per sample: ``Σ w·bce(logit, t) / Σ w`` over channels and voxels (0 when ``Σ w`` is 0).
    """
    logits = _full_precision(logits)
    w = _check_inputs(logits, target, weight, reduction)
    voxel_bce = functional.binary_cross_entropy_with_logits(
        logits, target.to(logits.dtype), reduction="none"
    )
    # torch.where keeps non-finite values at unknown voxels from leaking into the sums.
    weighted = torch.where(w > 0, voxel_bce * w, torch.zeros_like(voxel_bce))
    weight_sum = _sample_sums(w)
    per_sample = _sample_sums(weighted) / weight_sum.clamp_min(torch.finfo(w.dtype).tiny)
    return _reduce(per_sample, weight_sum > 0, reduction)


def soft_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    *,
    reduction: str = "mean",
    smooth: float = 1.0,
) -> torch.Tensor:
    """Weighted soft Dice loss, ``1 - Dice`` per channel, averaged over channels.

    ``smooth`` (added to numerator and denominator) keeps the loss finite and makes an empty
    prediction on an empty target score 0.
    """
    if smooth < 0:
        raise ValueError(f"smooth must be non-negative, got {smooth}")
    logits = _full_precision(logits)
    w = _check_inputs(logits, target, weight, reduction)
    known = w > 0
    probability = torch.where(known, torch.sigmoid(logits), torch.zeros_like(logits))
    target_known = torch.where(known, target.to(logits.dtype), torch.zeros_like(logits))
    spatial_axes = tuple(range(2, logits.ndim))
    intersection = (w * probability * target_known).sum(dim=spatial_axes)
    denominator = (w * probability).sum(dim=spatial_axes) + (w * target_known).sum(dim=spatial_axes)
    dice = (2.0 * intersection + smooth) / (denominator + smooth).clamp_min(
        torch.finfo(w.dtype).tiny
    )
    per_sample = (1.0 - dice).mean(dim=1)
    return _reduce(per_sample, _sample_sums(w) > 0, reduction)


def bce_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    *,
    reduction: str = "mean",
    bce_weight: float = 1.0,
    dice_weight: float = 1.0,
    smooth: float = 1.0,
) -> torch.Tensor:
    """``bce_weight · BCE + dice_weight · soft Dice`` (the thesis' final loss, 1 : 1)."""
    bce = bce_loss(logits, target, weight, reduction="per_sample")
    dice = soft_dice_loss(logits, target, weight, reduction="per_sample", smooth=smooth)
    w = _check_inputs(_full_precision(logits), target, weight, reduction)
    return _reduce(bce_weight * bce + dice_weight * dice, _sample_sums(w) > 0, reduction)


def recurrent_loss(
    step_logits: Sequence[torch.Tensor],
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    base_loss: LossFunction = bce_dice_loss,
    *,
    reduction: str = "mean",
    step_weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """Loss over every refinement step: ``Σ_k a_k · base_loss(logits_k) / Σ_k a_k``.

    Args:
        step_logits: one logits tensor per step (``network.forward_steps(x)``); a plain network
            gives a one-element list and this is just ``base_loss``.
        target, weight: as for the base loss (the same for every step).
        base_loss: a function ``(logits, target, weight, *, reduction) -> Tensor``.
        reduction: passed to ``base_loss`` ("per_sample" gives the (N,) step-average).
        step_weights: ``a_k`` (default all 1: the plain mean over steps).
    """
    if len(step_logits) == 0:
        raise ValueError("recurrent_loss needs at least one step")
    if step_weights is None:
        step_weights = [1.0] * len(step_logits)
    if len(step_weights) != len(step_logits):
        raise ValueError(f"{len(step_weights)} step weights given for {len(step_logits)} steps")
    if any(a < 0 for a in step_weights) or sum(step_weights) <= 0:
        raise ValueError("step weights must be non-negative and not all zero")
    total = sum(
        a * base_loss(logits, target, weight, reduction=reduction)
        for a, logits in zip(step_weights, step_logits)
    )
    return total / float(sum(step_weights))


def nr_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    *,
    reduction: str = "mean",
) -> torch.Tensor:
    """The noise-robust Dice loss (:mod:`AutoCTVLib.noisy.robust_losses`, γ = 1.5) as a
    training loss: ``"mean"`` pools the sums over the batch (the paper's form), ``"per_sample"``
    gives one loss per patch (for loss weighting); ``"sum"`` is the per-sample losses' sum."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    if reduction == "mean":
        return noise_robust_dice_loss(logits, target, weight, reduction="mean")
    per_sample = noise_robust_dice_loss(logits, target, weight, reduction="per_sample")
    return per_sample if reduction == "per_sample" else per_sample.sum()


LOSSES: dict[str, LossFunction] = {
    "bce": bce_loss,
    "dice": soft_dice_loss,
    "bce_dice": bce_dice_loss,
    "nr_dice": nr_dice_loss,
}


def get_loss(name: str) -> LossFunction:
    """The loss function registered as ``name`` ("bce", "dice", "bce_dice" or "nr_dice")."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]
