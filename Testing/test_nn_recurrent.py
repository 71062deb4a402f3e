"""Recurrent refinement: K outputs, zero first segmentation, feedback of probabilities."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from AutoCTVLib.nn import NetworkConfig, build_network
from AutoCTVLib.nn.recurrent import RecurrentRefinement

CONFIG = NetworkConfig(channels=(4, 8), recurrent_steps=3)


def test_k_steps_zero_start_and_probability_feedback() -> None:
    network = build_network(CONFIG, seed=0).eval()
    inputs: list[torch.Tensor] = []
    network.network.register_forward_pre_hook(lambda module, args: inputs.append(args[0].clone()))
    x = torch.rand(2, 1, 6, 7, 5)
    with torch.no_grad():
        steps = network.forward_steps(x)
    assert len(steps) == 3 and len(inputs) == 3
    assert all(step.shape == (2, 1, 6, 7, 5) for step in steps)
    for step_input in inputs:
        assert step_input.shape == (2, 2, 6, 7, 5)
        assert torch.equal(step_input[:, :1], x)  # the image, unchanged, every step
    assert torch.count_nonzero(inputs[0][:, 1:]) == 0  # first step: all-zero segmentation
    for k in (1, 2):
        assert torch.allclose(inputs[k][:, 1:], torch.sigmoid(steps[k - 1]))


def test_forward_returns_the_last_step() -> None:
    network = build_network(CONFIG, seed=1).eval()
    x = torch.rand(1, 1, 5, 5, 5)
    with torch.no_grad():
        assert torch.equal(network(x), network.forward_steps(x)[-1])


def test_gradients_flow_through_the_fed_back_probability() -> None:
    network = build_network(CONFIG.replace(recurrent_steps=2), seed=2)
    x = torch.rand(1, 1, 4, 4, 4)
    steps = network.forward_steps(x)
    # Only the second step's loss: the first step's parameters get gradient via the feedback.
    steps[-1].sum().backward()
    grads = [p.grad for p in network.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_plain_network_has_a_one_step_interface() -> None:
    network = build_network(CONFIG.replace(recurrent_steps=1), seed=0)
    assert len(network.forward_steps(torch.rand(1, 1, 4, 4, 4))) == 1


def test_wrapper_validates_its_arguments() -> None:
    inner = build_network(NetworkConfig(channels=(4, 8), in_channels=2))
    with pytest.raises(ValueError, match="steps"):
        RecurrentRefinement(inner, steps=0, image_channels=1)
    with pytest.raises(ValueError, match="needs image_channels"):
        RecurrentRefinement(inner, steps=2, image_channels=2)
    with pytest.raises(ValueError, match="in_channels and out_channels"):
        RecurrentRefinement(nn.Identity(), steps=2, image_channels=1)
    wrapper = RecurrentRefinement(inner, steps=2, image_channels=1)
    with pytest.raises(ValueError, match="image channels"):
        wrapper(torch.rand(1, 2, 4, 4, 4))
