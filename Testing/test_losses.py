"""Losses: hand-computed values, unknown voxels (weight 0) ignored, per-sample reduction."""

from __future__ import annotations

import math

import pytest
import torch

from AutoCTVLib.training.losses import (
    bce_dice_loss,
    bce_loss,
    get_loss,
    recurrent_loss,
    soft_dice_loss,
)

LN2 = math.log(2.0)


def tiny() -> tuple[torch.Tensor, torch.Tensor]:
    """Two voxels: logits 0 and ln 3 (probabilities 0.5 and 0.75), labels 1 and 0."""
    logits = torch.tensor([0.0, math.log(3.0)]).reshape(1, 1, 1, 1, 2)
    target = torch.tensor([1.0, 0.0]).reshape(1, 1, 1, 1, 2)
    return logits, target


def test_bce_by_hand() -> None:
    logits, target = tiny()
    # -ln 0.5 = ln 2 and -ln(1 - 0.75) = ln 4 = 2 ln 2
    assert float(bce_loss(logits, target)) == pytest.approx(1.5 * LN2)
    weight = torch.tensor([1.0, 3.0]).reshape(1, 1, 1, 1, 2)
    assert float(bce_loss(logits, target, weight)) == pytest.approx((LN2 + 3 * 2 * LN2) / 4)


def test_soft_dice_by_hand() -> None:
    logits, target = tiny()
    # intersection 0.5, Σp = 1.25, Σt = 1
    assert float(soft_dice_loss(logits, target, smooth=0.0)) == pytest.approx(1 - 1.0 / 2.25)
    assert float(soft_dice_loss(logits, target, smooth=1.0)) == pytest.approx(1 - 2.0 / 3.25)
    weight = torch.tensor([2.0, 1.0]).reshape(1, 1, 1, 1, 2)
    # weighted: 2·(2·0.5·1) / (2·0.5 + 1·0.75 + 2·1) = 2 / 3.75
    expected = 1 - 2.0 / 3.75
    assert float(soft_dice_loss(logits, target, weight, smooth=0.0)) == pytest.approx(expected)


def test_bce_dice_is_the_weighted_sum() -> None:
    logits, target = tiny()
    combined = bce_dice_loss(logits, target, smooth=0.0, bce_weight=2.0, dice_weight=0.5)
    assert float(combined) == pytest.approx(2.0 * 1.5 * LN2 + 0.5 * (1 - 1.0 / 2.25))
    assert get_loss("bce_dice") is bce_dice_loss
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("focal")


def test_empty_prediction_on_empty_target_costs_nothing_with_smoothing() -> None:
    logits = torch.full((1, 1, 3, 3, 3), -30.0)
    target = torch.zeros_like(logits)
    assert float(soft_dice_loss(logits, target)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("loss", [bce_loss, soft_dice_loss, bce_dice_loss])
def test_unknown_voxels_change_nothing(loss) -> None:
    generator = torch.Generator().manual_seed(0)
    shape = (2, 1, 4, 5, 6)
    logits = torch.randn(shape, generator=generator)
    target = (torch.rand(shape, generator=generator) > 0.5).float()
    weight = (torch.rand(shape, generator=generator) > 0.4).float()
    unknown = weight == 0

    def value_and_grad(lg: torch.Tensor, tg: torch.Tensor) -> tuple[float, torch.Tensor]:
        lg = lg.clone().requires_grad_(True)
        value = loss(lg, tg, weight)
        value.backward()
        return float(value.detach()), lg.grad

    value, grad = value_and_grad(logits, target)
    changed_logits = torch.where(unknown, torch.randn(shape, generator=generator) * 50, logits)
    changed_target = torch.where(unknown, 1 - target, target)
    other_value, other_grad = value_and_grad(changed_logits, changed_target)
    assert other_value == pytest.approx(value, rel=1e-6)
    assert torch.allclose(grad, other_grad, atol=1e-7)
    assert torch.count_nonzero(grad[unknown]) == 0
    # ... while changing a known voxel does change the loss.
    known_index = tuple(int(i) for i in torch.nonzero(~unknown)[0])
    nudged = logits.clone()
    nudged[known_index] += 3.0
    assert float(loss(nudged, target, weight)) != pytest.approx(value, rel=1e-6)


@pytest.mark.parametrize("loss", [bce_loss, soft_dice_loss, bce_dice_loss])
def test_per_sample_reduction_and_mean_over_known_samples(loss) -> None:
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn((3, 1, 3, 4, 4), generator=generator)
    target = (torch.rand((3, 1, 3, 4, 4), generator=generator) > 0.5).float()
    weight = torch.ones_like(logits)
    weight[2] = 0.0  # a patch without one annotated voxel
    per_sample = loss(logits, target, weight, reduction="per_sample")
    assert per_sample.shape == (3,)
    for i in range(2):
        alone = loss(logits[i : i + 1], target[i : i + 1], weight[i : i + 1])
        assert float(per_sample[i]) == pytest.approx(float(alone), rel=1e-6)
    assert float(per_sample[2]) == 0.0
    mean = loss(logits, target, weight, reduction="mean")
    assert float(mean) == pytest.approx(float(per_sample[:2].mean()), rel=1e-6)
    assert float(loss(logits, target, weight, reduction="sum")) == pytest.approx(
        float(per_sample.sum()), rel=1e-6
    )


def test_weight_broadcasts_over_channels() -> None:
    logits = torch.randn(1, 2, 3, 3, 3)
    target = (torch.rand(1, 2, 3, 3, 3) > 0.5).float()
    weight = torch.ones(1, 1, 3, 3, 3)
    assert float(bce_loss(logits, target, weight)) == pytest.approx(float(bce_loss(logits, target)))


def test_recurrent_loss_averages_over_steps() -> None:
    logits, target = tiny()
    steps = [logits, logits * 2, logits - 1]
    each = [float(bce_dice_loss(step, target)) for step in steps]
    assert float(recurrent_loss(steps, target)) == pytest.approx(sum(each) / 3)
    weighted = recurrent_loss(steps, target, base_loss=bce_loss, step_weights=[0, 1, 3])
    expected = (float(bce_loss(steps[1], target)) + 3 * float(bce_loss(steps[2], target))) / 4
    assert float(weighted) == pytest.approx(expected)
    per_sample = recurrent_loss(steps, target, reduction="per_sample")
    assert per_sample.shape == (1,)
    with pytest.raises(ValueError, match="at least one step"):
        recurrent_loss([], target)
    with pytest.raises(ValueError, match="2 step weights given for 3 steps"):
        recurrent_loss(steps, target, step_weights=[1, 1])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda lg, tg: bce_loss(lg, tg[..., :1]), "target shape"),
        (lambda lg, tg: bce_loss(lg, tg, -torch.ones_like(lg)), "non-negative"),
        (lambda lg, tg: bce_loss(lg, tg, torch.ones(2, 2)), "axes"),
        (lambda lg, tg: bce_loss(lg, tg, torch.ones(1, 3, 1, 1, 2)), "broadcast"),
        (lambda lg, tg: soft_dice_loss(lg, tg, reduction="none"), "reduction"),
        (lambda lg, tg: soft_dice_loss(lg, tg, smooth=-1.0), "smooth"),
        (lambda lg, tg: bce_loss(lg[0, 0, 0], tg[0, 0, 0]), "logits must be"),
    ],
)
def test_bad_inputs_raise(call, message: str) -> None:
    logits, target = tiny()
    with pytest.raises(ValueError, match=message):
        call(logits, target)


def test_half_precision_logits_are_summed_in_float32() -> None:
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn((1, 1, 40, 64, 64), generator=generator)  # 163 840 voxels > fp16 max
    target = (torch.rand(logits.shape, generator=generator) > 0.5).float()
    for loss in (bce_loss, soft_dice_loss, bce_dice_loss):
        reference = float(loss(logits, target))
        half = loss(logits.half(), target)
        assert half.dtype == torch.float32
        assert float(half) == pytest.approx(reference, rel=1e-3)


def test_noise_robust_dice_is_a_training_loss() -> None:
    """``"nr_dice"``: the TMI 2020 loss by hand, pooled over the batch for the mean."""
    logits, target = tiny()  # p = 0.5, 0.75; t = 1, 0
    expected = (0.5**1.5 + 0.75**1.5) / (0.25 + 0.5625 + 1.0 + 1e-5)
    loss = get_loss("nr_dice")
    assert float(loss(logits, target)) == pytest.approx(expected, rel=1e-6)
    generator = torch.Generator().manual_seed(2)
    batch = torch.randn((3, 1, 3, 4, 4), generator=generator)
    labels = (torch.rand((3, 1, 3, 4, 4), generator=generator) > 0.5).float()
    per_sample = loss(batch, labels, None, reduction="per_sample")
    assert per_sample.shape == (3,)
    assert float(per_sample[1]) == pytest.approx(float(loss(batch[1:2], labels[1:2])), rel=1e-6)
    assert float(loss(batch, labels, None, reduction="sum")) == pytest.approx(
        float(per_sample.sum()), rel=1e-6
    )
    # the batch mean pools the sums (the paper's form), not the mean of per-sample ratios
    p = torch.sigmoid(batch)
    pooled = (p - labels).abs().pow(1.5).sum() / (p.square().sum() + labels.sum() + 1e-5)
    assert float(loss(batch, labels)) == pytest.approx(float(pooled), rel=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        loss(batch, labels, None, reduction="median")
