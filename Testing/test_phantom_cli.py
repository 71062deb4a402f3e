"""``autoctv phantom``: files, names, formats, DICOM export and user errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from AutoCTVLib.cli.main import main

TINY = ["--size", "48,48,24", "--spacing", "8,8,10", "--seed", "4"]


def _read(path: Path) -> tuple[np.ndarray, sitk.Image]:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["phantom", "--help"])
    assert exit_info.value.code == 0
    assert "--annotator-style" in capsys.readouterr().out


def test_writes_ct_ctv_structures_and_names(tmp_path: Path) -> None:
    out = tmp_path / "case"
    assert main(["phantom", "-o", str(out), *TINY]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "ct.nii.gz",
        "ctv.nii.gz",
        "phantom.json",
        "structures.json",
        "structures.nii.gz",
    ]
    ct, ct_image = _read(out / "ct.nii.gz")
    assert ct_image.GetPixelID() == sitk.sitkInt16
    assert ct_image.GetSize() == (48, 48, 24)
    assert ct_image.GetSpacing() == pytest.approx((8.0, 8.0, 10.0))
    assert ct.min() >= -1024 and ct.max() > 300
    ctv, ctv_image = _read(out / "ctv.nii.gz")
    assert set(np.unique(ctv)) == {0, 1}
    assert ctv_image.GetOrigin() == pytest.approx(ct_image.GetOrigin())
    structures, _ = _read(out / "structures.nii.gz")
    table = json.loads((out / "structures.json").read_text())
    label_names = {int(key): value for key, value in table.items()}
    assert set(np.unique(structures)) - {0} <= set(label_names)
    assert label_names[int(structures[ctv > 0].max())]  # every CTV voxel has a named label
    assert "bladder" in label_names.values() and "uterus" in label_names.values()
    parameters = json.loads((out / "phantom.json").read_text())
    assert parameters["seed"] == 4 and parameters["ctv_ml"] > 0


def test_annotator_style_writes_the_reference_too(tmp_path: Path) -> None:
    out = tmp_path / "wide"
    assert main(["phantom", "-o", str(out), *TINY, "--annotator-style", "wide"]) == 0
    annotated, _ = _read(out / "ctv.nii.gz")
    reference, _ = _read(out / "ctv_reference.nii.gz")
    assert annotated.sum() > reference.sum() > 0


def test_nrrd_format_and_several_cases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "set"
    assert (
        main(["phantom", "-o", str(out), *TINY, "--format", "nrrd", "--cases", "2", "--json"]) == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["seed"] for line in lines] == [4, 5]
    for seed in (4, 5):
        assert (out / f"case_{seed:04d}" / "ct.nrrd").is_file()
        assert (out / f"case_{seed:04d}" / "structures.nrrd").is_file()
    first, _ = _read(out / "case_0004" / "ct.nrrd")
    second, _ = _read(out / "case_0005" / "ct.nrrd")
    assert not np.array_equal(first, second)


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (["--size", "48,48"], "--size"),
        (["--size", "a,b,c"], "--size"),
        (["--size", "48,48,2"], "grid size"),
        (["--spacing", "1,1,0"], "spacing"),
        (["--oblique", "80"], "oblique"),
        (["--cases", "0"], "--cases"),
    ],
)
def test_user_errors_give_one_line_and_nonzero_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], fragment: str
) -> None:
    code = main(["phantom", "-o", str(tmp_path / "bad"), *arguments])
    error = capsys.readouterr().err
    assert code != 0
    assert len(error.strip().splitlines()) == 1
    assert fragment in error
    assert not (tmp_path / "bad" / "ct.nii.gz").exists()


def test_existing_outputs_need_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "case"
    assert main(["phantom", "-o", str(out), *TINY]) == 0
    before = (out / "ct.nii.gz").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["phantom", "-o", str(out), *TINY]) != 0
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "--overwrite" in error
    assert (out / "ct.nii.gz").stat().st_mtime_ns == before
    assert main(["phantom", "-o", str(out), *TINY, "--overwrite", "--seed", "9"]) == 0
    assert json.loads((out / "phantom.json").read_text())["seed"] == 9
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_dicom_series_and_rtstruct(tmp_path: Path) -> None:
    from AutoCTVLib.io.ct_reader import read_ct
    from AutoCTVLib.io.rtstruct_read import rasterise_roi, read_rtstruct

    out = tmp_path / "dicom_case"
    assert main(["phantom", "-o", str(out), *TINY, "--oblique", "10", "--dicom"]) == 0
    assert (out / "dicom" / "rtstruct.dcm").is_file()
    loaded = read_ct(out / "dicom" / "ct")
    ct, _ = _read(out / "ct.nii.gz")
    assert loaded.volume.geometry.shape_zyx == ct.shape
    np.testing.assert_allclose(loaded.volume.array, ct, atol=0.5)
    structure_set = read_rtstruct(out / "dicom" / "rtstruct.dcm")
    roi_names = [roi.name for roi in structure_set.rois]
    assert roi_names[0] == "CTV"
    assert {"bladder", "uterus", "rectum", "sacrum"} <= set(roi_names)
    ctv_back = rasterise_roi(structure_set, "CTV", loaded.volume.geometry, loaded.identity)
    ctv, _ = _read(out / "ctv.nii.gz")
    overlap = 2.0 * np.sum(ctv_back & (ctv > 0)) / (ctv_back.sum() + (ctv > 0).sum())
    assert overlap > 0.9
