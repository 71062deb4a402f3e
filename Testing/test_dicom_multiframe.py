"""Enhanced CT and Legacy Converted Enhanced CT (multi-frame): geometry and HU from the
functional groups, frame by frame, like the single-frame series they were built from."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import make_geometry
from dicom_variants import PYDICOM_MAJOR, dicom_files, save_keeping_meta, write_multiframe

from AutoCTVLib.errors import GeometryError
from AutoCTVLib.io.ct_reader import read_ct
from AutoCTVLib.io.dicom_ct_write import write_ct_series
from AutoCTVLib.io.dicom_seg_write import write_dicom_seg
from AutoCTVLib.volume import Volume

CONVERTERS = ["pydicom", "highdicom"]


def converter_or_skip(converter: str) -> str:
    """``converter``, or a skip when it is highdicom and this stack has none."""
    if converter == "highdicom":
        pytest.importorskip("highdicom", reason="highdicom (a test dependency) is not installed")
    return converter


SHAPE_ZYX = (7, 12, 10)
LEGACY = "1.2.840.10008.5.1.4.1.1.2.2"
ENHANCED = "1.2.840.10008.5.1.4.1.1.2.1"


@pytest.fixture(params=["axial", "oblique", "flipped"])
def plain(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Volume]:
    geometry = make_geometry(request.param, shape_zyx=SHAPE_ZYX, spacing_xyz_mm=(0.8, 0.9, 2.5))
    rng = np.random.default_rng(0)
    ct = Volume(rng.integers(-1024, 2000, size=SHAPE_ZYX).astype(np.float32), geometry)
    write_ct_series(ct, tmp_path / "plain", uid_seed="plain")
    return tmp_path / "plain", ct


@pytest.mark.parametrize("converter", CONVERTERS)
@pytest.mark.parametrize("enhanced", [False, True], ids=["legacy-converted", "enhanced"])
def test_multiframe_ct_reads_like_the_single_frame_series(
    plain: tuple[Path, Volume], enhanced: bool, converter: str, tmp_path: Path
) -> None:
    folder, _ = plain
    expected = read_ct(folder).volume
    multiframe = write_multiframe(
        folder, tmp_path / "mf", enhanced=enhanced, converter=converter_or_skip(converter)
    )
    dataset = pydicom.dcmread(dicom_files(multiframe)[0], stop_before_pixels=True)
    assert dataset.SOPClassUID == (ENHANCED if enhanced else LEGACY)
    assert int(dataset.NumberOfFrames) == SHAPE_ZYX[0]
    assert "ImagePositionPatient" not in dataset  # geometry only in the functional groups

    loaded = read_ct(multiframe)
    assert loaded.volume.geometry.is_close(expected.geometry, atol_mm=1e-4)
    np.testing.assert_array_equal(loaded.volume.array, expected.array)
    assert loaded.warnings == ()
    identity = loaded.identity
    assert {s.sop_instance_uid for s in identity.slices} == {str(dataset.SOPInstanceUID)}
    frames = [s.frame_number for s in identity.slices]
    assert sorted(frames) == list(range(1, SHAPE_ZYX[0] + 1))
    assert identity.series_instance_uid == str(dataset.SeriesInstanceUID)


def test_per_frame_rescale_is_applied_frame_by_frame(
    plain: tuple[Path, Volume], tmp_path: Path
) -> None:
    folder, _ = plain
    expected = read_ct(folder).volume.array.copy()
    multiframe = write_multiframe(folder, tmp_path / "mf", enhanced=True)
    path = dicom_files(multiframe)[0]
    dataset = pydicom.dcmread(path)
    third = dataset.PerFrameFunctionalGroupsSequence[2]
    if "PixelValueTransformationSequence" not in third:
        third.PixelValueTransformationSequence = [pydicom.Dataset()]
        third.PixelValueTransformationSequence[0].RescaleType = "HU"
    transform = third.PixelValueTransformationSequence[0]
    transform.RescaleSlope, transform.RescaleIntercept = 2, -500
    save_keeping_meta(dataset, path)
    loaded = read_ct(multiframe)
    position = [float(v) for v in third.PlanePositionSequence[0].ImagePositionPatient]
    k = int(
        np.argmin(
            [
                np.linalg.norm(np.subtract(s.position_lps_mm, position))
                for s in loaded.identity.slices
            ]
        )
    )
    stored = pydicom.dcmread(path).pixel_array[2].astype(np.float32)
    expected[k] = stored * 2 - 500
    np.testing.assert_array_equal(loaded.volume.array, expected)


@pytest.mark.parametrize("converter", CONVERTERS)
def test_simpleitk_reads_the_multiframe_ct_like_autoctv(
    plain: tuple[Path, Volume], converter: str, tmp_path: Path
) -> None:
    folder, _ = plain
    multiframe = write_multiframe(
        folder, tmp_path / "mf", enhanced=False, converter=converter_or_skip(converter)
    )
    highdicom_022 = converter == "highdicom" and tuple(
        int(v) for v in __import__("highdicom").__version__.split(".")[:2]
    ) < (0, 23)
    if highdicom_022:
        pytest.skip(
            "SimpleITK's GDCM reads the file highdicom 0.22 writes with spacing 1,1,1 (it misses "
            "the shared Pixel Measures); our geometry is checked against the single-frame series"
        )
    image = sitk.Cast(sitk.ReadImage(str(dicom_files(multiframe)[0])), sitk.sitkFloat32)
    ours = read_ct(multiframe).volume
    assert image.GetSize() == ours.geometry.size_xyz
    np.testing.assert_allclose(image.GetSpacing(), ours.geometry.spacing_xyz_mm, atol=1e-4)
    # GDCM keeps the file's frame order (its k axis may point against ours): compare the two
    # in physical space, voxel centre by voxel centre.
    reference = ours.geometry.to_sitk_reference(sitk.sitkFloat32)
    resampled = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, -9999)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(resampled), ours.array)


def test_frame_without_position_is_refused(plain: tuple[Path, Volume], tmp_path: Path) -> None:
    folder, _ = plain
    multiframe = write_multiframe(folder, tmp_path / "mf", enhanced=True)
    path = dicom_files(multiframe)[0]
    dataset = pydicom.dcmread(path)
    del dataset.PerFrameFunctionalGroupsSequence[4].PlanePositionSequence
    save_keeping_meta(dataset, path)
    with pytest.raises(GeometryError, match=r"frame 5 of multi-frame CT .* has no ImagePositionP"):
        read_ct(multiframe)


def test_pydicom_major_is_known() -> None:
    assert PYDICOM_MAJOR in (2, 3)


def test_seg_of_a_multiframe_ct_references_its_frames(
    plain: tuple[Path, Volume], tmp_path: Path
) -> None:
    """A SEG on a multi-frame CT: each frame names its source frame (ReferencedFrameNumber),
    lies where that CT frame lies (functional-group geometry), and dciodvfy finds no error."""
    folder, _ = plain
    loaded = read_ct(write_multiframe(folder, tmp_path / "mf", enhanced=True))
    mask = np.zeros(SHAPE_ZYX, dtype=bool)
    mask[1:5, 3:9, 2:7] = True
    info = write_dicom_seg(
        mask, loaded.identity, tmp_path / "seg.dcm", algorithm_name="test", algorithm_version="1"
    )
    seg = pydicom.dcmread(info.path)
    instances = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    (frame_uid,) = {s.sop_instance_uid for s in loaded.identity.slices}
    assert [str(item.ReferencedSOPInstanceUID) for item in instances] == [frame_uid]
    by_frame = {s.frame_number: k for k, s in enumerate(loaded.identity.slices)}
    seen = set()
    for item in seg.PerFrameFunctionalGroupsSequence:
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert str(source.ReferencedSOPInstanceUID) == frame_uid
        k = by_frame[int(source.ReferencedFrameNumber)]
        seen.add(k)
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(position, loaded.identity.slices[k].position_lps_mm, atol=1e-3)
    assert seen == {1, 2, 3, 4}
    shared = seg.SharedFunctionalGroupsSequence[0]
    spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
    np.testing.assert_allclose(spacing, loaded.volume.geometry.spacing_xyz_mm[1::-1], atol=1e-6)
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed; the SEG's validation needs it")
    result = subprocess.run([dciodvfy, str(info.path)], capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert "Segmentation" in output
    assert [line for line in output.splitlines() if line.startswith("Error")] == [], output
