"""``autoctv predict`` on the command line: JSON progress, report, cancel, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from predict_support import make_tiny_model, predict_command, tiny_phantom

from AutoCTVLib.cli.main import main as cli
from AutoCTVLib.io.image_files import write_float_map

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("cli")
    phantom = tiny_phantom()
    return {
        "root": root,
        "ct": write_float_map(phantom.ct.array, phantom.ct.geometry, root / "ct.nii.gz"),
        "model": make_tiny_model(root / "model", phantom.ct),
    }


def predict_args(files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return predict_command(files, out, *extra)


def test_json_progress_stream_and_report(files: dict[str, Path], capsys) -> None:
    out = files["root"] / "json_run"
    code = cli(predict_args(files, out, "--uncertainty", "3", "--progress", "json"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    events = [json.loads(line) for line in captured.out.splitlines()]  # every line is JSON
    assert events and all({"stage", "fraction", "message"} <= set(event) for event in events)
    fractions = [event["fraction"] for event in events]
    assert fractions == sorted(fractions) and 0.0 <= fractions[0] and fractions[-1] == 1.0
    assert events[-1]["stage"] == "done"
    stages = list(dict.fromkeys(event["stage"] for event in events))
    assert stages[:4] == ["read", "preprocess", "network", "uncertainty"]
    assert "write" in stages

    report = json.loads((out / "report.json").read_text())
    assert report["model"]["name"] == "ctv-tiny" and report["model"]["version"] == "0.0.1"
    assert len(report["model"]["sha256"]) == 64
    assert report["input"]["kind"] == "file" and report["input"]["sha256"]
    assert report["settings"]["mc_samples"] == 3 and report["settings"]["device"] == "cpu"
    assert report["settings"]["process"]["THP_MEM_ALLOC_ENABLE"]
    for stage in ("read", "preprocess", "network", "uncertainty", "resample", "write", "total"):
        assert report["timings_s"][stage] >= 0, stage
    assert isinstance(report["uncertainty"]["case_score"], float)
    assert all(isinstance(k, int) for k in report["uncertainty"]["slices_to_review"])
    assert sorted(path.name for path in out.iterdir()) == [
        "ctv.nii.gz",
        "ctv.seg.nrrd",
        "ctv_probability.nii.gz",
        "report.json",
        "uncertainty_entropy.nii.gz",
        "uncertainty_mutual_information.nii.gz",
    ]


def test_bar_mode_prints_a_summary(files: dict[str, Path], capsys) -> None:
    out = files["root"] / "bar_run"
    assert cli(predict_args(files, out, "--format", "nifti", "--progress", "bar")) == 0
    captured = capsys.readouterr()
    assert "CTV" in captured.out and "mL" in captured.out
    assert "outputs in" in captured.out and "report.json" in captured.out
    assert not (out / "uncertainty_entropy.nii.gz").exists()
    assert not (out / "ctv.seg.nrrd").exists()


def test_sigterm_during_mc_sampling_leaves_no_output(files: dict[str, Path]) -> None:
    out = files["root"] / "terminated"
    command = [sys.executable, "-m", "AutoCTVLib.cli.main"]
    command += predict_args(files, out, "--uncertainty", "1000", "--progress", "json")
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
    )
    try:
        sampling = False
        deadline = time.monotonic() + 120
        assert process.stdout is not None
        for line in process.stdout:
            event = json.loads(line)
            if event["stage"] == "uncertainty" and event["stage_fraction"] > 0:
                sampling = True
                break
            assert time.monotonic() < deadline, "no MC sampling progress within 2 minutes"
        assert sampling, process.stderr.read() if process.stderr else ""
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1].startswith("autoctv: cancelled")
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--uncertainty", "-1"], "--uncertainty"),
        (["--device", "tpu"], "--device"),
        (["--format", "nifti,pdf"], "unknown output format pdf"),
        (["--format", "rtstruct"], "needs a DICOM CT input"),
        (["--threads", "0"], "--threads"),
    ],
)
def test_bad_options_give_one_line_errors(
    files: dict[str, Path], capsys, arguments: list[str], message: str
) -> None:
    out = files["root"] / "bad_options"
    code = cli(predict_args(files, out, "--progress", "none", *arguments))
    error = capsys.readouterr().err.strip()
    assert code == 2
    assert error.startswith("autoctv: error:") and "\n" not in error
    assert message in error
    assert not out.exists()


def test_bad_input_files_give_one_line_errors(files: dict[str, Path], capsys) -> None:
    root = files["root"]
    not_an_image = root / "notes.nii.gz"
    not_an_image.write_text("this is not an image")
    cases = [
        ([str(root / "missing.nii.gz")], "does not exist"),
        ([str(not_an_image)], "cannot be read"),
        ([str(files["ct"]), "--model", str(root / "nothing.safetensors")], "not found"),
    ]
    for arguments, message in cases:
        command = ["predict", *arguments, "-o", str(root / "bad_input"), "--progress", "none"]
        if "--model" not in arguments:
            command += ["--model", str(files["model"])]
        code = cli(command)
        error = capsys.readouterr().err.strip()
        assert code == 2, arguments
        assert error.startswith("autoctv: error:") and "\n" not in error, error
        assert message in error, error
        assert not (root / "bad_input").exists()


def test_existing_outputs_are_kept_without_overwrite(files: dict[str, Path], capsys) -> None:
    out = files["root"] / "existing"
    out.mkdir()
    (out / "report.json").write_text("{}")
    code = cli(predict_args(files, out, "--progress", "none"))
    error = capsys.readouterr().err.strip()
    assert code == 2 and "--overwrite" in error and "\n" not in error
    assert (out / "report.json").read_text() == "{}"
    assert cli(predict_args(files, out, "--progress", "none", "--overwrite")) == 0
    assert json.loads((out / "report.json").read_text())["model"]["name"] == "ctv-tiny"


@pytest.mark.parametrize(("preset", "expected"), [(None, "enabled 1"), ("0", "user setting 0 0")])
def test_the_command_enables_huge_pages_before_torch_loads(preset: str | None, expected: str):
    script = (
        "import os, sys\n"
        "import AutoCTVLib.cli.main as m\n"
        "m.build_parser()\n"
        "from AutoCTVLib.predict.speed import prepare_process_environment\n"
        "status = prepare_process_environment()\n"
        "print('torch' in sys.modules, status, os.environ.get('THP_MEM_ALLOC_ENABLE'))\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    environment["PYTHONPATH"] = str(REPOSITORY)
    if preset is not None:
        environment["THP_MEM_ALLOC_ENABLE"] = preset
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment, check=True
    )
    assert result.stdout.strip() == f"False {expected}"
