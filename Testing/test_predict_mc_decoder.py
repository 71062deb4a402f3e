"""The split decoder of MC sampling against ``UNet.decode``, and the box-restricted map and
summary arithmetic against whole-volume references."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from conftest import make_geometry
from predict_support import tiny_config

from AutoCTVLib.errors import CancelledError
from AutoCTVLib.inference.uncertainty import (
    UncertaintyMaps,
    review_region,
    summarise_uncertainty,
)
from AutoCTVLib.nn import build_network
from AutoCTVLib.nn.mc_dropout import mc_dropout
from AutoCTVLib.nn.unet3d import UNet, UNetFeatures
from AutoCTVLib.predict import mc as mc_module
from AutoCTVLib.predict.mc import MCSettings, crop_features, sample_moments
from AutoCTVLib.predict.mc_decoder import SampledDecoder, can_split_decoder
from AutoCTVLib.predict.predictor import maps_on_input_grid
from AutoCTVLib.preprocess.body_crop import CropBox
from AutoCTVLib.preprocess.pipeline import PreprocessConfig, preprocess
from AutoCTVLib.volume import Volume

#: Float32 rounding of the reordered sums; one differing dropout mask moves logits by ~0.1.
ROUNDING = 1e-5


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def tiny_unet(residual: bool = True, se: bool = True, seed: int = 0) -> UNet:
    """A tiny U-Net with decoder dropout and non-default BatchNorm statistics, eval mode."""
    network = build_network(tiny_config(1, "decoder", 0.2, residual=residual, se=se), seed=seed)
    assert isinstance(network, UNet)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        network.train()
        network(torch.rand(2, 1, 16, 16, 16))
    return network.eval()


def image(seed: int, shape: tuple[int, int, int] = (20, 28, 24)) -> torch.Tensor:
    return torch.rand((1, 1, *shape), generator=torch.Generator().manual_seed(seed))


def expanded(features: UNetFeatures, count: int) -> UNetFeatures:
    return UNetFeatures(
        skips=tuple(s.expand(count, *s.shape[1:]) for s in features.skips),
        deepest=features.deepest.expand(count, *features.deepest.shape[1:]),
        padding=features.padding,
    )


def largest_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a - b).abs().max())


@pytest.mark.parametrize("residual", [True, False])
@torch.inference_mode()
def test_split_decoder_equals_decode_with_dropout_off(residual: bool) -> None:
    network = tiny_unet(residual=residual, se=residual)
    assert can_split_decoder(network)
    features = network.encode(image(1))
    assert largest_difference(SampledDecoder(network, features)(1), network.decode(features)) < (
        ROUNDING
    )


@pytest.mark.parametrize("count", [1, 3])
@torch.inference_mode()
def test_split_decoder_draws_the_same_masks_as_decode(count: int) -> None:
    network = tiny_unet()
    features = network.encode(image(2))
    decoder = SampledDecoder(network, features)
    with mc_dropout(network):
        torch.manual_seed(7)
        reference = network.decode(expanded(features, count))
        torch.manual_seed(7)
        split = decoder(count)
        torch.manual_seed(8)
        other_seed = decoder(count)
    assert largest_difference(split, reference) < ROUNDING
    assert largest_difference(other_seed, reference) > 100 * ROUNDING  # the masks matter


@torch.inference_mode()
def test_split_decoder_on_cropped_features_equals_decode_of_the_crop() -> None:
    network = tiny_unet()
    features = crop_features(network.encode(image(3, (16, 32, 32))), ((0, 16), (8, 24), (0, 32)))
    decoder = SampledDecoder(network, features)
    with mc_dropout(network):
        torch.manual_seed(1)
        reference = network.decode(features)
        torch.manual_seed(1)
        split = decoder(1)
    assert tuple(split.shape[2:]) == (16, 16, 32)
    assert largest_difference(split, reference) < ROUNDING


@torch.inference_mode()
def test_split_decoder_in_channels_last_layout_samples_like_decode() -> None:
    """Channels-last (the CPU default) may put the masks on other elements: the same
    distribution, so the moments of many samples agree within MC noise."""
    network = tiny_unet().to(memory_format=torch.channels_last_3d)
    x = image(4).contiguous(memory_format=torch.channels_last_3d)
    features = network.encode(x)
    decoder = SampledDecoder(network, features)
    samples = 64
    with mc_dropout(network):
        torch.manual_seed(2)
        reference = torch.sigmoid(network.decode(expanded(features, samples)))
        torch.manual_seed(3)
        split = torch.sigmoid(decoder(samples))
    assert largest_difference(split.mean(0), reference.mean(0)) < 0.05
    spread_reference = float(reference.std(0).mean())
    assert abs(float(split.std(0).mean()) - spread_reference) < 0.1 * spread_reference
    with torch.inference_mode():  # and dropout off: equal to rounding
        assert largest_difference(decoder(1), network.decode(features)) < ROUNDING


@torch.inference_mode()
def test_mc_sampling_uses_the_split_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = SampledDecoder.__call__

    def counted(
        self: SampledDecoder, count: int = 1, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        calls.append(count)
        assert generator is not None  # the tiny U-Net has element dropout: own generators
        return original(self, count, generator)

    monkeypatch.setattr(mc_module.SampledDecoder, "__call__", counted)
    settings = MCSettings(samples=5, boundary_crop=False, seed=0)
    sample_moments(tiny_unet(), image(5), settings, (5.0, 4.0, 4.0), decode_batch=2)
    assert calls == [2, 2, 1]


def test_box_restricted_summary_equals_the_whole_volume_computation() -> None:
    rng = np.random.default_rng(0)
    shape = (30, 40, 36)
    prob = np.zeros(shape, np.float32)
    # A CTV touching the array's last x column (the band must not be cut) and a doubtful lobe.
    prob[8:20, 10:25, 20:36] = 0.97
    prob[22:25, 30:34, 5:9] = 0.4
    entropy = np.where(prob > 0, rng.uniform(0.0, 1.0, shape), 0.0).astype(np.float32)
    zero = np.zeros(shape, np.float32)
    maps = UncertaintyMaps(prob, entropy, zero, entropy, zero, 10, "bits")
    spacing = (1.5, 1.2, 2.5)
    for reduction in ("sum", "mean"):
        summary = summarise_uncertainty(maps, spacing, reduction=reduction)
        region = review_region(prob, spacing)
        values = entropy.astype(np.float64)
        assert summary.region_voxels == int(region.sum()) > 0
        assert summary.case_score == pytest.approx(float(values[region].mean()), rel=1e-12)
        per_slice = np.where(region, values, 0.0).sum(axis=(1, 2))
        if reduction == "sum":
            expected = per_slice * (spacing[0] * spacing[1])
        else:
            counts = region.sum(axis=(1, 2))
            expected = np.divide(per_slice, counts, out=np.zeros_like(per_slice), where=counts > 0)
        np.testing.assert_allclose(summary.per_slice_score, expected, rtol=1e-12, atol=1e-12)


def test_summary_of_empty_maps_is_zero() -> None:
    zero = np.zeros((4, 5, 6), np.float32)
    summary = summarise_uncertainty(UncertaintyMaps(zero, zero, zero, zero, zero, 3), (1, 1, 1))
    assert summary.case_score == 0.0 and summary.region_voxels == 0
    assert not summary.per_slice_score.any() and summary.per_slice_score.shape == (4,)


@pytest.mark.parametrize("fill", [0.0, -2.5])
def test_paste_fills_outside_the_box(fill: float) -> None:
    box = CropBox((1, 2, 3), (3, 5, 7), (4, 6, 8))
    pasted = box.paste(np.ones((2, 3, 4), np.float32), fill)
    assert pasted.dtype == np.float32 and pasted.shape == (4, 6, 8)
    assert (pasted[1:3, 2:5, 3:7] == 1).all()
    assert float(pasted.sum()) == pytest.approx(24 + fill * (4 * 6 * 8 - 24))


def test_maps_on_input_grid_equal_the_whole_volume_arithmetic() -> None:
    geometry = make_geometry("oblique", shape_zyx=(16, 40, 44))
    rng = np.random.default_rng(1)
    ct = np.full(geometry.shape_zyx, -1000.0, np.float32)
    ct[3:13, 8:32, 10:36] = 40.0  # a body: the crop box is smaller than the grid
    case = preprocess(
        Volume(ct, geometry), PreprocessConfig(spacing_xyz_mm=(2.0, 2.0, 3.0), crop_margin_mm=1.0)
    )
    assert case.crop_box.shape_zyx != geometry.shape_zyx
    shape = case.network_geometry.shape_zyx
    mean = rng.uniform(0, 1, shape).astype(np.float32)
    entropy = rng.uniform(0, 1, shape).astype(np.float32)
    mutual = (entropy * rng.uniform(0, 1.2, shape)).astype(np.float32)  # some MI above H
    variance = rng.uniform(-0.01, 0.2, shape).astype(np.float32)
    maps = UncertaintyMaps(mean, entropy, entropy - mutual, mutual, variance, 7)
    prob_input = case.to_input_grid(mean)
    result = maps_on_input_grid(maps, prob_input, case)
    # the formulas on whole input-grid arrays
    whole_entropy = case.to_input_grid(entropy)
    whole_mutual = np.minimum(case.to_input_grid(mutual), whole_entropy)
    np.testing.assert_array_equal(result.entropy, whole_entropy)
    np.testing.assert_array_equal(result.mutual_information, np.maximum(whole_mutual, 0.0))
    np.testing.assert_array_equal(
        result.expected_entropy, np.maximum(whole_entropy - whole_mutual, 0.0)
    )
    np.testing.assert_array_equal(result.variance, np.maximum(case.to_input_grid(variance), 0.0))
    np.testing.assert_array_equal(result.mean_prob, prob_input)
    for name in ("entropy", "expected_entropy", "mutual_information", "variance"):
        assert getattr(result, name).dtype == np.float32, name
        assert getattr(result, name).shape == geometry.shape_zyx, name


@pytest.mark.parametrize("inference", [True, False])
def test_two_sampling_workers_give_the_result_of_one(
    inference: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = tiny_unet()
    x = image(6)
    settings = MCSettings(samples=7, boundary_crop=False, seed=3)
    threads_seen: set[str] = set()
    original = SampledDecoder.__call__

    def recorded(
        self: SampledDecoder, count: int = 1, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        threads_seen.add(threading.current_thread().name.split("_")[0])
        return original(self, count, generator)

    monkeypatch.setattr(mc_module.SampledDecoder, "__call__", recorded)
    torch.set_num_threads(2)
    mode = torch.inference_mode() if inference else torch.no_grad()
    with mode:
        one = sample_moments(network, x, settings, (5.0, 4.0, 4.0), decode_batch=2, workers=1)
        assert threads_seen == {"MainThread"}
        two = sample_moments(network, x, settings, (5.0, 4.0, 4.0), decode_batch=2, workers=2)
    assert "mc" in threads_seen  # the batches did run in the worker threads
    assert torch.get_num_threads() == 2  # restored after the workers' share of 1 each
    for name in ("mean_prob", "mean_sq_prob", "mean_entropy"):
        assert largest_difference(getattr(two, name), getattr(one, name)) < ROUNDING, name
    assert float((one.mean_sq_prob - one.mean_prob**2).max()) > 1e-4  # the samples differ


def test_cancel_stops_the_sampling_workers() -> None:
    cancel = threading.Event()
    network, x = tiny_unet(), image(6)
    settings = MCSettings(samples=6, boundary_crop=False)
    with torch.inference_mode():  # without cancel this case is sampled (not skipped)
        moments = sample_moments(network, x, settings, (5.0, 4.0, 4.0), workers=2)
    assert moments.sampled_voxels > 0
    cancel.set()
    with pytest.raises(CancelledError), torch.inference_mode():
        sample_moments(
            network,
            x,
            settings,
            (5.0, 4.0, 4.0),
            workers=2,
            cancel=cancel,
        )
