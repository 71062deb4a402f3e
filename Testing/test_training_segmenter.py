"""Training a cascade's segmenter (stage 2) with ``autoctv train``: fine-grid crops around the
CTV, boundary and jittered-box patches, switchable augmentation, one cascade model exported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from training_helpers import tiny_case, tiny_config, write_tiny_dataset, write_tiny_locator

from AutoCTVLib.augment import Compose, Sample, adjust_intensity, scale, segmenter_augmentation
from AutoCTVLib.cli.main import main
from AutoCTVLib.models import load_model
from AutoCTVLib.models.cascade_file import CascadeModel
from AutoCTVLib.predict import Predictor
from AutoCTVLib.training.config import TrainConfig
from AutoCTVLib.training.data import PatchSampler
from AutoCTVLib.training.run import build_augmentation, run_training
from AutoCTVLib.training.segmenter_config import SegmenterSettings
from AutoCTVLib.training.segmenter_data import segmenter_case
from AutoCTVLib.volume import Volume

SEGMENTER_SPACING = [1.5, 1.5, 2.0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("segmenter_data") / "tiny.h5"
    write_tiny_dataset(path, n_cases=4)
    return path


@pytest.fixture(scope="module")
def locator_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_locator(tmp_path_factory.mktemp("locator"))


def segmenter_config(locator_path: Path, prior: bool = False, **changes: object) -> TrainConfig:
    options: dict[str, object] = {
        "stage": "segmenter",
        "cascade": {
            "locator_model": str(locator_path),
            "margin_mm": 6.0,
            "jitter_mm": 4.0,
            "use_locator_probability": prior,
        },
        "foreground_fraction": 0.25,
        "boundary_fraction": 0.25,
        "network": {"channels": [4, 8, 8], "in_channels": 2 if prior else 1},
        "preprocess": {"spacing_xyz_mm": SEGMENTER_SPACING, "hu_window": [-200.0, 300.0]},
    }
    options.update(changes)
    return tiny_config(**options)


@pytest.mark.parametrize("prior", [False, True])
def test_a_few_iterations_lower_the_loss_and_export_one_cascade(
    dataset: Path, locator_path: Path, tmp_path: Path, prior: bool
) -> None:
    config = segmenter_config(
        locator_path,
        prior,
        iterations=30,
        val_every=15,
        augment=True,
        augmentation={"max_angle_deg": 5.0, "max_scale_change": 0.1},
    )
    run_dir = tmp_path / "run"
    summary = run_training(dataset, run_dir, config)
    rows = (run_dir / "logs" / "training_log.csv").read_text().splitlines()[1:]
    curve = [float(row.split(",")[1]) for row in rows]
    assert len(curve) == 30
    assert np.mean(curve[-10:]) < np.mean(curve[:10]) - 0.05
    model, card = load_model(run_dir / "model")
    assert isinstance(model, CascadeModel) and card.is_cascade
    segmenter_stage = card.stages[1]
    assert segmenter_stage["preprocessing"]["spacing_xyz_mm"] == SEGMENTER_SPACING
    assert segmenter_stage["crop"] == {"margin_mm": 6.0, "threshold": 0.5}
    assert segmenter_stage["input_channels"] == (["ct", "locator_probability"] if prior else ["ct"])
    assert card.training_data["locator"]["name"] == "tiny-locator"
    assert card.metrics["best_iteration"] == summary.result.best_iteration
    # The exported cascade contours a CT on its own grid.
    ct_hu, _, geometry = tiny_case(7)
    prediction = Predictor(model, card, device="cpu").predict(
        Volume(ct_hu.astype(np.float32), geometry)
    )
    assert prediction.label.geometry == geometry


def test_crops_hold_the_ctv_with_margin_and_the_prior_channel(locator_path: Path) -> None:
    ct_hu, ctv, geometry = tiny_case(1)
    ct, label = Volume(ct_hu.astype(np.float32), geometry), Volume(ctv, geometry)
    config = segmenter_config(locator_path).preprocess_config()
    settings = SegmenterSettings(locator_model=str(locator_path), margin_mm=3.0, jitter_mm=0.0)
    case = segmenter_case("c", ct, label, config, settings)
    assert case.image.ndim == 3 and case.spacing_xyz_mm == tuple(SEGMENTER_SPACING)
    ctv_ml = ctv.sum() * geometry.voxel_volume_ml
    assert case.label.sum() * 1.5 * 1.5 * 2.0 / 1000 == pytest.approx(ctv_ml, rel=0.15)
    # margin: no CTV voxel on the crop's faces
    assert not any(case.label[index].any() for index in (0, -1)) and len(case.boundary_zyx)
    from AutoCTVLib.training.segmenter_data import load_locator

    with_prior = segmenter_case("c", ct, label, config, settings, load_locator(settings))
    assert with_prior.image.shape == (2, *case.label.shape)
    assert 0.0 <= with_prior.image[1].min() and with_prior.image[1].max() <= 1.0


def test_boundary_and_box_patches(locator_path: Path) -> None:
    ct_hu, ctv, geometry = tiny_case(2)
    ct, label = Volume(ct_hu.astype(np.float32), geometry), Volume(ctv, geometry)
    settings = SegmenterSettings(locator_model=str(locator_path), margin_mm=6.0, jitter_mm=0.0)
    case = segmenter_case(
        "c", ct, label, segmenter_config(locator_path).preprocess_config(), settings
    )
    surface = {tuple(point) for point in case.boundary_zyx}
    patch = (9, 9, 9)
    on_boundary = PatchSampler([case], 1, patch, 0.0, boundary_fraction=1.0, seed=1)
    for iteration in range(5):
        _, _, label_patch, _ = on_boundary.sample(iteration, 0)
        assert label_patch[4, 4, 4] == 1 and label_patch.sum() < label_patch.size
    # box mode without jitter: every patch is centred on the CTV box centre
    boxed = PatchSampler(
        [case], 1, patch, 0.0, boundary_fraction=0.0, centre_jitter_voxels=(0, 0, 0)
    )
    first = boxed.sample(0, 0)[2]
    assert all(np.array_equal(first, boxed.sample(i, 0)[2]) for i in range(1, 4))
    assert surface and first.any()
    with pytest.raises(ValueError, match="boundary_fraction"):
        PatchSampler([case], 1, patch, 0.6, boundary_fraction=0.6)


def test_each_augmentation_part_can_be_switched_off(locator_path: Path) -> None:
    everything_off = {
        "max_angle_deg": 0.0,
        "max_scale_change": 0.0,
        "max_gain": 0.0,
        "max_offset": 0.0,
        "max_noise_sd": 0.0,
        "flip_left_right": False,
    }
    assert segmenter_augmentation(**everything_off).transforms == []
    augment = build_augmentation(
        segmenter_config(locator_path, augment=True, augmentation={"max_scale_change": 0.0})
    )
    assert isinstance(augment, Compose)
    names = [type(t).__name__ for t in augment.transforms]
    assert names == ["RandomRotation", "RandomIntensity", "RandomFlip"]
    assert build_augmentation(segmenter_config(locator_path, augment=False)) is None


def test_scale_and_intensity_twins() -> None:
    image = np.zeros((2, 21, 21, 21), np.float32)
    image[:, 8:13, 8:13, 8:13] = 1.0
    label = (image[0] > 0).astype(np.uint8)
    sample = Sample(image=image, label=label, weight=np.ones(label.shape, np.float32))
    bigger = scale(sample, 1.6)
    assert bigger.label.sum() > 2 * label.sum() and bigger.weight.min() == 1.0
    smaller = scale(sample, 0.5)
    assert smaller.label.sum() < label.sum() and smaller.weight.min() == 0.0
    brighter = adjust_intensity(sample, 2.0, 0.1, 0.0)
    assert np.allclose(brighter.image[0], 2.0 * image[0] + 0.1)
    assert np.array_equal(brighter.image[1], image[1])  # the locator channel is left alone
    assert np.array_equal(brighter.label, label)


def test_config_checks(locator_path: Path) -> None:
    with pytest.raises(ValueError, match="in_channels must be 2"):
        segmenter_config(locator_path, network={"channels": [4, 8, 8]}).replace(
            cascade={"locator_model": str(locator_path), "use_locator_probability": True}
        )
    with pytest.raises(ValueError, match='need "stage": "segmenter"'):
        tiny_config(boundary_fraction=0.2)
    with pytest.raises(ValueError, match="unknown cascade setting"):
        segmenter_config(locator_path, cascade={"margin": 3})
    config = segmenter_config(locator_path)
    assert TrainConfig.from_dict(json.loads(config.to_json())) == config


def test_cli_trains_a_segmenter_from_a_config_file(
    dataset: Path, locator_path: Path, tmp_path: Path, capsys
) -> None:
    config_path = tmp_path / "segmenter.json"
    config_path.write_text(segmenter_config(locator_path, iterations=3, val_every=3).to_json())
    run_dir = tmp_path / "run"
    args = ["train", "--data", str(dataset), "--out", str(run_dir), "--config", str(config_path)]
    assert main([*args, "--device", "cpu", "--progress", "none"]) == 0, capsys.readouterr().err
    assert load_model(run_dir / "model.json")[1].is_cascade


def test_the_committed_segmenter_config_is_valid() -> None:
    from AutoCTVLib.training.config import load_train_config

    root = Path(__file__).resolve().parents[1]
    config = load_train_config(root / "benchmarks" / "configs" / "ctv_segmenter.json")
    assert config.stage == "segmenter"
    assert max(config.preprocess_config().spacing_xyz_mm[:2]) <= 2.0
    assert config.preprocess_config().spacing_xyz_mm[2] <= 3.0


def test_batches_prepared_by_workers_are_the_same(dataset: Path, locator_path: Path) -> None:
    from AutoCTVLib.training.prefetch import PrefetchingSampler
    from AutoCTVLib.training.segmenter_data import load_segmenter_cases

    config = segmenter_config(locator_path, augment=True)
    cases = load_segmenter_cases(
        dataset, None, config.preprocess_config(), config.segmenter_settings()
    )
    sampler = PatchSampler(
        cases,
        2,
        (9, 9, 9),
        0.25,
        build_augmentation(config),
        seed=5,
        boundary_fraction=0.25,
        centre_jitter_voxels=(2, 2, 2),
    )
    prefetching = PrefetchingSampler(sampler, workers=2, ahead=3, last_iteration=6)
    try:
        for iteration in (1, 2, 3, 5):
            ahead, here = prefetching.batch(iteration), sampler.batch(iteration)
            assert ahead.case_ids == here.case_ids
            assert np.array_equal(ahead.image.numpy(), here.image.numpy())
            assert np.array_equal(ahead.label.numpy(), here.label.numpy())
    finally:
        prefetching.close()


def test_a_segmenter_trains_with_quality_weighting_on_aligned_patches(
    dataset: Path, locator_path: Path, tmp_path: Path
) -> None:
    """The noisy-label methods reach stage 2: QAM+OCM on aligned patches of distinct cases."""
    config = segmenter_config(
        locator_path,
        iterations=4,
        val_every=4,
        batch_size=3,
        boundary_fraction=0.0,
        distinct_cases=True,
        aligned_patches=True,
        loss_weighting="qam_ocm",
        weight_labelled_only=True,
        qam_channels=[4, 8],
    )
    run_dir = tmp_path / "run"
    run_training(dataset, run_dir, config)
    model, card = load_model(run_dir / "model")
    assert isinstance(model, CascadeModel) and card.is_cascade
    rows = json.loads((run_dir / "logs" / "history.json").read_text())["train"]
    assert rows and all(len(row["sample_weights"]) == 3 for row in rows)
    with pytest.raises(ValueError, match="boundary_fraction to 0 to align"):
        segmenter_config(locator_path, aligned_patches=True)
    assert segmenter_config(locator_path, loss="nr_dice").loss == "nr_dice"
