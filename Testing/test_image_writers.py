"""Labelmap and float-map files: exact grids on axial, flipped and oblique scans, safe writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import make_geometry

from AutoCTVLib.errors import GeometryError, InputError, OutputError
from AutoCTVLib.io.image_files import read_labelmap, write_float_map, write_labelmap
from AutoCTVLib.volume import Geometry

# NRRD keeps the grid as full-precision text; NIfTI-1 as 32-bit floats.
GRID_TOLERANCE = {".nrrd": 1e-12, ".nii.gz": 1e-5, ".nii": 1e-5}


def _labels(geometry: Geometry, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4, size=geometry.shape_zyx).astype(np.uint8)


def _assert_same_grid(image: sitk.Image, geometry: Geometry, atol: float) -> None:
    assert image.GetSize() == geometry.size_xyz
    np.testing.assert_allclose(image.GetSpacing(), geometry.spacing_xyz_mm, rtol=0, atol=atol)
    np.testing.assert_allclose(image.GetOrigin(), geometry.origin_xyz_mm, rtol=0, atol=atol * 100)
    np.testing.assert_allclose(image.GetDirection(), geometry.direction, rtol=0, atol=atol)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd"])
def test_labelmap_round_trip_keeps_grid_and_values(
    tmp_path: Path, grid_kind: str, suffix: str
) -> None:
    geometry = make_geometry(grid_kind)
    labels = _labels(geometry)
    path = write_labelmap(labels, geometry, tmp_path / f"ctv{suffix}")

    image = sitk.ReadImage(str(path))
    assert image.GetPixelID() == sitk.sitkUInt8
    _assert_same_grid(image, geometry, GRID_TOLERANCE[suffix])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), labels)
    assert [p.name for p in tmp_path.iterdir()] == [f"ctv{suffix}"]  # no temporary file left


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_float_map_round_trip_is_float32_and_exact(
    tmp_path: Path, grid_kind: str, suffix: str
) -> None:
    geometry = make_geometry(grid_kind)
    rng = np.random.default_rng(1)
    probability = rng.random(geometry.shape_zyx)  # float64 in, float32 stored
    path = write_float_map(probability, geometry, tmp_path / f"prob{suffix}")

    image = sitk.ReadImage(str(path))
    assert image.GetPixelID() == sitk.sitkFloat32
    _assert_same_grid(image, geometry, GRID_TOLERANCE[suffix])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), probability.astype(np.float32))


def test_compressed_formats_are_smaller_than_raw(tmp_path: Path) -> None:
    geometry = make_geometry("axial")
    labels = np.zeros(geometry.shape_zyx, dtype=np.uint8)
    labels[3:8, 10:30, 10:30] = 1
    raw = write_labelmap(labels, geometry, tmp_path / "raw.nii")
    gz = write_labelmap(labels, geometry, tmp_path / "gz.nii.gz")
    nrrd = write_labelmap(labels, geometry, tmp_path / "map.nrrd")
    assert gz.stat().st_size < raw.stat().st_size / 4
    assert nrrd.stat().st_size < raw.stat().st_size / 4
    assert "encoding: gzip" in nrrd.read_bytes()[:2000].decode("latin-1")


def test_bool_masks_become_zero_one_labelmaps(tmp_path: Path) -> None:
    geometry = make_geometry("oblique")
    mask = np.zeros(geometry.shape_zyx, dtype=bool)
    mask[2:5, 4:9, 6:11] = True
    volume = read_labelmap(write_labelmap(mask, geometry, tmp_path / "m.nrrd"), geometry)
    assert volume.array.dtype == np.uint8
    np.testing.assert_array_equal(volume.array, mask.astype(np.uint8))
    assert volume.geometry.is_close(geometry, atol_mm=1e-9, atol_dir=1e-12)


def test_nrrd_keeps_provenance_metadata(tmp_path: Path) -> None:
    geometry = make_geometry("axial")
    path = write_labelmap(
        _labels(geometry), geometry, tmp_path / "ctv.nrrd", metadata={"AutoCTV_model": "unet-1.0"}
    )
    image = sitk.ReadImage(str(path))
    assert image.GetMetaData("AutoCTV_model") == "unet-1.0"


def test_read_labelmap_checks_the_reference_grid(tmp_path: Path, grid_kind: str) -> None:
    geometry = make_geometry(grid_kind)
    labels = _labels(geometry)
    path = write_labelmap(labels, geometry, tmp_path / "ctv.nii.gz")

    volume = read_labelmap(path, reference=geometry)
    np.testing.assert_array_equal(volume.array, labels)
    assert volume.geometry.is_close(geometry)

    shifted = make_geometry(grid_kind, origin_xyz_mm=(-21.3, -15.7, 41.0))
    with pytest.raises(GeometryError, match="origin is 1 mm away"):
        read_labelmap(path, reference=shifted)
    other_shape = make_geometry(grid_kind, shape_zyx=(13, 40, 48))
    with pytest.raises(GeometryError, match="reference"):
        read_labelmap(path, reference=other_shape)


def test_read_labelmap_rejects_non_labelmaps(tmp_path: Path) -> None:
    geometry = make_geometry("axial")
    with pytest.raises(InputError, match="does not exist"):
        read_labelmap(tmp_path / "missing.nii.gz")
    fractional = write_float_map(
        np.full(geometry.shape_zyx, 0.25), geometry, tmp_path / "prob.nii.gz"
    )
    with pytest.raises(InputError, match="not a labelmap"):
        read_labelmap(fractional)
    negative = tmp_path / "negative.nii.gz"
    image = sitk.GetImageFromArray(np.full(geometry.shape_zyx, -1, dtype=np.int16))
    sitk.WriteImage(image, str(negative))
    with pytest.raises(InputError, match=r"0\.\.255"):
        read_labelmap(negative)
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot be read"):
        read_labelmap(garbage)


@pytest.mark.parametrize("name", ["ctv.png", "ctv.mha", "ctv", "ctv.seg.nrrd"])
def test_unsupported_suffix_is_an_output_error(tmp_path: Path, name: str) -> None:
    geometry = make_geometry("axial")
    with pytest.raises(OutputError):
        write_labelmap(_labels(geometry), geometry, tmp_path / name)
    with pytest.raises(OutputError):
        write_float_map(np.zeros(geometry.shape_zyx), geometry, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_kept_unless_overwrite(tmp_path: Path) -> None:
    geometry = make_geometry("axial")
    target = tmp_path / "ctv.nii.gz"
    target.write_bytes(b"a physician's contour")
    with pytest.raises(OutputError, match="already exists"):
        write_labelmap(_labels(geometry), geometry, target)
    assert target.read_bytes() == b"a physician's contour"
    write_labelmap(_labels(geometry), geometry, target, overwrite=True)
    np.testing.assert_array_equal(read_labelmap(target).array, _labels(geometry))


def test_wrong_shapes_and_values_are_refused(tmp_path: Path) -> None:
    geometry = make_geometry("axial")
    with pytest.raises(ValueError, match="does not match grid"):
        write_labelmap(np.zeros((3, 4, 5), np.uint8), geometry, tmp_path / "a.nii.gz")
    with pytest.raises(ValueError, match=r"0\.\.255"):
        write_labelmap(np.full(geometry.shape_zyx, 300), geometry, tmp_path / "b.nii.gz")
    with pytest.raises(ValueError, match="fractional"):
        write_labelmap(np.full(geometry.shape_zyx, 0.5), geometry, tmp_path / "c.nii.gz")
    assert list(tmp_path.iterdir()) == []
