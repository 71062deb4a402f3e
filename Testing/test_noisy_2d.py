"""The 2D noisy-label path: the JSRT-like phantom dataset and the compact 2D training loop."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from AutoCTVLib.errors import InputError
from AutoCTVLib.noisy.dataset2d import (
    STRUCTURES_2D,
    Dataset2DConfig,
    build_dataset2d,
    load_dataset2d,
    save_dataset2d,
)
from AutoCTVLib.noisy.train2d import (
    Train2DConfig,
    dice_per_structure,
    predict_2d,
    train_2d,
    weight_trajectory,
)


def test_phantom_slices_make_a_three_structure_dataset(tmp_path: Path) -> None:
    config = Dataset2DConfig(image_size=64, n_train=4, n_test=2)
    dataset = build_dataset2d(config)
    assert dataset.train_images.shape == (4, 64, 64) and dataset.test_images.shape == (2, 64, 64)
    assert dataset.train_labels.shape == (4, 3, 64, 64) and dataset.structure_names == STRUCTURES_2D
    assert dataset.train_images.dtype == np.float32 and dataset.train_labels.dtype == np.uint8
    assert 0.0 <= dataset.train_images.min() and dataset.train_images.max() <= 1.0
    for labels in (dataset.train_labels, dataset.test_labels):
        areas = labels.sum(axis=(2, 3))  # (N, 3)
        assert (areas > 0).all()  # every image shows every structure
        # large, medium, small: body > bladder, body > hip bone on every image
        assert (areas[:, 0] > 4 * areas[:, 1]).all() and (areas[:, 0] > 4 * areas[:, 2]).all()
        # bladder and hip bone lie inside the body
        assert not (labels[:, 1:] & (1 - labels[:, :1])).any()
    # every image from its own phantom, and no phantom in both sets
    train_seeds, test_seeds = dataset.train_sources[:, 0], dataset.test_sources[:, 0]
    assert len(set(train_seeds)) == 4 and len(set(test_seeds)) == 2
    assert not set(train_seeds) & set(test_seeds)
    two_each = build_dataset2d(
        Dataset2DConfig(image_size=64, n_train=4, n_test=1, slices_per_phantom=2)
    )
    assert np.bincount(two_each.train_sources[:, 0] - config.seed).max() == 2
    path = tmp_path / "dataset.npz"
    save_dataset2d(dataset, path)
    loaded = load_dataset2d(path, config)
    assert np.array_equal(loaded.train_labels, dataset.train_labels)
    assert np.array_equal(loaded.test_images, dataset.test_images)
    with pytest.raises(InputError, match="other 2D dataset settings"):
        load_dataset2d(path, Dataset2DConfig(image_size=64, n_train=5, n_test=2))
    with pytest.raises(ValueError, match="image_size"):
        Dataset2DConfig(image_size=16)


def discs(n: int = 12, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Bright discs on noise; labels: the disc and its central half (two structures)."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[:size, :size]
    images = rng.normal(0.2, 0.05, size=(n, size, size)).astype(np.float32)
    labels = np.zeros((n, 2, size, size), np.uint8)
    for index in range(n):
        cy, cx, radius = rng.uniform(11, 21), rng.uniform(11, 21), rng.uniform(5, 9)
        distance = np.hypot(y - cy, x - cx)
        labels[index, 0] = distance <= radius
        labels[index, 1] = distance <= radius / 2
        images[index][distance <= radius] += 0.6
    return images, labels


@pytest.mark.parametrize("weighting", ["none", "qam", "qam_ocm"])
def test_train_2d_runs_each_weighting_repeatably(weighting: str) -> None:
    images, labels = discs()
    config = Train2DConfig(
        iterations=3,
        batch_size=4,
        loss_weighting=weighting,
        channels=(4, 8),
        qam_channels=(4, 8),
        seed=1,
    )
    result = train_2d(images, labels, config)
    assert len(result.losses) == 3 and all(math.isfinite(v) for v in result.losses)
    assert result.batch_indices.shape == (3, 4) and result.batch_weights.shape == (3, 4)
    assert all(len(set(row)) == 4 for row in result.batch_indices.tolist())
    assert np.allclose(result.batch_weights.sum(axis=1), 1.0, atol=1e-5)
    ratio = result.batch_weights.max(axis=1) / result.batch_weights.min(axis=1)
    if weighting == "none":
        assert np.allclose(result.batch_weights, 0.25)
    elif weighting == "qam_ocm":
        assert (ratio <= math.exp(4.0) * (1 + 1e-5)).all() and (ratio > 1.0).all()
    again = train_2d(images, labels, config)
    assert again.losses == result.losses
    prediction = predict_2d(result.network, images[:5], batch_size=2)
    assert prediction.shape == (5, 2, 32, 32) and prediction.dtype == bool


def test_train_2d_loss_choice_and_settings() -> None:
    images, labels = discs(8)
    for loss in ("nr_dice", "bce_dice"):
        result = train_2d(
            images, labels, Train2DConfig(iterations=2, batch_size=4, loss=loss, channels=(4, 8))
        )
        assert all(math.isfinite(v) for v in result.losses)
    with pytest.raises(ValueError, match="batch_size must be at least 2"):
        Train2DConfig(batch_size=1, loss_weighting="qam_ocm")
    with pytest.raises(ValueError, match="loss"):
        Train2DConfig(loss="focal")
    with pytest.raises(ValueError, match="exceeds"):
        train_2d(images, labels, Train2DConfig(iterations=1, batch_size=9, channels=(4, 8)))


def test_dice_per_structure_and_weight_trajectory() -> None:
    reference = np.zeros((2, 2, 8, 8), bool)
    reference[:, 0, 2:6, 2:6] = True
    prediction = reference.copy()
    prediction[1, 0, 2:6, 2:4] = False  # half of image 1's structure 0
    dice = dice_per_structure(prediction, reference)
    assert dice.shape == (2, 2)
    assert dice[0, 0] == 1.0 and dice[1, 0] == pytest.approx(2 * 8 / (8 + 16))
    assert dice[:, 1].tolist() == [1.0, 1.0]  # both empty
    # two iterations, batches of 2: image 0 is clean, image 1 noisy
    indices = np.array([[0, 1], [1, 0]])
    weights = np.array([[0.8, 0.2], [0.4, 0.6]])
    trajectory = weight_trajectory(indices, weights, noisy=[False, True])
    assert trajectory["clean_mean"].tolist() == pytest.approx([1.6, 1.2])
    assert trajectory["noisy_mean"].tolist() == pytest.approx([0.4, 0.8])
    assert trajectory["clean_var"].tolist() == pytest.approx([0.0, 0.0])
    smoothed = weight_trajectory(indices, weights, noisy=[False, True], window=2)
    assert smoothed["clean_mean"][1] == pytest.approx(1.4)
    assert smoothed["clean_var"][1] == pytest.approx(0.04)
