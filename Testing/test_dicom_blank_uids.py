"""Blank or missing UIDs and files without the preamble, as anonymisers and archives export them.

Each case is a phantom series written plainly and then damaged the way real exports are; it must
read back on the plain series' grid with the plain series' voxels, never collapsed to one slice.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import make_geometry
from dicom_variants import (
    blank_uids,
    copy_series,
    dicom_files,
    edit_files,
    save_keeping_meta,
    strip_preamble,
)
from pydicom.filebase import DicomBytesIO

from AutoCTVLib.errors import SeriesSelectionError
from AutoCTVLib.io.ct_reader import read_ct
from AutoCTVLib.io.dicom_ct_write import write_ct_series
from AutoCTVLib.io.dicom_files import is_dicom_file
from AutoCTVLib.io.dicom_uids import is_valid_uid
from AutoCTVLib.io.rtstruct_write import RoiSpec, write_rtstruct
from AutoCTVLib.volume import Volume

SHAPE_ZYX = (7, 12, 10)


def small_ct(seed: int = 0, kind: str = "axial") -> Volume:
    geometry = make_geometry(kind, shape_zyx=SHAPE_ZYX, spacing_xyz_mm=(0.8, 0.9, 2.5))
    rng = np.random.default_rng(seed)
    return Volume(rng.integers(-1024, 2000, size=SHAPE_ZYX).astype(np.float32), geometry)


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    write_ct_series(small_ct(), tmp_path / "plain", uid_seed="plain", frame_of_reference_uid=None)
    return tmp_path / "plain"


def assert_same_volume(folder: Path, plain: Path) -> None:
    expected, actual = read_ct(plain), read_ct(folder)
    assert actual.volume.geometry.is_close(expected.volume.geometry, atol_mm=1e-4)
    np.testing.assert_array_equal(actual.volume.array, expected.volume.array)


def test_blank_uids_fall_back_to_the_file_meta_and_a_generated_series(
    plain: Path, tmp_path: Path
) -> None:
    variant = blank_uids(copy_series(plain, tmp_path / "blank"))
    first = pydicom.dcmread(dicom_files(variant)[0])
    assert first.SOPClassUID == "" and first.SeriesInstanceUID == ""
    assert first.file_meta.MediaStorageSOPClassUID == pydicom.uid.CTImageStorage

    loaded = read_ct(variant)
    original = read_ct(plain).identity
    assert loaded.volume.geometry.shape_zyx == SHAPE_ZYX
    assert_same_volume(variant, plain)
    identity = loaded.identity
    # SOP class and instance come from the file meta: the plain series' own UIDs.
    assert [s.sop_instance_uid for s in identity.slices] == [
        s.sop_instance_uid for s in original.slices
    ]
    assert {s.sop_class_uid for s in identity.slices} == {pydicom.uid.CTImageStorage}
    assert identity.uids_from_file_meta == ("SOPClassUID", "SOPInstanceUID")
    assert identity.generated_uids == ("StudyInstanceUID", "SeriesInstanceUID")
    assert identity.frame_of_reference_uid == original.frame_of_reference_uid
    for uid in (identity.study_instance_uid, identity.series_instance_uid):
        assert is_valid_uid(uid) and uid.startswith("2.25.")
    assert identity.series_instance_uid != identity.study_instance_uid
    summary = identity.summary()
    assert summary["input_uids_generated"] is True
    assert summary["generated_uids"] == ["StudyInstanceUID", "SeriesInstanceUID"]
    assert any("no SeriesInstanceUID" in warning for warning in loaded.warnings)
    assert any("generated UIDs" in warning for warning in loaded.warnings)
    # Deterministic: the same files give the same UIDs, so --series-uid can name the series.
    again = read_ct(variant, series_uid=identity.series_instance_uid)
    assert again.identity == identity


def test_plain_series_reports_no_generated_uids(plain: Path) -> None:
    summary = read_ct(plain).identity.summary()
    assert summary["input_uids_generated"] is False
    assert summary["generated_uids"] == [] and summary["uids_from_file_meta"] == []


def test_uids_blank_in_file_meta_too_are_derived_from_the_contents(
    plain: Path, tmp_path: Path
) -> None:
    variant = blank_uids(copy_series(plain, tmp_path / "blank"), (*_ALL, "FrameOfReferenceUID"))

    def blank_meta(dataset: pydicom.Dataset) -> None:
        dataset.file_meta.MediaStorageSOPInstanceUID = ""

    edit_files(variant, blank_meta)
    loaded = read_ct(variant)
    assert_same_volume(variant, plain)
    identity = loaded.identity
    uids = [s.sop_instance_uid for s in identity.slices]
    assert len(set(uids)) == SHAPE_ZYX[0]
    assert all(is_valid_uid(uid) for uid in uids)
    assert set(identity.generated_uids) == {
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "FrameOfReferenceUID",
    }
    assert is_valid_uid(identity.frame_of_reference_uid)
    assert read_ct(variant).identity == identity


_ALL = ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")


def test_one_uid_shared_by_every_slice_does_not_collapse_the_series(
    plain: Path, tmp_path: Path
) -> None:
    variant = copy_series(plain, tmp_path / "shared")

    def same_uid(dataset: pydicom.Dataset) -> None:
        dataset.SOPInstanceUID = "1.2.3.4"
        dataset.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"

    edit_files(variant, same_uid)
    loaded = read_ct(variant)
    assert_same_volume(variant, plain)
    assert len({s.sop_instance_uid for s in loaded.identity.slices}) == SHAPE_ZYX[0]
    assert "SOPInstanceUID" in loaded.identity.generated_uids
    assert any("share SOP instance UIDs" in warning for warning in loaded.warnings)


def test_blank_series_uids_are_grouped_by_frame_of_reference_and_grid(tmp_path: Path) -> None:
    (tmp_path / "both").mkdir()
    write_ct_series(small_ct(1), tmp_path / "both" / "a", uid_seed="a")
    write_ct_series(small_ct(2, "oblique"), tmp_path / "both" / "b", uid_seed="b")
    blank_uids(tmp_path / "both")
    with pytest.raises(SeriesSelectionError) as caught:
        read_ct(tmp_path / "both")
    message = str(caught.value)
    assert "holds 2 CT series; choose one with --series-uid" in message
    uids = [part.split(" ")[0] for part in message.split(": ", 1)[1].split("; ")]
    assert len(uids) == 2 and all(is_valid_uid(uid) for uid in uids)
    chosen = {uid: read_ct(tmp_path / "both", series_uid=uid) for uid in uids}
    expected = {read_ct(tmp_path / "both" / name).volume.geometry for name in "ab"}
    assert {loaded.volume.geometry for loaded in chosen.values()} == expected
    for loaded in chosen.values():
        assert loaded.volume.geometry.shape_zyx == SHAPE_ZYX


def test_files_without_preamble_are_found_and_read(plain: Path, tmp_path: Path) -> None:
    variant = strip_preamble(copy_series(plain, tmp_path / "no-preamble"))
    files = dicom_files(variant)
    assert files[0].read_bytes()[:2] == b"\x02\x00"
    assert all(is_dicom_file(path) for path in files)
    loaded = read_ct(variant)
    assert_same_volume(variant, plain)
    assert loaded.identity.series_instance_uid == read_ct(plain).identity.series_instance_uid
    assert loaded.warnings == ()
    # One such file given alone is recognised as DICOM (too few slices, not "not DICOM").
    with pytest.raises(Exception, match="too few slices"):
        read_ct(files[0])


def test_data_set_without_meta_or_preamble_is_read(plain: Path, tmp_path: Path) -> None:
    variant = copy_series(plain, tmp_path / "bare")
    for path in dicom_files(variant):
        dataset = pydicom.dcmread(path)
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, False
        pydicom.filewriter.write_dataset(buffer, dataset)  # no preamble, no file meta
        path.write_bytes(buffer.getvalue())
    assert dicom_files(variant)[0].read_bytes()[:2] == b"\x08\x00"
    assert_same_volume(variant, plain)


def test_bare_data_set_with_blank_uids_is_taken_for_ct_by_its_modality(
    plain: Path, tmp_path: Path
) -> None:
    """No file meta to fall back on and every UID blank: Modality CT and the image geometry
    say what it is; every UID is generated and named in the identity."""
    variant = copy_series(plain, tmp_path / "bare")
    for path in dicom_files(variant):
        dataset = pydicom.dcmread(path)
        for keyword in (*_ALL, "FrameOfReferenceUID"):
            setattr(dataset, keyword, "")
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, False
        pydicom.filewriter.write_dataset(buffer, dataset)
        path.write_bytes(buffer.getvalue())
    loaded = read_ct(variant)
    assert_same_volume(variant, plain)
    assert {s.sop_class_uid for s in loaded.identity.slices} == {pydicom.uid.CTImageStorage}
    assert set(loaded.identity.generated_uids) == {
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "FrameOfReferenceUID",
        "SOPClassUID",
    }
    assert len({s.sop_instance_uid for s in loaded.identity.slices}) == SHAPE_ZYX[0]


def test_ordinary_files_are_not_taken_for_dicom(tmp_path: Path) -> None:
    samples = {
        "notes.txt": b"patient notes\n" * 20,
        "empty.bin": b"",
        "zeros.raw": bytes(400),
        "group2.bin": b"\x02\x00\x10\x00" + b"\xff" * 200,
    }
    for name, content in samples.items():
        (tmp_path / name).write_bytes(content)
        assert not is_dicom_file(tmp_path / name), name
    image = sitk.GetImageFromArray(np.zeros((3, 4, 5), dtype=np.int16))
    sitk.WriteImage(image, str(tmp_path / "ct.nii"))
    sitk.WriteImage(image, str(tmp_path / "ct.nrrd"))
    assert not is_dicom_file(tmp_path / "ct.nii")
    assert not is_dicom_file(tmp_path / "ct.nrrd")


def test_simpleitk_reads_the_blank_uid_series_like_autoctv(plain: Path, tmp_path: Path) -> None:
    """GDCM (SimpleITK) groups the blank-UID files into one series too; same grid and voxels.
    (Neither GDCM nor dcm2niix reads files without the preamble: no bar to compare with there.)
    """
    variant = blank_uids(copy_series(plain, tmp_path / "blank"))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(variant)))
    image = reader.Execute()
    ours = read_ct(variant).volume
    assert image.GetSize() == ours.geometry.size_xyz
    np.testing.assert_allclose(image.GetOrigin(), ours.geometry.origin_xyz_mm, atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), ours.geometry.spacing_xyz_mm, atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), ours.array)


def test_save_keeping_meta_keeps_blank_uids_blank(plain: Path, tmp_path: Path) -> None:
    """The helper itself: a saved file really holds the blank UIDs the tests rely on."""
    path = dicom_files(plain)[0]
    dataset = pydicom.dcmread(path)
    dataset.SOPInstanceUID = ""
    save_keeping_meta(dataset, tmp_path / "one.dcm")
    again = pydicom.dcmread(tmp_path / "one.dcm")
    assert again.SOPInstanceUID == ""
    meta = dataset.file_meta
    assert again.file_meta.MediaStorageSOPInstanceUID == meta.MediaStorageSOPInstanceUID


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None,
    reason="dciodvfy (dicom3tools) is not installed; install dicom3tools to run this check",
)
def test_rtstruct_for_a_blank_uid_series_references_generated_uids_and_validates(
    plain: Path, tmp_path: Path
) -> None:
    variant = blank_uids(copy_series(plain, tmp_path / "blank"), (*_ALL, "FrameOfReferenceUID"))
    loaded = read_ct(variant)
    identity = loaded.identity
    mask = np.zeros(SHAPE_ZYX, dtype=bool)
    mask[2:5, 3:9, 2:8] = True
    path = tmp_path / "rtstruct.dcm"
    write_rtstruct(
        [RoiSpec("CTV", mask, (255, 0, 0), interpreted_type="CTV")],
        identity,
        loaded.volume.geometry,
        path,
        series_description="blank-UID test",
        structure_set_label="CTV",
    )
    structure_set = pydicom.dcmread(path)
    frame = structure_set.ReferencedFrameOfReferenceSequence[0]
    assert frame.FrameOfReferenceUID == identity.frame_of_reference_uid
    study = frame.RTReferencedStudySequence[0]
    assert study.ReferencedSOPInstanceUID == identity.study_instance_uid
    assert study.RTReferencedSeriesSequence[0].SeriesInstanceUID == identity.series_instance_uid
    for uid in (structure_set.StudyInstanceUID, identity.series_instance_uid):
        assert is_valid_uid(uid)
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    assert "RTStructureSet" in output
    assert [line for line in output.splitlines() if line.startswith("Error")] == [], output
