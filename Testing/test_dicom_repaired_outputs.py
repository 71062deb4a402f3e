"""Outputs written for repaired DICOM inputs reference what the reader decided, and validate.

Blank UIDs, a multi-frame CT and a gantry-tilted series each go through a tiny model and every
DICOM output: the RTSTRUCT and the SEG must reference the (generated) UIDs and frames the reader
used, lie on the grid, say so in report.json, and pass dciodvfy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

torch = pytest.importorskip("torch", reason="predicting needs torch (not on the I/O-only stacks)")

from dicom_variants import (  # noqa: E402
    blank_uids,
    copy_series,
    write_multiframe,
    write_tilted,
)
from predict_support import make_tiny_model, tiny_phantom  # noqa: E402

from AutoCTVLib.io.ct_reader import read_ct  # noqa: E402
from AutoCTVLib.io.dicom_ct_write import write_ct_series  # noqa: E402
from AutoCTVLib.predict import Predictor, build_report  # noqa: E402
from AutoCTVLib.predict.outputs import OutputRequest, write_outputs  # noqa: E402

DCIODVFY = shutil.which("dciodvfy")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("repaired")
    phantom = tiny_phantom()
    model = make_tiny_model(root / "model", phantom.ct)
    write_ct_series(phantom.ct, root / "plain", uid_seed="repaired")
    return {
        "root": root,
        "phantom": phantom,
        "predictor": Predictor.from_file(model, device="cpu", threads=1),
    }


def predict_and_write(setup: dict, folder: Path, name: str) -> tuple[dict, Path]:
    loaded = read_ct(folder)
    predictor = setup["predictor"]
    prediction = predictor.predict(
        loaded.volume, mc_samples=0, input_identity=loaded.identity.summary()
    )
    out = setup["root"] / f"out-{name}"
    write_outputs(
        prediction,
        OutputRequest(out, ("nifti", "rtstruct", "dicom-seg")),
        card=predictor.card,
        identity=loaded.identity,
        report=build_report(prediction, model_file="tiny"),
    )
    return {"loaded": loaded, "prediction": prediction}, out


def validate(path: Path, kind: str) -> None:
    if DCIODVFY is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed; the DICOM validation needs it")
    result = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    assert kind in output
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    assert errors == [], output


def referenced_images(rtstruct: pydicom.Dataset) -> list[tuple[str, int | None]]:
    series = rtstruct.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
    images = series.RTReferencedSeriesSequence[0].ContourImageSequence
    return [
        (str(item.ReferencedSOPInstanceUID), item.get("ReferencedFrameNumber")) for item in images
    ]


def test_blank_uid_series_outputs_carry_generated_uids_and_validate(setup: dict) -> None:
    folder = blank_uids(copy_series(setup["root"] / "plain", setup["root"] / "blank"))
    result, out = predict_and_write(setup, folder, "blank")
    identity = result["loaded"].identity
    assert "SeriesInstanceUID" in identity.generated_uids
    rtstruct = pydicom.dcmread(out / "rtstruct.dcm")
    frame = rtstruct.ReferencedFrameOfReferenceSequence[0]
    study = frame.RTReferencedStudySequence[0]
    assert study.ReferencedSOPInstanceUID == identity.study_instance_uid
    assert study.RTReferencedSeriesSequence[0].SeriesInstanceUID == identity.series_instance_uid
    assert rtstruct.StudyInstanceUID == identity.study_instance_uid
    assert [uid for uid, _ in referenced_images(rtstruct)] == [
        s.sop_instance_uid for s in identity.slices
    ]
    validate(out / "rtstruct.dcm", "RTStructureSet")
    seg = pydicom.dcmread(out / "seg.dcm")
    assert seg.StudyInstanceUID == identity.study_instance_uid
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == identity.series_instance_uid
    assert seg.FrameOfReferenceUID == identity.frame_of_reference_uid
    validate(out / "seg.dcm", "Segmentation")
    report = json.loads((out / "report.json").read_text())
    assert report["input"]["input_uids_generated"] is True
    assert report["input"]["generated_uids"] == ["StudyInstanceUID", "SeriesInstanceUID"]
    assert report["input"]["uids_from_file_meta"] == ["SOPClassUID", "SOPInstanceUID"]


def test_plain_series_report_says_no_uid_was_generated(setup: dict) -> None:
    _, out = predict_and_write(setup, setup["root"] / "plain", "plain")
    report = json.loads((out / "report.json").read_text())
    assert report["input"]["input_uids_generated"] is False


def test_multiframe_outputs_reference_frames_and_validate(setup: dict) -> None:
    folder = write_multiframe(setup["root"] / "plain", setup["root"] / "mf", enhanced=False)
    result, out = predict_and_write(setup, folder, "multiframe")
    identity = result["loaded"].identity
    rtstruct = pydicom.dcmread(out / "rtstruct.dcm")
    references = referenced_images(rtstruct)
    assert [frame for _, frame in references] == [s.frame_number for s in identity.slices]
    validate(out / "rtstruct.dcm", "RTStructureSet")
    validate(out / "seg.dcm", "Segmentation")
    seg = pydicom.dcmread(out / "seg.dcm")
    (multiframe_uid,) = {s.sop_instance_uid for s in identity.slices}
    instances = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    assert [str(item.ReferencedSOPInstanceUID) for item in instances] == [multiframe_uid]
    # Each SEG frame lies at the position of the CT frame it derives from.
    label = result["prediction"].label.array.astype(bool)
    assert int(seg.NumberOfFrames) == int(np.count_nonzero(label.any(axis=(1, 2))))
    positions = {s.frame_number: np.asarray(s.position_lps_mm) for s in identity.slices}
    for item in seg.PerFrameFunctionalGroupsSequence:
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        frame_number = int(source.ReferencedFrameNumber)
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(position, positions[frame_number], atol=1e-3)


def test_tilted_series_seg_frames_lie_on_the_resampled_grid(setup: dict) -> None:
    folder = setup["root"] / "tilt"
    write_tilted(setup["phantom"].ct, folder, tan_tilt=0.25)
    result, out = predict_and_write(setup, folder, "tilt")
    assert any("gantry tilt" in warning for warning in result["loaded"].warnings)
    validate(out / "rtstruct.dcm", "RTStructureSet")
    validate(out / "seg.dcm", "Segmentation")
    geometry = result["loaded"].volume.geometry
    seg = pydicom.dcmread(out / "seg.dcm")
    slices = result["loaded"].identity.slices
    by_uid = {s.sop_instance_uid: k for k, s in enumerate(slices)}
    for item in seg.PerFrameFunctionalGroupsSequence:
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        k = by_uid[str(source.ReferencedSOPInstanceUID)]
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        corner = geometry.index_to_physical(np.asarray([[0.0, 0.0, float(k)]]))[0]
        np.testing.assert_allclose(position, corner, atol=1e-3)
