"""Training: splits, config, data loading and sampling, checkpoints, the trainer and the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from training_helpers import tiny_config, write_tiny_dataset

from AutoCTVLib.augment import thesis_augmentation
from AutoCTVLib.cli.main import main
from AutoCTVLib.device import select_device
from AutoCTVLib.errors import DeviceError, InputError, ModelFileError, OutputError
from AutoCTVLib.models import load_model
from AutoCTVLib.nn import build_network
from AutoCTVLib.training.callbacks import Callback
from AutoCTVLib.training.checkpoint import (
    flatten_optimizer_state,
    load_checkpoint,
    save_checkpoint,
    unflatten_optimizer_state,
)
from AutoCTVLib.training.config import TrainConfig, load_train_config
from AutoCTVLib.training.data import PatchSampler, TrainingCase, load_training_cases
from AutoCTVLib.training.distributed import DistributedContext
from AutoCTVLib.training.run import run_training, weights_sha256
from AutoCTVLib.training.schedule import lr_factor
from AutoCTVLib.training.splits import fold_split, kfold_split
from AutoCTVLib.training.trainer import Trainer, adam_factory, make_loss_fn


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    write_tiny_dataset(path, n_cases=4)
    return path


@pytest.fixture(scope="module")
def cases(dataset: Path) -> list[TrainingCase]:
    return load_training_cases(dataset, None, tiny_config().preprocess_config())


def losses(run_dir: Path) -> list[float]:
    history = json.loads((run_dir / "logs" / "history.json").read_text())
    return [row["loss"] for row in history["train"]]


def make_trainer(
    cases: list[TrainingCase],
    config: TrainConfig,
    run_dir: Path | None,
    context: DistributedContext | None = None,
    callbacks: list[Callback] | None = None,
) -> Trainer:
    sampler = PatchSampler(
        cases[:3],
        config.batch_size,
        config.patch_size_zyx,
        config.foreground_fraction,
        seed=config.seed,
    )
    return Trainer(
        build_network(config.network_config(), seed=config.seed),
        make_loss_fn(config.loss),
        adam_factory(config.lr),
        sampler,
        cases[3:],
        callbacks=callbacks or [],
        config=config,
        context=context,
        run_dir=run_dir,
    )


# ---------------------------------------------------------------------------------- splits
def test_kfold_partitions_case_ids_reproducibly() -> None:
    ids = [f"c{i}" for i in range(10)]
    folds = kfold_split(ids, 3, seed=5)
    assert sorted(len(fold) for fold in folds) == [3, 3, 4]
    assert sorted(i for fold in folds for i in fold) == sorted(ids)
    assert kfold_split(list(reversed(ids)), 3, seed=5) == folds
    assert kfold_split(ids, 3, seed=6) != folds
    train, validation = fold_split(ids, 1, 3, seed=5)
    assert validation == folds[1]
    assert not set(train) & set(validation) and sorted(train + validation) == sorted(ids)
    with pytest.raises(ValueError, match="cannot be split"):
        kfold_split(ids[:2], 3, seed=0)
    with pytest.raises(ValueError, match="fold"):
        fold_split(ids, 3, 3, seed=0)


# ---------------------------------------------------------------------------------- config
def test_train_config_round_trips_and_rejects_mistakes(tmp_path: Path) -> None:
    config = tiny_config(fold=1, patch_size_zyx=(8, 16, 16))
    path = tmp_path / "train.json"
    path.write_text(config.to_json())
    assert load_train_config(path) == config
    assert config.network_config().channels == (4, 8, 8)
    assert TrainConfig().lr == 1e-4 and TrainConfig().network_config().recurrent_steps == 3
    path.write_text(json.dumps({"iterations": 10, "learning_rate": 0.1}))
    with pytest.raises(InputError, match="learning_rate"):
        load_train_config(path)
    path.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_train_config(path)
    with pytest.raises(ValueError, match="fold"):
        TrainConfig(fold=3, n_folds=3)
    with pytest.raises(ValueError, match="network"):
        TrainConfig(network={"chanels": [4, 8]})


def test_select_device() -> None:
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        assert select_device("auto").type != "cuda"
        with pytest.raises(DeviceError, match="CUDA"):
            select_device("cuda")
    with pytest.raises(ValueError, match="device"):
        select_device("tpu")


# ------------------------------------------------------------------------------------ data
def test_cases_are_preprocessed_onto_the_network_grid(cases: list[TrainingCase]) -> None:
    assert [case.case_id for case in cases] == ["case00", "case01", "case02", "case03"]
    for case in cases:
        assert case.image.dtype == np.float32 and case.label.dtype == np.uint8
        assert case.image.shape == case.label.shape
        assert 0.0 <= case.image.min() and case.image.max() <= 1.0
        assert case.label.sum() > 50 and len(case.foreground_zyx) == case.label.sum()
        assert case.spacing_xyz_mm == (2.0, 2.0, 2.0)
        # the body crop removed air around the body ellipsoid
        assert case.image.shape[1] < 28
        # the CTV is brighter than the rest of the body after windowing (120 HU vs 0 HU)
        assert case.image[case.label > 0].mean() > case.image[case.label == 0].mean() + 0.1


def test_missing_label_is_a_clear_error(dataset: Path) -> None:
    with pytest.raises(InputError, match="no label 'Bladder'"):
        load_training_cases(dataset, ["case00"], tiny_config().preprocess_config(), "Bladder")


def test_patch_sampler_is_seeded_and_shares_the_global_batch(cases: list[TrainingCase]) -> None:
    sampler = PatchSampler(cases, 2, (16, 16, 16), foreground_fraction=0.5, seed=11)
    first = sampler.batch(7)
    again = PatchSampler(cases, 2, (16, 16, 16), foreground_fraction=0.5, seed=11).batch(7)
    assert first.image.shape == (2, 1, 16, 16, 16) and first.weight is None
    assert torch.equal(first.image, again.image) and torch.equal(first.label, again.label)
    assert not torch.equal(sampler.batch(8).image, first.image)
    # rank 1 of 2 draws samples 2..3 of the global batch of 4
    whole = PatchSampler(cases, 4, (16, 16, 16), foreground_fraction=0.5, seed=11).batch(7)
    share = sampler.batch(7, rank=1, world_size=2)
    assert torch.equal(share.image, whole.image[2:]) and share.case_ids == whole.case_ids[2:]
    assert torch.equal(first.image, whole.image[:2])
    foreground = PatchSampler(cases, 4, (8, 8, 8), foreground_fraction=1.0, seed=0)
    assert all(foreground.batch(i).label.flatten(1).amax(1).min() == 1 for i in range(1, 4))


def test_patch_sampler_pads_small_cases_and_whole_crops(cases: list[TrainingCase]) -> None:
    big = PatchSampler(cases, 1, (40, 8, 8), seed=0).batch(1)
    assert big.image.shape == (1, 1, 40, 8, 8)
    whole = PatchSampler(cases, 3, None, seed=0).batch(1)
    by_id = {case.case_id: case for case in cases}
    drawn = [by_id[case_id].image.shape for case_id in whole.case_ids]
    assert tuple(whole.image.shape) == (3, 1, *np.max(drawn, axis=0))
    assert whole.image[0, 0].sum() == pytest.approx(by_id[whole.case_ids[0]].image.sum())


def test_patch_sampler_with_augmentation_returns_weights(cases: list[TrainingCase]) -> None:
    augment = thesis_augmentation(spacing_xyz_mm=(2.0, 2.0, 2.0))
    sampler = PatchSampler(cases, 2, (16, 16, 16), augment=augment, seed=1)
    batch = sampler.batch(3)
    assert batch.weight is not None and batch.weight.shape == batch.image.shape
    assert torch.equal(batch.image, sampler.batch(3).image)
    assert set(torch.unique(batch.label).tolist()) <= {0.0, 1.0}


# ----------------------------------------------------------------------------- checkpoints
def test_optimizer_state_round_trips_without_pickle(tmp_path: Path) -> None:
    config = tiny_config()
    model = build_network(config.network_config(), seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.rand(1, 1, 8, 8, 8)).mean().backward()
        optimizer.step()
    tensors, skeleton = flatten_optimizer_state(optimizer.state_dict())
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())
    json.dumps(skeleton)
    rebuilt = unflatten_optimizer_state(tensors, skeleton)
    assert rebuilt["state"].keys() == optimizer.state_dict()["state"].keys()

    save_checkpoint(tmp_path / "ck", model, {"note": "x"}, optimizer=optimizer)
    other = build_network(config.network_config(), seed=1)
    other_optimizer = torch.optim.Adam(other.parameters(), lr=1e-3)
    state = load_checkpoint(tmp_path / "ck", other, other_optimizer)
    assert state["trainer"] == {"note": "x"}
    assert weights_sha256(other) == weights_sha256(model)
    for key, value in other_optimizer.state_dict()["state"][0].items():
        assert torch.equal(value, optimizer.state_dict()["state"][0][key])

    weights = tmp_path / "ck" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"abcd")
    with pytest.raises(ModelFileError, match="checksum"):
        load_checkpoint(tmp_path / "ck", other)
    wrong = build_network(tiny_config(network={"channels": [4, 8]}).network_config())
    save_checkpoint(tmp_path / "ck2", model, {})
    with pytest.raises(ModelFileError, match="another network"):
        load_checkpoint(tmp_path / "ck2", wrong)


# --------------------------------------------------------------------------------- trainer
def test_short_training_lowers_the_loss_and_writes_outputs(dataset: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    summary = run_training(dataset, run_dir, tiny_config(iterations=30, val_every=10))
    curve = losses(run_dir)
    assert len(curve) == 30
    assert np.mean(curve[-10:]) < np.mean(curve[:10]) - 0.05
    validation = json.loads((run_dir / "logs" / "history.json").read_text())["validation"]
    assert [row["iteration"] for row in validation] == [10, 20, 30]
    assert all(len(row["per_case"]) == len(summary.validation_case_ids) for row in validation)
    csv_lines = (run_dir / "logs" / "training_log.csv").read_text().splitlines()
    assert csv_lines[0] == "iteration,loss,lr,seconds" and len(csv_lines) == 31
    for name in ("weights.safetensors", "optimizer.safetensors", "state.json"):
        assert (run_dir / "checkpoints" / "last" / name).is_file()
    assert (run_dir / "checkpoints" / "best" / "weights.safetensors").is_file()
    model, card = load_model(run_dir / "model")
    best = build_network(tiny_config().network_config())
    load_checkpoint(run_dir / "checkpoints" / "best", best)
    assert weights_sha256(model) == weights_sha256(best)
    assert card.preprocessing["hu_window"] == [-200.0, 300.0]
    assert card.metrics["best_iteration"] == summary.result.best_iteration
    assert card.metrics["validation"]["dice_mean"] == pytest.approx(summary.result.best_dice)
    assert card.training_data["validation_cases"] == list(summary.validation_case_ids)
    with pytest.raises(OutputError, match="already holds a training run"):
        run_training(dataset, run_dir, tiny_config())


def test_same_seed_gives_identical_loss_curves(cases: list[TrainingCase], tmp_path: Path) -> None:
    config = tiny_config(iterations=8, val_every=8)
    curves = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        trainer = make_trainer(cases, config.replace(seed=seed), tmp_path / name)
        trainer.fit()
        curves.append([row["loss"] for row in trainer.state.train_history])
        curves[-1].append(weights_sha256(trainer.model))
    assert curves[0] == curves[1]
    assert curves[0][:-1] != curves[2][:-1]


def test_resume_continues_exactly(cases: list[TrainingCase], tmp_path: Path) -> None:
    # dropout and recurrence make every iteration depend on torch's random state as well
    network = {"channels": [4, 8, 8], "dropout_p": 0.2, "dropout_where": "all"}
    network |= {"recurrent_steps": 2, "residual": True, "se": True}
    config = tiny_config(iterations=12, val_every=3, network=network)
    straight = make_trainer(cases, config, tmp_path / "straight")
    straight.fit()
    first = make_trainer(cases, config.replace(iterations=6), tmp_path / "resumed")
    first.fit()
    second = make_trainer(cases, config, tmp_path / "resumed")  # fresh weights, then resume
    second.fit(resume=True)

    def curve(trainer: Trainer) -> list[float]:
        return [row["loss"] for row in trainer.state.train_history]

    assert len(curve(straight)) == 12
    assert curve(second) == curve(straight)
    assert weights_sha256(second.model) == weights_sha256(straight.model)
    dices = [row["dice_mean"] for row in second.state.validation_history]
    assert dices == [row["dice_mean"] for row in straight.state.validation_history]
    changed = make_trainer(cases, config.replace(lr=1e-2), tmp_path / "resumed")
    with pytest.raises(InputError, match="lr"):
        changed.fit(resume=True)
    with pytest.raises(InputError, match="no training state"):
        make_trainer(cases, config, tmp_path / "empty").fit(resume=True)


def test_lr_factor_constant_and_poly() -> None:
    assert [lr_factor("constant", i, 4) for i in (1, 4)] == [1.0, 1.0]
    poly = [lr_factor("poly", i, 4) for i in range(1, 5)]
    assert poly[0] == 1.0 and poly[-1] == pytest.approx(0.25**0.9)
    assert poly == sorted(poly, reverse=True)
    with pytest.raises(ValueError, match="outside"):
        lr_factor("poly", 5, 4)
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="cosine")


def test_poly_schedule_sets_each_step_and_survives_resume(
    cases: list[TrainingCase], tmp_path: Path
) -> None:
    config = tiny_config(iterations=8, val_every=4, lr_schedule="poly")
    straight = make_trainer(cases, config, tmp_path / "straight")
    straight.fit()
    rates = [row["lr"] for row in straight.state.train_history]
    assert rates == pytest.approx([config.lr * lr_factor("poly", i, 8) for i in range(1, 9)])
    make_trainer(cases, config.replace(iterations=4), tmp_path / "resumed").fit()
    # Rebuilt with the stored 4-step config's lr, then resumed: the restored optimiser holds the
    # last decayed rate, and the schedule must still start from the configured one.
    resumed = make_trainer(cases, config, tmp_path / "resumed")
    resumed.fit(resume=True)
    assert [row["lr"] for row in resumed.state.train_history][4:] == pytest.approx(rates[4:])


def test_lr_factor_follows_the_larger_share_of_iterations_and_time() -> None:
    assert lr_factor("poly", 1, 100, time_share=0.5) == pytest.approx(0.5**0.9)
    assert lr_factor("poly", 91, 100, time_share=0.5) == pytest.approx(0.1**0.9)
    assert lr_factor("poly", 2, 100, time_share=1.7) == 0.0
    assert lr_factor("constant", 2, 100, time_share=0.9) == 1.0
    with pytest.raises(ValueError, match="time_share"):
        lr_factor("poly", 2, 100, time_share=-0.1)
    for bad in (0, -5.0, True, float("inf"), "900"):
        with pytest.raises(ValueError, match="time_budget_s"):
            TrainConfig(time_budget_s=bad)


class FakeClock:
    """``time.perf_counter`` that moves 1 s on every reading: training time without waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_time_budget_decays_the_rate_stops_validated_and_resumes(
    cases: list[TrainingCase], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "perf_counter", FakeClock())
    config = tiny_config(iterations=1000, val_every=500, lr_schedule="poly", time_budget_s=40.0)
    trainer = make_trainer(cases, config, tmp_path / "run")
    result = trainer.fit()
    rates = [row["lr"] for row in trainer.state.train_history]
    assert 5 < result.iterations < 40 and result.stopped_early
    assert trainer.state.train_seconds >= 40.0
    assert [v["iteration"] for v in trainer.state.validation_history] == [result.iterations]
    assert rates[0] == config.lr and rates == sorted(rates, reverse=True)
    assert rates[-1] < 0.2 * config.lr  # by iterations alone it would still be ≈ config.lr
    # A larger budget on resume continues from the seconds already spent.
    resumed = make_trainer(cases, config.replace(time_budget_s=60.0), tmp_path / "run")
    more = resumed.fit(resume=True)
    assert result.iterations < more.iterations < 1000 and more.stopped_early
    assert resumed.state.train_seconds >= 60.0


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_iteration_end(self, trainer: Trainer, record: dict) -> None:
        self.events.append("iteration")


def test_only_rank_zero_writes_files_and_reports(cases: list[TrainingCase], tmp_path: Path) -> None:
    config = tiny_config(iterations=2, val_every=1)
    recorder = Recorder()
    other_rank = DistributedContext(rank=1, world_size=2)
    trainer = make_trainer(cases, config, tmp_path / "rank1", other_rank, [recorder])
    trainer.fit()
    assert trainer.state.iteration == 2 and len(trainer.state.validation_history) == 2
    assert not (tmp_path / "rank1").exists() and recorder.events == []
    main_rank = make_trainer(cases, config, tmp_path / "rank0", None, [Recorder()])
    main_rank.fit()
    assert (tmp_path / "rank0" / "checkpoints" / "last" / "state.json").is_file()
    assert main_rank.callbacks[0].events == ["iteration", "iteration"]


# ------------------------------------------------------------------------------------- CLI
def test_cli_train_exports_the_model_and_resumes(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = tmp_path / "train.json"
    config_path.write_text(tiny_config(iterations=4, val_every=2).to_json())
    run_dir = tmp_path / "run"
    args = ["train", "--data", str(dataset), "--out", str(run_dir), "--config", str(config_path)]
    assert main([*args, "--device", "cpu", "--progress", "json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events].count("iteration") == 4
    assert [e["done"] for e in events if e["event"] == "prepare"] == [1, 2, 3, 4]
    assert events[-1]["event"] == "end"
    _, card = load_model(run_dir / "model.json")
    assert card.training_data["iterations"] == 4
    assert main([*args, "--iterations", "6", "--resume", "--progress", "none"]) == 0
    assert "trained 6 iterations" in capsys.readouterr().out
    assert len(losses(run_dir)) == 6
    assert main([*args, "--fold", "5"]) == 2
    assert "fold" in capsys.readouterr().err


def test_best_tracking_and_early_stop(cases: list[TrainingCase]) -> None:
    trainer = make_trainer(cases, tiny_config(early_stop_patience=2), run_dir=None)
    decisions = []
    for iteration, dice in enumerate([0.5, 0.6, 0.55, 0.6], start=1):
        record = {"iteration": iteration, "dice_mean": dice}
        decisions.append((trainer.record_validation(record), record["is_best"]))
    assert decisions == [(False, True), (False, True), (False, False), (True, False)]
    assert trainer.state.best_dice == 0.6 and trainer.state.best_iteration == 2
    assert trainer.state.stopped_early
