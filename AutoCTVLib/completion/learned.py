"""The ``learned`` method: one forward pass of the completion network on the model grid.

Input (N = 1, 4 channels, model grid (z, y, x)): windowed CT, sparse label, annotated-slice mask,
shape-based interpolation between the annotated planes
(:class:`~AutoCTVLib.completion.grid.CompletionInputs`). Output: the probability (sigmoid of the
logit) that each model voxel belongs to the drawn structure. Crops larger than
:data:`MAX_SINGLE_PASS_VOXELS` are predicted window by window (Gaussian blending).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from AutoCTVLib.completion.grid import CompletionInputs
from AutoCTVLib.inference.sliding_window import sliding_window_inference

logger = logging.getLogger(__name__)

#: Above this many model voxels (about 144³) the crop is predicted in overlapping windows.
MAX_SINGLE_PASS_VOXELS = 3_000_000
WINDOW_ZYX = (128, 128, 128)


def _predictor(network: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def predict(batch: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(network(batch).float())

    return predict


@torch.no_grad()
def predict_probability(
    network: nn.Module,
    inputs: CompletionInputs,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Probability of the structure on the model grid, float32 (z, y, x) in [0, 1].

    The network is put in evaluation mode for the pass and restored afterwards.
    """
    device = torch.device(device)
    was_training = network.training
    network.eval()
    try:
        network.to(device)
        batch = torch.from_numpy(inputs.stacked())[None].to(device)
        predict = _predictor(network)
        if math.prod(inputs.model_geometry.shape_zyx) <= MAX_SINGLE_PASS_VOXELS:
            probability = predict(batch)
        else:
            logger.info("predicting %s in windows", inputs.model_geometry.describe())
            probability = sliding_window_inference(batch, WINDOW_ZYX, predict, overlap=0.25)
        return probability[0, 0].float().cpu().numpy()
    finally:
        network.train(was_training)
