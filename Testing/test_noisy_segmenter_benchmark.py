"""``benchmarks/noisy_labels_segmenter.py``: what the weights followed, and a smoke run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import noisy_labels_segmenter as bench  # noqa: E402


def history_row(weights: list[float], losses: list[float], shares: list[float]) -> dict:
    return {"sample_weights": weights, "sample_losses": losses, "label_shares": shares}


def test_weight_diagnostics_by_hand() -> None:
    # the first half is left out (the weights settle); the second favours low-loss patches
    early = history_row([0.7, 0.1, 0.1, 0.1], [0.9, 0.1, 0.1, 0.1], [0.2, 0.2, 0.2, 0.2])
    late = [
        history_row([0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.0, 0.3]),
        history_row([0.1, 0.2, 0.3, 0.4], [0.5, 0.4, 0.3, 0.2], [0.0, 0.1, 0.2, 0.3]),
    ]
    plain_rows = [{"loss": 1.0}]  # warm-up rows carry no weights and are skipped
    found = bench.weight_diagnostics([*plain_rows, early, early, *late])
    assert found["loss_r"] == pytest.approx(-1.0, abs=1e-3)
    # patches without label: 0.2·4 and 0.1·4
    assert found["unlabelled_weight"] == pytest.approx(0.6)
    expected = 1.0 / (4 * (0.16 + 0.09 + 0.04 + 0.01))
    assert found["effective_batch"] == pytest.approx(round(expected, 3))
    assert bench.weight_diagnostics([]) == {
        "loss_r": None,
        "unlabelled_weight": None,
        "effective_batch": None,
    }


def test_rows_are_valid_training_configurations() -> None:
    for row, (loss, weighting, labelled_only, warmup, signal, bound) in bench.ROWS.items():
        config = bench.train_config(bench.FULL, row)
        assert config.stage == "segmenter" and config.loss == loss
        assert config.loss_weighting == weighting and config.weight_labelled_only is labelled_only
        assert config.weighting_warmup_iterations == round(warmup * bench.FULL.iterations)
        assert config.quality_signal == signal and config.ocm_lambda == bound
        assert config.distinct_cases and config.aligned_patches


def test_quick_run_writes_every_row(tmp_path: Path) -> None:
    command = [sys.executable, str(BENCHMARKS / "noisy_labels_segmenter.py"), "--quick"]
    command += ["--rows", "plain", "qam_ocm_labelled", "--conditions", "heavy", "--seed", "3"]
    command += ["--work-dir", str(tmp_path), "--out", str(tmp_path / "table")]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    data = json.loads((tmp_path / "table.json").read_text())
    runs = {(run["row"], run["condition"]): run for run in data["runs"]}
    assert set(runs) == {("plain", "heavy"), ("qam_ocm_labelled", "heavy")}
    weighted = runs[("qam_ocm_labelled", "heavy")]
    assert set(weighted["weights"]) == {"loss_r", "unlabelled_weight", "effective_batch"}
    styles = {entry["style"] for entry in weighted["training_labels"].values()}
    assert styles <= {"wide", "tight", "random", "standard"} and "standard" in styles
    assert len(weighted["test_per_case"]) == bench.QUICK.n_test
    table = (tmp_path / "table.md").read_text()
    assert "QAM+OCM, labelled patches only" in table and "plain (BCE + Dice)" in table
    assert weighted["settings"]["seed"] == 3 and "Seed 3:" in table
