"""The Overfitting Control Module (OCM) and the batch softmax that turns scores into weights.

The quality network gives every sample ``i`` of a batch a raw score ``t_i`` (any real number).
The OCM bounds it, ``Γ(t) = λ·tanh(t)`` ∈ (−λ, λ), and a softmax over the batch gives the
sample weights::

    Θ_i = exp(Γ(t_i)) / Σ_j exp(Γ(t_j)),      Σ_i Θ_i = 1,      Θ_i / Θ_j ≤ e^(2λ)

Without the OCM (plain QAM) the softmax is taken over the raw scores, so one sample can take
almost all the weight; the bound keeps every sample in play (λ = 2: ratio at most e⁴ ≈ 54.6).
As λ → 0 every weight tends to 1/N and the weighted loss to the plain mean.
"""

from __future__ import annotations

import math

import torch

#: The thesis' λ.
DEFAULT_OCM_LAMBDA = 2.0


def check_ocm_lambda(ocm_lambda: float) -> float:
    """Return ``ocm_lambda`` as a float if it is a finite number ≥ 0, else raise ``ValueError``."""
    if isinstance(ocm_lambda, bool) or not isinstance(ocm_lambda, (int, float)):
        raise ValueError(f"the OCM bound λ must be a number, got {ocm_lambda!r}")
    if not (math.isfinite(float(ocm_lambda)) and ocm_lambda >= 0):
        raise ValueError(f"the OCM bound λ must be finite and non-negative, got {ocm_lambda}")
    return float(ocm_lambda)


def ocm_bound(scores: torch.Tensor, ocm_lambda: float = DEFAULT_OCM_LAMBDA) -> torch.Tensor:
    """``Γ(t) = λ·tanh(t)``, element-wise: raw scores mapped into (−λ, λ)."""
    return check_ocm_lambda(ocm_lambda) * torch.tanh(scores)


def max_weight_ratio(ocm_lambda: float) -> float:
    """The largest possible ratio between two weights of a batch under the OCM, ``e^(2λ)``."""
    return math.exp(2.0 * check_ocm_lambda(ocm_lambda))


def batch_weights(
    scores: torch.Tensor,
    ocm_lambda: float | None = DEFAULT_OCM_LAMBDA,
    sample_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample weights Θ (N,) that sum to 1, from raw scores (N,).

    Args:
        scores: raw quality scores, one per sample (the output of the quality network).
        ocm_lambda: λ of the OCM, or ``None`` for the plain QAM (softmax of the raw scores).
        sample_mask: optional boolean (N,); samples marked False (e.g. a patch without a single
            known voxel) get weight 0 and the others share the whole weight. If no sample is
            marked True every weight is 0.

    The softmax is computed in float32 (or the scores' dtype if wider).
    """
    if scores.ndim != 1 or scores.numel() == 0:
        raise ValueError(f"scores must be a non-empty (N,) tensor, got shape {tuple(scores.shape)}")
    logits = scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores
    if ocm_lambda is not None:
        logits = ocm_bound(logits, ocm_lambda)
    if sample_mask is None:
        return torch.softmax(logits, dim=0)
    if sample_mask.shape != scores.shape:
        raise ValueError(
            f"sample_mask shape {tuple(sample_mask.shape)} differs from {tuple(scores.shape)}"
        )
    mask = sample_mask.to(torch.bool)
    if not bool(mask.any()):
        return torch.zeros_like(logits)
    masked = torch.where(mask, logits, torch.full_like(logits, -math.inf))
    return torch.softmax(masked, dim=0)
