"""Recurrent refinement (Mosinska et al. 2018): apply a network K times, feeding back its output.

::

    p_0 = 0 (all-zero segmentation, N × C_out × S)
    for k = 1..K:   logits_k = net(concat[image, p_(k-1)])   ;   p_k = sigmoid(logits_k)

``forward_steps(x)`` returns ``[logits_1, ..., logits_K]`` (train with a loss over every step,
:func:`AutoCTVLib.training.losses.recurrent_loss`); ``forward(x)`` returns ``logits_K`` only, so
inference code treats recurrent and plain networks alike. Gradients flow through the fed-back
probabilities (the loop is unrolled, as in the paper).
"""

from __future__ import annotations

import torch
from torch import nn


class RecurrentRefinement(nn.Module):
    """Wrap ``network`` (which takes image + previous probability channels) for K steps.

    Args:
        network: maps (N, image_channels + C_out, *S) → logits (N, C_out, *S); it must expose
            ``in_channels`` and ``out_channels`` attributes (the U-Net does).
        steps: K ≥ 1 (1 is allowed and is the plain network with a zero extra input).
        image_channels: channels of the image part of the input.

    The state-dict keys are the wrapped network's, prefixed with ``network.``.
    """

    def __init__(self, network: nn.Module, *, steps: int, image_channels: int) -> None:
        super().__init__()
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        if isinstance(image_channels, bool) or not isinstance(image_channels, int):
            raise ValueError(f"image_channels must be a positive integer, got {image_channels!r}")
        out_channels = getattr(network, "out_channels", None)
        in_channels = getattr(network, "in_channels", None)
        if not isinstance(out_channels, int) or not isinstance(in_channels, int):
            raise ValueError("the wrapped network must expose integer in_channels and out_channels")
        if image_channels < 1 or in_channels != image_channels + out_channels:
            raise ValueError(
                f"the wrapped network takes {in_channels} channels; it needs image_channels "
                f"({image_channels}) + out_channels ({out_channels})"
            )
        self.network = network
        self.steps = steps
        self.image_channels = image_channels
        self.in_channels = image_channels
        self.out_channels = out_channels

    def forward_steps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every step, first to last; ``x`` is the image (N, image_channels, *S)."""
        if x.ndim < 3 or x.shape[1] != self.image_channels:
            raise ValueError(
                f"expected {self.image_channels} image channels in (N, C, ...), "
                f"got shape {tuple(x.shape)}"
            )
        probability = x.new_zeros((x.shape[0], self.out_channels, *x.shape[2:]))
        step_logits = []
        for _ in range(self.steps):
            logits = self.network(torch.cat([x, probability], dim=1))
            step_logits.append(logits)
            probability = torch.sigmoid(logits)
        return step_logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The last step's logits (N, C_out, *S)."""
        return self.forward_steps(x)[-1]
