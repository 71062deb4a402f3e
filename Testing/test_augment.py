"""Augmentation: image and label stay aligned, seeded determinism, exact twins."""

from __future__ import annotations

import numpy as np
import pytest

from AutoCTVLib.augment import (
    Compose,
    RandomFlip,
    RandomGaussianNoise,
    RandomRotation,
    RandomTranslation,
    Sample,
    add_gaussian_noise,
    flip,
    rotate,
    rotation_matrix,
    thesis_augmentation,
    translate,
)


def bright_cube_sample(shape=(24, 40, 36), channels: bool = False) -> Sample:
    """A dim, textured background with a bright cube labelled 1; weight 1 everywhere."""
    rng = np.random.default_rng(5)
    image = (0.1 + 0.05 * rng.random(shape)).astype(np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    z, y, x = (s // 2 for s in shape)
    label[z - 5 : z + 4, y - 8 : y + 6, x - 7 : x + 7] = 1
    image[label == 1] = 0.9
    if channels:
        image = np.stack([image, 1.0 - image])
    return Sample(image=image, label=label, weight=np.ones(shape, dtype=np.float32))


def assert_aligned(sample: Sample) -> None:
    image = sample.image[0] if sample.image.ndim == 4 else sample.image
    labelled = sample.label.astype(bool)
    assert labelled.sum() > 0.8 * 9 * 14 * 14  # the cube survived
    # Label lies on bright voxels; bright voxels far from the label edge are labelled.
    assert np.median(image[labelled]) > 0.8
    assert image[labelled].min() > 0.4
    assert image[~labelled].max() < 0.65


@pytest.mark.parametrize("seed", range(6))
def test_image_and_label_stay_aligned_under_the_thesis_set(seed: int) -> None:
    augment = thesis_augmentation(spacing_xyz_mm=(1.0, 1.0, 2.0), noise_variance=0.0)
    result = augment(bright_cube_sample(), np.random.default_rng(seed))
    assert result.image.shape == (24, 40, 36) and result.image.dtype == np.float32
    assert result.label.dtype == np.uint8
    assert_aligned(result)


def test_thesis_set_can_keep_to_the_left_right_flip() -> None:
    flips = thesis_augmentation(flip_axes=[2]).transforms[1]
    drawn = {flips.sample_parameters(np.random.default_rng(seed), 3) for seed in range(40)}
    assert drawn == {None, (2,)}
    every_axis = thesis_augmentation().transforms[1]
    drawn = {every_axis.sample_parameters(np.random.default_rng(seed), 3) for seed in range(40)}
    assert {axis for axes in drawn if axes for axis in axes} == {0, 1, 2}


def test_multichannel_images_are_transformed_channel_by_channel() -> None:
    sample = bright_cube_sample(channels=True)
    result = rotate(sample, (8.0, -5.0, 3.0))
    assert result.image.shape == sample.image.shape
    assert_aligned(result)
    assert np.allclose(result.image[1], 1.0 - result.image[0], atol=1e-5)


def test_same_seed_same_result_different_seed_different_result() -> None:
    augment = thesis_augmentation()
    sample = bright_cube_sample()
    first = augment(sample, np.random.default_rng(42))
    second = augment(sample, np.random.default_rng(42))
    other = augment(sample, np.random.default_rng(43))
    assert np.array_equal(first.image, second.image)
    assert np.array_equal(first.label, second.label)
    assert np.array_equal(first.weight, second.weight)
    assert not np.array_equal(first.image, other.image)


def test_noise_has_the_requested_variance_and_spares_label_and_weight() -> None:
    sample = Sample(
        image=np.full((32, 64, 64), 0.5, np.float32),
        label=np.ones((32, 64, 64), np.uint8),
        weight=np.ones((32, 64, 64), np.float32),
    )
    noisy = RandomGaussianNoise(variance=0.001)(sample, np.random.default_rng(0))
    difference = noisy.image - sample.image
    assert difference.var() == pytest.approx(0.001, rel=0.02)
    assert abs(difference.mean()) < 1e-3
    assert noisy.label is sample.label and noisy.weight is sample.weight
    assert np.array_equal(
        add_gaussian_noise(sample, 0.001, 9).image, add_gaussian_noise(sample, 0.001, 9).image
    )


@pytest.mark.parametrize("axes", [(0,), (1,), (2,), (0, 2), (0, 1, 2)])
def test_flip_is_an_involution_and_mirrors(axes: tuple[int, ...]) -> None:
    sample = bright_cube_sample()
    once = flip(sample, axes)
    assert np.array_equal(once.image, np.flip(sample.image, axis=axes))
    assert np.array_equal(once.label, np.flip(sample.label, axis=axes))
    twice = flip(once, axes)
    for name in ("image", "label", "weight"):
        assert np.array_equal(getattr(twice, name), getattr(sample, name))


def test_random_flip_draws_each_axis() -> None:
    transform = RandomFlip(p=0.5)
    rng = np.random.default_rng(3)
    drawn = {transform.sample_parameters(rng, 3) for _ in range(200)}
    assert None in drawn and (0, 1, 2) in drawn and (2,) in drawn


def test_translation_is_exact_and_marks_new_voxels_unknown() -> None:
    sample = bright_cube_sample()
    moved = translate(sample, (2, -3, 5))
    assert np.array_equal(moved.label[2:, :-3, 5:], sample.label[:-2, 3:, :-5])
    assert np.array_equal(moved.image[2:, :-3, 5:], sample.image[:-2, 3:, :-5])
    assert moved.weight[:2].sum() == 0 and moved.weight[:, -3:].sum() == 0
    assert moved.weight[:, :, :5].sum() == 0
    assert np.all(moved.weight[2:, :-3, 5:] == 1)
    assert np.array_equal(moved.image[0], moved.image[2])  # edge values continue
    with pytest.raises(ValueError, match="3 integers"):
        translate(sample, (1.5, 0, 0))


def test_random_translation_stays_within_bounds() -> None:
    transform = RandomTranslation(max_voxels=8)
    rng = np.random.default_rng(0)
    shifts = np.array([transform.sample_parameters(rng, 3) for _ in range(300)])
    assert shifts.min() == -8 and shifts.max() == 8


def test_rotation_by_90_degrees_matches_rot90() -> None:
    rng = np.random.default_rng(1)
    image = rng.random((6, 10, 10)).astype(np.float32)
    label = (image > 0.5).astype(np.uint8)
    rotated = rotate(Sample(image=image, label=label), (90.0, 0.0, 0.0))
    # Positive angle about z turns +y toward +x, as np.rot90 with axes (y, x) does.
    assert np.allclose(rotated.image, np.rot90(image, k=1, axes=(1, 2)), atol=1e-5)
    assert np.array_equal(rotated.label, (rotated.image > 0.5).astype(np.uint8))


def test_rotation_is_rigid_in_millimetres_on_anisotropic_grids() -> None:
    # A ball of radius 9 mm on a 1 × 1 × 3 mm grid stays a ball after tilting by 10°.
    spacing_xyz = (1.0, 1.0, 3.0)
    z, y, x = np.meshgrid(np.arange(15) * 3.0, np.arange(40.0), np.arange(40.0), indexing="ij")
    ball = ((z - 21) ** 2 + (y - 19.5) ** 2 + (x - 19.5) ** 2 <= 81).astype(np.uint8)
    sample = Sample(image=ball.astype(np.float32), label=ball)
    physical = rotate(sample, (0.0, 0.0, 10.0), spacing_xyz_mm=spacing_xyz)
    voxel = rotate(sample, (0.0, 0.0, 10.0))
    error_physical = np.logical_xor(physical.label, ball).sum()
    error_voxel = np.logical_xor(voxel.label, ball).sum()
    assert error_physical < 0.5 * error_voxel


def test_rotation_matrix_properties() -> None:
    matrix = rotation_matrix((7.0, -4.0, 9.0))
    assert np.allclose(matrix @ matrix.T, np.eye(3))
    assert np.linalg.det(matrix) == pytest.approx(1.0)
    assert np.allclose(rotation_matrix((0.0, 0.0, 0.0)), np.eye(3))
    about_z = rotation_matrix((90.0, 0.0, 0.0))
    assert np.allclose(about_z @ [1.0, 0.0, 0.0], [1.0, 0.0, 0.0])  # z axis fixed


def test_rotation_out_of_field_weight_is_zero() -> None:
    sample = bright_cube_sample()
    rotated = rotate(sample, (10.0, 0.0, 0.0))
    assert rotated.weight[:, 0, 0].sum() == 0  # a corner left the field of view
    assert rotated.weight[12, 20, 18] == 1


def test_random_rotation_bounds_and_axis_choice() -> None:
    rng = np.random.default_rng(0)
    axial = RandomRotation(max_angle_deg=10.0, axes=(0,))
    draws = np.array([axial.sample_parameters(rng, 3) for _ in range(100)])
    assert np.all(np.abs(draws[:, 0]) <= 10.0) and np.all(draws[:, 1:] == 0)
    assert np.abs(draws[:, 0]).max() > 8.0
    assert RandomRotation(p=0.0).sample_parameters(rng, 3) is None


def test_two_dimensional_samples() -> None:
    image = np.zeros((32, 32), np.float32)
    image[10:22, 8:20] = 1.0
    sample = Sample(image=image, label=(image > 0).astype(np.uint8), spatial_dims=2)
    result = thesis_augmentation(noise_variance=0.0)(sample, np.random.default_rng(2))
    assert result.image.shape == (32, 32)
    assert result.image[result.label == 1].min() > 0.4


def test_compose_and_inputs_are_validated() -> None:
    sample = bright_cube_sample()
    with pytest.raises(TypeError, match="Generator"):
        Compose([RandomFlip()])(sample, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="spatial shape"):
        Sample(image=np.zeros((4, 5, 6), np.float32), label=np.zeros((4, 5, 7)))
    with pytest.raises(ValueError, match="spatial axes"):
        Sample(image=np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="probability"):
        RandomFlip(p=1.5)
    with pytest.raises(ValueError, match="max_voxels"):
        RandomTranslation(max_voxels=-1)
    with pytest.raises(ValueError, match="variance"):
        RandomGaussianNoise(variance=-0.1)
    with pytest.raises(ValueError, match="axes"):
        RandomRotation(axes=(3,))
    with pytest.raises(ValueError, match="angle"):
        rotate(sample, (5.0,))
