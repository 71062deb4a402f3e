"""The U-Net: any input size, switches change the architecture as claimed, seeded init."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from AutoCTVLib.nn import NetworkConfig, build_network, count_parameters, thesis_config
from AutoCTVLib.nn.padding import crop_padding, pad_to_multiple, padding_for
from AutoCTVLib.nn.unet3d import UNet

SMALL = NetworkConfig(channels=(4, 8, 8))


def conv_module(c_in: int, c_out: int, dims: int = 3) -> int:
    return c_in * c_out * 3**dims + c_out + 2 * c_out


def level_block(c_in: int, c_out: int, config: NetworkConfig) -> int:
    dims = config.spatial_dims
    total = conv_module(c_in, c_out, dims) + conv_module(c_out, c_out, dims)
    if config.residual and c_in != c_out:
        total += c_in * c_out + c_out
    if config.se:
        hidden = max(1, c_out // config.se_reduction)
        total += 2 * c_out * hidden + hidden + c_out
    return total


def expected_unet_parameters(config: NetworkConfig) -> int:
    """Parameter count of the U-Net described in unet3d.py, computed by hand."""
    channels = config.channels
    c_in = config.network_in_channels
    total = 0
    for level, c_out in enumerate(channels[:-1]):
        total += level_block(c_in if level == 0 else channels[level - 1], c_out, config)
    total += level_block(channels[-2], channels[-1], config)
    for level in range(len(channels) - 1):
        total += channels[level + 1] * channels[level] * 2**config.spatial_dims + channels[level]
        total += level_block(2 * channels[level], channels[level], config)
    total += channels[0] * config.out_channels + config.out_channels
    return total


@pytest.mark.parametrize(
    "config",
    [
        NetworkConfig(),
        NetworkConfig(residual=True),
        NetworkConfig(residual=True, se=True),
        thesis_config(),
        SMALL.replace(in_channels=3, out_channels=2, se=True, se_reduction=16),
        NetworkConfig(architecture="unet2d", spatial_dims=2, channels=(4, 8, 16), residual=True),
    ],
)
def test_parameter_count_matches_the_formula(config: NetworkConfig) -> None:
    assert count_parameters(build_network(config)) == expected_unet_parameters(config)


def test_thesis_network_runs_on_a_tiny_odd_volume() -> None:
    network = build_network(thesis_config(), seed=0).eval()
    with torch.no_grad():
        logits = network(torch.rand(1, 1, 5, 9, 7))
    assert logits.shape == (1, 1, 5, 9, 7)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("shape", [(37, 45, 29), (16, 16, 16), (1, 3, 2)])
@pytest.mark.parametrize("pad_mode", ["replicate", "zeros"])
def test_output_keeps_any_input_size(shape: tuple[int, int, int], pad_mode: str) -> None:
    network = build_network(SMALL.replace(pad_mode=pad_mode), seed=0).eval()
    with torch.no_grad():
        assert network(torch.randn(1, 1, *shape)).shape == (1, 1, *shape)


def test_two_dimensional_unet() -> None:
    config = NetworkConfig(architecture="unet2d", spatial_dims=2, channels=(4, 8, 16))
    network = build_network(config, seed=0)
    assert isinstance(network.head, nn.Conv2d)
    assert network(torch.randn(2, 1, 21, 30)).shape == (2, 1, 21, 30)


def test_multi_channel_input_and_output() -> None:
    network = build_network(SMALL.replace(in_channels=3, out_channels=2), seed=0)
    assert network(torch.randn(2, 3, 9, 10, 11)).shape == (2, 2, 9, 10, 11)
    with pytest.raises(ValueError, match="expected 3 input channels"):
        network(torch.randn(1, 1, 8, 8, 8))
    with pytest.raises(ValueError, match="tensor"):
        network(torch.randn(3, 8, 8, 8))


def test_linear_upsampling_variant_runs_and_is_smaller() -> None:
    transposed = build_network(SMALL)
    linear = build_network(SMALL.replace(upsample="linear"))
    assert linear(torch.randn(1, 1, 9, 9, 9)).shape == (1, 1, 9, 9, 9)
    assert count_parameters(linear) < count_parameters(transposed)


def test_padding_is_centred_and_cropped_back() -> None:
    padding = padding_for((37, 16, 1), 16)
    assert padding.before_after == ((5, 6), (0, 0), (7, 8))
    x = torch.arange(2 * 37 * 16).float().reshape(1, 2, 37, 16, 1)
    padded, used = pad_to_multiple(x, 16, "replicate")
    assert padded.shape == (1, 2, 48, 16, 16)
    assert torch.equal(padded[:, :, 0], x[:, :, 0].expand_as(padded[:, :, 0]))  # edge copied
    assert torch.equal(crop_padding(padded, used), x)
    zero_padded, _ = pad_to_multiple(x, 16, "zeros")
    assert zero_padded[:, :, :5].abs().sum() == 0
    with pytest.raises(ValueError, match="mode"):
        pad_to_multiple(x, 16, "reflect")


def test_encode_decode_equals_forward() -> None:
    network = build_network(SMALL, seed=3).eval()
    x = torch.randn(1, 1, 11, 13, 9)
    with torch.no_grad():
        features = network.encode(x)
        assert len(features.skips) == 2
        assert features.deepest.shape[2:] == (3, 4, 3)  # padded to 12×16×12, pooled twice
        assert torch.equal(network.decode(features), network(x))


def dropout_names(network: nn.Module) -> list[str]:
    return [name for name, module in network.named_modules() if isinstance(module, nn.Dropout)]


def test_dropout_placement() -> None:
    def build(where: str) -> UNet:
        return build_network(SMALL.replace(dropout_p=0.1, dropout_where=where))

    assert dropout_names(build_network(SMALL)) == []
    bottleneck = dropout_names(build("bottleneck"))
    assert bottleneck == ["bridge.conv1.dropout", "bridge.conv2.dropout"]
    decoder = dropout_names(build("decoder"))
    assert set(bottleneck) < set(decoder)
    assert all(name.startswith(("bridge.", "decoder.")) for name in decoder)
    assert len(decoder) == 2 + 2 * 2  # bridge + two decoder levels, two conv modules each
    everywhere = dropout_names(build("all"))
    assert any(name.startswith("encoder.") for name in everywhere)
    assert len(everywhere) == 2 * (2 + 1 + 2)
    assert build("decoder").encoder_is_deterministic
    assert not build("all").encoder_is_deterministic


def test_same_seed_same_weights_and_global_rng_untouched() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = build_network(SMALL.replace(se=True), seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)
    second = build_network(SMALL.replace(se=True), seed=7)
    third = build_network(SMALL.replace(se=True), seed=8)
    first_state, second_state, third_state = (n.state_dict() for n in (first, second, third))
    assert all(torch.equal(first_state[k], second_state[k]) for k in first_state)
    assert not torch.equal(first_state["head.weight"], third_state["head.weight"])


def test_training_step_reduces_loss_on_a_toy_target() -> None:
    torch.manual_seed(0)
    network = build_network(SMALL.replace(residual=True, se=True), seed=0)
    x = torch.rand(2, 1, 12, 12, 12)
    target = (x > 0.5).float()
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        optimiser.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(network(x), target)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]


def test_prior_residual_unet_starts_from_its_prior_channel() -> None:
    from AutoCTVLib.nn.prior_residual import PRIOR_LOGIT

    config = SMALL.replace(architecture="prior_unet3d", in_channels=2, out_channels=1)
    network = build_network(config, seed=0)
    with torch.no_grad():
        network.head.weight.zero_()
        network.head.bias.zero_()
    x = torch.rand(1, 2, 8, 12, 12)
    x[:, 1] = (x[:, 1] > 0.5).float()
    with torch.no_grad():
        logits = network(x)
    torch.testing.assert_close(logits, PRIOR_LOGIT * (2 * x[:, 1:] - 1))
    # Same weights as the plain U-Net: only the logits are shifted.
    plain = build_network(config.replace(architecture="unet3d"), seed=0)
    assert set(plain.state_dict()) == set(network.state_dict())
    for bad in (
        {"out_channels": 2},
        {"in_channels": 1},
        {"spatial_dims": 2, "architecture": "prior_unet3d"},
    ):
        with pytest.raises(ValueError):
            build_network(config.replace(**bad), seed=0)
