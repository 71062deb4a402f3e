"""Real scanners' CT images that pydicom ships, read as they are and after anonymisation.

* ``dicomdirtests/98892001/CT5N``: five slices of a real GE LightSpeed Ultra series (downsampled
  to 16×16 pixels by pydicom's authors), Explicit VR Little Endian.
* ``693_J2KI.dcm``: one real, anonymised head CT image (512×512) in JPEG 2000. A series is made
  from it by copying it to three positions along its normal, keeping its JPEG 2000 code stream
  as the scanner's software wrote it.

Each must read on its own grid like SimpleITK (GDCM) reads it, also after the anonymisation the
issue reports (SOP class, SOP instance, series and study UIDs present but empty).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_variants import (
    blank_uids,
    dcm2niix_executable,
    dicom_files,
    save_keeping_meta,
    transcode,
)
from pydicom.data import get_testdata_file

from AutoCTVLib.io.ct_reader import read_ct

DCM2NIIX = dcm2niix_executable()


def ct5n_folder() -> Path:
    folder = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests/98892001/CT5N"
    if not folder.is_dir():
        pytest.fail(f"pydicom no longer ships {folder}; pick another real CT series")
    return folder


def gdcm_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return sitk.Cast(reader.Execute(), sitk.sitkFloat32)


def assert_like_gdcm(folder: Path, image: sitk.Image) -> None:
    ours = read_ct(folder).volume
    assert image.GetSize() == ours.geometry.size_xyz
    np.testing.assert_allclose(image.GetOrigin(), ours.geometry.origin_xyz_mm, atol=1e-3)
    np.testing.assert_allclose(image.GetSpacing(), ours.geometry.spacing_xyz_mm, atol=1e-4)
    np.testing.assert_allclose(image.GetDirection(), ours.geometry.direction, atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), ours.array)


def test_real_ge_series_reads_like_gdcm(tmp_path: Path) -> None:
    folder = shutil.copytree(ct5n_folder(), tmp_path / "ct5n")
    loaded = read_ct(folder)
    assert loaded.volume.geometry.shape_zyx == (5, 16, 16)
    np.testing.assert_allclose(loaded.volume.geometry.spacing_xyz_mm, (0.488281, 0.488281, 2.5))
    first = pydicom.dcmread(dicom_files(folder)[0], stop_before_pixels=True)
    assert first.Manufacturer == "GE MEDICAL SYSTEMS"
    assert loaded.identity.series_instance_uid == first.SeriesInstanceUID
    assert loaded.warnings == ()
    assert_like_gdcm(folder, gdcm_series(folder))


def test_real_ge_series_anonymised_to_jpeg2000_with_blank_uids_reads_the_same(
    tmp_path: Path,
) -> None:
    original = read_ct(ct5n_folder())
    folder = shutil.copytree(ct5n_folder(), tmp_path / "anon")
    transcode(folder, "JPEG2000Lossless")
    blank_uids(folder)
    first = pydicom.dcmread(dicom_files(folder)[0], stop_before_pixels=True)
    assert first.SOPInstanceUID == "" and first.StudyInstanceUID == ""
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.JPEG2000Lossless
    loaded = read_ct(folder)
    assert loaded.volume.geometry.is_close(original.volume.geometry, atol_mm=1e-4)
    np.testing.assert_array_equal(loaded.volume.array, original.volume.array)
    assert [s.sop_instance_uid for s in loaded.identity.slices] == [
        s.sop_instance_uid for s in original.identity.slices
    ]
    assert loaded.identity.summary()["input_uids_generated"] is True


def real_jpeg2000_series(folder: Path, slices: int = 3) -> Path:
    """A series of ``slices`` copies of pydicom's real anonymised JPEG 2000 head CT image, 5 mm
    apart along its normal, each keeping the scanner's code stream, then anonymised the way the
    issue's archive was (SOP class/instance, series and study UIDs present but empty)."""
    source = Path(get_testdata_file("693_J2KI.dcm"))
    template = pydicom.dcmread(source)
    assert template.file_meta.TransferSyntaxUID == pydicom.uid.JPEG2000
    folder.mkdir()
    orientation = np.asarray([float(v) for v in template.ImageOrientationPatient])
    normal = np.cross(orientation[:3], orientation[3:])
    start = np.asarray([float(v) for v in template.ImagePositionPatient])
    for k in range(slices):
        copy = pydicom.dcmread(source)
        copy.ImagePositionPatient = [round(float(v), 4) for v in start + 5.0 * k * normal]
        copy.InstanceNumber = k + 1
        uid = pydicom.uid.generate_uid(entropy_srcs=[str(template.SOPInstanceUID), str(k)])
        copy.SOPInstanceUID = uid
        copy.file_meta.MediaStorageSOPInstanceUID = uid
        save_keeping_meta(copy, folder / f"IM{k}")
    blank_uids(folder)
    return folder


def test_real_jpeg2000_ct_image_stacked_into_a_series_reads_like_gdcm(tmp_path: Path) -> None:
    source = Path(get_testdata_file("693_J2KI.dcm"))
    folder = real_jpeg2000_series(tmp_path / "j2k")
    loaded = read_ct(folder)
    assert loaded.volume.geometry.shape_zyx == (3, 512, 512)
    single = sitk.Cast(sitk.ReadImage(str(source)), sitk.sitkFloat32)
    decoded_by_gdcm = sitk.GetArrayFromImage(single)[0]
    for k in range(3):
        np.testing.assert_array_equal(loaded.volume.array[k], decoded_by_gdcm)


@pytest.mark.skipif(DCM2NIIX is None, reason="dcm2niix (a test dependency) is not installed")
def test_dcm2niix_reads_the_scanner_style_export_like_autoctv(tmp_path: Path) -> None:
    """dcm2niix converts the anonymised JPEG 2000 export (blank UIDs) to the same voxels at the
    same physical positions as our reader. (dcm2niix, like GDCM, finds no DICOM in files
    without the preamble, so that variant has no bar to compare with.)"""
    import subprocess

    from dicom_variants import scanner_style_anonymised

    from AutoCTVLib.io.dicom_ct_write import write_ct_series
    from AutoCTVLib.phantom import PhantomConfig, generate_phantom

    phantom = generate_phantom(
        PhantomConfig(seed=5, size_xyz=(48, 40, 12), spacing_xyz_mm=(6.0, 7.0, 5.0))
    )
    write_ct_series(phantom.ct, tmp_path / "plain", uid_seed="dcm2niix")
    folder = scanner_style_anonymised(tmp_path / "plain", tmp_path / "variant")
    (tmp_path / "nii").mkdir()
    subprocess.run(
        [str(DCM2NIIX), "-z", "n", "-f", "ct", "-o", str(tmp_path / "nii"), str(folder)],
        check=True,
        capture_output=True,
    )
    converted = sorted((tmp_path / "nii").glob("*.nii"))
    assert len(converted) == 1, converted
    theirs = sitk.Cast(sitk.ReadImage(str(converted[0])), sitk.sitkFloat32)
    ours = read_ct(folder).volume
    reference = ours.geometry.to_sitk_reference(sitk.sitkFloat32)
    resampled = sitk.Resample(theirs, reference, sitk.Transform(), sitk.sitkNearestNeighbor, -9999)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(resampled), ours.array)


def test_real_anonymised_jpeg2000_series_is_contoured_on_its_own_grid(tmp_path: Path) -> None:
    """``autoctv predict`` on the real scanner's anonymised JPEG 2000 series: exit 0, outputs on
    the input's own grid, an RTSTRUCT that references the UIDs the reader generated."""
    pytest.importorskip("torch", reason="contouring needs torch (the I/O stacks have none)")
    from AutoCTVLib.cli.main import main as cli
    from AutoCTVLib.io.image_files import read_labelmap

    folder = real_jpeg2000_series(tmp_path / "j2k", slices=12)
    out = tmp_path / "out"
    code = cli(["predict", str(folder), "-o", str(out), "--format", "nifti,rtstruct"])
    assert code == 0
    loaded = read_ct(folder)
    label = read_labelmap(out / "ctv.nii.gz")
    assert label.geometry.is_close(loaded.volume.geometry, atol_mm=1e-3)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["input"]["input_uids_generated"] is True
    rtstruct = pydicom.dcmread(out / "rtstruct.dcm")
    referenced = rtstruct.ReferencedFrameOfReferenceSequence[0]
    series = referenced.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == loaded.identity.series_instance_uid != ""
