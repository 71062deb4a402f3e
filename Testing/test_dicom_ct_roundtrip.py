"""DICOM CT series writer ⇄ reader round trips, and NIfTI/NRRD/MHA reading, on any grid."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import make_geometry

from AutoCTVLib.compat import save_dicom_file
from AutoCTVLib.errors import OutputError
from AutoCTVLib.io import dicom_ct_write
from AutoCTVLib.io.ct_reader import read_ct
from AutoCTVLib.io.dicom_ct_write import write_ct_series
from AutoCTVLib.io.identity import FileIdentity, SeriesIdentity, sha256_of_file
from AutoCTVLib.volume import Geometry, Volume

# Anisotropic in-plane spacing and a non-square slice catch a swapped PixelSpacing or Rows/Columns.
SHAPE_ZYX = (7, 10, 13)
SPACING_XYZ_MM = (0.7, 0.9, 2.5)


def integer_ct(kind: str, seed: int = 0) -> Volume:
    """A small CT of integer HU in [-1024, 3071] on the named grid kind."""
    geometry = make_geometry(kind, shape_zyx=SHAPE_ZYX, spacing_xyz_mm=SPACING_XYZ_MM)
    rng = np.random.default_rng(seed)
    ct_hu = rng.integers(-1024, 3072, size=SHAPE_ZYX).astype(np.float32)
    return Volume(ct_hu, geometry)


def assert_same_grid(actual: Geometry, expected: Geometry, atol_mm: float = 1e-4) -> None:
    assert actual.shape_zyx == expected.shape_zyx
    np.testing.assert_allclose(actual.spacing_xyz_mm, expected.spacing_xyz_mm, atol=atol_mm)
    np.testing.assert_allclose(actual.origin_xyz_mm, expected.origin_xyz_mm, atol=atol_mm)
    np.testing.assert_allclose(actual.direction, expected.direction, atol=1e-6)


def test_dicom_round_trip_keeps_grid_and_hounsfield_units(tmp_path: Path, grid_kind: str) -> None:
    ct = integer_ct(grid_kind)
    written = write_ct_series(ct, tmp_path / "ct", uid_seed="round-trip")
    loaded = read_ct(tmp_path / "ct")
    assert_same_grid(loaded.volume.geometry, ct.geometry)
    assert loaded.volume.array.dtype == np.float32
    np.testing.assert_array_equal(loaded.volume.array, ct.array)
    assert isinstance(loaded.identity, SeriesIdentity)
    assert loaded.identity.slices == written.slices
    assert loaded.identity.series_instance_uid == written.series_instance_uid
    assert loaded.identity.frame_of_reference_uid == written.frame_of_reference_uid
    assert loaded.warnings == ()


def test_simpleitk_gdcm_reads_the_written_series_on_the_same_grid(
    tmp_path: Path, grid_kind: str
) -> None:
    """An independent DICOM reader (GDCM via SimpleITK) agrees with the intended grid."""
    ct = integer_ct(grid_kind, seed=1)
    write_ct_series(ct, tmp_path / "ct")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "ct")))
    image = reader.Execute()
    assert_same_grid(Geometry.from_sitk(image), ct.geometry)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), ct.array)


def test_written_attributes_follow_dicom_conventions(tmp_path: Path) -> None:
    ct = integer_ct("oblique")
    identity = write_ct_series(ct, tmp_path / "ct", patient_id="P1", series_description="plan")
    files = sorted((tmp_path / "ct").iterdir())
    assert len(files) == SHAPE_ZYX[0]
    first = pydicom.dcmread(tmp_path / "ct" / f"CT.{identity.slices[0].sop_instance_uid}.dcm")
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert first.SOPClassUID == pydicom.uid.CTImageStorage
    assert first.Modality == "CT"
    assert (first.Rows, first.Columns) == SHAPE_ZYX[1:]
    # PixelSpacing is (between rows = j spacing, between columns = i spacing).
    assert [float(v) for v in first.PixelSpacing] == [SPACING_XYZ_MM[1], SPACING_XYZ_MM[0]]
    assert float(first.SliceThickness) == SPACING_XYZ_MM[2]
    direction = ct.geometry.direction_matrix
    np.testing.assert_allclose(
        [float(v) for v in first.ImageOrientationPatient],
        np.concatenate([direction[:, 0], direction[:, 1]]),
        atol=1e-12,
    )
    np.testing.assert_allclose(
        [float(v) for v in first.ImagePositionPatient], ct.geometry.origin_xyz_mm, atol=1e-9
    )
    assert first.PatientID == "P1" and first.SeriesDescription == "plan"
    assert first.StudyInstanceUID == identity.study_instance_uid
    assert first.FrameOfReferenceUID == identity.frame_of_reference_uid


def test_file_names_do_not_follow_slice_order(tmp_path: Path) -> None:
    identity = write_ct_series(integer_ct("axial"), tmp_path / "ct", uid_seed="names")
    names_by_slice = [f"CT.{ref.sop_instance_uid}.dcm" for ref in identity.slices]
    assert sorted(p.name for p in (tmp_path / "ct").iterdir()) == sorted(names_by_slice)
    assert sorted(names_by_slice) != names_by_slice


def test_shuffled_renamed_and_renumbered_slices_still_sort_by_position(tmp_path: Path) -> None:
    ct = integer_ct("flipped", seed=2)
    write_ct_series(ct, tmp_path / "ct")
    scrambled = tmp_path / "scrambled"
    files = sorted((tmp_path / "ct").iterdir())
    order = list(range(len(files)))
    random.Random(3).shuffle(order)
    for new_index, old_index in enumerate(order):
        dataset = pydicom.dcmread(files[old_index])
        dataset.InstanceNumber = new_index + 1  # misleading instance numbers
        target = scrambled / f"sub{new_index % 2}" / f"{new_index:03d}"
        target.parent.mkdir(parents=True, exist_ok=True)
        save_dicom_file(dataset, target)
    (scrambled / "README.txt").write_text("not a DICOM file")
    loaded = read_ct(scrambled)
    assert_same_grid(loaded.volume.geometry, ct.geometry)
    np.testing.assert_array_equal(loaded.volume.array, ct.array)


def test_non_integer_hounsfield_units_are_rounded(tmp_path: Path) -> None:
    geometry = make_geometry("axial", shape_zyx=(3, 4, 5))
    ct_hu = np.linspace(-1000.4, 1500.6, num=60, dtype=np.float32).reshape(3, 4, 5)
    write_ct_series(Volume(ct_hu, geometry), tmp_path / "ct")
    np.testing.assert_array_equal(read_ct(tmp_path / "ct").volume.array, np.rint(ct_hu))


def test_values_beyond_int16_use_a_rescale_intercept(tmp_path: Path) -> None:
    geometry = make_geometry("axial", shape_zyx=(3, 4, 5))
    ct_hu = np.linspace(-3000, 40000, num=60).astype(np.float32).round().reshape(3, 4, 5)
    identity = write_ct_series(Volume(ct_hu, geometry), tmp_path / "ct")
    first = pydicom.dcmread(tmp_path / "ct" / f"CT.{identity.slices[0].sop_instance_uid}.dcm")
    assert float(first.RescaleIntercept) != 0
    np.testing.assert_array_equal(read_ct(tmp_path / "ct").volume.array, ct_hu)


def test_writer_refuses_values_dicom_cannot_hold(tmp_path: Path) -> None:
    geometry = make_geometry("axial", shape_zyx=(3, 4, 5))
    with pytest.raises(ValueError, match="NaN"):
        write_ct_series(Volume(np.full((3, 4, 5), np.nan, np.float32), geometry), tmp_path / "a")
    span = np.zeros((3, 4, 5), np.float32)
    span[0, 0, 0], span[-1, -1, -1] = -40000, 40000
    with pytest.raises(ValueError, match="16-bit"):
        write_ct_series(Volume(span, geometry), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_seeded_uids_are_deterministic_and_seed_specific(tmp_path: Path) -> None:
    ct = integer_ct("axial")
    first = write_ct_series(ct, tmp_path / "a", uid_seed="case-7")
    again = write_ct_series(ct, tmp_path / "b", uid_seed="case-7")
    other = write_ct_series(ct, tmp_path / "c", uid_seed="case-8")
    random_uids = write_ct_series(ct, tmp_path / "d")
    key = lambda s: (s.study_instance_uid, s.series_instance_uid, s.frame_of_reference_uid)  # noqa: E731
    assert key(first) == key(again)
    assert [r.sop_instance_uid for r in first.slices] == [r.sop_instance_uid for r in again.slices]
    assert set(key(first)).isdisjoint(key(other))
    assert set(key(first)).isdisjoint(key(random_uids))
    all_uids = [r.sop_instance_uid for r in first.slices] + list(key(first))
    assert len(set(all_uids)) == len(all_uids)
    assert all(pydicom.uid.UID(uid).is_valid for uid in all_uids)


def test_explicit_study_and_frame_uids_are_used(tmp_path: Path) -> None:
    study, frame = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    identity = write_ct_series(
        integer_ct("axial"), tmp_path / "ct", study_instance_uid=study, frame_of_reference_uid=frame
    )
    loaded = read_ct(tmp_path / "ct").identity
    assert isinstance(loaded, SeriesIdentity)
    assert identity.study_instance_uid == loaded.study_instance_uid == study
    assert identity.frame_of_reference_uid == loaded.frame_of_reference_uid == frame


def test_output_folder_must_be_new_or_empty(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    write_ct_series(integer_ct("axial"), tmp_path / "empty")
    assert len(list((tmp_path / "empty").iterdir())) == SHAPE_ZYX[0]
    with pytest.raises(OutputError, match="not an empty folder"):
        write_ct_series(integer_ct("axial"), tmp_path / "empty")
    with pytest.raises(OutputError, match="does not exist"):
        write_ct_series(integer_ct("axial"), tmp_path / "missing" / "ct")


def test_interrupted_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved: list[Path] = []
    original = dicom_ct_write._save_dataset

    def fail_after_three(dataset: pydicom.Dataset, path: Path) -> None:
        if len(saved) == 3:
            raise KeyboardInterrupt
        original(dataset, path)
        saved.append(path)

    monkeypatch.setattr(dicom_ct_write, "_save_dataset", fail_after_three)
    with pytest.raises(KeyboardInterrupt):
        write_ct_series(integer_ct("axial"), tmp_path / "ct")
    assert len(saved) == 3
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None,
    reason="dciodvfy (dicom3tools) is not installed; install dicom3tools to run this check",
)
def test_dciodvfy_finds_no_errors(tmp_path: Path) -> None:
    write_ct_series(integer_ct("oblique"), tmp_path / "ct")
    for path in sorted((tmp_path / "ct").iterdir())[:2]:
        result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        report = result.stdout + result.stderr
        assert "CTImage" in report, report
        assert "Error" not in report, report
        assert "Warning" not in report, report


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"])
@pytest.mark.parametrize("pixel_type", [np.float32, np.int16])
def test_image_file_round_trip(
    tmp_path: Path, grid_kind: str, suffix: str, pixel_type: type
) -> None:
    ct = integer_ct(grid_kind, seed=4)
    path = tmp_path / f"ct{suffix}"
    image = sitk.GetImageFromArray(ct.array.astype(pixel_type))
    ct.geometry.apply_to(image)
    sitk.WriteImage(image, str(path))
    loaded = read_ct(path)
    # NIfTI stores its affine in float32, hence the tolerance.
    assert_same_grid(loaded.volume.geometry, ct.geometry, atol_mm=1e-4)
    assert loaded.volume.array.dtype == np.float32
    np.testing.assert_array_equal(loaded.volume.array, ct.array)
    assert isinstance(loaded.identity, FileIdentity)
    assert loaded.identity.sha256 == sha256_of_file(path)
    assert loaded.identity.format in {"nifti", "nrrd", "metaimage"}
    if suffix in (".nhdr", ".mhd"):
        assert loaded.identity.extra["data_file_sha256"]
    assert loaded.warnings == ()


def test_image_file_that_does_not_look_like_hounsfield_units_warns(tmp_path: Path) -> None:
    geometry = make_geometry("axial", shape_zyx=(3, 4, 5))
    normalised = Volume(np.linspace(0, 1, 60, dtype=np.float32).reshape(3, 4, 5), geometry)
    sitk.WriteImage(normalised.to_sitk(), str(tmp_path / "norm.nrrd"))
    assert "between 0 and 1" in read_ct(tmp_path / "norm.nrrd").warnings[0]
    raw = normalised.with_array(np.full((3, 4, 5), 1000, np.float32))
    sitk.WriteImage(raw.to_sitk(), str(tmp_path / "raw.nrrd"))
    assert "no value below 0" in read_ct(tmp_path / "raw.nrrd").warnings[0]
