"""Loss-weighting strategies: how the per-sample losses of a batch become the batch loss.

A strategy is a ``torch.nn.Module`` (so its parameters, if any, can join the optimiser and be
checkpointed) called as::

    result = strategy(per_sample_loss, image, label, sample_mask=None)
    result.loss.backward()          # into the segmentation network *and* the quality network

* ``"none"`` (:class:`MeanWeighting`): the plain mean of the per-sample losses.
* ``"qam"`` (:class:`QualityWeighting` with ``ocm_lambda=None``): the quality network Φ scores
  each (image, label) pair, a softmax over the batch gives weights Θ_i (Σ Θ_i = 1) and the loss
  is ``Σ_i Θ_i · L_i``. Φ is trained jointly through this loss.
* ``"qam_ocm"`` (:class:`QualityWeighting` with ``ocm_lambda=λ``): the same with the scores
  bounded by Γ(t) = λ·tanh(t) before the softmax (thesis: λ = 2).

What trains Φ (``signal``): ``"loss"`` as published (Φ's gradient is ``Σ_i ∂Θ_i·L_i``), or
``"size_adjusted_loss"`` (``Σ_i ∂Θ_i·(L_i − b(s_i))`` with ``b`` the running mean loss of patches
holding as much label, :mod:`AutoCTVLib.noisy.size_baseline`). Either way the segmentation
network gets ``Σ_i Θ_i·∇L_i`` and the returned loss value is ``Σ_i Θ_i·L_i``.

Shapes: ``per_sample_loss`` (N,), ``image`` (N, C_img, *S), ``label`` (N, n, *S) with S = (y, x)
or (z, y, x); ``sample_mask`` optional boolean (N,) (False: the sample has no known voxel and
neither adds nor dilutes, as in :func:`AutoCTVLib.training.losses.bce_loss`'s mean).

The weights need a batch: with one sample (per process) there is nothing to compare and every
weighting reduces to that sample's loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from AutoCTVLib.noisy.ocm import DEFAULT_OCM_LAMBDA, batch_weights, check_ocm_lambda
from AutoCTVLib.noisy.qam import DEFAULT_QAM_CHANNELS, QualityNetwork, build_quality_network
from AutoCTVLib.noisy.size_baseline import QUALITY_SIGNALS, SizeBaseline, label_shares

WEIGHTING_NAMES = ("none", "qam", "qam_ocm")


@dataclass(frozen=True)
class WeightedLoss:
    """What a strategy returns.

    Attributes:
        loss: the scalar batch loss (with gradients into every network involved).
        weights: (N,) detached weights Θ that were applied (sum 1 over the known samples).
        scores: (N,) detached raw quality scores, or ``None`` for the plain mean.
    """

    loss: torch.Tensor
    weights: torch.Tensor
    scores: torch.Tensor | None


def _check_losses(per_sample_loss: torch.Tensor, sample_mask: torch.Tensor | None) -> None:
    if per_sample_loss.ndim != 1 or per_sample_loss.numel() == 0:
        raise ValueError(
            f"per-sample losses must be a non-empty (N,) tensor, got {tuple(per_sample_loss.shape)}"
        )
    if sample_mask is not None and sample_mask.shape != per_sample_loss.shape:
        raise ValueError(
            f"sample_mask shape {tuple(sample_mask.shape)} differs from the losses' "
            f"{tuple(per_sample_loss.shape)}"
        )


def labelled_weights(
    scores: torch.Tensor,
    ocm_lambda: float | None,
    label: torch.Tensor,
    sample_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weights (N,) shared by quality only among the samples that hold label.

    A known sample without a labelled voxel keeps the plain weight ``1 / K`` (K known samples):
    it shows no contour, so it says nothing of its annotator, and the quality network must not
    be able to silence it (that would leave the network's false positives there untrained). The
    ``L`` labelled samples share ``L / K`` by the softmax of their (bounded) scores. Without
    any labelled sample this is the plain mean; with every sample labelled, :func:`batch_weights`.
    """
    known = (
        torch.ones_like(scores, dtype=torch.bool)
        if sample_mask is None
        else sample_mask.to(torch.bool)
    )
    labelled = known & (label.flatten(1).amax(dim=1) > 0)
    n_known = int(known.sum())
    if n_known == 0:
        return torch.zeros_like(scores, dtype=torch.float32)
    plain = known.float() / n_known
    if not bool(labelled.any()):
        return plain
    share = batch_weights(scores, ocm_lambda, labelled) * (float(labelled.sum()) / n_known)
    return torch.where(labelled, share, plain)


class LossWeighting(nn.Module):
    """Base class of the strategies (see the module docstring)."""

    name: str = ""

    def forward(
        self,
        per_sample_loss: torch.Tensor,
        image: torch.Tensor,
        label: torch.Tensor,
        sample_mask: torch.Tensor | None = None,
    ) -> WeightedLoss:
        raise NotImplementedError


class MeanWeighting(LossWeighting):
    """``"none"``: the mean of the per-sample losses over the known samples (0 if none)."""

    name = "none"

    def forward(
        self,
        per_sample_loss: torch.Tensor,
        image: torch.Tensor,
        label: torch.Tensor,
        sample_mask: torch.Tensor | None = None,
    ) -> WeightedLoss:
        _check_losses(per_sample_loss, sample_mask)
        if sample_mask is None:
            known = torch.ones_like(per_sample_loss)
        else:
            known = sample_mask.to(per_sample_loss.dtype)
        weights = known / known.sum().clamp_min(1.0)
        loss = (per_sample_loss * weights).sum()
        return WeightedLoss(loss=loss, weights=weights.detach(), scores=None)


class QualityWeighting(LossWeighting):
    """``"qam"`` / ``"qam_ocm"``: weights from a jointly trained quality network.

    Args:
        quality_network: Φ (its parameters are this module's parameters).
        ocm_lambda: λ of the OCM, or ``None`` for the plain QAM.
        labelled_only: share the weights only among samples holding label
            (:func:`labelled_weights`).
        signal: what trains Φ, one of :data:`~AutoCTVLib.noisy.size_baseline.QUALITY_SIGNALS`
            (see the module docstring).
    """

    def __init__(
        self,
        quality_network: QualityNetwork,
        ocm_lambda: float | None,
        labelled_only: bool = False,
        signal: str = "loss",
    ) -> None:
        super().__init__()
        if signal not in QUALITY_SIGNALS:
            raise ValueError(
                f"quality signal must be one of {', '.join(QUALITY_SIGNALS)}, got {signal!r}"
            )
        self.quality_network = quality_network
        self.ocm_lambda = None if ocm_lambda is None else check_ocm_lambda(ocm_lambda)
        self.labelled_only = bool(labelled_only)
        self.size_baseline = SizeBaseline() if signal == "size_adjusted_loss" else None
        self.name = "qam" if ocm_lambda is None else "qam_ocm"

    def forward(
        self,
        per_sample_loss: torch.Tensor,
        image: torch.Tensor,
        label: torch.Tensor,
        sample_mask: torch.Tensor | None = None,
    ) -> WeightedLoss:
        _check_losses(per_sample_loss, sample_mask)
        if image.shape[0] != per_sample_loss.shape[0]:
            raise ValueError(
                f"{per_sample_loss.shape[0]} losses for a batch of {image.shape[0]} samples"
            )
        scores = self.quality_network(image, label).float()
        if self.labelled_only:
            weights = labelled_weights(scores, self.ocm_lambda, label, sample_mask)
        else:
            weights = batch_weights(scores, self.ocm_lambda, sample_mask)
        losses = per_sample_loss.float()
        used = weights > 0
        signal = self._signal(losses, label, used)
        # The segmentation network's part (Θ fixed) plus Φ's part, whose value is zero and whose
        # gradient is Σ ∂Θ_i·signal_i. Samples without a known voxel have weight 0; torch.where
        # keeps a non-finite loss there from turning the sum into NaN.
        zero = torch.zeros_like(weights)
        segmentation = torch.where(used, weights.detach() * losses, zero).sum()
        quality = torch.where(used, weights * signal, zero).sum()
        return WeightedLoss(
            loss=segmentation + (quality - quality.detach()),
            weights=weights.detach(),
            scores=scores.detach(),
        )

    def _signal(
        self, losses: torch.Tensor, label: torch.Tensor, used: torch.Tensor
    ) -> torch.Tensor:
        """What Φ's weights are judged by (N,), detached: the loss or its size residual."""
        if self.size_baseline is None:
            return torch.where(used, losses.detach(), torch.zeros_like(losses))
        return self.size_baseline.residual(losses, label_shares(label), used, update=self.training)


def build_loss_weighting(
    name: str,
    *,
    spatial_dims: int,
    label_channels: int,
    image_channels: int = 1,
    ocm_lambda: float = DEFAULT_OCM_LAMBDA,
    qam_channels: tuple[int, ...] = DEFAULT_QAM_CHANNELS,
    qam_norm: str = "batch",
    seed: int | None = None,
    labelled_only: bool = False,
    signal: str = "loss",
) -> LossWeighting:
    """The strategy called ``name`` ("none", "qam" or "qam_ocm").

    Args:
        name: see :data:`WEIGHTING_NAMES`.
        spatial_dims: 2 or 3 (the quality network's convolutions).
        label_channels: label classes ``n`` (the quality network takes ``n + image_channels``).
        image_channels: image channels (1 for CT).
        ocm_lambda: λ for ``"qam_ocm"`` (ignored otherwise).
        qam_channels, qam_norm: the quality network's block widths and normalisation.
        seed: initialises the quality network's weights (``None``: torch's global state).
        labelled_only: share the weights only among samples holding label
            (:func:`labelled_weights`).
        signal: what trains the quality network (:class:`QualityWeighting`).
    """
    if name not in WEIGHTING_NAMES:
        raise ValueError(
            f"loss weighting must be one of {', '.join(WEIGHTING_NAMES)}, got {name!r}"
        )
    if name == "none":
        return MeanWeighting()
    network = build_quality_network(
        spatial_dims=spatial_dims,
        image_channels=image_channels,
        label_channels=label_channels,
        channels=tuple(qam_channels),
        norm=qam_norm,
        seed=seed,
    )
    return QualityWeighting(
        network,
        ocm_lambda if name == "qam_ocm" else None,
        labelled_only=labelled_only,
        signal=signal,
    )
