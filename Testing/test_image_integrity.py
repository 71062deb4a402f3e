"""Broken image files never become a contour: cut short, damaged, NaN voxels (which NIfTI
readers turn into 0), or a labelmap / probability map given as the CT. Each is refused by
``autoctv predict`` with its own one-line message, exit 2, and nothing written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from predict_support import make_tiny_model, tiny_phantom

from AutoCTVLib.cli.main import main as cli
from AutoCTVLib.errors import InputError, NotCTError
from AutoCTVLib.io.ct_reader import read_ct
from AutoCTVLib.io.file_integrity import scan_image_data
from AutoCTVLib.volume import Volume


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("integrity")
    phantom = tiny_phantom(seed=6)
    return {
        "root": root,
        "ct": phantom.ct,
        "ctv": phantom.ctv,
        "model": make_tiny_model(root / "model", phantom.ct),
    }


def write(volume: Volume, path: Path, compress: bool = True, dtype: type = np.float32) -> Path:
    image = sitk.GetImageFromArray(np.asarray(volume.array).astype(dtype))
    image.CopyInformation(volume.to_sitk())
    sitk.WriteImage(image, str(path), compress)
    return path


def cut(path: Path, share: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * share)])
    return path


def with_nan(volume: Volume, value: float) -> Volume:
    array = np.array(volume.array, dtype=np.float32)
    array[10, 30, 30] = value
    array[11, 31, 31] = value
    return volume.with_array(array)


def damaged(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    return path


Builder = Callable[[dict, Path], Path]


def ct_file(name: str, share: float = 1.0, **options: object) -> Builder:
    """The phantom CT written as ``name`` and cut to ``share`` of its bytes."""
    return lambda files, folder: cut(write(files["ct"], folder / name, **options), share)


def nan_file(name: str, value: float, **options: object) -> Builder:
    return lambda files, folder: write(with_nan(files["ct"], value), folder / name, **options)


def labelmap_file(files: dict, folder: Path) -> Path:
    return write(files["ctv"], folder / "ctv.nii.gz", dtype=np.uint8)


def probability_file(files: dict, folder: Path) -> Path:
    probability = np.asarray(files["ctv"].array, dtype=np.float32) * 0.6 + 0.2
    return write(files["ctv"].with_array(probability), folder / "probability.nii.gz")


def damaged_file(files: dict, folder: Path) -> Path:
    return damaged(write(files["ct"], folder / "ct.nii.gz"))


# Each case: (name, build(files, folder) -> input path, message part)
NAN = "2 NaN or infinite"
CASES: list[tuple[str, Builder, str]] = [
    ("nii.gz cut to 30 %", ct_file("ct.nii.gz", 0.3), "truncated"),
    ("nii.gz cut by 0.1 %", ct_file("ct.nii.gz", 0.999), "truncated"),
    ("plain nii cut", ct_file("ct.nii", 0.5, compress=False), "truncated"),
    ("int16 nii.gz cut", ct_file("ct.nii.gz", 0.6, dtype=np.int16), "truncated"),
    ("nrrd cut", ct_file("ct.nrrd", 0.5), "truncated"),
    ("mha cut", ct_file("ct.mha", 0.5), "truncated"),
    ("nii.gz damaged", damaged_file, "is damaged"),
    ("NaN in nii.gz", nan_file("ct.nii.gz", np.nan), NAN),
    ("inf in plain nii", nan_file("ct.nii", np.inf, compress=False), NAN),
    ("NaN in float64 nii.gz", nan_file("ct.nii.gz", np.nan, dtype=np.float64), NAN),
    ("NaN in nrrd", nan_file("ct.nrrd", np.nan), NAN),
    ("labelmap as CT", labelmap_file, "looks like a labelmap"),
    ("probability map as CT", probability_file, "between 0 and 1"),
]


@pytest.mark.parametrize(("name", "build", "message"), CASES, ids=[case[0] for case in CASES])
def test_broken_image_files_are_refused(
    phantom_files: dict, tmp_path: Path, capfd, name: str, build: Builder, message: str
) -> None:
    source = build(phantom_files, tmp_path)
    out = tmp_path / "out"
    arguments = ["predict", str(source), "-o", str(out), "--model", str(phantom_files["model"])]
    code = cli([*arguments, "--device", "cpu", "--progress", "none"])
    captured = capfd.readouterr()  # file-descriptor level: what ITK prints would show here
    error = captured.err.strip()
    assert code == 2, error
    assert error.startswith("autoctv: error:") and "\n" not in error, error
    assert message in error
    assert not out.exists()


def test_the_unbroken_files_are_read(phantom_files: dict, tmp_path: Path) -> None:
    """The same CT, complete and finite, reads identically from every format."""
    expected = np.asarray(phantom_files["ct"].array, dtype=np.float32)
    files = [
        ("a.nii.gz", True, "nifti"),
        ("b.nii", False, "nifti"),
        ("c.nrrd", True, "nrrd"),
        ("d.nrrd", False, "nrrd"),
        ("e.mha", True, "metaimage"),
        ("f.mha", False, "metaimage"),
    ]
    for name, compress, file_format in files:
        path = write(phantom_files["ct"], tmp_path / name, compress)
        assert scan_image_data(path, file_format).data_bytes == expected.nbytes, name
        np.testing.assert_array_equal(read_ct(path).volume.array, expected)


def test_nan_voxels_are_counted_in_the_raw_nifti_data(phantom_files: dict, tmp_path: Path) -> None:
    """SimpleITK's NIfTI reader returns 0 where the file holds NaN; the scan sees them."""
    path = write(with_nan(phantom_files["ct"], np.nan), tmp_path / "nan.nii.gz")
    assert not np.isnan(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))).any()
    assert scan_image_data(path, "nifti").non_finite == 2
    with pytest.raises(InputError, match="2 NaN or infinite"):
        read_ct(path)


def test_a_ct_without_air_but_with_many_values_is_still_read(
    phantom_files: dict, tmp_path: Path
) -> None:
    """Raw stored values (offset +1024, no negative value) are a CT: a warning, not a refusal;
    few whole values with air are a CT too (a noise-free phantom)."""
    shifted = phantom_files["ct"].with_array(np.asarray(phantom_files["ct"].array) + 1024)
    loaded = read_ct(write(shifted, tmp_path / "raw.nii.gz", dtype=np.int16))
    assert "no value below 0" in loaded.warnings[0]
    two_values = np.where(np.asarray(phantom_files["ctv"].array) > 0, 40.0, -1000.0)
    read_ct(write(phantom_files["ct"].with_array(two_values), tmp_path / "plain.nii.gz"))
    with pytest.raises(NotCTError):
        read_ct(write(phantom_files["ctv"], tmp_path / "ctv.nrrd", dtype=np.uint8))
