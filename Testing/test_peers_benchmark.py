"""The peer benchmark's parts that need no peer package: nnU-Net export, budgets, tables.

The whole benchmark (MONAI and nnU-Net training and inference) runs in the ``slow`` smoke test
at the end, only where ``pip install -e .[peers]`` installed them.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from peers_budget import TimeBudget, measured_run  # noqa: E402
from peers_case import METHODS  # noqa: E402
from peers_monai import MONAI_PRECISION, _autocast  # noqa: E402
from peers_nnunet import dataset_name, export_raw_dataset, write_split  # noqa: E402
from peers_report import METHOD_LABELS, box_plot, summary_rows, write_report  # noqa: E402

from AutoCTVLib.volume import Geometry, Volume  # noqa: E402


def _case(seed: int, flip: bool) -> tuple[Volume, Volume]:
    rng = np.random.default_rng(seed)
    direction = (1, 0, 0, 0, 1, 0, 0, 0, -1) if flip else (1, 0, 0, 0, 1, 0, 0, 0, 1)
    geometry = Geometry(
        shape_zyx=(6, 7, 8),
        spacing_xyz_mm=(0.8, 0.9, 3.0),
        origin_xyz_mm=(-10.0, 5.0, 20.0),
        direction=direction,
    )
    ct = rng.integers(-1000, 1500, size=geometry.shape_zyx).astype(np.float32)
    ctv = np.zeros(geometry.shape_zyx, np.uint8)
    ctv[2:4, 3:6, 1 + seed % 3 : 5] = 1
    return Volume(ct, geometry), Volume(ctv, geometry)


def test_export_writes_nnunet_raw_layout_on_each_cases_grid(tmp_path: Path) -> None:
    cases = {f"phantom_{seed:05d}": _case(seed, flip=seed == 2) for seed in (1, 2, 3)}
    name = dataset_name(731, "Test")
    assert name == "Dataset731_Test"
    description = export_raw_dataset(
        tmp_path, name, ((case_id, ct, ctv) for case_id, (ct, ctv) in cases.items())
    )
    folder = tmp_path / name
    assert json.loads((folder / "dataset.json").read_text()) == description
    assert description["channel_names"] == {"0": "CT"}
    assert description["labels"] == {"background": 0, "CTV": 1}
    assert description["numTraining"] == 3 and description["file_ending"] == ".nii.gz"
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [
        f"{case_id}_0000.nii.gz" for case_id in sorted(cases)
    ]
    for case_id, (ct, ctv) in cases.items():
        image = sitk.ReadImage(str(folder / "imagesTr" / f"{case_id}_0000.nii.gz"))
        label = sitk.ReadImage(str(folder / "labelsTr" / f"{case_id}.nii.gz"))
        assert image.GetPixelID() == sitk.sitkInt16
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), ct.array.astype(np.int16))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(label), ctv.array)
        for written in (image, label):
            assert Geometry.from_sitk(written).is_close(ct.geometry)


def test_export_refuses_a_ctv_off_the_cts_grid(tmp_path: Path) -> None:
    ct, _ = _case(1, flip=False)
    _, other = _case(1, flip=True)
    with pytest.raises(ValueError, match="not on the CT's grid"):
        export_raw_dataset(tmp_path, "Dataset001_X", [("case", ct, other)])


def test_split_is_fold_zero_of_splits_final(tmp_path: Path) -> None:
    path = write_split(tmp_path / "Dataset731_X", ["b", "a"], ["c"])
    assert json.loads(path.read_text()) == [{"train": ["a", "b"], "val": ["c"]}]


def test_measured_run_counts_the_cpu_of_waited_for_grandchildren(tmp_path: Path) -> None:
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.4: pass\n"
    script = (
        "import subprocess, sys\n"
        f"subprocess.run([sys.executable, '-c', {burn!r}], check=True)\n" + burn + "print('done')\n"
    )
    record = measured_run([sys.executable, "-c", script], tmp_path / "log.txt")
    assert record["returncode"] == 0
    assert (tmp_path / "log.txt").read_text().strip() == "done"
    # 0.4 s in the child, 0.4 s in its own child: both counted.
    assert record["cpu_s"] >= 0.75
    assert record["cpu_s"] == pytest.approx(record["cpu_user_s"] + record["cpu_system_s"])
    assert record["wall_s"] >= 0.75
    assert 5 < record["peak_rss_mib"] < 256.0


def test_measured_run_reports_the_childs_peak_memory_not_the_parents(tmp_path: Path) -> None:
    # Linux keeps the forking process's RSS high-water mark when a child calls exec; the
    # launcher keeps this (big) process's size out of the child's record.
    held = bytearray(600 * 2**20)
    held[::4096] = b"x" * len(held[::4096])  # touch every page: 600 MiB resident here
    small = measured_run([sys.executable, "-c", "pass"], tmp_path / "small.txt")
    allocate = "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])"
    big = measured_run([sys.executable, "-c", allocate], tmp_path / "big.txt")
    del held
    assert small["peak_rss_mib"] < 100.0
    assert 300.0 <= big["peak_rss_mib"] < 420.0


def test_measured_run_reports_a_failure(tmp_path: Path) -> None:
    record = measured_run([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "log.txt")
    assert record["returncode"] == 3


def test_time_budget_stops_after_the_iteration_that_spends_it() -> None:
    budget = TimeBudget(0.05)
    assert budget.elapsed() == 0.0
    budget.start()
    assert budget.tick() is False
    time.sleep(0.06)
    assert budget.tick() is True
    record = budget.record()
    assert record["iterations"] == 2 and record["budget_s"] == 0.05
    assert record["loop_wall_s"] >= 0.05
    with pytest.raises(ValueError):
        TimeBudget(0)


def _rows() -> list[dict[str, object]]:
    rows = []
    for method, dice, hd95 in (
        ("autoctv", 0.9, 4.0),
        ("monai", 0.5, 20.0),
        ("nnunet", 0.0, math.inf),
    ):
        for variant, seed in (("test", 5000), ("flip", 9100), ("flip", 9101)):
            rows.append(
                {
                    "method": method,
                    "variant": variant,
                    "seed": seed,
                    "dice": dice,
                    "hd95_mm": hd95,
                    "surface_dice_2mm": dice / 2,
                    "predict_s": 2.0,
                    "peak_rss_mib": 900.0,
                }
            )
    return rows


def test_every_method_is_named_and_monai_runs_in_both_precisions() -> None:
    assert set(METHODS) == set(METHOD_LABELS)
    assert MONAI_PRECISION == {"monai": "float32", "monai_bf16": "bf16"}
    import torch

    convolution = torch.nn.Conv3d(1, 2, 3)
    image = torch.rand(1, 1, 5, 5, 5)
    with _autocast("cpu", "bf16"):
        assert convolution(image).dtype == torch.bfloat16
    with _autocast("cpu", "float32"):
        assert convolution(image).dtype == torch.float32
    with pytest.raises(ValueError, match="precision must be one of"):
        _autocast("cpu", "fp16")


def test_summary_rows_per_method_and_variant() -> None:
    table = summary_rows(_rows(), ["autoctv", "monai", "nnunet"])
    assert [row[:3] for row in table] == [
        ["AutoCTV cascade", "all", 3],
        ["MONAI UNet", "all", 3],
        ["nnU-Net v2 3d_fullres", "all", 3],
        ["AutoCTV cascade", "held-out test (varied grids)", 1],
        ["MONAI UNet", "held-out test (varied grids)", 1],
        ["nnU-Net v2 3d_fullres", "held-out test (varied grids)", 1],
        ["AutoCTV cascade", "feet first", 2],
        ["MONAI UNet", "feet first", 2],
        ["nnU-Net v2 3d_fullres", "feet first", 2],
    ]
    assert table[0][3:] == ["0.900", "0.900", "4.0", "4.0", "0.450", "2.0", "900"]
    # Empty predictions: HD95 infinite, counted, never averaged.
    assert table[2][5:7] == ["∞", "∞"]


def test_report_names_the_peers_the_budget_and_same_data(tmp_path: Path) -> None:
    process = {"wall_s": 130.0, "cpu_s": 200.0}
    trainings = {
        m: {"budget_s": 120.0, "iterations": 7, "loop_wall_s": 121.0, "process": process}
        for m in ("autoctv", "monai", "nnunet")
    }
    write_report(tmp_path / "peers", _rows(), trainings, {"device": "cpu"}, ["Same data: yes."])
    text = (tmp_path / "peers.md").read_text()
    for needle in (
        "MONAI UNet",
        "nnU-Net v2 3d_fullres",
        "Same data",
        "budget (wall s)",
        "| 120 |",
    ):
        assert needle in text
    data = json.loads((tmp_path / "peers.json").read_text())
    assert len(data["per_case"]) == 9 and data["trainings"]["monai"]["iterations"] == 7
    assert "machine" in data and "date" in data["machine"]


def test_box_plot_is_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the box plot needs matplotlib (extra 'plots')")
    box_plot(_rows(), tmp_path / "box.png", "test")
    assert (tmp_path / "box.png").read_bytes()[:4] == b"\x89PNG"


def test_cases_are_interleaved_so_a_cut_run_covers_every_variant() -> None:
    from peers import interleaved

    cases = [{"variant": v, "seed": s} for v in ("test", "default", "flip") for s in (1, 2)]
    assert [(c["variant"], c["seed"]) for c in interleaved(cases)] == [
        ("test", 1),
        ("default", 1),
        ("flip", 1),
        ("test", 2),
        ("default", 2),
        ("flip", 2),
    ]


PEERS_INSTALLED = all(importlib.util.find_spec(name) for name in ("monai", "nnunetv2"))


@pytest.mark.slow
@pytest.mark.skipif(
    not PEERS_INSTALLED, reason="MONAI and nnU-Net v2 are not installed (pip install -e .[peers])"
)
def test_whole_benchmark_with_tiny_budgets(tmp_path: Path) -> None:
    out = tmp_path / "result"
    command = [
        sys.executable,
        str(BENCHMARKS / "peers.py"),
        "--work",
        str(tmp_path / "work"),
        "--budget-s",
        "5",
        "--cases",
        "6",
        "--size",
        "128,128,40",
        "--autoctv-patch",
        "32,64,64",
        "--test-cases",
        "1",
        "--per-variant",
        "0",
        "--nnunet-id",
        "732",
        "--methods",
        "autoctv,monai,monai_bf16,nnunet",
        "--out",
        str(out),
    ]
    subprocess.run(command, check=True, timeout=1500)
    data = json.loads(out.with_suffix(".json").read_text())
    assert {row["method"] for row in data["per_case"]} == set(METHODS)
    assert data["trainings"]["monai_bf16"]["precision"] == "bf16"
    assert data["trainings"]["monai"]["precision"] == "float32"
    for row in data["per_case"]:
        assert 0.0 <= row["dice"] <= 1.0 and row["peak_rss_mib"] > 0
    for record in data["trainings"].values():
        assert record["iterations"] >= 1 and record["loop_wall_s"] >= 5
    assert (tmp_path / "result_boxplot.png").exists()
