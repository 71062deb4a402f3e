"""``autoctv demo``: phantom → DICOM → contour → every output, overview picture and scores."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from predict_support import make_tiny_model, tiny_phantom

from AutoCTVLib.cli.main import main as cli
from AutoCTVLib.metrics import dice

QUICK = ["--size", "64,64,24", "--spacing", "5,5,5", "--threads", "1"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return make_tiny_model(tmp_path_factory.mktemp("model"), tiny_phantom().ct)


def test_demo_runs_end_to_end(model: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    arguments = ["demo", "-o", str(out), "--seed", "5", "--uncertainty", "2", "--model", str(model)]
    code = cli([*arguments, "--progress", "none", *QUICK])
    printed = capsys.readouterr().out
    assert code == 0
    for name in (
        "ctv.nii.gz",
        "ctv_probability.nii.gz",
        "uncertainty_entropy.nii.gz",
        "uncertainty_mutual_information.nii.gz",
        "ctv.seg.nrrd",
        "rtstruct.dcm",
        "seg.dcm",
        "report.json",
    ):
        assert (out / "prediction" / name).is_file(), name
    assert (out / "phantom" / "dicom" / "ct").is_dir()
    assert (out / "overview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    scores = re.search(r"Dice (\d\.\d{3}), HD95 ([\d.]+|inf) mm", printed)
    assert scores, printed
    predicted = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "prediction" / "ctv.nii.gz")))
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "phantom" / "ctv.nii.gz")))
    assert float(scores.group(1)) == pytest.approx(dice(predicted, reference), abs=6e-4)
    assert "not for clinical use" in printed

    # An earlier demo's outputs are replaced without asking ...
    small = ["--size", "40,40,12", "--spacing", "8,8,10", "--threads", "1"]
    code = cli(["demo", "-o", str(out), "--uncertainty", "0", "--model", str(model), *small])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    assert sitk.ReadImage(str(out / "prediction" / "ctv.nii.gz")).GetSize() == (40, 40, 12)
    assert not (out / "prediction" / "uncertainty_entropy.nii.gz").exists()
    # ... but a folder with other files needs --overwrite.
    (out / "notes.txt").write_text("mine")
    code = cli([*arguments, "--progress", "none", *QUICK])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "--overwrite" in error and "\n" not in error
    assert (out / "notes.txt").read_text() == "mine"


def test_demo_without_the_bundled_model_says_so(monkeypatch, tmp_path: Path, capsys) -> None:
    from AutoCTVLib.models import bundled

    monkeypatch.setattr(
        bundled, "bundled_model_candidates", lambda: [tmp_path / "ctv_pelvis_cascade.safetensors"]
    )
    out = tmp_path / "demo"
    code = cli(["demo", "-o", str(out), "--progress", "none", *QUICK])
    printed = capsys.readouterr().out
    assert code == 0
    assert (out / "phantom" / "ct.nii.gz").exists()
    assert (out / "phantom" / "dicom" / "rtstruct.dcm").exists()
    assert not (out / "prediction").exists()
    notice = next(line for line in printed.splitlines() if line.startswith("not contoured:"))
    assert "bundled model" in notice and "--model" in notice
    # An explicitly named model that does not exist is still a one-line error.
    code = cli(["demo", "-o", str(tmp_path / "d2"), "--model", str(tmp_path / "nope.json"), *QUICK])
    error = capsys.readouterr().err.strip()
    assert code == 2 and error.startswith("autoctv: error:") and "\n" not in error


def test_overview_slices_prefer_review_slices() -> None:
    from AutoCTVLib.predict.overview import overview_slices

    reference = np.zeros((30, 8, 8), dtype=np.uint8)
    reference[10:20, 2:6, 2:6] = 1
    reference[15, :, :] = 1
    chosen = overview_slices(reference, review=(3, 27), count=4)
    assert 3 in chosen and 27 in chosen and 15 in chosen
    assert chosen == sorted(chosen) and len(chosen) == 4
