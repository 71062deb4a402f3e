"""Label-noise simulation (dilate/erode by n px or mm on a share of samples) and the
noise-robust Dice loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from AutoCTVLib.noisy.noise import (
    annotator_style_plan,
    scaled_noise_range,
    shift_boundary,
    simulate_label_noise,
)
from AutoCTVLib.noisy.robust_losses import noise_robust_dice_loss


def disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    y, x = np.mgrid[: shape[0], : shape[1]]
    return ((y - centre[0]) ** 2 + (x - centre[1]) ** 2 <= radius**2).astype(np.uint8)


def equivalent_radius_px(mask: np.ndarray) -> float:
    """Radius of the disc with the mask's area (pixels)."""
    return math.sqrt(float(mask.sum()) / math.pi)


def equivalent_radius_mm(mask: np.ndarray, spacing_xyz_mm: tuple[float, float, float]) -> float:
    """Radius of the ball with the mask's volume (mm)."""
    volume = float(mask.sum()) * float(np.prod(spacing_xyz_mm))
    return (3.0 * volume / (4.0 * math.pi)) ** (1.0 / 3.0)


def test_shift_boundary_moves_a_disc_by_the_requested_pixels() -> None:
    clean = disc((96, 96), (47.3, 48.6), 22.0)
    for shift in (1, 3, 5, 8, 13):
        grown = shift_boundary(clean, shift)
        shrunk = shift_boundary(clean, -shift)
        assert grown.dtype == np.uint8 and set(np.unique(grown)) <= {0, 1}
        assert bool(np.all(grown >= clean)) and bool(np.all(shrunk <= clean))
        # the boundary moved by `shift` pixels (area-equivalent radius, ±0.6 px of pixelation)
        assert equivalent_radius_px(grown) - equivalent_radius_px(clean) == pytest.approx(
            shift, abs=0.6
        )
        assert equivalent_radius_px(clean) - equivalent_radius_px(shrunk) == pytest.approx(
            shift, abs=0.6
        )
    assert np.array_equal(shift_boundary(clean, 0), clean)
    empty = np.zeros((8, 8), np.uint8)
    assert not shift_boundary(empty, 3).any() and shift_boundary(np.ones((8, 8)), -2).all()


def test_shift_boundary_in_millimetres_on_an_anisotropic_grid() -> None:
    spacing_xyz_mm = (1.2, 1.0, 2.5)
    shape_zyx = (40, 80, 70)
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) for n in shape_zyx), indexing="ij")
    centre_mm = np.array([50.0, 40.0, 41.0])  # z, y, x
    distance = np.sqrt(
        ((z * 2.5) - centre_mm[0]) ** 2
        + ((y * 1.0) - centre_mm[1]) ** 2
        + ((x * 1.2) - centre_mm[2]) ** 2
    )
    ball = (distance <= 20.0).astype(np.uint8)
    base = equivalent_radius_mm(ball, spacing_xyz_mm)
    for shift_mm in (3.0, 7.5):
        grown = shift_boundary(ball, shift_mm, spacing_xyz_mm)
        shrunk = shift_boundary(ball, -shift_mm, spacing_xyz_mm)
        # within half the coarsest voxel size of the requested shift
        assert equivalent_radius_mm(grown, spacing_xyz_mm) - base == pytest.approx(
            shift_mm, abs=1.25
        )
        assert base - equivalent_radius_mm(shrunk, spacing_xyz_mm) == pytest.approx(
            shift_mm, abs=1.25
        )
    # the shift is physical: in pixels the same number would move it differently along z
    assert not np.array_equal(shift_boundary(ball, 3.0), shift_boundary(ball, 3.0, spacing_xyz_mm))
    with pytest.raises(ValueError, match="spacing"):
        shift_boundary(ball, 2.0, (1.0, 1.0))


def noisy_batch(n: int = 20) -> np.ndarray:
    """n samples × 2 classes: a large disc and a small one, at seeded positions."""
    rng = np.random.default_rng(4)
    labels = np.zeros((n, 2, 80, 80), np.uint8)
    for index in range(n):
        cy, cx = rng.uniform(37, 43, size=2)
        labels[index, 0] = disc((80, 80), (cy, cx), 20.0)
        labels[index, 1] = disc((80, 80), (cy + 2, cx - 1), 14.0)
    return labels


@pytest.mark.parametrize(
    ("share", "shift_range"), [(0.25, (1, 8)), (0.5, (5, 13)), (0.75, (5, 13)), (0.0, (1, 8))]
)
def test_noise_changes_exactly_the_chosen_share_within_the_range(
    share: float, shift_range: tuple[int, int]
) -> None:
    labels = noisy_batch()
    noisy = simulate_label_noise(labels, share, shift_range, np.random.default_rng(7))
    assert noisy.labels.shape == labels.shape and noisy.labels.dtype == np.uint8
    changed = np.array([not np.array_equal(noisy.labels[i], labels[i]) for i in range(20)])
    assert changed.sum() == round(share * 20)
    assert np.array_equal(changed, noisy.noisy)
    for index in np.flatnonzero(noisy.noisy):
        shift = noisy.shifts[index]
        assert shift == round(shift) and shift_range[0] <= abs(shift) <= shift_range[1]
        for channel in range(2):
            measured = equivalent_radius_px(noisy.labels[index, channel]) - equivalent_radius_px(
                labels[index, channel]
            )
            assert measured == pytest.approx(shift, abs=0.6)  # dilation > 0, erosion < 0
    assert np.all(noisy.shifts[~noisy.noisy] == 0)
    again = simulate_label_noise(labels, share, shift_range, np.random.default_rng(7))
    assert np.array_equal(again.labels, noisy.labels)


def test_noise_is_seeded_and_mixes_dilation_and_erosion() -> None:
    labels = noisy_batch(40)
    first = simulate_label_noise(labels, 0.5, (5, 13), np.random.default_rng(1))
    other = simulate_label_noise(labels, 0.5, (5, 13), np.random.default_rng(2))
    assert not np.array_equal(first.noisy, other.noisy)
    signs = np.sign(first.shifts[first.noisy])
    assert (signs > 0).any() and (signs < 0).any()
    real = simulate_label_noise(labels, 1.0, (1.5, 2.5), np.random.default_rng(1), integer=False)
    assert real.noisy.all() and np.all((np.abs(real.shifts) >= 1.5) & (np.abs(real.shifts) <= 2.5))
    with pytest.raises(ValueError, match="share"):
        simulate_label_noise(labels, 1.5, (1, 8), np.random.default_rng(0))
    with pytest.raises(ValueError, match="shift_range"):
        simulate_label_noise(labels, 0.5, (0, 8), np.random.default_rng(0))


def test_noise_ranges_scale_with_the_image_size() -> None:
    assert scaled_noise_range((1, 8), 256) == (1, 8)
    assert scaled_noise_range((5, 13), 256) == (5, 13)
    assert scaled_noise_range((1, 8), 128) == (1, 4)
    assert scaled_noise_range((5, 13), 128) == (3, 6)
    assert scaled_noise_range((1, 8), 64) == (1, 2)


def test_annotator_style_plan() -> None:
    plan = annotator_style_plan(10, 0.5, np.random.default_rng(0))
    assert len(plan) == 10 and plan.count("standard") == 5
    assert plan.count("wide") == 3 and plan.count("tight") == 2
    assert plan == annotator_style_plan(10, 0.5, np.random.default_rng(0))
    assert annotator_style_plan(4, 0.0, np.random.default_rng(0)) == ["standard"] * 4
    assert set(annotator_style_plan(4, 1.0, np.random.default_rng(0), ("random",))) == {"random"}


def test_noise_robust_dice_loss() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, 12, 12, generator=generator) * 2
    target = (torch.rand(3, 2, 12, 12, generator=generator) > 0.5).float()
    probability = torch.sigmoid(logits)
    # γ = 2 is the V-Net soft Dice loss 1 - 2Σpt / (Σp² + Σt²)
    sums = (0, 2, 3)
    vnet = 1 - 2 * (probability * target).sum(sums) / (
        probability.square().sum(sums) + target.square().sum(sums)
    )
    assert float(noise_robust_dice_loss(logits, target, gamma=2.0, epsilon=1e-12)) == (
        pytest.approx(float(vnet.mean()), rel=1e-5)
    )
    per_sample = noise_robust_dice_loss(logits, target, reduction="per_sample")
    assert per_sample.shape == (3,) and bool((per_sample > 0).all())
    # a confident, correct prediction costs almost nothing
    perfect = noise_robust_dice_loss((target * 2 - 1) * 20, target)
    assert float(perfect) < 1e-6
    # voxels of weight 0 are ignored
    weight = torch.ones(3, 1, 12, 12)
    weight[..., :6] = 0
    scrambled = logits.clone()
    scrambled[..., :6] = -scrambled[..., :6]
    assert float(noise_robust_dice_loss(logits, target, weight)) == pytest.approx(
        float(noise_robust_dice_loss(scrambled, target, weight)), rel=1e-6
    )
    with pytest.raises(ValueError, match="gamma"):
        noise_robust_dice_loss(logits, target, gamma=3.0)
