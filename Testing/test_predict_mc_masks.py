"""Dropout masks from per-batch generators: the distribution of ``F.dropout``, reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from AutoCTVLib.predict.mc_masks import (
    MaskSource,
    element_dropout,
    element_dropout_from,
    mask_generator,
)

CPU = torch.device("cpu")


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
def test_numpy_mask_keeps_one_minus_p_and_scales_like_f_dropout(
    layout: torch.memory_format,
) -> None:
    x = torch.rand(2, 8, 20, 24, 28).add_(0.5).contiguous(memory_format=layout)
    p = 0.1
    out = element_dropout(x, p, mask_generator(1, CPU))
    assert out.shape == x.shape
    kept = out != 0
    n = x.numel()
    fraction = float(kept.float().mean())
    assert abs(fraction - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)  # binomial, 5 SD
    torch.testing.assert_close(out[kept], x[kept] / (1 - p))
    # no structure: every channel and slice keeps about the same share
    per_channel = kept.float().mean(dim=(0, 2, 3, 4))
    assert float((per_channel - (1 - p)).abs().max()) < 0.02


def test_same_seed_same_mask_other_seed_other_mask() -> None:
    x = torch.ones(1, 4, 10, 10, 10)
    first = element_dropout(x, 0.3, mask_generator(5, CPU))
    again = element_dropout(x, 0.3, mask_generator(5, CPU))
    other = element_dropout(x, 0.3, mask_generator(6, CPU))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_torch_generator_path_equals_f_dropout_under_the_same_seed() -> None:
    x = torch.rand(1, 3, 8, 8, 8)
    torch.manual_seed(9)
    reference = nn.functional.dropout(x, 0.2, training=True)
    assert torch.equal(element_dropout(x, 0.2, torch.Generator().manual_seed(9)), reference)


def test_extreme_probabilities() -> None:
    x = torch.rand(1, 2, 4, 4, 4)
    assert element_dropout(x, 0.0, mask_generator(0, CPU)) is x
    assert not element_dropout(x, 1.0, mask_generator(0, CPU)).any()


def test_patched_dropout_layers_draw_from_the_source_and_are_restored() -> None:
    model = nn.Sequential(nn.Conv3d(1, 8, 1), nn.Dropout(0.5), nn.Dropout3d(0.1)).train()
    x = torch.rand(1, 1, 6, 6, 6)
    source = MaskSource(mask_generator(3, CPU))
    with element_dropout_from(model, source):
        torch.manual_seed(0)  # the channel dropout still draws from torch
        patched = model(x)
        source.generator = mask_generator(3, CPU)
        torch.manual_seed(0)
        assert torch.equal(model(x), patched)  # the same generator state, the same masks
        source.generator = None  # torch's own dropout again
        torch.manual_seed(0)
        torch_own = model(x)
    assert "forward" not in vars(model[1])  # restored
    torch.manual_seed(0)
    assert torch.equal(model(x), torch_own)
    assert not torch.equal(patched, torch_own)


def test_numpy_masks_refuse_other_dtypes() -> None:
    with pytest.raises(ValueError, match="float32"):
        element_dropout(torch.ones(2, 2, dtype=torch.float64), 0.5, mask_generator(0, CPU))
