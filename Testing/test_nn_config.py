"""NetworkConfig validation, JSON round trip, and the name → class registry."""

from __future__ import annotations

import json

import pytest
import torch

from AutoCTVLib.nn import NetworkConfig, available_networks, build_network, thesis_config
from AutoCTVLib.nn.recurrent import RecurrentRefinement
from AutoCTVLib.nn.registry import network_class, register_network
from AutoCTVLib.nn.unet3d import UNet


def test_defaults_are_the_thesis_plain_unet3d() -> None:
    config = NetworkConfig()
    assert config.channels == (16, 32, 64, 96, 128)
    assert config.levels == 5
    assert config.size_multiple == 16
    assert (config.in_channels, config.out_channels) == (1, 1)
    assert not config.residual and not config.se and config.recurrent_steps == 1
    assert config.norm == "batch"


def test_thesis_config_switches_everything_on() -> None:
    config = thesis_config()
    assert config.residual and config.se and config.recurrent_steps == 3
    assert config.network_in_channels == 2  # CT + previous probability
    assert thesis_config(recurrent_steps=2).recurrent_steps == 2


@pytest.mark.parametrize(
    "config",
    [
        NetworkConfig(),
        thesis_config(dropout_p=0.05, dropout_where="all", dropout_kind="channel"),
        NetworkConfig(architecture="unet2d", spatial_dims=2, channels=(4, 8), norm="instance"),
    ],
)
def test_dict_round_trip_through_json(config: NetworkConfig) -> None:
    text = json.dumps(config.to_dict())
    restored = NetworkConfig.from_dict(json.loads(text))
    assert restored == config
    assert isinstance(restored.channels, tuple)


def test_from_dict_rejects_unknown_keys_and_fills_defaults() -> None:
    with pytest.raises(ValueError, match="unknown network configuration keys: colour, depth"):
        NetworkConfig.from_dict({"channels": [4, 8], "depth": 3, "colour": "red"})
    assert NetworkConfig.from_dict({"channels": [4, 8]}).residual is False
    with pytest.raises(ValueError, match="mapping"):
        NetworkConfig.from_dict([("channels", [4, 8])])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"channels": (16,)}, "at least 2 levels"),
        ({"channels": (16, 0)}, r"channels\[1\]"),
        ({"channels": (16, 32.0)}, r"channels\[1\] must be an integer"),
        ({"channels": "16,32"}, "list of integers"),
        ({"in_channels": 0}, "in_channels"),
        ({"out_channels": True}, "out_channels"),
        ({"spatial_dims": 4}, "spatial_dims"),
        ({"residual": "yes"}, "residual"),
        ({"se_reduction": 0}, "se_reduction"),
        ({"recurrent_steps": 0}, "recurrent_steps"),
        ({"dropout_p": 1.0}, r"dropout_p must be in \[0, 1\)"),
        ({"dropout_p": 0.1}, "needs dropout_where"),
        ({"dropout_where": "decoder"}, "needs dropout_p > 0"),
        ({"dropout_where": "everywhere", "dropout_p": 0.1}, "dropout_where must be one of"),
        ({"dropout_kind": "spatial", "dropout_p": 0.1, "dropout_where": "all"}, "dropout_kind"),
        ({"norm": "group"}, "norm must be one of"),
        ({"pad_mode": "reflect"}, "pad_mode"),
        ({"upsample": "nearest"}, "upsample"),
        ({"architecture": ""}, "architecture"),
    ],
)
def test_bad_values_raise_value_error(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NetworkConfig(**changes)


def test_registry_knows_the_unets_and_rejects_unknown_names() -> None:
    assert {"unet2d", "unet3d"} <= set(available_networks())
    assert network_class("unet3d") is UNet
    with pytest.raises(ValueError, match="unknown network architecture 'vnet'"):
        build_network(NetworkConfig(architecture="vnet"))
    with pytest.raises(ValueError, match="needs spatial_dims 3"):
        build_network(NetworkConfig(architecture="unet3d", spatial_dims=2, channels=(4, 8)))


def test_register_network_refuses_a_second_class_under_a_taken_name() -> None:
    class Other(torch.nn.Module):
        @classmethod
        def from_config(cls, config: NetworkConfig) -> Other:
            return cls()

    with pytest.raises(ValueError, match="already registered"):
        register_network("unet3d")(Other)
    with pytest.raises(TypeError, match="from_config"):
        register_network("no-from-config")(torch.nn.Identity)


def test_build_network_attaches_config_and_wraps_recurrent() -> None:
    plain_config = NetworkConfig(channels=(4, 8))
    plain = build_network(plain_config)
    assert isinstance(plain, UNet) and plain.config == plain_config
    recurrent_config = plain_config.replace(recurrent_steps=2)
    recurrent = build_network(recurrent_config)
    assert isinstance(recurrent, RecurrentRefinement)
    assert recurrent.config == recurrent_config
    assert recurrent.network.in_channels == 2
