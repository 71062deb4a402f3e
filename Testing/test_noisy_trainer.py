"""The trainer's loss-weighting hook: "qam_ocm" trains, checkpoints the quality network and
resumes exactly; patches of a batch come from distinct cases; settings are validated.

(With the default "none" the trainer is unchanged: Testing/test_training.py and
test_distributed.py cover that path.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from training_helpers import tiny_config, write_tiny_dataset

from AutoCTVLib.errors import InputError
from AutoCTVLib.models import load_model
from AutoCTVLib.nn import build_network
from AutoCTVLib.training.checkpoint import load_checkpoint
from AutoCTVLib.training.config import TrainConfig, load_train_config
from AutoCTVLib.training.data import PatchSampler, TrainingCase, load_training_cases
from AutoCTVLib.training.run import run_training, weights_sha256
from AutoCTVLib.training.trainer import Trainer, adam_factory, make_loss_fn


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("noisy") / "tiny.h5"
    write_tiny_dataset(path, n_cases=5)
    return path


@pytest.fixture(scope="module")
def cases(dataset: Path) -> list[TrainingCase]:
    return load_training_cases(dataset, None, tiny_config().preprocess_config())


def weighted_config(**changes: object) -> TrainConfig:
    base = tiny_config(
        batch_size=3,
        loss_weighting="qam_ocm",
        qam_channels=[4, 8],
        qam_lr=1e-3,
        distinct_cases=True,
        network={"channels": [4, 8, 8], "dropout_p": 0.2, "dropout_where": "all"},
    )
    return base.replace(**changes) if changes else base


def make_trainer(cases: list[TrainingCase], config: TrainConfig, run_dir: Path) -> Trainer:
    sampler = PatchSampler(
        cases[:4],
        config.batch_size,
        config.patch_size_zyx,
        config.foreground_fraction,
        seed=config.seed,
        distinct_cases=config.distinct_cases,
    )
    return Trainer(
        build_network(config.network_config(), seed=config.seed),
        make_loss_fn(config.loss),
        adam_factory(config.lr),
        sampler,
        cases[4:],
        config=config,
        run_dir=run_dir,
    )


def quality_sha256(trainer: Trainer) -> str:
    assert trainer.weighting is not None
    return weights_sha256(trainer.weighting)


@pytest.mark.parametrize("signal", ["loss", "size_adjusted_loss"])
def test_qam_ocm_training_checkpoints_and_resumes_exactly(
    cases: list[TrainingCase], tmp_path: Path, signal: str
) -> None:
    config = weighted_config(iterations=8, val_every=4, quality_signal=signal)
    straight = make_trainer(cases, config, tmp_path / "straight")
    straight.fit()
    first = make_trainer(cases, config.replace(iterations=4), tmp_path / "resumed")
    first.fit()
    second = make_trainer(cases, config, tmp_path / "resumed")  # fresh networks, then resume
    assert quality_sha256(second) != quality_sha256(first)
    second.fit(resume=True)

    def curve(trainer: Trainer) -> list[float]:
        return [row["loss"] for row in trainer.state.train_history]

    assert len(curve(straight)) == 8 and curve(second) == curve(straight)
    assert weights_sha256(second.model) == weights_sha256(straight.model)
    assert quality_sha256(second) == quality_sha256(straight)
    # the quality network was trained (its weights moved from the seeded start)
    fresh = make_trainer(cases, config, tmp_path / "fresh")
    assert quality_sha256(fresh) != quality_sha256(straight)
    last = tmp_path / "straight" / "checkpoints" / "last"
    assert (last / "quality.safetensors").is_file()
    state = json.loads((last / "state.json").read_text())
    assert state["extra_modules"] == ["quality"] and "quality.safetensors" in state["sha256"]
    assert len(state["optimizer"]["param_groups"]) == 2
    assert state["optimizer"]["param_groups"][1]["lr"] == config.qam_lr
    for row in straight.state.train_history:
        assert sum(row["sample_weights"]) == pytest.approx(1.0, abs=1e-5)
        assert len(set(row["case_ids"])) == 3  # three different cases per batch
        assert len(row["label_shares"]) == 3 and all(0 <= v <= 1 for v in row["label_shares"])
        ratio = max(row["sample_weights"]) / min(row["sample_weights"])
        assert ratio <= torch.e ** (2 * config.ocm_lambda)
    if signal == "size_adjusted_loss":  # the running baseline is resumed with the network
        baseline = straight.weighting.size_baseline
        assert bool(baseline.seen.any()) and torch.equal(
            baseline.mean, second.weighting.size_baseline.mean
        )
    changed = make_trainer(cases, config.replace(ocm_lambda=1.0), tmp_path / "resumed")
    with pytest.raises(InputError, match="ocm_lambda"):
        changed.fit(resume=True)


def test_runs_started_before_loss_weighting_existed_still_resume(
    cases: list[TrainingCase], tmp_path: Path
) -> None:
    config = tiny_config(iterations=4, val_every=2)
    make_trainer(cases, config.replace(iterations=2), tmp_path / "run").fit()
    state_path = tmp_path / "run" / "checkpoints" / "last" / "state.json"
    state = json.loads(state_path.read_text())
    assert "extra_modules" not in state  # no quality network, no extra file
    for key in (
        "loss_weighting",
        "qam_lr",
        "ocm_lambda",
        "qam_channels",
        "distinct_cases",
        "aligned_patches",
        "quality_signal",
    ):
        del state["trainer"]["config"][key]
    state_path.write_text(json.dumps(state))
    resumed = make_trainer(cases, config, tmp_path / "run")
    resumed.fit(resume=True)
    assert resumed.state.iteration == 4


def test_run_training_with_qam_ocm_exports_the_segmentation_network_only(
    dataset: Path, tmp_path: Path
) -> None:
    config = weighted_config(iterations=3, val_every=3, batch_size=2)
    summary = run_training(dataset, tmp_path / "run", config)
    model, card = load_model(tmp_path / "run" / "model")
    best = build_network(config.network_config())
    load_checkpoint(tmp_path / "run" / "checkpoints" / "best", best)
    assert weights_sha256(model) == weights_sha256(best)
    assert model.state_dict().keys() == best.state_dict().keys()
    assert not any("quality" in name for name in model.state_dict())
    assert card.training_data["loss_weighting"] == {
        "strategy": "qam_ocm",
        "qam_lr": config.qam_lr,
        "qam_channels": [4, 8],
        "ocm_lambda": 2.0,
        "distinct_cases": True,
        "aligned_patches": False,
    }
    assert summary.result.iterations == 3


def test_distinct_cases_sampler(cases: list[TrainingCase]) -> None:
    plain = PatchSampler(cases, 2, (8, 8, 8), seed=5)
    explicit = PatchSampler(cases, 2, (8, 8, 8), seed=5, distinct_cases=False)
    assert torch.equal(plain.batch(3).image, explicit.batch(3).image)
    distinct = PatchSampler(cases, 5, (8, 8, 8), seed=5, distinct_cases=True)
    for iteration in range(1, 6):
        assert sorted(distinct.batch(iteration).case_ids) == [c.case_id for c in cases]
    # without the option some batch of 5 draws a case twice
    repeated = PatchSampler(cases, 5, (8, 8, 8), seed=5)
    assert any(len(set(repeated.batch(i).case_ids)) < 5 for i in range(1, 6))
    # the global batch is planned once: two ranks of 2 see 4 different cases
    shared = PatchSampler(cases, 2, (8, 8, 8), seed=5, distinct_cases=True)
    ids = shared.batch(4, 0, 2).case_ids + shared.batch(4, 1, 2).case_ids
    assert len(set(ids)) == 4


def coordinate_case(
    case_id: str, shape_zyx: tuple[int, int, int], label_box: tuple[slice, ...]
) -> TrainingCase:
    """A case whose image value at (z, y, x) is z·10⁴ + y·10² + x, so a patch tells its start."""
    z, y, x = np.indices(shape_zyx)
    label = np.zeros(shape_zyx, np.uint8)
    label[label_box] = 1
    return TrainingCase.from_arrays(case_id, z * 10000.0 + y * 100.0 + x, label, (4, 4, 5))


def patch_start(image: torch.Tensor) -> np.ndarray:
    first = int(image[0, 0, 0, 0])
    return np.array([first // 10000, first // 100 % 100, first % 100])


def test_aligned_patches_show_the_same_place_in_every_case() -> None:
    cases = [
        coordinate_case("a", (30, 40, 40), np.s_[10:20, 12:22, 15:25]),
        coordinate_case("b", (34, 36, 44), np.s_[12:18, 14:24, 18:30]),
        coordinate_case("c", (28, 42, 38), np.s_[8:22, 16:24, 10:22]),
    ]
    patch = np.array([8, 12, 12])
    sampler = PatchSampler(
        cases, 3, tuple(patch), 0.5, seed=3, distinct_cases=True, aligned_patches=True
    )
    kinds = set()
    for iteration in range(1, 25):
        foreground, offset, fraction = sampler.batch_plan(iteration)
        kinds.add(foreground)
        assert np.all(np.abs(offset) <= patch // 4)
        batch = sampler.batch(iteration)
        assert sorted(batch.case_ids) == ["a", "b", "c"]
        for case_id, image in zip(batch.case_ids, batch.image):
            case = next(c for c in cases if c.case_id == case_id)
            start = patch_start(image)
            if foreground:  # centred at the same offset from each label's centroid
                centroid = np.argwhere(case.label).mean(axis=0)
                assert np.array_equal(start + patch // 2, np.rint(centroid + offset))
            else:  # at the same fraction of each case's free room
                room = np.array(case.image.shape) - patch
                assert np.array_equal(start, np.rint(fraction * room))
    assert kinds == {True, False}
    # the plan belongs to the iteration, not to a rank's share of the batch
    two = PatchSampler(
        cases, 1, tuple(patch), 0.5, seed=3, distinct_cases=True, aligned_patches=True
    )
    assert two.batch_plan(7)[1].tolist() == sampler.batch_plan(7)[1].tolist()
    with pytest.raises(ValueError, match="aligned_patches must be true or false"):
        tiny_config(aligned_patches="yes")


def test_loss_weighting_settings_are_validated(tmp_path: Path) -> None:
    config = weighted_config()
    path = tmp_path / "train.json"
    path.write_text(config.to_json())
    loaded = load_train_config(path)
    assert loaded == config and loaded.qam_channels == (4, 8)
    assert TrainConfig().loss_weighting == "none" and TrainConfig().qam_lr == 1e-4
    assert TrainConfig().ocm_lambda == 2.0
    with pytest.raises(ValueError, match="batch_size must be at least 2"):
        tiny_config(batch_size=1, loss_weighting="qam")
    with pytest.raises(ValueError, match="loss_weighting"):
        tiny_config(loss_weighting="pick_and_learn")
    with pytest.raises(ValueError, match="ocm_lambda"):
        tiny_config(ocm_lambda=-1.0)
    with pytest.raises(ValueError, match="qam_lr"):
        tiny_config(qam_lr=0)
    assert TrainConfig().quality_signal == "loss"
    with pytest.raises(ValueError, match="quality_signal"):
        tiny_config(loss_weighting="qam", quality_signal="volume")
    path.write_text(json.dumps({"loss_weighting": "qam_ocm", "batch_size": 1}))
    with pytest.raises(InputError, match="batch_size"):
        load_train_config(path)


def test_warm_up_trains_plainly_then_weights_and_logs_each_patch_loss(
    cases: list[TrainingCase], tmp_path: Path
) -> None:
    config = weighted_config(iterations=6, val_every=6, weighting_warmup_iterations=3)
    trainer = make_trainer(cases, config, tmp_path / "warm")
    untouched = quality_sha256(trainer)
    warm_only = make_trainer(cases, config.replace(iterations=3), tmp_path / "warm_only")
    warm_only.fit()
    # the quality network is not trained while the loss is the plain mean
    assert quality_sha256(warm_only) == untouched
    plain = make_trainer(
        cases, weighted_config(iterations=3, loss_weighting="none"), tmp_path / "p"
    )
    plain.fit()
    assert [r["loss"] for r in warm_only.state.train_history] == pytest.approx(
        [r["loss"] for r in plain.state.train_history], rel=1e-6
    )
    trainer.fit()
    history = trainer.state.train_history
    assert all("sample_weights" not in row for row in history[:3])
    for row in history[3:]:
        assert len(row["sample_weights"]) == len(row["sample_losses"]) == 3
        assert all(v >= 0 for v in row["sample_losses"])
    assert quality_sha256(trainer) != untouched


def test_labelled_only_weighting_in_training(cases: list[TrainingCase], tmp_path: Path) -> None:
    config = weighted_config(iterations=6, val_every=6, weight_labelled_only=True)
    donor = cases[3]
    unlabelled = TrainingCase.from_arrays(
        "no_label", donor.image, np.zeros_like(donor.label), donor.spacing_xyz_mm
    )
    trainer = make_trainer([*cases[:3], unlabelled, *cases[4:]], config, tmp_path / "labelled")
    trainer.fit()
    empty = [
        (w, row)
        for row in trainer.state.train_history
        for w, share in zip(row["sample_weights"], row["label_shares"])
        if share == 0
    ]
    assert len(empty) >= 4, "the case without label is in most batches (3 of the 4 cases each)"
    assert all(w == pytest.approx(1 / 3, abs=1e-6) for w, _ in empty)
    with pytest.raises(ValueError, match="weighting_warmup_iterations"):
        weighted_config(weighting_warmup_iterations=-1)
    with pytest.raises(ValueError, match="weight_labelled_only"):
        weighted_config(weight_labelled_only="yes")
