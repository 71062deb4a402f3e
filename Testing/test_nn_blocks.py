"""Blocks: parameter counts by formula, SE semantics, argument validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from AutoCTVLib.nn.blocks import ConvModule, LevelBlock, SqueezeExcitation, Upsample
from AutoCTVLib.nn.summary import count_parameters


def conv_module_parameters(c_in: int, c_out: int, k: int = 3, dims: int = 3) -> int:
    return c_in * c_out * k**dims + c_out + 2 * c_out  # conv weight + bias + norm affine


def se_parameters(channels: int, reduction: int) -> int:
    hidden = max(1, channels // reduction)
    return channels * hidden + hidden + hidden * channels + channels


@pytest.mark.parametrize("dims", [2, 3])
def test_conv_module_layout_and_parameters(dims: int) -> None:
    module = ConvModule(spatial_dims=dims, in_channels=3, out_channels=5)
    assert [type(layer).__name__ for layer in module] == [
        f"Conv{dims}d",
        "ELU",
        f"BatchNorm{dims}d",
    ]
    assert count_parameters(module) == conv_module_parameters(3, 5, dims=dims)
    x = torch.randn(2, 3, *([7] * dims))
    assert module(x).shape == (2, 5, *([7] * dims))


def test_conv_module_dropout_is_last_and_kind_selects_the_class() -> None:
    element = ConvModule(spatial_dims=3, in_channels=2, out_channels=2, dropout_p=0.2)
    channel = ConvModule(
        spatial_dims=3, in_channels=2, out_channels=2, dropout_p=0.2, dropout_kind="channel"
    )
    assert isinstance(element[-1], nn.Dropout) and element[-1].p == pytest.approx(0.2)
    assert isinstance(channel[-1], nn.Dropout3d)
    no_dropout = ConvModule(spatial_dims=3, in_channels=2, out_channels=2)
    assert not any(isinstance(layer, (nn.Dropout, nn.Dropout3d)) for layer in no_dropout)


def test_instance_and_no_norm() -> None:
    instance = ConvModule(spatial_dims=3, in_channels=2, out_channels=4, norm="instance")
    assert isinstance(instance.norm, nn.InstanceNorm3d) and instance.norm.affine
    plain = ConvModule(spatial_dims=3, in_channels=2, out_channels=4, norm="none")
    assert count_parameters(plain) == 2 * 4 * 27 + 4


@pytest.mark.parametrize(("channels", "reduction"), [(16, 4), (6, 4), (3, 8)])
def test_se_parameter_count(channels: int, reduction: int) -> None:
    block = SqueezeExcitation(spatial_dims=3, channels=channels, reduction=reduction)
    assert count_parameters(block) == se_parameters(channels, reduction)


def test_se_gate_uses_the_mean_over_all_spatial_axes() -> None:
    torch.manual_seed(0)
    block = SqueezeExcitation(spatial_dims=3, channels=4, reduction=2)
    x = torch.randn(2, 4, 3, 5, 6)
    expected_gate = block.excitation(x.mean(dim=(2, 3, 4)))
    assert torch.allclose(block(x), x * expected_gate[:, :, None, None, None])
    # Pooling over all axes: shuffling voxels (same shuffle for every channel) commutes with SE.
    order = torch.randperm(3 * 5 * 6)
    shuffled = x.flatten(2)[:, :, order].reshape(x.shape)
    assert torch.allclose(block(shuffled), block(x).flatten(2)[:, :, order].reshape(x.shape))


def test_level_block_switches_add_the_expected_parameters() -> None:
    kwargs = {"spatial_dims": 3, "in_channels": 4, "out_channels": 6}
    plain = count_parameters(LevelBlock(**kwargs))
    assert plain == conv_module_parameters(4, 6) + conv_module_parameters(6, 6)
    residual = count_parameters(LevelBlock(**kwargs, residual=True))
    assert residual - plain == 4 * 6 + 6  # 1×1×1 projection (weight + bias)
    same_width = {"spatial_dims": 3, "in_channels": 6, "out_channels": 6}
    assert count_parameters(LevelBlock(**same_width, residual=True)) == count_parameters(
        LevelBlock(**same_width)
    )  # identity skip: no parameters
    se = count_parameters(LevelBlock(**kwargs, se=True, se_reduction=2))
    assert se - plain == se_parameters(6, 2)


def test_residual_block_adds_its_input() -> None:
    torch.manual_seed(1)
    block = LevelBlock(spatial_dims=2, in_channels=3, out_channels=3, residual=True)
    x = torch.randn(1, 3, 8, 8)
    branch = block.conv2(block.conv1(x))
    assert torch.allclose(block(x), branch + x)


@pytest.mark.parametrize("mode", ["transpose", "linear"])
def test_upsample_doubles_size(mode: str) -> None:
    block = Upsample(spatial_dims=3, in_channels=8, out_channels=4, mode=mode)
    assert block(torch.randn(1, 8, 3, 4, 5)).shape == (1, 4, 6, 8, 10)
    expected = 8 * 4 * (8 if mode == "transpose" else 1) + 4
    assert count_parameters(block) == expected


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: ConvModule(spatial_dims=1, in_channels=1, out_channels=1), "spatial_dims"),
        (lambda: ConvModule(spatial_dims=3, in_channels=0, out_channels=1), "in_channels"),
        (lambda: ConvModule(spatial_dims=3, in_channels=1, out_channels=1.5), "out_channels"),
        (lambda: ConvModule(spatial_dims=3, in_channels=1, out_channels=1, kernel_size=2), "odd"),
        (lambda: ConvModule(spatial_dims=3, in_channels=1, out_channels=1, norm="layer"), "norm"),
        (
            lambda: ConvModule(spatial_dims=3, in_channels=1, out_channels=1, dropout_p=1.2),
            "dropout_p",
        ),
        (
            lambda: ConvModule(
                spatial_dims=3, in_channels=1, out_channels=1, dropout_p=0.1, dropout_kind="x"
            ),
            "dropout_kind",
        ),
        (lambda: SqueezeExcitation(spatial_dims=3, channels=4, reduction=0), "reduction"),
        (lambda: SqueezeExcitation(spatial_dims=3, channels=0), "channels"),
        (
            lambda: LevelBlock(spatial_dims=3, in_channels=2, out_channels=2, se_reduction=-1),
            "se_reduction",
        ),
        (
            lambda: LevelBlock(spatial_dims=3, in_channels=2, out_channels=2, residual=1),
            "residual",
        ),
        (lambda: Upsample(spatial_dims=3, in_channels=2, out_channels=2, mode="cubic"), "mode"),
    ],
)
def test_bad_kwargs_raise_value_error(factory, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()
