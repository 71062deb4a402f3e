"""``autoctv predict`` on several cases: one sub-folder per case, a summary table, going on past
a bad case, skipping cases done earlier, and progress naming the case."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from predict_support import make_tiny_model, tiny_phantom

from AutoCTVLib.cli.main import main as cli
from AutoCTVLib.cli.predict_batch import collect_cases
from AutoCTVLib.io.image_files import write_float_map, write_labelmap


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("batch")
    folder = root / "cases"
    folder.mkdir()
    first, second = tiny_phantom(seed=7), tiny_phantom(seed=8)
    write_float_map(first.ct.array, first.ct.geometry, folder / "p07.nii.gz")
    write_float_map(second.ct.array, second.ct.geometry, folder / "p08.nrrd")
    label = first.ctv.array.astype(np.uint8)
    write_labelmap(label, first.ct.geometry, folder / "p09_label.nii.gz")  # a bad case
    (folder / "notes.txt").write_text("not a case")
    return {"root": root, "folder": folder, "model": make_tiny_model(root / "m", first.ct)}


def batch(cases: dict[str, Path], out: Path, *extra: str) -> list[str]:
    options = ["--model", str(cases["model"]), "--device", "cpu", "--threads", "1"]
    return ["predict", *extra, "-o", str(out), *options]


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["case"]: row for row in csv.DictReader(handle)}


def test_a_folder_of_cases_goes_on_past_a_bad_case_and_skips_done_ones(
    cases: dict[str, Path], capsys
) -> None:
    out = cases["root"] / "out"
    arguments = batch(cases, out, str(cases["folder"]), "--batch", "--uncertainty", "2")
    assert cli([*arguments, "--progress", "bar"]) == 2
    captured = capsys.readouterr()
    error_lines = [line for line in captured.err.splitlines() if "autoctv: error:" in line]
    assert len(error_lines) == 1 and "1 of 3 case(s) failed (p09_label)" in error_lines[0]
    assert "case 2/3 p08" in captured.err  # progress names the case ...
    assert "network" in captured.err  # ... and the stage
    table = captured.out
    assert "p07" in table and "p08" in table and "looks like a labelmap" in table
    rows = read_rows(out / "batch_summary.csv")
    assert [rows[name]["status"] for name in ("p07", "p08", "p09_label")] == [
        "done",
        "done",
        "failed",
    ]
    for name in ("p07", "p08"):
        report = json.loads((out / name / "report.json").read_text())
        assert float(rows[name]["ctv_ml"]) == pytest.approx(
            report["result"]["ctv_volume_ml"], abs=0.06
        )
        assert float(rows[name]["case_score"]) == pytest.approx(
            report["uncertainty"]["case_score"], abs=1e-4
        )
        assert float(rows[name]["seconds"]) > 0
        assert (out / name / "ctv.seg.nrrd").is_file()
    assert not (out / "p09_label").exists()

    # Run again: the done cases are skipped (outputs untouched), the bad one fails again.
    stamp = (out / "p07" / "report.json").stat().st_mtime_ns
    assert cli([*arguments, "--progress", "none"]) == 2
    capsys.readouterr()
    rows = read_rows(out / "batch_summary.csv")
    assert rows["p07"]["status"] == "skipped" and rows["p07"]["ctv_ml"]
    assert (out / "p07" / "report.json").stat().st_mtime_ns == stamp
    # --overwrite contours them again.
    assert cli([*arguments, "--progress", "none", "--overwrite"]) == 2
    capsys.readouterr()
    assert read_rows(out / "batch_summary.csv")["p07"]["status"] == "done"
    assert (out / "p07" / "report.json").stat().st_mtime_ns != stamp


def test_several_inputs_make_a_batch_and_json_progress_names_the_case(
    cases: dict[str, Path], capsys
) -> None:
    out = cases["root"] / "listed"
    inputs = [str(cases["folder"] / "p07.nii.gz"), str(cases["folder"] / "p08.nrrd")]
    assert cli([*batch(cases, out, *inputs), "--progress", "json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {event.get("case") for event in events if "stage" in event} == {
        "case 1/2 p07",
        "case 2/2 p08",
    }
    assert events[-1]["event"] == "batch"
    assert [row["status"] for row in events[-1]["cases"]] == ["done", "done"]
    assert sorted(path.name for path in out.iterdir()) == ["batch_summary.csv", "p07", "p08"]


def test_one_input_keeps_the_single_case_layout(cases: dict[str, Path], capsys) -> None:
    out = cases["root"] / "single"
    argv = batch(cases, out, str(cases["folder"] / "p07.nii.gz"))
    assert cli([*argv, "--progress", "none"]) == 0
    assert (out / "report.json").is_file() and not (out / "batch_summary.csv").exists()
    capsys.readouterr()


def test_batch_checks_before_any_case(cases: dict[str, Path], tmp_path: Path, capsys) -> None:
    inputs = [str(cases["folder"] / "p07.nii.gz"), str(cases["folder"] / "p08.nrrd")]
    for extra, message in (
        (["--series-uid", "1.2.3"], "cannot be used in a batch"),
        (["--uncertainty", "1"], "at least 2 samples"),
        (["--format", "pdf"], "unknown output format"),
    ):
        assert cli([*batch(cases, tmp_path / "out", *inputs), *extra]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("autoctv: error:") and message in error and "\n" not in error
    assert cli(batch(cases, tmp_path / "no" / "out", *inputs)) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli(batch(cases, tmp_path / "out", str(cases["folder"] / "p07.nii.gz"), "--batch")) == 2
    assert "is not a folder of cases" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_case_names_are_unique(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(__file__, tmp_path / name / "ct.nii.gz")
    paths = [
        tmp_path / "a" / "ct.nii.gz",
        tmp_path / "b" / "ct.nii.gz",
        tmp_path / "a" / "ct.nii.gz",
    ]
    names = [case.name for case in collect_cases(paths, folders_of_cases=False)]
    assert names == ["a_ct", "b_ct", "a_ct_2"]


def test_the_batch_error_says_what_became_of_the_other_cases() -> None:
    from types import SimpleNamespace

    from AutoCTVLib.cli.predict_cmd import batch_failure_message

    summary = Path("out") / "batch_summary.csv"

    def rows(*statuses: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(status=status) for status in statuses]

    every = batch_failure_message(rows("failed", "failed"), ["a", "b"], summary)
    assert every.startswith("all 2 case(s) failed (a, b); nothing was contoured;")
    assert "other" not in every
    some = batch_failure_message(rows("done", "failed", "skipped"), ["b"], summary)
    assert some.startswith("1 of 3 case(s) failed (b); 1 contoured, 1 skipped (done earlier);")
    only_skipped = batch_failure_message(rows("skipped", "failed"), ["b"], summary)
    assert "0 contoured, 1 skipped (done earlier)" in only_skipped
