"""Dataset evaluation: metrics on each case's own grid, whatever the segmenter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from training_helpers import write_tiny_dataset

from AutoCTVLib.dataset import read_case
from AutoCTVLib.evaluation import evaluate_dataset
from AutoCTVLib.volume import Volume


def test_perfect_empty_and_shifted_segmenters(tmp_path: Path) -> None:
    dataset = tmp_path / "tiny.h5"
    ids = write_tiny_dataset(dataset, n_cases=3)
    # Each tiny case sits at its own origin, which identifies its reference label.
    labels = {}
    for case_id in ids:
        _, case_labels, _ = read_case(dataset, case_id)
        labels[case_labels["CTV"].geometry.origin_xyz_mm] = case_labels["CTV"].array

    def oracle(ct: Volume) -> Volume:
        return ct.with_array(labels[ct.geometry.origin_xyz_mm])

    perfect = evaluate_dataset(oracle, dataset)
    assert [row["case_id"] for row in perfect.per_case] == ids
    assert perfect.summary["dice_mean"] == pytest.approx(1.0)
    assert perfect.summary["hd95_mean_mm"] == pytest.approx(0.0)

    empty = evaluate_dataset(lambda ct: ct.with_array(np.zeros(ct.array.shape, np.uint8)), dataset)
    assert empty.summary["dice_mean"] == 0.0
    assert empty.summary["hd95_infinite_cases"] == 3

    def shifted(ct: Volume) -> Volume:
        return ct.with_array(np.roll(oracle(ct).array, 2, axis=2))

    moved = evaluate_dataset(shifted, dataset, case_ids=ids[:1])
    assert len(moved.per_case) == 1
    assert 0.0 < moved.summary["dice_mean"] < 1.0
    assert moved.summary["hd95_mean_mm"] == pytest.approx(2 * 2.0)  # 2 voxels of 2 mm


def test_segmenter_must_keep_the_grid(tmp_path: Path) -> None:
    dataset = tmp_path / "tiny.h5"
    write_tiny_dataset(dataset, n_cases=1)

    def cropped(ct: Volume) -> Volume:
        from AutoCTVLib.volume import Geometry

        geometry = ct.geometry
        smaller = Geometry(
            (geometry.shape_zyx[0] - 1, *geometry.shape_zyx[1:]),
            geometry.spacing_xyz_mm,
            geometry.origin_xyz_mm,
            geometry.direction,
        )
        return Volume(np.zeros(smaller.shape_zyx, np.uint8), smaller)

    with pytest.raises(ValueError, match="changed the grid"):
        evaluate_dataset(cropped, dataset)
