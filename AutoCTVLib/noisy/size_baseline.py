"""The quality network's training signal with the label-size effect taken out.

The quality network Φ is trained through the weighted loss ``Σ_i Θ_i·L_i``: it raises the
weight of patches whose loss is low. On the fine-grid segmenter that loss mostly measures how
much CTV a patch holds (a patch full of CTV has a lower Dice loss than one with a thin rim,
whoever drew it), so Φ learns "large label = trustworthy" and favours the widest annotator
(``benchmarks/results/noisy_labels_segmenter.md``). The signal ``"size_adjusted_loss"`` trains
Φ with each patch's loss *minus the loss expected for a patch holding that much label*, so
what is left is how much worse (or better) this label is than others of its size:

    r_i = L_i − b(s_i),        s_i = labelled share of patch i ∈ [0, 1]

``b`` is a running mean of the per-patch loss in bins of labelled share (:data:`SHARE_EDGES`:
no label, then bins that widen with the share), an exponential moving average over training
steps (``decay`` per step that fills the bin), so it follows the loss down as the network
learns. A bin seen for the first time starts at this batch's mean loss in it. The segmentation
network itself is still trained with ``Σ_i Θ_i·L_i``; only Φ's gradient changes.
"""

from __future__ import annotations

import torch
from torch import nn

#: Upper edges of the labelled-share bins (a share of exactly 0 has a bin of its own).
SHARE_EDGES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 1.0)

QUALITY_SIGNALS = ("loss", "size_adjusted_loss")
"""What trains the quality network: ``"loss"`` (the method as published: the per-patch loss)
or ``"size_adjusted_loss"`` (the loss less the running mean loss of patches with as much
label, :class:`SizeBaseline`)."""


def label_shares(label: torch.Tensor) -> torch.Tensor:
    """How much of each patch is labelled (N,), in [0, 1]: the mean of its label (N, n, *S)."""
    return label.detach().flatten(1).float().mean(dim=1)


class SizeBaseline(nn.Module):
    """Running mean per-patch loss by labelled share; :meth:`residual` gives ``L − b(s)``.

    Args:
        decay: EMA factor per update of a bin (0.98: about the last 50 batches that reached it).

    Buffers (saved with the quality module in checkpoints): ``mean`` (bins,) running mean loss
    per bin, ``seen`` (bins,) whether a bin has had a patch yet.
    """

    mean: torch.Tensor
    seen: torch.Tensor

    def __init__(self, decay: float = 0.98) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        bins = len(SHARE_EDGES) + 1
        self.register_buffer(
            "edges", torch.tensor(SHARE_EDGES, dtype=torch.float64), persistent=False
        )
        self.register_buffer("mean", torch.zeros(bins, dtype=torch.float64))
        self.register_buffer("seen", torch.zeros(bins, dtype=torch.bool))

    def bin_index(self, share: torch.Tensor) -> torch.Tensor:
        """Bin of each labelled share (N,): 0 for no label, 1.. for the edges' intervals."""
        share = share.detach().to(torch.float64)
        inner = torch.bucketize(share.clamp(0.0, 1.0), self.edges.to(share.device), right=False)
        return torch.where(share > 0, inner.clamp_max(len(SHARE_EDGES) - 1) + 1, 0)

    @torch.no_grad()
    def residual(
        self, loss: torch.Tensor, share: torch.Tensor, known: torch.Tensor, update: bool = True
    ) -> torch.Tensor:
        """``L_i − b(s_i)`` (N,), float32, no gradient; then (``update``) fold the batch in.

        Args:
            loss: per-patch losses (N,).
            share: labelled share of each patch (N,), in [0, 1].
            known: boolean (N,); unknown patches get residual 0 and leave the means alone.
            update: move each bin's mean towards this batch (training); False only reads.
        """
        loss64 = loss.detach().to(torch.float64)
        index = self.bin_index(share)
        known = known.to(torch.bool) & torch.isfinite(loss64)
        batch_mean = torch.zeros_like(self.mean)
        counts = torch.zeros_like(self.mean)
        batch_mean.index_add_(0, index[known], loss64[known])
        counts.index_add_(0, index[known], torch.ones_like(loss64[known]))
        present = counts > 0
        batch_mean = torch.where(present, batch_mean / counts.clamp_min(1.0), batch_mean)
        baseline = torch.where(self.seen, self.mean, batch_mean)
        result = torch.where(known, loss64 - baseline[index], torch.zeros_like(loss64))
        if update:
            blended = self.decay * baseline + (1.0 - self.decay) * batch_mean
            self.mean.copy_(torch.where(present, blended, self.mean))
            self.seen.logical_or_(present)
        return result.to(torch.float32)
