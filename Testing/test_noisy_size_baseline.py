"""The size-adjusted quality signal: running loss by labelled share, and what Φ is trained by."""

from __future__ import annotations

import pytest
import torch

from AutoCTVLib.noisy.ocm import batch_weights
from AutoCTVLib.noisy.size_baseline import SHARE_EDGES, SizeBaseline
from AutoCTVLib.noisy.weighting import build_loss_weighting


def test_share_bins() -> None:
    baseline = SizeBaseline()
    shares = torch.tensor([0.0, 0.005, 0.01, 0.015, 0.3, 0.5, 1.0])
    assert baseline.bin_index(shares).tolist() == [0, 1, 1, 2, 6, 7, 7]
    assert baseline.mean.shape == (len(SHARE_EDGES) + 1,)
    with pytest.raises(ValueError, match="decay"):
        SizeBaseline(decay=1.0)


def test_residual_by_hand() -> None:
    baseline = SizeBaseline(decay=0.9)
    share = torch.tensor([0.5, 0.5, 0.003, 0.0])
    known = torch.tensor([True, True, True, False])
    # first batch: a bin starts at this batch's mean (0.2 for the two large patches)
    first = baseline.residual(torch.tensor([0.1, 0.3, 0.8, 5.0]), share, known)
    assert first.tolist() == pytest.approx([-0.1, 0.1, 0.0, 0.0])
    assert baseline.mean[7].item() == pytest.approx(0.2)
    assert baseline.mean[1].item() == pytest.approx(0.8)
    assert not baseline.seen[0]  # the unknown patch left its bin alone
    # second batch: residuals against the running means, then the means move 10 % towards it
    second = baseline.residual(torch.tensor([0.4, 0.6]), torch.tensor([0.5, 0.002]), known[:2])
    assert second.tolist() == pytest.approx([0.2, -0.2])
    assert baseline.mean[7].item() == pytest.approx(0.9 * 0.2 + 0.1 * 0.4)
    assert baseline.mean[1].item() == pytest.approx(0.9 * 0.8 + 0.1 * 0.6)
    # reading only (update False) keeps the means
    before = baseline.mean.clone()
    baseline.residual(torch.tensor([9.0]), torch.tensor([0.5]), torch.tensor([True]), update=False)
    assert torch.equal(baseline.mean, before)


def cubes(shares: list[float], size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels (N, 1, size, size, size) whose labels fill the first slices."""
    image = torch.rand(len(shares), 1, size, size, size, generator=torch.Generator().manual_seed(0))
    label = torch.zeros_like(image)
    for i, share in enumerate(shares):
        label[i, :, : round(share * size)] = 1.0
    return image, label


def test_the_published_signal_keeps_the_weighted_loss_and_its_gradients() -> None:
    image, label = cubes([0.25, 0.5, 0.75, 1.0])
    weighting = build_loss_weighting(
        "qam_ocm", spatial_dims=3, label_channels=1, qam_channels=(4, 8), seed=0
    )
    losses = torch.tensor([0.9, 0.2, 0.4, 0.1], requires_grad=True)
    result = weighting(losses, image, label)
    result.loss.backward()
    got = [p.grad.clone() for p in weighting.parameters()]
    loss_grad = losses.grad.clone()
    weighting.zero_grad()
    losses.grad = None
    scores = weighting.quality_network(image, label)
    expected = (batch_weights(scores, 2.0) * losses).sum()
    expected.backward()
    assert result.loss.item() == pytest.approx(expected.item())
    assert torch.allclose(loss_grad, losses.grad)
    for mine, reference in zip(got, (p.grad for p in weighting.parameters())):
        assert torch.allclose(mine, reference, atol=1e-7)


def test_size_adjusted_signal_judges_a_label_against_labels_of_its_size() -> None:
    # Two small and two large labels; each pair's mean loss is its bin's baseline. The large
    # labels lose less (as large labels do), but within each pair only the worse label loses
    # weight: Φ's gradient is ∂Θ·(L − b(s)), never ∂Θ·L.
    image, label = cubes([0.125, 0.125, 0.875, 0.875])
    weighting = build_loss_weighting(
        "qam_ocm",
        spatial_dims=3,
        label_channels=1,
        qam_channels=(4, 8),
        seed=0,
        signal="size_adjusted_loss",
    )
    assert weighting.size_baseline is not None
    losses = torch.tensor([0.8, 0.6, 0.3, 0.1], requires_grad=True)
    result = weighting(losses, image, label)
    result.loss.backward()
    theta = result.weights
    # the value and the segmentation network's gradient are those of Σ Θ_i L_i
    assert result.loss.item() == pytest.approx(float((theta * losses.detach()).sum()))
    assert torch.allclose(losses.grad, theta)
    got = [p.grad.clone() for p in weighting.parameters()]
    weighting.zero_grad()
    scores = weighting.quality_network(image, label)
    residual = torch.tensor([0.1, -0.1, 0.1, -0.1])
    (batch_weights(scores, 2.0) * residual).sum().backward()
    for mine, reference in zip(got, (p.grad for p in weighting.parameters())):
        assert torch.allclose(mine, reference, atol=1e-7)
    # the running baseline is part of the module's state (checkpointed with Φ)
    state = weighting.state_dict()
    assert "size_baseline.mean" in state and "size_baseline.seen" in state
    assert "size_baseline.edges" not in state


def test_losses_equal_to_their_size_baseline_leave_the_quality_network_untouched() -> None:
    image, label = cubes([0.125, 0.875])
    weighting = build_loss_weighting(
        "qam", spatial_dims=3, label_channels=1, qam_channels=(4, 8), signal="size_adjusted_loss"
    )
    weighting(torch.tensor([0.7, 0.1]), image, label)  # the baseline learns both bins
    weighting.zero_grad()
    weighting(torch.tensor([0.7, 0.1]), image, label).loss.backward()
    for parameter in weighting.parameters():
        assert parameter.grad is None or float(parameter.grad.abs().max()) == 0.0
    with pytest.raises(ValueError, match="quality signal"):
        build_loss_weighting(
            "qam", spatial_dims=3, label_channels=1, qam_channels=(4, 8), signal="volume"
        )
