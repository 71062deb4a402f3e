"""Every output format of a prediction, written in one transaction and read back."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
import torch
from conftest import make_geometry
from predict_support import dice, make_tiny_model, tiny_phantom
from pydicom import dcmread

from AutoCTVLib.errors import InputError, OutputError
from AutoCTVLib.io.ct_reader import read_ct
from AutoCTVLib.io.dicom_ct_write import write_ct_series
from AutoCTVLib.io.dicom_seg_write import load_ct_datasets
from AutoCTVLib.io.image_files import write_float_map
from AutoCTVLib.io.rtstruct_read import rasterise_roi, read_rtstruct
from AutoCTVLib.predict import Predictor, build_report
from AutoCTVLib.predict.outputs import OutputRequest, parse_formats, write_outputs
from AutoCTVLib.volume import Volume

ALL_FORMATS = ("nifti", "seg.nrrd", "rtstruct", "dicom-seg")
DCIODVFY = shutil.which("dciodvfy")


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A DICOM CT of a tiny phantom, a tiny model, its prediction and every output written."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("outputs")
    phantom = tiny_phantom()
    model_path = make_tiny_model(root / "model", phantom.ct)
    write_ct_series(phantom.ct, root / "ct_series", uid_seed="predict-outputs")
    loaded = read_ct(root / "ct_series")
    predictor = Predictor.from_file(model_path, device="cpu", threads=1)
    prediction = predictor.predict(loaded.volume, mc_samples=3)
    report = build_report(prediction, model_file=str(model_path))
    written = write_outputs(
        prediction,
        OutputRequest(root / "out", ALL_FORMATS),
        card=predictor.card,
        identity=loaded.identity,
        report=report,
    )
    return {
        "root": root,
        "loaded": loaded,
        "predictor": predictor,
        "prediction": prediction,
        "written": written,
    }


def _validate(path: Path, kind: str) -> None:
    if DCIODVFY is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed; the DICOM validation needs it")
    result = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    assert kind in output
    assert [line for line in output.splitlines() if line.startswith("Error")] == []


def test_every_output_is_written_under_its_stable_name(case: dict) -> None:
    out = case["root"] / "out"
    expected = {
        "ctv.nii.gz",
        "ctv_probability.nii.gz",
        "uncertainty_entropy.nii.gz",
        "uncertainty_mutual_information.nii.gz",
        "ctv.seg.nrrd",
        "rtstruct.dcm",
        "seg.dcm",
        "report.json",
    }
    assert {path.name for path in out.iterdir()} == expected
    assert set(case["written"].paths) == {
        "labelmap",
        "probability",
        "entropy",
        "mutual_information",
        "seg.nrrd",
        "rtstruct",
        "dicom-seg",
        "report",
    }


def test_nifti_outputs_lie_on_the_ct_grid(case: dict) -> None:
    out, prediction = case["root"] / "out", case["prediction"]
    geometry = case["loaded"].volume.geometry
    for name, expected in (
        ("ctv.nii.gz", prediction.label.array),
        ("ctv_probability.nii.gz", prediction.prob_ctv.array),
        ("uncertainty_entropy.nii.gz", prediction.uncertainty.entropy),
        ("uncertainty_mutual_information.nii.gz", prediction.uncertainty.mutual_information),
    ):
        volume = Volume.from_sitk(sitk.ReadImage(str(out / name)))
        assert volume.geometry.is_close(geometry, atol_mm=1e-4), name
        assert np.allclose(volume.array, expected), name


def test_rtstruct_matches_the_labelmap_and_references_the_ct(case: dict) -> None:
    loaded, prediction, card = case["loaded"], case["prediction"], case["predictor"].card
    path = case["root"] / "out" / "rtstruct.dcm"
    structure_set = read_rtstruct(path)
    assert structure_set.roi_names == ["CTV"]
    assert structure_set.referenced_series_uids == (loaded.identity.series_instance_uid,)
    assert structure_set.study_instance_uid == loaded.identity.study_instance_uid
    mask = rasterise_roi(structure_set, "CTV", loaded.volume.geometry, loaded.identity)
    assert dice(mask, prediction.label.array) >= 0.98
    header = dcmread(path, stop_before_pixels=True)
    assert card.name in header.SeriesDescription and card.version in header.SeriesDescription
    assert structure_set.rois[0].interpreted_type == "CTV"
    _validate(path, "RTStructureSet")


def test_dicom_seg_matches_the_labelmap(case: dict) -> None:
    loaded, prediction, card = case["loaded"], case["prediction"], case["predictor"].card
    path = case["root"] / "out" / "seg.dcm"
    seg = hd.seg.segread(path)
    datasets = load_ct_datasets(loaded.identity)
    pixels = seg.get_pixels_by_source_instance(
        [str(ds.SOPInstanceUID) for ds in datasets],
        segment_numbers=[1],
        assert_missing_frames_are_empty=True,
    )
    assert np.array_equal(pixels[..., 0].astype(bool), prediction.label.array.astype(bool))
    assert card.name in seg.SeriesDescription and card.version in seg.SeriesDescription
    assert seg.ContentLabel.startswith(card.name.upper().replace("-", "_")[:16])
    referenced = seg.ReferencedSeriesSequence[0].SeriesInstanceUID
    assert referenced == loaded.identity.series_instance_uid
    assert seg.SegmentSequence[0].SegmentLabel == "CTV"
    _validate(path, "Segmentation")


def test_seg_nrrd_has_the_named_coloured_coded_segment(case: dict) -> None:
    prediction = case["prediction"]
    segmentation = slicerio.read_segmentation(str(case["root"] / "out" / "ctv.seg.nrrd"))
    (segment,) = segmentation["segments"]
    assert segment["name"] == "CTV"
    assert np.allclose(segment["color"], np.array([255, 170, 0]) / 255.0, atol=1e-3)
    assert segment["terminology"]["category"] == ["DCM", "130041", "RT Target"]
    assert segment["terminology"]["type"] == ["SCT", "228792002", "Clinical Target Volume"]
    mask = np.transpose(slicerio.segment_mask(segmentation, "CTV"), (2, 1, 0))
    assert np.array_equal(mask.astype(bool), prediction.label.array.astype(bool))


def test_report_holds_model_settings_input_timings_and_review_list(case: dict) -> None:
    report = json.loads((case["root"] / "out" / "report.json").read_text())
    card, loaded = case["predictor"].card, case["loaded"]
    assert report["model"]["name"] == card.name
    assert report["model"]["sha256"] == card.weights_sha256
    assert report["input"]["series_instance_uid"] == loaded.identity.series_instance_uid
    assert report["settings"]["mc_samples"] == 3
    assert report["timings_s"]["write"] > 0 and report["timings_s"]["network"] > 0
    uncertainty = report["uncertainty"]
    assert 0.0 <= uncertainty["case_score"] <= 1.0
    slices = uncertainty["slices_to_review"]
    assert slices and all(isinstance(k, int) for k in slices)
    assert all(0 <= k < loaded.volume.geometry.shape_zyx[0] for k in slices)
    assert set(report["outputs"]) == set(case["written"].paths) - {"report"}


def test_non_dicom_input_needs_a_dicom_ct_for_dicom_formats(case: dict, tmp_path: Path) -> None:
    """A NIfTI CT on an oblique grid: refused for RTSTRUCT, unless a CT series is created."""
    phantom_ct = case["loaded"].volume
    geometry = make_geometry(
        "oblique", shape_zyx=phantom_ct.geometry.shape_zyx, spacing_xyz_mm=(5.0, 5.0, 5.0)
    )
    nifti = write_float_map(phantom_ct.array, geometry, tmp_path / "ct.nii.gz")
    loaded = read_ct(nifti)
    prediction = case["predictor"].predict(loaded.volume)
    card = case["predictor"].card
    with pytest.raises(InputError, match="--create-dicom-ct"):
        write_outputs(
            prediction,
            OutputRequest(tmp_path / "refused", ("rtstruct",)),
            card=card,
            identity=loaded.identity,
            ct=loaded.volume,
        )
    assert not (tmp_path / "refused").exists()
    written = write_outputs(
        prediction,
        OutputRequest(tmp_path / "out", ("rtstruct", "dicom-seg"), create_dicom_ct=True),
        card=card,
        identity=loaded.identity,
        ct=loaded.volume,
    )
    created = read_ct(written.paths["dicom_ct"])
    assert created.volume.geometry.is_close(geometry, atol_mm=1e-3)
    structure_set = read_rtstruct(written.paths["rtstruct"])
    assert structure_set.referenced_series_uids == (created.identity.series_instance_uid,)
    mask = rasterise_roi(structure_set, "CTV", geometry, created.identity)
    assert dice(mask, prediction.label.array) >= 0.98
    first_slice = sorted(written.paths["dicom_ct"].iterdir())[0]
    assert card.name in dcmread(first_slice, stop_before_pixels=True).SeriesDescription
    _validate(first_slice, "CTImage")
    seg = hd.seg.segread(written.paths["dicom-seg"])
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == created.identity.series_instance_uid


def test_existing_outputs_need_overwrite(case: dict, tmp_path: Path) -> None:
    prediction, card = case["prediction"], case["predictor"].card
    (tmp_path / "ctv.nii.gz").write_bytes(b"earlier result")
    request = OutputRequest(tmp_path, ("nifti",))
    with pytest.raises(OutputError, match="--overwrite"):
        write_outputs(prediction, request, card=card, identity=case["loaded"].identity)
    assert (tmp_path / "ctv.nii.gz").read_bytes() == b"earlier result"
    (tmp_path / "seg.dcm").write_bytes(b"from an earlier run with --format dicom-seg")
    (tmp_path / "my_notes.txt").write_text("not an output")
    write_outputs(
        prediction,
        dataclasses.replace(request, overwrite=True),
        card=card,
        identity=case["loaded"].identity,
    )
    assert sitk.ReadImage(str(tmp_path / "ctv.nii.gz")).GetSize() == (64, 64, 24)
    # --overwrite replaces what this run writes and leaves the rest
    assert (tmp_path / "seg.dcm").read_bytes() == b"from an earlier run with --format dicom-seg"
    assert (tmp_path / "my_notes.txt").exists()


def test_an_interrupted_write_leaves_nothing(case: dict, tmp_path: Path) -> None:
    prediction, card = case["prediction"], case["predictor"].card
    seen: list[str] = []

    def interrupt_after_three(fraction: float, message: str) -> None:
        seen.append(message)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_outputs(
            prediction,
            OutputRequest(tmp_path / "out", ALL_FORMATS),
            card=card,
            identity=case["loaded"].identity,
            report={"timings_s": {}},
            progress=interrupt_after_three,
        )
    assert list((tmp_path / "out").iterdir()) == []


def test_an_empty_ctv_skips_the_dicom_seg_with_a_note(case: dict, tmp_path: Path) -> None:
    prediction = case["prediction"]
    empty = dataclasses.replace(
        prediction, label=prediction.label.with_array(np.zeros_like(prediction.label.array))
    )
    written = write_outputs(
        empty,
        OutputRequest(tmp_path, ("dicom-seg",)),
        card=case["predictor"].card,
        identity=case["loaded"].identity,
    )
    assert "dicom-seg" not in written.paths and not (tmp_path / "seg.dcm").exists()
    assert any("empty" in note for note in written.warnings)


def test_format_names() -> None:
    assert parse_formats("rtstruct, NIFTI,seg.nrrd") == ("nifti", "seg.nrrd", "rtstruct")
    with pytest.raises(InputError, match="unknown output format dicom"):
        parse_formats("nifti,dicom")
    with pytest.raises(InputError):
        parse_formats(" , ")
