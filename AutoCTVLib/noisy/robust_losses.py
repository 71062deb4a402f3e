"""A published noise-robust loss, the stronger baseline beside QAM/OCM.

**Noise-robust Dice loss** (Wang G. et al., "A noise-robust framework for automatic
segmentation of COVID-19 pneumonia lesions from CT images", IEEE TMI 39(8), 2020)::

    L_NR-Dice = Σ_v w_v·|p_v − t_v|^γ / (Σ_v w_v·p_v² + Σ_v w_v·t_v² + ε),     1 ≤ γ ≤ 2

with ``p = sigmoid(logits)``, label ``t`` and voxel weight ``w`` (0 = unknown voxel). With γ = 2 it
equals the V-Net soft Dice loss ``1 − 2Σpt / (Σp² + Σt²)`` (Milletari et al. 2016); with γ = 1 it
is an MAE normalised by the region size. The MAE-like exponent (the paper uses γ = 1.5) bounds
the pull of a voxel whose label is wrong, which is what makes MAE robust to label noise (Ghosh
et al. 2017), while the normalisation keeps Dice's insensitivity to class imbalance.

Shapes follow :mod:`AutoCTVLib.training.losses`: logits/target (N, C, *S), weight ``None`` or
broadcastable to (N, C, *S). The sums run per channel, then channels are averaged:

* ``reduction="mean"``: the sums run over the whole batch (as in the paper's implementation),
  giving one scalar;
* ``reduction="per_sample"``: the sums run over each sample, giving (N,) (for loss weighting).
  A channel whose label is empty in a sample is ill-posed here (the ratio grows as the
  prediction shrinks), so use it only where every sample contains every structure.
"""

from __future__ import annotations

import torch

NR_DICE_GAMMA = 1.5
NR_DICE_EPSILON = 1e-5
REDUCTIONS = ("mean", "per_sample")


def noise_robust_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    *,
    reduction: str = "mean",
    gamma: float = NR_DICE_GAMMA,
    epsilon: float = NR_DICE_EPSILON,
) -> torch.Tensor:
    """Noise-robust Dice loss on logits (see the module docstring)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    if not 1.0 <= float(gamma) <= 2.0:
        raise ValueError(f"gamma must be between 1 and 2, got {gamma}")
    if epsilon <= 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    if logits.ndim < 3 or target.shape != logits.shape:
        raise ValueError(
            f"logits and target must be equal (N, C, *spatial) shapes, got "
            f"{tuple(logits.shape)} and {tuple(target.shape)}"
        )
    logits = logits.float()
    probability = torch.sigmoid(logits)
    target = target.to(probability.dtype)
    w = torch.ones_like(probability) if weight is None else weight.to(probability.dtype)
    w = w.expand_as(probability)
    if bool((w < 0).any()):
        raise ValueError("weight must be non-negative (0 = unknown voxel)")
    error = w * (probability - target).abs().pow(float(gamma))
    energy = w * (probability.square() + target.square())
    spatial_axes = tuple(range(2, logits.ndim))
    if reduction == "mean":
        axes = (0, *spatial_axes)
        ratio = error.sum(dim=axes) / (energy.sum(dim=axes) + epsilon)  # (C,)
        return ratio.mean()
    ratio = error.sum(dim=spatial_axes) / (energy.sum(dim=spatial_axes) + epsilon)  # (N, C)
    return ratio.mean(dim=1)
