"""The cascade ablation's bookkeeping: paired changes against the baseline, and its configs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "benchmarks"))

from cascade_ablation import BASELINE, link_shared_inputs, row_pairs, summary  # noqa: E402

from AutoCTVLib.training.config import load_train_config  # noqa: E402


def _row(variant: str, seed: int, dice: float, hd95: float) -> dict:
    return {
        "variant": variant,
        "seed": seed,
        "dice": dice,
        "hd95_mm": hd95,
        "surface_dice_2mm": dice - 0.2,
    }


def test_changes_are_paired_by_case_not_by_order() -> None:
    baseline = [_row("test", 1, 0.80, 8.0), _row("flip", 2, 0.90, 5.0)]
    # the same cases in another order: case 1 up by 0.05, case 2 down by 0.01
    rows = [_row("flip", 2, 0.89, 6.0), _row("test", 1, 0.85, 6.0)]
    result = summary(rows, baseline)
    assert result["cases"] == 2 and result["cases_dice_up"] == 1
    assert result["dice_change_mean"] == pytest.approx(0.02)
    assert result["hd95_change_median_mm"] == pytest.approx(-0.5)
    assert result["dice_min"] == pytest.approx(0.85) and result["hd95_max_mm"] == 6.0


def test_a_row_without_a_baseline_case_is_an_error() -> None:
    with pytest.raises(KeyError):
        summary([_row("noise40", 9, 0.8, 6.0)], [_row("test", 1, 0.8, 6.0)])


def test_a_row_is_paired_with_the_baseline_or_an_earlier_row() -> None:
    rows = ["seed 1=a.json", "no rotation, seed 1=b.json"]
    assert row_pairs(rows, []) == {}
    pairs = row_pairs(rows, ["no rotation, seed 1=seed 1"])
    assert pairs == {"no rotation, seed 1": "seed 1"}
    assert row_pairs(rows, [f"seed 1={BASELINE}"]) == {"seed 1": BASELINE}
    with pytest.raises(ValueError, match="listed before"):
        row_pairs(rows, ["seed 1=no rotation, seed 1"])  # a later row
    with pytest.raises(ValueError, match="listed before"):
        row_pairs(rows, ["seed 2=seed 1"])  # not a row


def test_rows_share_the_baseline_data_by_link(tmp_path: Path) -> None:
    baseline = tmp_path / "peers"
    (baseline / "heldout").mkdir(parents=True)
    (baseline / "train.h5").write_bytes(b"data")
    link_shared_inputs(baseline, tmp_path / "row")
    link_shared_inputs(baseline, tmp_path / "row")  # a second run reuses the links
    assert (tmp_path / "row" / "train.h5").read_bytes() == b"data"
    assert (tmp_path / "row" / "heldout").resolve() == (baseline / "heldout").resolve()


def test_the_locator_probability_row_differs_from_its_baseline_in_that_switch_only() -> None:
    configs = REPOSITORY / "benchmarks" / "configs"
    baseline = load_train_config(configs / "ctv_segmenter_bf16.json")
    row = load_train_config(configs / "ctv_segmenter_bf16_locator_probability.json")
    assert row.cascade == {**baseline.cascade, "use_locator_probability": True}
    assert row.network_config().in_channels == 2
    assert row.replace(cascade=baseline.cascade, network=baseline.network) == baseline
    # each augmentation row switches one part off; the seed-1 rows change the seed only
    switched_off = {
        "rotation": {"max_angle_deg": 0.0},
        "zoom": {"max_scale_change": 0.0},
        "intensity": {"max_gain": 0.0, "max_offset": 0.0, "max_noise_sd": 0.0},
        "flip": {"flip_left_right": False},
    }
    for part, off in switched_off.items():
        switched = load_train_config(configs / f"ctv_segmenter_bf16_no_{part}.json")
        assert switched.augmentation == {**baseline.augmentation, **off}
        assert switched.replace(augmentation=baseline.augmentation) == baseline
    seed1 = load_train_config(configs / "ctv_segmenter_bf16_seed1.json")
    assert seed1.seed == 1 and seed1.replace(seed=0) == baseline
    rotation1 = load_train_config(configs / "ctv_segmenter_bf16_no_rotation_seed1.json")
    assert rotation1.replace(seed=0) == load_train_config(
        configs / "ctv_segmenter_bf16_no_rotation.json"
    )
    # the bf16 baseline is the committed from-scratch job in bf16 and channels-last
    scratch = load_train_config(configs / "ctv_segmenter.json")
    assert baseline.replace(mixed_precision=scratch.mixed_precision, channels_last=False) == scratch


def test_the_width_rows_differ_from_the_baseline_in_the_channels_only() -> None:
    configs = REPOSITORY / "benchmarks" / "configs"
    baseline = load_train_config(configs / "ctv_segmenter_bf16.json")
    widths = {
        "half_width": [8, 16, 32, 64, 128],
        "narrow_level0": [8, 32, 64, 96, 128],
    }
    for name, channels in widths.items():
        row = load_train_config(configs / f"ctv_segmenter_bf16_{name}.json")
        assert row.network == {**baseline.network, "channels": channels}
        assert row.replace(network=baseline.network) == baseline


def test_the_peer_runs_configuration_joins_the_two_winning_switches_only() -> None:
    configs = REPOSITORY / "benchmarks" / "configs"
    narrow = load_train_config(configs / "ctv_segmenter_bf16_narrow_level0.json")
    no_rotation = load_train_config(configs / "ctv_segmenter_bf16_no_rotation.json")
    joined = load_train_config(configs / "ctv_segmenter_bf16_narrow_level0_no_rotation.json")
    assert joined == narrow.replace(augmentation=no_rotation.augmentation)
    assert joined == no_rotation.replace(network=narrow.network)
