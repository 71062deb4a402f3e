"""Training the completion network: examples, held-out structures, a tiny end-to-end run."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from AutoCTVLib.completion.grid import INPUT_CHANNELS, CompletionGridConfig
from AutoCTVLib.completion.model import load_completion_model
from AutoCTVLib.completion.train import (
    CompletionTrainConfig,
    load_cases,
    quick_config,
    train_completion,
    training_batch,
)
from AutoCTVLib.completion.train_data import (
    CTV,
    HELD_OUT_STRUCTURES,
    TRAINING_STRUCTURES,
    PhantomGrid,
)
from AutoCTVLib.errors import CancelledError, InputError, OutputError


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks run fastest single-threaded (and leave the other core to other work)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_config(**changes) -> CompletionTrainConfig:
    base = replace(
        quick_config(),
        iterations=3,
        val_every=2,
        batch_size=2,
        patch_size_zyx=(16, 16, 16),
        channels=(4, 8),
        phantom_grid=PhantomGrid(pixel_mm=(6.0, 6.5), slice_mm=(6.0, 6.5), field_of_view_mm=400.0),
        grid=CompletionGridConfig(spacing_xyz_mm=(6.0, 6.0, 6.0)),
    )
    return replace(base, **changes)


def test_held_out_structures_are_never_trained_on() -> None:
    assert not set(TRAINING_STRUCTURES) & set(HELD_OUT_STRUCTURES)
    for name in ("bladder", "rectum", "sacrum", "hip_left", "femur_right", "lumbar_spine"):
        assert name in HELD_OUT_STRUCTURES
    cases, validation = load_cases(tiny_config(), None, None)
    for case in cases + validation:
        assert CTV in case.structures
        assert not set(case.structures) & set(HELD_OUT_STRUCTURES)


def test_batches_are_seeded_padded_and_fully_supervised() -> None:
    config = tiny_config()
    cases, _ = load_cases(config, None, None)
    inputs, target, weight = training_batch(cases, config, iteration=5)
    assert inputs.shape == (2, len(INPUT_CHANNELS), 16, 16, 16)
    assert target.shape == weight.shape == (2, 1, 16, 16, 16)
    assert set(torch.unique(weight).tolist()) <= {0.0, 1.0} and weight.sum() > 0
    known = inputs[:, 2:3] > 0
    # The drawing is input only; the target holds the structure beyond the annotated planes.
    # On annotated planes the drawing (sampled at the slice's own position) and the target
    # (the structure at the model plane's position) nearly agree.
    assert (inputs[:, 1:2][known] == target[known]).float().mean() > 0.95
    assert target[~known & (weight > 0)].sum() > 0
    again = training_batch(cases, config, iteration=5)
    assert all(torch.equal(a, b) for a, b in zip((inputs, target, weight), again))
    other = training_batch(cases, config, iteration=6)
    assert not torch.equal(other[0], inputs)


def test_a_tiny_run_exports_a_loadable_completion_model(tmp_path) -> None:
    events: list[dict] = []
    summary = train_completion(tiny_config(), tmp_path, progress=events.append)
    model = load_completion_model(tmp_path / "completion")
    assert tuple(model.card.input_channels) == INPUT_CHANNELS
    assert model.grid.spacing_xyz_mm == (6.0, 6.0, 6.0)
    assert model.card.training_data["held_out_structures"] == list(HELD_OUT_STRUCTURES)
    assert summary.best_iteration in (2, 3) and 0.0 <= summary.best_dice <= 1.0
    lines = (tmp_path / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [1, 2, 3]
    assert json.loads((tmp_path / "summary.json").read_text())["iterations"] == 3
    assert events[-1]["event"] == "end"
    assert np.isfinite([json.loads(line)["loss"] for line in lines]).all()
    with pytest.raises(OutputError):
        train_completion(tiny_config(), tmp_path)


class _StopAfter:
    """A cancel event that is set once the given iteration has been reported."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration
        self.set_now = False

    def __call__(self, event: dict) -> None:
        if event.get("event") == "iteration" and event["iteration"] >= self.iteration:
            self.set_now = True

    def is_set(self) -> bool:
        return self.set_now


def test_an_interrupted_run_resumes_to_the_same_model(tmp_path) -> None:
    config = tiny_config(iterations=6, val_every=2)
    straight = train_completion(config, tmp_path / "straight")
    stop = _StopAfter(3)  # the last checkpoint is at iteration 2; iteration 3 is lost
    with pytest.raises(CancelledError):
        train_completion(config, tmp_path / "resumed", progress=stop, cancel=stop)
    assert not (tmp_path / "resumed" / "completion.json").exists()
    with pytest.raises(OutputError, match="interrupted"):
        train_completion(config, tmp_path / "resumed")
    with pytest.raises(InputError, match=r"other settings.*learning_rate"):
        train_completion(replace(config, learning_rate=5e-4), tmp_path / "resumed", resume=True)
    resumed = train_completion(config, tmp_path / "resumed", resume=True)

    def losses(folder) -> list[tuple[int, float]]:
        lines = (folder / "train_log.jsonl").read_text().splitlines()
        return [(json.loads(x)["iteration"], json.loads(x)["loss"]) for x in lines]

    assert losses(tmp_path / "resumed") == losses(tmp_path / "straight")
    assert [i for i, _ in losses(tmp_path / "resumed")] == [1, 2, 3, 4, 5, 6]
    assert (resumed.best_iteration, resumed.best_dice) == (
        straight.best_iteration,
        straight.best_dice,
    )
    weights = [
        load_completion_model(tmp_path / folder / "completion").network.state_dict()
        for folder in ("straight", "resumed")
    ]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_an_interrupted_run_can_be_ended_early_with_the_best_network_so_far(tmp_path) -> None:
    config = tiny_config(iterations=6, val_every=2)
    stop = _StopAfter(5)  # checkpoints at iterations 2 and 4; iteration 5 is lost
    with pytest.raises(CancelledError):
        train_completion(config, tmp_path, progress=stop, cancel=stop)
    with pytest.raises(InputError, match="past stop_at"):
        train_completion(config, tmp_path, resume=True, stop_at=3)
    with pytest.raises(InputError, match="stop_at must lie"):
        train_completion(config, tmp_path, resume=True, stop_at=7)
    ended = train_completion(config, tmp_path, resume=True, stop_at=4)
    lines = (tmp_path / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(x)["iteration"] for x in lines] == [1, 2, 3, 4]  # nothing trained after
    assert ended.iterations == 4 and ended.best_iteration in (2, 4)
    card = json.loads((tmp_path / "completion.json").read_text())
    assert card["training_data"]["iterations"] == 4
    assert card["training_data"]["schedule_iterations"] == 6
    from safetensors.torch import load_file

    exported = load_completion_model(tmp_path / "completion").network.state_dict()
    best = load_file(tmp_path / "checkpoints" / "best" / "weights.safetensors")
    assert best.keys() == exported.keys()
    assert all(torch.equal(best[k], exported[k]) for k in best)


def test_resume_needs_an_interrupted_run(tmp_path) -> None:
    with pytest.raises(InputError, match="no interrupted run"):
        train_completion(tiny_config(), tmp_path, resume=True)


def test_augmentation_permutes_only_equal_spacings_and_changes_only_the_ct_grey_values() -> None:
    from AutoCTVLib.completion.train_data import Example, augment

    rng = np.random.default_rng(0)
    inputs = rng.random((4, 6, 8, 8)).astype(np.float32)
    inputs[1:] = (inputs[1:] > 0.5).astype(np.float32)
    target = (rng.random((1, 6, 8, 8)) > 0.5).astype(np.float32)
    example = Example(inputs, target, np.ones_like(target), "case", "structure")
    for seed in range(20):
        out = augment(example, np.random.default_rng(seed), 1.0, (1.5, 1.5, 3.0), 1.0)
        assert out.inputs.shape == inputs.shape  # z (3 mm) never trades places with y or x
        assert 0.0 <= out.inputs[0].min() and out.inputs[0].max() <= 1.0
        # The mask channels move with the target (same flips and permutation, values kept).
        for channel in (1, 2, 3):
            agreement = np.mean(inputs[channel] == target[0])
            assert np.mean(out.inputs[channel] == out.target[0]) == agreement
            assert out.inputs[channel].sum() == inputs[channel].sum()
    isotropic = {
        augment(example, np.random.default_rng(seed), 1.0, (2.0, 2.0, 2.0)).inputs.shape
        for seed in range(20)
    }
    assert len(isotropic) > 1  # all three axes may be permuted on an isotropic grid
