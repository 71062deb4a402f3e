"""Gantry-tilted series: resampled onto an orthogonal grid, right in physical space.

The tilted series samples a tiny phantom at the sheared positions a tilted gantry gives (image k
shifted along the column axis by k × step × tan(tilt)). Read back, every voxel must hold the
phantom's value at that voxel's physical position (exactly when the shear is a whole number of
pixels per slice, closely otherwise), and dcm2niix's tilt-corrected NIfTI must agree.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_variants import dcm2niix_executable, dicom_files, resample_like, write_tilted

from AutoCTVLib.errors import GeometryError
from AutoCTVLib.io.ct_reader import read_ct
from AutoCTVLib.io.dicom_ct import sort_and_check_slices
from AutoCTVLib.io.dicom_header import DicomHeader
from AutoCTVLib.io.rtstruct_write import RoiSpec, write_rtstruct
from AutoCTVLib.phantom import PhantomConfig, generate_phantom
from AutoCTVLib.volume import Volume

DCM2NIIX = dcm2niix_executable()
# 2.5 mm rows and 5 mm steps: tan(tilt) = 0.5 shifts each image by exactly one row (26.6°).
SIZE_XYZ = (64, 64, 25)
SPACING_XYZ_MM = (2.5, 2.5, 5.0)


@pytest.fixture(scope="module")
def phantom_ct() -> Volume:
    config = PhantomConfig(seed=3, size_xyz=SIZE_XYZ, spacing_xyz_mm=SPACING_XYZ_MM, noise_hu=10)
    return generate_phantom(config).ct


def covered(phantom_ct: Volume, folder: Path, tan_tilt: float) -> np.ndarray:
    """Voxels of the read-back grid that some tilted image covered (a marker series)."""
    marker = Volume(np.full_like(phantom_ct.array, 1000.0), phantom_ct.geometry)
    write_tilted(marker, folder, tan_tilt, uid_seed="marker")
    return read_ct(folder).volume.array > 999.5


def test_tilted_series_is_resampled_onto_the_phantom_in_physical_space(
    phantom_ct: Volume, tmp_path: Path
) -> None:
    write_tilted(phantom_ct, tmp_path / "tilt", tan_tilt=0.5)
    loaded = read_ct(tmp_path / "tilt")
    assert len(loaded.warnings) == 1
    assert "gantry tilt of about 26.6°" in loaded.warnings[0]
    geometry = loaded.volume.geometry
    assert geometry.shape_zyx == phantom_ct.geometry.shape_zyx
    np.testing.assert_allclose(geometry.direction, phantom_ct.geometry.direction, atol=1e-9)
    np.testing.assert_allclose(geometry.spacing_xyz_mm, SPACING_XYZ_MM, atol=1e-6)
    # Centred shear: the grid moved by half the total shift (12 rows of 2.5 mm) along y.
    offset = np.asarray(geometry.origin_xyz_mm) - np.asarray(phantom_ct.geometry.origin_xyz_mm)
    np.testing.assert_allclose(offset, (0.0, 12 * 2.5, 0.0), atol=1e-5)
    valid = covered(phantom_ct, tmp_path / "marker", 0.5)
    assert valid.mean() > 0.7
    expected = resample_like(phantom_ct, geometry, nearest=False)
    np.testing.assert_allclose(loaded.volume.array[valid], expected[valid], atol=0.01)
    # Outside what the images covered: the series' lowest value (air here).
    assert np.all(loaded.volume.array[~valid] == loaded.volume.array.min())


def test_fractional_tilt_stays_close_to_the_phantom(phantom_ct: Volume, tmp_path: Path) -> None:
    """0.3 rows per slice: interpolated twice (writing and reading), so close, not exact."""
    write_tilted(phantom_ct, tmp_path / "tilt", tan_tilt=0.3)
    loaded = read_ct(tmp_path / "tilt")
    assert "gantry tilt of about 16.7°" in loaded.warnings[0]
    valid = covered(phantom_ct, tmp_path / "marker", 0.3)
    expected = resample_like(phantom_ct, loaded.volume.geometry, nearest=False)[valid]
    difference = np.abs(loaded.volume.array[valid] - expected)
    assert float(difference.mean()) < 15.0
    # Measured: mean 10.6 HU, correlation 0.988 (linear interpolation of a noisy 2.5 mm grid).
    assert np.corrcoef(loaded.volume.array[valid], expected)[0, 1] > 0.98


@pytest.mark.skipif(DCM2NIIX is None, reason="dcm2niix (a test dependency) is not installed")
def test_dcm2niix_tilt_correction_agrees(phantom_ct: Volume, tmp_path: Path) -> None:
    write_tilted(phantom_ct, tmp_path / "tilt", tan_tilt=0.5)
    (tmp_path / "nii").mkdir()
    subprocess.run(
        [str(DCM2NIIX), "-z", "n", "-f", "ct", "-o", str(tmp_path / "nii"), str(tmp_path / "tilt")],
        check=True,
        capture_output=True,
    )
    corrected = sorted((tmp_path / "nii").glob("*Tilt*.nii"))
    assert corrected, "dcm2niix wrote no tilt-corrected image"
    theirs = sitk.ReadImage(str(corrected[0]), sitk.sitkFloat32)
    ours = read_ct(tmp_path / "tilt").volume
    reference = ours.geometry.to_sitk_reference(sitk.sitkFloat32)
    outside = -5000.0
    resampled = sitk.Resample(theirs, reference, sitk.Transform(), sitk.sitkLinear, outside)
    their_values = sitk.GetArrayFromImage(resampled)
    valid = covered(phantom_ct, tmp_path / "marker", 0.5) & (their_values > outside + 1)
    assert valid.mean() > 0.7
    np.testing.assert_allclose(ours.array[valid], their_values[valid], atol=1.0)


def test_rtstruct_on_a_tilted_series_references_each_image_in_its_plane(
    phantom_ct: Volume, tmp_path: Path
) -> None:
    write_tilted(phantom_ct, tmp_path / "tilt", tan_tilt=0.5)
    loaded = read_ct(tmp_path / "tilt")
    identity = loaded.identity
    normal = np.asarray(loaded.volume.geometry.slice_normal)
    # Each referenced image lies in the plane of its grid slice (same distance along n).
    grid_positions = np.asarray([s.position_lps_mm for s in identity.slices])
    k = np.arange(len(identity.slices))
    np.testing.assert_allclose(
        (grid_positions - grid_positions[0]) @ normal, k * SPACING_XYZ_MM[2], atol=1e-4
    )
    mask = np.zeros(loaded.volume.geometry.shape_zyx, dtype=bool)
    mask[5:20, 20:40, 20:40] = True
    write_rtstruct(
        [RoiSpec("box", mask, (255, 0, 0))],
        identity,
        loaded.volume.geometry,
        tmp_path / "rs.dcm",
        series_description="tilt test",
        structure_set_label="tilt",
    )
    structure_set = pydicom.dcmread(tmp_path / "rs.dcm")
    by_uid = {s.sop_instance_uid: k for k, s in enumerate(identity.slices)}
    originals = {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p
        for p in dicom_files(tmp_path / "tilt")
    }
    contours = structure_set.ROIContourSequence[0].ContourSequence
    assert len(contours) == 15
    for contour in contours:
        uid = str(contour.ContourImageSequence[0].ReferencedSOPInstanceUID)
        image = pydicom.dcmread(originals[uid], stop_before_pixels=True)
        points = np.asarray([float(v) for v in contour.ContourData]).reshape(-1, 3)
        # The points lie in the referenced (tilted) image's plane, on grid slice by_uid[uid].
        plane = float(np.asarray([float(v) for v in image.ImagePositionPatient]) @ normal)
        np.testing.assert_allclose(points @ normal, plane, atol=1e-3)
        assert 5 <= by_uid[uid] < 20


def test_shifted_images_that_no_tilt_explains_are_refused(
    phantom_ct: Volume, tmp_path: Path
) -> None:
    write_tilted(phantom_ct, tmp_path / "tilt", tan_tilt=0.5)
    headers = []
    for path in dicom_files(tmp_path / "tilt"):
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        if int(dataset.InstanceNumber) == 7:
            dataset.ImagePositionPatient[0] = float(dataset.ImagePositionPatient[0]) + 3.0
        headers.append(DicomHeader(path, dataset))
    with pytest.raises(GeometryError, match="not stacked along their normal nor along one"):
        sort_and_check_slices(headers)
