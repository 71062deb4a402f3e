"""Every bad CT input gives its own error type and message (checked by a distinct substring)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import make_geometry
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    MRImageStorage,
    RTStructureSetStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from AutoCTVLib.compat import save_dicom_file
from AutoCTVLib.errors import (
    GeometryError,
    InputError,
    MemoryBudgetError,
    NotCTError,
    SeriesSelectionError,
)
from AutoCTVLib.io.ct_reader import read_ct
from AutoCTVLib.io.dicom_ct_write import write_ct_series
from AutoCTVLib.io.identity import SeriesIdentity
from AutoCTVLib.volume import Volume

SHAPE_ZYX = (6, 8, 9)
ORIGIN_Z_MM = 40.0
STEP_MM = 2.5


def small_ct(slices: int = SHAPE_ZYX[0]) -> Volume:
    geometry = make_geometry(
        "axial",
        shape_zyx=(slices, *SHAPE_ZYX[1:]),
        spacing_xyz_mm=(0.8, 0.9, STEP_MM),
        origin_xyz_mm=(-3.0, -4.0, ORIGIN_Z_MM),
    )
    ct_hu = np.arange(np.prod(geometry.shape_zyx), dtype=np.float32).reshape(geometry.shape_zyx)
    return Volume(ct_hu - 1000, geometry)


def write_series(folder: Path, slices: int = SHAPE_ZYX[0], **kwargs: Any) -> SeriesIdentity:
    folder.parent.mkdir(parents=True, exist_ok=True)
    return write_ct_series(small_ct(slices), folder, **kwargs)


def edit_slices(folder: Path, edit: Callable[[int, Dataset], bool | None]) -> None:
    """Apply ``edit(k, dataset)`` to every slice file (k = slice index); True deletes the file."""
    datasets = [(path, pydicom.dcmread(path)) for path in sorted(folder.iterdir())]
    datasets.sort(key=lambda item: float(item[1].ImagePositionPatient[2]))
    for k, (path, dataset) in enumerate(datasets):
        if edit(k, dataset):
            path.unlink()
        else:
            save_dicom_file(dataset, path)


def save_object(path: Path, sop_class_uid: str, modality: str, **attributes: Any) -> None:
    """A minimal DICOM Part 10 file of the given SOP class (header only)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = sop_class_uid
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.SeriesInstanceUID = generate_uid()
    dataset.Modality = modality
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_dicom_file(dataset, path)


def write_image(path: Path, image: sitk.Image) -> Path:
    sitk.WriteImage(image, str(path))
    return path


# --- bad inputs: each builder returns (path, read_ct keyword arguments) --------------------------


def mr_file(tmp: Path) -> tuple[Path, dict]:
    return Path(get_testdata_file("MR_small.dcm")), {}


def mr_series(tmp: Path) -> tuple[Path, dict]:
    write_series(tmp / "mr")

    def to_mr(k: int, dataset: Dataset) -> None:
        dataset.SOPClassUID = MRImageStorage
        dataset.file_meta.MediaStorageSOPClassUID = MRImageStorage
        dataset.Modality = "MR"

    edit_slices(tmp / "mr", to_mr)
    return tmp / "mr", {}


def rtdose(tmp: Path) -> tuple[Path, dict]:
    (tmp / "dose").mkdir()
    shutil.copy(get_testdata_file("rtdose.dcm"), tmp / "dose" / "dose.dcm")
    return tmp / "dose", {}


def secondary_capture(tmp: Path) -> tuple[Path, dict]:
    save_object(tmp / "sc" / "screenshot.dcm", SecondaryCaptureImageStorage, "OT")
    return tmp / "sc", {}


def rtstruct_only(tmp: Path) -> tuple[Path, dict]:
    save_object(tmp / "rs" / "rs.dcm", RTStructureSetStorage, "RTSTRUCT")
    return tmp / "rs", {}


def enhanced_ct(tmp: Path) -> tuple[Path, dict]:
    save_object(tmp / "enh" / "ct.dcm", "1.2.840.10008.5.1.4.1.1.2.1", "CT")
    return tmp / "enh", {}


def ct_small_file(tmp: Path) -> tuple[Path, dict]:
    return Path(get_testdata_file("CT_small.dcm")), {}


def two_slice_series(tmp: Path) -> tuple[Path, dict]:
    write_series(tmp / "ct", slices=2)
    return tmp / "ct", {}


def single_slice_nifti(tmp: Path) -> tuple[Path, dict]:
    image = sitk.GetImageFromArray(np.zeros((1, 8, 9), np.float32))
    return write_image(tmp / "one.nii.gz", image), {}


def empty_file(tmp: Path) -> tuple[Path, dict]:
    (tmp / "ct.nii.gz").write_bytes(b"")
    return tmp / "ct.nii.gz", {}


def empty_folder(tmp: Path) -> tuple[Path, dict]:
    (tmp / "nothing").mkdir()
    (tmp / "nothing" / "notes.txt").write_text("no images here")
    return tmp / "nothing", {}


def garbage_nrrd(tmp: Path) -> tuple[Path, dict]:
    (tmp / "scan.nrrd").write_bytes(bytes(range(256)) * 4)
    return tmp / "scan.nrrd", {}


def garbage_dcm(tmp: Path) -> tuple[Path, dict]:
    (tmp / "slice.dcm").write_bytes(b"\x00\x01 not dicom" * 50)
    return tmp / "slice.dcm", {}


def unknown_suffix(tmp: Path) -> tuple[Path, dict]:
    (tmp / "scan.png").write_bytes(b"\x89PNG")
    return tmp / "scan.png", {}


def missing_path(tmp: Path) -> tuple[Path, dict]:
    return tmp / "no-such-folder", {}


def image_2d(tmp: Path) -> tuple[Path, dict]:
    return write_image(tmp / "slice.nrrd", sitk.GetImageFromArray(np.zeros((8, 9), np.int16))), {}


def image_4d(tmp: Path) -> tuple[Path, dict]:
    frames = [sitk.GetImageFromArray(np.zeros((3, 8, 9), np.float32)) for _ in range(2)]
    return write_image(tmp / "dynamic.nii.gz", sitk.JoinSeries(frames)), {}


def vector_image(tmp: Path) -> tuple[Path, dict]:
    image = sitk.GetImageFromArray(np.zeros((3, 8, 9, 3), np.float32), isVector=True)
    return write_image(tmp / "rgb.mha", image), {}


def nan_image(tmp: Path) -> tuple[Path, dict]:
    ct_hu = np.zeros((3, 8, 9), np.float32)
    ct_hu[1, 2, 3] = np.nan
    return write_image(tmp / "nan.nrrd", sitk.GetImageFromArray(ct_hu)), {}


def file_over_budget(tmp: Path) -> tuple[Path, dict]:
    path = write_image(tmp / "big.nrrd", sitk.GetImageFromArray(np.zeros((3, 8, 9), np.float32)))
    return path, {"memory_budget_bytes": 3 * 8 * 9 * 4 - 1}


def dicom_over_budget(tmp: Path) -> tuple[Path, dict]:
    write_series(tmp / "ct")
    return tmp / "ct", {"memory_budget_bytes": 1000}


def several_series(tmp: Path) -> tuple[Path, dict]:
    write_series(tmp / "both" / "a", series_description="plan CT")
    write_series(tmp / "both" / "b", slices=4, series_description="rescan")
    return tmp / "both", {}


def unknown_series_uid(tmp: Path) -> tuple[Path, dict]:
    write_series(tmp / "ct", series_description="plan CT")
    return tmp / "ct", {"series_uid": "1.2.3.4"}


def non_ct_series_uid(tmp: Path) -> tuple[Path, dict]:
    write_series(tmp / "mixed" / "ct")
    save_object(tmp / "mixed" / "mr.dcm", MRImageStorage, "MR", SeriesInstanceUID="1.2.3.99")
    return tmp / "mixed", {"series_uid": "1.2.3.99"}


def missing_slice(tmp: Path) -> tuple[Path, dict]:
    write_series(tmp / "ct")
    edit_slices(tmp / "ct", lambda k, dataset: k == 3)
    return tmp / "ct", {}


def non_uniform_spacing(tmp: Path) -> tuple[Path, dict]:
    write_series(tmp / "ct")

    def shift(k: int, dataset: Dataset) -> None:
        if k == 3:
            dataset.ImagePositionPatient[2] = float(dataset.ImagePositionPatient[2]) + 0.6

    edit_slices(tmp / "ct", shift)
    return tmp / "ct", {}


def gantry_tilt(tmp: Path) -> tuple[Path, dict]:
    write_series(tmp / "ct")

    def tilt(k: int, dataset: Dataset) -> None:
        y_mm = float(dataset.ImagePositionPatient[1]) + k * STEP_MM * np.tan(np.radians(15))
        dataset.ImagePositionPatient[1] = round(y_mm, 6)

    edit_slices(tmp / "ct", tilt)
    return tmp / "ct", {}


def mismatched_orientation(tmp: Path) -> tuple[Path, dict]:
    write_series(tmp / "ct")

    def rotate(k: int, dataset: Dataset) -> None:
        if k == 2:
            c, s = np.cos(np.radians(5)), np.sin(np.radians(5))
            dataset.ImageOrientationPatient = [c, s, 0, -s, c, 0]

    edit_slices(tmp / "ct", rotate)
    return tmp / "ct", {}


def non_orthogonal_orientation(tmp: Path) -> tuple[Path, dict]:
    write_series(tmp / "ct")
    edit_slices(
        tmp / "ct",
        lambda k, dataset: setattr(dataset, "ImageOrientationPatient", [1, 0, 0, 0.2, 1, 0]),
    )
    return tmp / "ct", {}


def duplicate_position(tmp: Path) -> tuple[Path, dict]:
    write_series(tmp / "ct")

    def duplicate(k: int, dataset: Dataset) -> None:
        if k == 2:
            dataset.ImagePositionPatient[2] = ORIGIN_Z_MM + STEP_MM

    edit_slices(tmp / "ct", duplicate)
    return tmp / "ct", {}


def mismatched_pixel_spacing(tmp: Path) -> tuple[Path, dict]:
    write_series(tmp / "ct")

    def respace(k: int, dataset: Dataset) -> None:
        if k == 4:
            dataset.PixelSpacing = [0.95, 0.8]

    edit_slices(tmp / "ct", respace)
    return tmp / "ct", {}


def mismatched_size(tmp: Path) -> tuple[Path, dict]:
    write_series(tmp / "ct")

    def crop(k: int, dataset: Dataset) -> None:
        if k == 1:
            dataset.Rows = SHAPE_ZYX[1] - 1
            dataset.PixelData = np.zeros((SHAPE_ZYX[1] - 1, SHAPE_ZYX[2]), "<i2").tobytes()

    edit_slices(tmp / "ct", crop)
    return tmp / "ct", {}


def missing_position(tmp: Path) -> tuple[Path, dict]:
    write_series(tmp / "ct")
    edit_slices(tmp / "ct", lambda k, dataset: k == 5 and delattr(dataset, "ImagePositionPatient"))
    return tmp / "ct", {}


def mixed_frames_of_reference(tmp: Path) -> tuple[Path, dict]:
    write_series(tmp / "ct")
    edit_slices(tmp / "ct", lambda k, dataset: setattr(dataset, "FrameOfReferenceUID", f"1.2.{k}"))
    return tmp / "ct", {}


def undecodable_pixels(tmp: Path) -> tuple[Path, dict]:
    write_series(tmp / "ct")
    edit_slices(tmp / "ct", lambda k, dataset: k == 2 and setattr(dataset, "PixelData", b"\0" * 6))
    return tmp / "ct", {}


def localizers_only(tmp: Path) -> tuple[Path, dict]:
    write_series(tmp / "scout")
    edit_slices(tmp / "scout", lambda k, dataset: setattr(dataset, "ImageType", ["LOCALIZER"]))
    return tmp / "scout", {}


def damaged_dicom_only(tmp: Path) -> tuple[Path, dict]:
    (tmp / "damaged").mkdir()
    (tmp / "damaged" / "a.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 7)
    return tmp / "damaged", {}


def series_uid_for_file(tmp: Path) -> tuple[Path, dict]:
    path = write_image(tmp / "ct.nrrd", sitk.GetImageFromArray(np.zeros((3, 8, 9), np.int16)))
    return path, {"series_uid": "1.2.3"}


@dataclass(frozen=True)
class BadInput:
    build: Callable[[Path], tuple[Path, dict]]
    error: type[Exception]
    key: str  # a substring only this kind of failure's message contains


BAD_INPUTS = [
    BadInput(mr_file, NotCTError, "MR_small.dcm is not a CT image: it is MR Image Storage"),
    BadInput(mr_series, NotCTError, "MR Image Storage (modality MR, 1 series, 6 file(s))"),
    BadInput(rtdose, NotCTError, "RT Dose Storage"),
    BadInput(secondary_capture, NotCTError, "Secondary Capture Image Storage"),
    BadInput(rtstruct_only, NotCTError, "RT Structure Set Storage"),
    BadInput(enhanced_ct, InputError, "Enhanced CT Image Storage (multi-frame), which is not"),
    BadInput(
        ct_small_file, GeometryError, "has 1 slice(s), at least 3 are needed; give the folder"
    ),
    BadInput(two_slice_series, GeometryError, "the CT series has 2 slice(s), at least 3"),
    BadInput(single_slice_nifti, GeometryError, "one.nii.gz has 1 slice(s), at least 3"),
    BadInput(empty_file, InputError, "is empty (0 bytes)"),
    BadInput(empty_folder, InputError, "no DICOM files found"),
    BadInput(garbage_nrrd, InputError, "scan.nrrd cannot be read as a NRRD image"),
    BadInput(garbage_dcm, InputError, "slice.dcm is not a DICOM file"),
    BadInput(unknown_suffix, InputError, "unsupported file type"),
    BadInput(missing_path, InputError, "no-such-folder does not exist"),
    BadInput(image_2d, GeometryError, "is a 2D image"),
    BadInput(image_4d, GeometryError, "is a 4D image"),
    BadInput(vector_image, GeometryError, "holds 3 values per voxel"),
    BadInput(nan_image, InputError, "contains 1 NaN or infinite voxel value"),
    BadInput(file_over_budget, MemoryBudgetError, "(9×8×3 voxels as float32), more than"),
    BadInput(dicom_over_budget, MemoryBudgetError, "(9×8×6 voxels as float32), more than"),
    BadInput(several_series, SeriesSelectionError, "holds 2 CT series; choose one"),
    BadInput(unknown_series_uid, SeriesSelectionError, "series 1.2.3.4 was not found"),
    BadInput(non_ct_series_uid, NotCTError, "series 1.2.3.99 is not a CT image series"),
    BadInput(missing_slice, GeometryError, "missing slices"),
    BadInput(non_uniform_spacing, GeometryError, "slice spacing is not uniform"),
    BadInput(gantry_tilt, GeometryError, "gantry tilt of about 15.0°"),
    BadInput(mismatched_orientation, GeometryError, "do not share one orientation"),
    BadInput(non_orthogonal_orientation, GeometryError, "not two perpendicular unit vectors"),
    BadInput(duplicate_position, GeometryError, "lie at the same position"),
    BadInput(mismatched_pixel_spacing, GeometryError, "slices differ in pixel spacing"),
    BadInput(mismatched_size, GeometryError, "slices differ in size"),
    BadInput(missing_position, GeometryError, "lacks ImagePositionPatient"),
    BadInput(mixed_frames_of_reference, InputError, "different frames of reference"),
    BadInput(undecodable_pixels, InputError, "cannot read the pixel data"),
    BadInput(localizers_only, GeometryError, "only CT localizer (scout) images"),
    BadInput(damaged_dicom_only, InputError, "could be read; they may be truncated"),
    BadInput(series_uid_for_file, InputError, "can only be chosen in a DICOM folder"),
]


def message_of(bad: BadInput, tmp: Path) -> str:
    path, kwargs = bad.build(tmp)
    with pytest.raises(bad.error) as caught:
        read_ct(path, **kwargs)
    return str(caught.value)


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=lambda bad: bad.build.__name__)
def test_bad_input_raises_its_own_error(bad: BadInput, tmp_path: Path) -> None:
    message = message_of(bad, tmp_path)
    assert bad.key in message
    assert "\n" not in message


def test_every_failure_has_a_distinct_message(tmp_path: Path) -> None:
    messages = {}
    for index, bad in enumerate(BAD_INPUTS):
        (tmp_path / str(index)).mkdir()
        messages[bad.key] = message_of(bad, tmp_path / str(index))
    for key, message in messages.items():
        others = [other for other in messages if other != key and other in message]
        assert not others, f"message for {key!r} also matches {others}: {message}"


def test_not_a_ct_is_said_plainly_for_files_and_folders(tmp_path: Path) -> None:
    for build in (mr_file, mr_series, rtdose, secondary_capture, rtstruct_only):
        (tmp_path / build.__name__).mkdir()
        assert "not a CT" in message_of(BadInput(build, NotCTError, ""), tmp_path / build.__name__)


def test_ct_small_is_rejected_as_too_few_slices() -> None:
    with pytest.raises(GeometryError, match="too few slices"):
        read_ct(get_testdata_file("CT_small.dcm"))


def test_several_series_are_listed_and_one_can_be_chosen(tmp_path: Path) -> None:
    plan = write_series(tmp_path / "a", series_description="plan CT")
    rescan = write_series(tmp_path / "b", slices=4, series_description="rescan")
    with pytest.raises(SeriesSelectionError) as caught:
        read_ct(tmp_path)
    message = str(caught.value)
    assert f'{plan.series_instance_uid} ("plan CT", 6 slices)' in message
    assert f'{rescan.series_instance_uid} ("rescan", 4 slices)' in message
    chosen = read_ct(tmp_path, series_uid=rescan.series_instance_uid)
    assert chosen.volume.geometry.shape_zyx == (4, *SHAPE_ZYX[1:])
    assert chosen.identity.series_instance_uid == rescan.series_instance_uid
    with pytest.raises(SeriesSelectionError) as unknown:
        read_ct(tmp_path, series_uid="1.2.3.4")
    assert plan.series_instance_uid in str(unknown.value)
    assert rescan.series_instance_uid in str(unknown.value)


def test_missing_slice_message_names_the_missing_position(tmp_path: Path) -> None:
    path, _ = missing_slice(tmp_path)
    with pytest.raises(GeometryError) as caught:
        read_ct(path)
    assert f"1 slice(s) of its 2.5 mm spacing should be, at {ORIGIN_Z_MM + 3 * STEP_MM:.2f}" in str(
        caught.value
    )


def test_two_missing_slices_in_one_gap_are_both_named(tmp_path: Path) -> None:
    write_series(tmp_path / "ct", slices=8)
    edit_slices(tmp_path / "ct", lambda k, dataset: k in (3, 4))
    with pytest.raises(GeometryError, match=r"2 slice\(s\) .* at 47.50, 50.00 mm"):
        read_ct(tmp_path / "ct")


def test_in_plane_shift_of_one_slice_is_rejected_like_a_tilt(tmp_path: Path) -> None:
    write_series(tmp_path / "ct")

    def shift(k: int, dataset: Dataset) -> None:
        if k == 4:
            dataset.ImagePositionPatient[0] = float(dataset.ImagePositionPatient[0]) + 0.5

    edit_slices(tmp_path / "ct", shift)
    with pytest.raises(GeometryError, match="not stacked along their normal"):
        read_ct(tmp_path / "ct")


def test_memory_budget_is_checked_before_pixel_data_is_read(tmp_path: Path) -> None:
    """A series with undecodable pixels fails on the budget first, so no pixel was read."""
    path, _ = undecodable_pixels(tmp_path)
    with pytest.raises(MemoryBudgetError, match="memory budget"):
        read_ct(path, memory_budget_bytes=1000)
    with pytest.raises(InputError, match="cannot read the pixel data"):
        read_ct(path)
    exact = SHAPE_ZYX[0] * SHAPE_ZYX[1] * SHAPE_ZYX[2] * 4
    write_series(tmp_path / "ok")
    assert read_ct(tmp_path / "ok", memory_budget_bytes=exact).volume.array.nbytes == exact
    with pytest.raises(MemoryBudgetError):
        read_ct(tmp_path / "ok", memory_budget_bytes=exact - 1)


def test_tolerated_oddities_give_warnings(tmp_path: Path) -> None:
    """Copies of the same image, localizers and unreadable DICOM files are skipped with notes."""
    identity = write_series(tmp_path / "ct")
    first = sorted((tmp_path / "ct").iterdir())[0]
    shutil.copy(first, tmp_path / "ct" / "copy-of-first")
    localizer = pydicom.dcmread(first)
    localizer.SOPInstanceUID = localizer.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    localizer.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    localizer.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    save_dicom_file(localizer, tmp_path / "ct" / "scout")
    (tmp_path / "ct" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 7)
    loaded = read_ct(tmp_path / "ct")
    assert loaded.identity.slices == identity.slices
    joined = " | ".join(loaded.warnings)
    assert "1 duplicate copies" in joined
    assert "1 CT localizer" in joined
    assert "1 unreadable DICOM file(s): broken.dcm" in joined


def test_slope_and_intercept_are_applied_per_slice(tmp_path: Path) -> None:
    identity = write_series(tmp_path / "ct")
    stored_ct = read_ct(tmp_path / "ct").volume.array

    def rescale(k: int, dataset: Dataset) -> None:
        dataset.RescaleSlope = 2 if k % 2 else 1
        dataset.RescaleIntercept = -1024 + k

    edit_slices(tmp_path / "ct", rescale)
    loaded = read_ct(tmp_path / "ct")
    assert loaded.identity.slices == identity.slices
    for k in range(SHAPE_ZYX[0]):
        expected = stored_ct[k] * (2 if k % 2 else 1) + (-1024 + k)
        np.testing.assert_array_equal(loaded.volume.array[k], expected)


def test_not_a_ct_in_a_folder_lists_everything_found(tmp_path: Path) -> None:
    secondary_capture(tmp_path)
    rtstruct_only(tmp_path)
    shutil.move(str(tmp_path / "rs" / "rs.dcm"), tmp_path / "sc" / "rs.dcm")
    message = message_of(BadInput(lambda tmp: (tmp / "sc", {}), NotCTError, ""), tmp_path)
    assert "RT Structure Set Storage (modality RTSTRUCT" in message
    assert "Secondary Capture Image Storage (modality OT" in message
