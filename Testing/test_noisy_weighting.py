"""Quality Awareness Module, Overfitting Control Module and the loss-weighting strategies."""

from __future__ import annotations

import math

import pytest
import torch

from AutoCTVLib.nn import NetworkConfig, build_network
from AutoCTVLib.noisy.ocm import batch_weights, max_weight_ratio, ocm_bound
from AutoCTVLib.noisy.qam import QualityNetwork, build_quality_network
from AutoCTVLib.noisy.weighting import (
    MeanWeighting,
    QualityWeighting,
    build_loss_weighting,
    labelled_weights,
)
from AutoCTVLib.training.losses import bce_dice_loss


def spread_scores(n: int = 8, scale: float = 50.0) -> torch.Tensor:
    """Raw scores far apart (the plain softmax would give almost all weight to one sample)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, generator=generator) * scale


def test_ocm_weights_sum_to_one_and_stay_within_the_bound() -> None:
    scores = spread_scores()
    for ocm_lambda in (0.5, 2.0, 4.0):
        weights = batch_weights(scores, ocm_lambda)
        assert weights.shape == (8,) and bool((weights > 0).all())
        assert float(weights.sum()) == pytest.approx(1.0, abs=1e-6)
        ratio = float(weights.max() / weights.min())
        assert ratio <= math.exp(2 * ocm_lambda) * (1 + 1e-5)
        assert ratio == pytest.approx(max_weight_ratio(ocm_lambda), rel=1e-3)  # tanh saturates
    assert max_weight_ratio(2.0) == pytest.approx(math.e**4)
    bounded = ocm_bound(scores, 2.0)
    assert float(bounded.abs().max()) <= 2.0
    # without the OCM the same scores give one sample nearly everything
    plain = batch_weights(scores, None)
    assert float(plain.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(plain.max() / plain.min()) > 1e6


def test_masked_samples_get_no_weight() -> None:
    scores = torch.tensor([0.3, -1.0, 2.0, 0.5])
    mask = torch.tensor([True, False, True, True])
    weights = batch_weights(scores, 2.0, mask)
    assert float(weights[1]) == 0.0 and float(weights.sum()) == pytest.approx(1.0)
    assert float(batch_weights(scores, 2.0, torch.zeros(4, dtype=torch.bool)).sum()) == 0.0
    with pytest.raises(ValueError, match="scores"):
        batch_weights(torch.zeros(2, 2), 2.0)
    with pytest.raises(ValueError, match="λ"):
        ocm_bound(scores, -1.0)


def pair(n: int = 6, size: int = 16, spatial_dims: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    shape = (n, 1) + (size,) * spatial_dims
    image = torch.rand(shape, generator=generator)
    label = (torch.rand(shape, generator=generator) > 0.6).float()
    return image, label


def test_small_lambda_reduces_to_the_plain_mean() -> None:
    image, label = pair()
    per_sample = torch.tensor([0.2, 1.5, 0.7, 3.0, 0.05, 0.9])
    network = build_quality_network(spatial_dims=2, image_channels=1, label_channels=1, seed=0)
    for ocm_lambda, tolerance in ((0.0, 1e-6), (1e-6, 1e-5)):
        result = QualityWeighting(network, ocm_lambda)(per_sample, image, label)
        assert result.loss.item() == pytest.approx(float(per_sample.mean()), rel=tolerance)
        assert torch.allclose(result.weights, torch.full((6,), 1 / 6), atol=1e-6)
    mean = MeanWeighting()(per_sample, image, label)
    assert mean.loss.item() == pytest.approx(float(per_sample.mean()), rel=1e-6)
    # a large λ lets the quality network move the loss away from the mean
    strong = QualityWeighting(network, 50.0)(per_sample, image, label)
    assert float(strong.weights.max() / strong.weights.min()) > 1.01
    # samples without a known voxel neither add nor dilute
    mask = torch.tensor([True, True, False, True, True, True])
    masked = MeanWeighting()(per_sample, image, label, mask)
    assert masked.loss.item() == pytest.approx(float(per_sample[mask].mean()), rel=1e-6)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_quality_network_scores_each_pair_and_rejects_bad_input(spatial_dims: int) -> None:
    network = QualityNetwork(
        spatial_dims=spatial_dims, image_channels=1, label_channels=3, channels=(4, 8, 8)
    )
    image = torch.rand((5, 1) + (12,) * spatial_dims)
    labels = torch.zeros((5, 3) + (12,) * spatial_dims)
    assert network(image, labels).shape == (5,)
    # one score per sample: changing sample 0's label changes only its score (eval mode)
    network.eval()
    with torch.no_grad():
        before = network(image, labels)
        labels[0, 1] = 1.0
        after = network(image, labels)
    assert float((after[0] - before[0]).abs()) > 0 and torch.equal(after[1:], before[1:])
    with pytest.raises(ValueError, match="label channels"):
        network(image, labels[:, :2])
    with pytest.raises(ValueError, match="at least 4"):
        network(image[..., :3], labels[..., :3])
    with pytest.raises(ValueError, match="norm"):
        QualityNetwork(spatial_dims=spatial_dims, norm="group")
    with pytest.raises(ValueError, match="channels"):
        QualityNetwork(spatial_dims=spatial_dims, channels=())


@pytest.mark.parametrize("name", ["qam", "qam_ocm"])
def test_quality_network_is_trained_through_the_weighted_loss(name: str) -> None:
    image, label = pair(n=4, size=16, spatial_dims=3)
    segmentation = build_network(NetworkConfig(channels=(4, 8)), seed=0)
    weighting = build_loss_weighting(
        name, spatial_dims=3, label_channels=1, qam_channels=(4, 8), seed=0
    )
    per_sample = bce_dice_loss(segmentation(image), label, reduction="per_sample")
    result = weighting(per_sample, image, label)
    assert float(result.weights.sum()) == pytest.approx(1.0, abs=1e-6)
    assert result.scores is not None and result.scores.shape == (4,)
    result.loss.backward()
    for module in (weighting, segmentation):
        for parameter_name, parameter in module.named_parameters():
            assert parameter.grad is not None, parameter_name
            assert float(parameter.grad.abs().sum()) > 0, parameter_name
    # only the segmentation network is needed afterwards: the weighting adds no parameters to it
    names = {n for n, _ in segmentation.named_parameters()}
    assert not any(n.startswith("quality") for n in names)


def test_build_loss_weighting_names() -> None:
    assert isinstance(build_loss_weighting("none", spatial_dims=2, label_channels=1), MeanWeighting)
    plain = build_loss_weighting("qam", spatial_dims=2, label_channels=3, seed=0)
    bounded = build_loss_weighting("qam_ocm", spatial_dims=2, label_channels=3, seed=0)
    assert isinstance(plain, QualityWeighting) and plain.ocm_lambda is None
    assert isinstance(bounded, QualityWeighting) and bounded.ocm_lambda == 2.0
    assert bounded.quality_network.image_channels + bounded.quality_network.label_channels == 4
    again = build_loss_weighting("qam_ocm", spatial_dims=2, label_channels=3, seed=0)
    first, second = bounded.state_dict(), again.state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)
    with pytest.raises(ValueError, match="loss weighting"):
        build_loss_weighting("mean", spatial_dims=2, label_channels=1)


def test_labelled_only_leaves_patches_without_label_their_plain_weight() -> None:
    scores = spread_scores(6)
    label = torch.zeros(6, 1, 4, 4)
    label[[0, 2, 3], 0, 1, 1] = 1.0  # samples 0, 2 and 3 hold label
    weights = labelled_weights(scores, 2.0, label)
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-6)
    assert weights[[1, 4, 5]].tolist() == pytest.approx([1 / 6] * 3)
    labelled = weights[[0, 2, 3]]
    assert float(labelled.sum()) == pytest.approx(0.5, abs=1e-6)
    # among themselves the labelled samples keep the OCM's proportions
    alone = batch_weights(scores[[0, 2, 3]], 2.0)
    assert torch.allclose(labelled / labelled.sum(), alone, atol=1e-6)
    # every sample labelled: the ordinary weights; none labelled: the plain mean
    full = torch.ones(6, 1, 4, 4)
    assert torch.allclose(labelled_weights(scores, 2.0, full), batch_weights(scores, 2.0))
    empty = torch.zeros(6, 1, 4, 4)
    assert torch.allclose(labelled_weights(scores, 2.0, empty), torch.full((6,), 1 / 6))
    # unknown samples get nothing and do not count in K
    mask = torch.tensor([True, False, True, True, True, True])
    masked = labelled_weights(scores, 2.0, label, mask)
    assert float(masked[1]) == 0.0 and masked[[4, 5]].tolist() == pytest.approx([0.2, 0.2])
    assert float(masked.sum()) == pytest.approx(1.0, abs=1e-6)


def test_labelled_only_weighting_trains_the_quality_network_on_labelled_patches() -> None:
    image, label = pair(n=4)
    label[1] = 0.0
    per_sample = torch.tensor([0.4, 2.0, 0.9, 0.1], requires_grad=True)
    strategy = build_loss_weighting(
        "qam_ocm", spatial_dims=2, label_channels=1, seed=0, labelled_only=True
    )
    result = strategy(per_sample, image, label)
    assert float(result.weights[1]) == pytest.approx(0.25)
    result.loss.backward()
    assert per_sample.grad is not None and float(per_sample.grad[1]) == pytest.approx(0.25)
    grads = [p.grad for p in strategy.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    plain = build_loss_weighting("qam_ocm", spatial_dims=2, label_channels=1, seed=0)
    assert float(plain(per_sample, image, label).weights[1]) != pytest.approx(0.25)
