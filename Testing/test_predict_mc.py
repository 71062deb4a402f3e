"""Monte-Carlo dropout sampling: the cheap path against the naive one, the maps' bounds."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch
from predict_support import tiny_config

from AutoCTVLib.errors import CancelledError
from AutoCTVLib.nn import build_network
from AutoCTVLib.predict.mc import (
    MCSettings,
    crop_features,
    maps_from_moments,
    naive_moments,
    run_last_step,
    sample_last_step,
    sample_moments,
)

SPACING_ZYX_MM = (5.0, 4.0, 4.0)


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def network_for(steps: int, dropout_where: str = "decoder", dropout_p: float = 0.2, seed: int = 0):
    """A random tiny network with non-default BatchNorm statistics, in eval mode."""
    network = build_network(tiny_config(steps, dropout_where, dropout_p), seed=seed)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        network.train()
        network(torch.rand(2, 1, 16, 16, 16))
    return network.eval()


def image(seed: int = 0, shape: tuple[int, int, int] = (20, 28, 24)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((1, 1, *shape), generator=generator)


def assert_same_up_to_rounding(value: torch.Tensor, reference: torch.Tensor) -> None:
    """Equal to float32 rounding: a different dropout mask would change values by ~0.01-0.1."""
    difference = float((value - reference).abs().max())
    assert difference < 1e-5, difference


def maps_of(moments):
    return maps_from_moments(
        moments.mean_prob.numpy(),
        moments.mean_sq_prob.numpy(),
        moments.mean_entropy.numpy(),
        moments.n_samples,
    )


@torch.inference_mode()
def test_cheap_path_draws_the_same_samples_as_naive_mc_for_a_plain_unet() -> None:
    network = network_for(steps=1)
    x = image()
    settings = MCSettings(samples=6, boundary_crop=False, seed=11)
    cheap = sample_moments(network, x, settings, SPACING_ZYX_MM, decode_batch=1)
    naive = naive_moments(network, x, 6, seed=11)
    # Same masks; the split decoder sums its first convolutions in another order (rounding).
    assert_same_up_to_rounding(cheap.mean_prob, naive.mean_prob)
    assert_same_up_to_rounding(cheap.mean_sq_prob, naive.mean_sq_prob)
    assert_same_up_to_rounding(cheap.mean_entropy, naive.mean_entropy)
    assert torch.equal(cheap.plain_prob, naive.plain_prob)
    assert float(cheap.mean_sq_prob.sub(cheap.mean_prob**2).max()) > 1e-4  # samples differ


@torch.inference_mode()
def test_cheap_path_equals_last_step_sampling_for_a_recurrent_unet() -> None:
    network = network_for(steps=3)
    x = image(1)
    settings = MCSettings(samples=5, boundary_crop=False, seed=4)
    cheap = sample_moments(network, x, settings, SPACING_ZYX_MM, decode_batch=1)
    last_step = naive_moments(network, x, 5, seed=4, sample_steps="last")
    every_step = naive_moments(network, x, 5, seed=4, sample_steps="all")
    assert_same_up_to_rounding(cheap.mean_prob, last_step.mean_prob)
    assert_same_up_to_rounding(cheap.mean_entropy, last_step.mean_entropy)
    # Sampling every step is a different (wider) distribution: not the same numbers.
    assert not torch.equal(cheap.mean_prob, every_step.mean_prob)
    assert torch.allclose(cheap.plain_prob, every_step.plain_prob, atol=1e-6)


@torch.inference_mode()
def test_batched_decoding_samples_the_same_distribution() -> None:
    network = network_for(steps=1, dropout_p=0.05)
    x = image(2)

    def maps(seed: int, batch: int):
        settings = MCSettings(samples=48, boundary_crop=False, seed=seed)
        return maps_of(sample_moments(network, x, settings, SPACING_ZYX_MM, decode_batch=batch))

    one, other_one, batched = maps(1, 1), maps(2, 1), maps(3, 8)
    # Batched and unbatched estimates differ no more than two unbatched ones with other seeds.
    assert not np.array_equal(one.mean_prob, batched.mean_prob)
    baseline = np.corrcoef(one.variance.ravel(), other_one.variance.ravel())[0, 1]
    correlation = np.corrcoef(one.variance.ravel(), batched.variance.ravel())[0, 1]
    assert correlation > 0.8 * baseline > 0
    assert float(np.abs(one.mean_prob - batched.mean_prob).mean()) < 0.005
    for name in ("variance", "mutual_information"):
        reference, value = one.measure(name).mean(), batched.measure(name).mean()
        assert abs(value - reference) < 0.05 * reference, name


@torch.inference_mode()
def test_boundary_crop_samples_only_the_box_and_matches_whole_volume_sampling() -> None:
    network = network_for(steps=2, dropout_p=0.05)
    x = image(3, shape=(24, 32, 32))
    last_step = run_last_step(network, x)
    # A plain prediction that is confident everywhere except a small cube: the box is small.
    plain = torch.zeros_like(last_step.plain_prob)
    plain[10:14, 14:18, 12:16] = 0.6
    forced = dataclasses.replace(last_step, plain_prob=plain)
    settings = MCSettings(samples=48, margin_mm=8.0, seed=5)
    cropped = sample_last_step(forced, settings, SPACING_ZYX_MM, decode_batch=4)
    whole = sample_last_step(
        forced, dataclasses.replace(settings, boundary_crop=False), SPACING_ZYX_MM, decode_batch=4
    )
    assert 0 < cropped.sampled_voxels < plain.numel() // 2
    assert whole.sampled_voxels == plain.numel()
    outside = (cropped.mean_sq_prob - cropped.mean_prob**2) == 0
    assert int((~outside).sum()) <= cropped.sampled_voxels
    assert torch.equal(cropped.mean_prob[outside], plain[outside])  # unsampled voxels keep p̂
    cube = (slice(10, 14), slice(14, 18), slice(12, 16))
    difference = (cropped.mean_prob[cube] - whole.mean_prob[cube]).abs().mean()
    spread = (whole.mean_sq_prob[cube] - whole.mean_prob[cube] ** 2).clamp_min(0).sqrt().mean()
    assert float(difference) < 0.02 + float(spread)  # within MC noise plus crop effects


@torch.inference_mode()
def test_crop_features_decode_exactly_the_box_when_no_padding_effect_reaches_it() -> None:
    network = network_for(steps=1, dropout_where="none")
    x = image(4, shape=(16, 32, 32))
    features = network.encode(x)
    box = ((0, 16), (8, 24), (0, 32))
    cropped = network.decode(crop_features(features, box))
    assert tuple(cropped.shape[2:]) == (16, 16, 32)
    with pytest.raises(ValueError, match="not aligned"):
        crop_features(features, ((0, 16), (3, 24), (0, 32)))


@torch.inference_mode()
def test_maps_have_the_stated_bounds() -> None:
    network = network_for(steps=2)
    moments = sample_moments(network, image(5), MCSettings(samples=8, seed=0), SPACING_ZYX_MM)
    maps = maps_of(moments)
    for name in ("mean_prob", "entropy", "expected_entropy", "mutual_information", "variance"):
        values = getattr(maps, name)
        assert values.dtype == np.float32 and values.shape == (20, 28, 24), name
        assert np.isfinite(values).all(), name
    assert maps.entropy.min() >= 0.0 and maps.entropy.max() <= 1.0
    assert maps.mutual_information.min() >= 0.0
    assert (maps.mutual_information <= maps.entropy).all()
    assert maps.mutual_information.max() > 1e-5  # dropout does make samples disagree
    assert maps.variance.min() >= 0.0


@torch.inference_mode()
def test_dropout_off_gives_zero_mutual_information() -> None:
    network = network_for(steps=2, dropout_where="none")
    moments = sample_moments(
        network, image(6), MCSettings(samples=5, boundary_crop=False), SPACING_ZYX_MM
    )
    maps = maps_of(moments)
    assert float(maps.mutual_information.max()) < 1e-6
    assert float(maps.variance.max()) < 1e-6
    assert float(maps.entropy.max()) > 0.01  # the plain probability still has entropy


def test_interpolated_moments_keep_zero_le_mi_le_entropy() -> None:
    rng = np.random.default_rng(0)
    samples = rng.uniform(0, 1, size=(10, 2, 3, 4)).astype(np.float32)
    from AutoCTVLib.predict.mc import entropy_bits

    moments = [
        samples.mean(0),
        (samples**2).mean(0),
        entropy_bits(torch.from_numpy(samples)).numpy().mean(0),
    ]
    # A linear blend of two voxels' moments (what interpolation onto another grid does).
    blended = [0.3 * m[..., :-1] + 0.7 * m[..., 1:] for m in moments]
    maps = maps_from_moments(*blended, n_samples=10)
    assert (maps.mutual_information >= 0).all()
    assert (maps.mutual_information <= maps.entropy + 1e-7).all()
    assert (maps.variance >= 0).all()


@torch.inference_mode()
def test_same_seed_same_maps_other_seed_other_maps() -> None:
    network = network_for(steps=2)
    x = image(7)
    first = sample_moments(network, x, MCSettings(samples=4, seed=3), SPACING_ZYX_MM)
    again = sample_moments(network, x, MCSettings(samples=4, seed=3), SPACING_ZYX_MM)
    other = sample_moments(network, x, MCSettings(samples=4, seed=4), SPACING_ZYX_MM)
    assert torch.equal(first.mean_prob, again.mean_prob)
    assert not torch.equal(first.mean_prob, other.mean_prob)


@torch.inference_mode()
def test_dropout_in_the_encoder_samples_the_whole_last_step() -> None:
    network = network_for(steps=2, dropout_where="all")
    x = image(8)
    moments = sample_moments(network, x, MCSettings(samples=4, seed=1), SPACING_ZYX_MM)
    reference = naive_moments(network, x, 4, seed=1, sample_steps="last")
    assert moments.sampled_voxels == x[0, 0].numel()
    assert torch.equal(moments.mean_prob, reference.mean_prob)


@torch.inference_mode()
def test_cancel_stops_sampling() -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledError):
        sample_moments(
            network_for(steps=1),
            image(9),
            MCSettings(samples=4, boundary_crop=False),
            SPACING_ZYX_MM,
            cancel=cancel,
        )


@pytest.mark.parametrize(
    "changes",
    [
        {"samples": 0},
        {"samples": True},
        {"method": "fast"},
        {"margin_mm": -1.0},
        {"uncertain_range": (0.6, 0.9)},
        {"decode_batch": -2},
    ],
)
def test_bad_mc_settings_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        MCSettings(**changes)  # type: ignore[arg-type]
