"""MC-dropout mode: only dropout layers train, state is restored, cheap encode-once sampling."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from AutoCTVLib.nn import (
    NetworkConfig,
    build_network,
    dropout_modules,
    first_dropout,
    has_dropout,
    mc_dropout,
)

CONFIG = NetworkConfig(channels=(4, 8, 8), dropout_p=0.3, dropout_where="decoder")


def test_only_dropout_layers_are_in_training_mode_inside() -> None:
    network = build_network(CONFIG, seed=0)
    with mc_dropout(network) as same:
        assert same is network
        for module in network.modules():
            assert module.training == isinstance(module, nn.Dropout), type(module).__name__


def test_previous_flags_are_restored_also_after_an_error() -> None:
    network = build_network(CONFIG, seed=0).eval()
    network.decoder[0].train()  # a mixed state that model.train()/eval() alone cannot restore
    before = {name: module.training for name, module in network.named_modules()}
    with pytest.raises(RuntimeError), mc_dropout(network):
        raise RuntimeError("boom")
    assert {name: m.training for name, m in network.named_modules()} == before
    with mc_dropout(network):
        pass
    assert {name: m.training for name, m in network.named_modules()} == before


def test_samples_vary_while_batchnorm_uses_running_statistics() -> None:
    network = build_network(CONFIG, seed=0)
    network.eval()
    x = torch.rand(1, 1, 8, 8, 8)
    running_mean = network.encoder[0].conv1.norm.running_mean.clone()
    with torch.no_grad(), mc_dropout(network):
        first, second = network(x), network(x)
    assert not torch.equal(first, second)
    assert torch.equal(network.encoder[0].conv1.norm.running_mean, running_mean)


def test_no_dropout_is_refused_unless_allowed() -> None:
    plain = build_network(NetworkConfig(channels=(4, 8)))
    assert not has_dropout(plain) and first_dropout(plain) is None
    with pytest.raises(ValueError, match="no dropout layers"):
        with mc_dropout(plain):
            pass
    with mc_dropout(plain, require_dropout=False):
        assert not any(m.training for m in plain.modules())


def test_first_dropout_lies_after_the_encoder() -> None:
    network = build_network(CONFIG)
    name, module = first_dropout(network)
    assert name == "bridge.conv1.dropout" and isinstance(module, nn.Dropout)
    assert len(dropout_modules(network)) == 6
    everywhere = build_network(CONFIG.replace(dropout_where="all"))
    assert first_dropout(everywhere)[0] == "encoder.0.conv1.dropout"


def test_encode_once_then_decode_matches_full_passes_with_the_same_masks() -> None:
    network = build_network(CONFIG, seed=0).eval()
    x = torch.rand(1, 1, 9, 10, 7)
    with torch.no_grad(), mc_dropout(network):
        torch.manual_seed(11)
        full = [network(x) for _ in range(3)]
        features = network.encode(x)
        torch.manual_seed(11)
        cheap = [network.decode(features) for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(full, cheap))
