"""Fine-tuning (``"init_weights"``) and the CPU speed settings of training (bf16, channels-last)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_training_segmenter import segmenter_config
from training_helpers import tiny_config, write_tiny_dataset, write_tiny_locator

from AutoCTVLib.errors import InputError
from AutoCTVLib.models import load_model
from AutoCTVLib.nn import build_network
from AutoCTVLib.training import trainer as trainer_module
from AutoCTVLib.training.config import TrainConfig, load_train_config
from AutoCTVLib.training.init_weights import load_initial_weights
from AutoCTVLib.training.run import run_training

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("init_data") / "tiny.h5"
    write_tiny_dataset(path, n_cases=4)
    return path


@pytest.fixture(scope="module")
def locator_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_locator(tmp_path_factory.mktemp("init_locator"))


@pytest.fixture(scope="module")
def trained_cascade(
    dataset: Path, locator_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    run_dir = tmp_path_factory.mktemp("init_first") / "run"
    run_training(dataset, run_dir, segmenter_config(locator_path, iterations=4, val_every=4))
    return run_dir / "model.safetensors"


def _conv_weights(network: torch.nn.Module) -> dict[str, np.ndarray]:
    return {
        name: value.detach().numpy().copy()
        for name, value in network.state_dict().items()
        if name.endswith("conv.weight")
    }


def test_a_run_starts_from_the_named_cascade_and_says_so(
    dataset: Path, locator_path: Path, trained_cascade: Path, tmp_path: Path
) -> None:
    start, start_card = load_model(trained_cascade)
    config = segmenter_config(
        locator_path, iterations=1, val_every=1, lr=1e-12, init_weights=str(trained_cascade)
    )
    run_training(dataset, tmp_path / "tuned", config)
    tuned, card = load_model(tmp_path / "tuned" / "model")
    before, after = _conv_weights(start.segmenter), _conv_weights(tuned.segmenter)
    assert before.keys() == after.keys() and before
    for name in before:  # one step at a vanishing rate: the weights are the starting ones
        np.testing.assert_allclose(after[name], before[name], atol=1e-6, err_msg=name)
    record = card.training_data["initialised_from"]
    assert record["weights_sha256"] == start_card.weights_sha256
    assert record["stage"] == "segmenter" and record["model"] == trained_cascade.name
    # Without init_weights the same run starts from its seeded random weights instead.
    run_training(dataset, tmp_path / "fresh", config.replace(init_weights=None))
    fresh, fresh_card = load_model(tmp_path / "fresh" / "model")
    fresh_weights = _conv_weights(fresh.segmenter)
    assert any(not np.allclose(fresh_weights[name], before[name]) for name in before)
    assert "initialised_from" not in fresh_card.training_data


def test_mismatched_starting_weights_are_refused_before_the_data_is_read(
    locator_path: Path, trained_cascade: Path, tmp_path: Path
) -> None:
    missing_data = tmp_path / "no-such-dataset.h5"
    cases = [
        (
            segmenter_config(
                locator_path, network={"channels": [4, 8, 16]}, init_weights=str(trained_cascade)
            ),
            r"another network than this configuration: channels \[4, 8, 16\]|channels",
        ),
        (
            segmenter_config(
                locator_path,
                preprocess={"spacing_xyz_mm": [1.0, 1.0, 2.0], "hu_window": [-200.0, 300.0]},
                init_weights=str(trained_cascade),
            ),
            "another grid than this configuration: spacing_xyz_mm",
        ),
        (
            segmenter_config(locator_path, init_weights=str(locator_path)),
            "a segmenter starts from a cascade model",
        ),
        (
            tiny_config(network={"channels": [4, 8, 8]}, init_weights=str(trained_cascade)),
            "a single-stage run starts from a single-stage model",
        ),
    ]
    for config, message in cases:
        with pytest.raises(InputError, match=message):
            run_training(missing_data, tmp_path / "never", config)
        assert not (tmp_path / "never").exists()


def test_init_weights_must_name_something() -> None:
    with pytest.raises(ValueError, match="init_weights must be a model path"):
        tiny_config(init_weights="  ")
    config = tiny_config(init_weights="bundled", channels_last=True)
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_the_committed_fine_tuning_config_starts_from_the_bundled_cascade() -> None:
    config = load_train_config(
        REPOSITORY / "benchmarks" / "configs" / "ctv_segmenter_finetune.json"
    )
    scratch = load_train_config(REPOSITORY / "benchmarks" / "configs" / "ctv_segmenter.json")
    # same job as the from-scratch configuration (data, split, network, grid, augmentation)
    for name in ("stage", "network", "preprocess", "augmentation", "fold", "n_folds", "seed"):
        assert getattr(config, name) == getattr(scratch, name), name
    state, record = load_initial_weights(config)
    _, bundled_card = load_model(REPOSITORY / "Resources" / "Models" / "ctv_pelvis_cascade")
    assert record["weights_sha256"] == bundled_card.weights_sha256
    network = build_network(config.network_config())
    network.load_state_dict(state)  # every tensor present, every shape right


def test_bf16_on_a_cpu_only_when_asked_and_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert trainer_module.autocast_dtype(tiny_config(), cpu) is None  # "auto": float32
    assert trainer_module.autocast_dtype(tiny_config(mixed_precision="fp16"), cpu) is None
    monkeypatch.setattr(trainer_module, "cpu_supports_bf16", lambda: True)
    assert trainer_module.autocast_dtype(tiny_config(mixed_precision="bf16"), cpu) is torch.bfloat16
    monkeypatch.setattr(trainer_module, "cpu_supports_bf16", lambda: False)
    with pytest.raises(InputError, match="bf16 instructions"):
        trainer_module.autocast_dtype(tiny_config(mixed_precision="bf16"), cpu)


@pytest.mark.skipif(
    not trainer_module.cpu_supports_bf16(), reason="this CPU runs no bf16 kernels natively"
)
def test_bf16_training_on_the_cpu_learns(dataset: Path, tmp_path: Path) -> None:
    config = tiny_config(iterations=30, val_every=30, mixed_precision="bf16", channels_last=True)
    run_training(dataset, tmp_path / "run", config)
    rows = (tmp_path / "run" / "logs" / "training_log.csv").read_text().splitlines()[1:]
    curve = [float(row.split(",")[1]) for row in rows]
    assert np.mean(curve[-10:]) < np.mean(curve[:10]) - 0.05


def test_channels_last_changes_the_layout_not_the_arithmetic(dataset: Path, tmp_path: Path) -> None:
    losses = {}
    for channels_last in (False, True):
        config = tiny_config(iterations=3, val_every=3, channels_last=channels_last)
        run_dir = tmp_path / f"run-{channels_last}"
        run_training(dataset, run_dir, config)
        rows = (run_dir / "logs" / "training_log.csv").read_text().splitlines()[1:]
        losses[channels_last] = [float(row.split(",")[1]) for row in rows]
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-4)
