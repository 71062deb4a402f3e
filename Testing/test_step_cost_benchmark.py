"""The step-cost benchmark: a real optimiser step per network, networks taking turns."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from training_helpers import tiny_config

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "benchmarks"))

from step_cost import autoctv_step, measure, parameter_count  # noqa: E402


def test_a_step_trains_the_configured_network() -> None:
    config = tiny_config(network={"channels": [4, 8, 8], "residual": True, "se": True})
    step, network = autoctv_step(config, seed=0)
    assert list(network.channels) == [4, 8, 8]
    before = [p.detach().clone() for p in network.parameters()]
    step()
    assert any(not torch.equal(a, b) for a, b in zip(before, network.parameters()))
    assert parameter_count(network) == sum(p.numel() for p in before) > 0


def test_networks_take_turns_and_the_warm_up_round_is_left_out() -> None:
    calls: list[str] = []
    steps = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    seconds = measure(steps, rounds=3)
    assert calls == ["a", "b"] * 4
    assert {name: len(times) for name, times in seconds.items()} == {"a": 3, "b": 3}
