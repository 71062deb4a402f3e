"""``autoctv dataset``: case discovery, per-case failures, the HDF5 schema, QC and the CLI."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import make_geometry

from AutoCTVLib.cli import main as cli_main
from AutoCTVLib.dataset import (
    build_dataset,
    case_attrs,
    dataset_attrs,
    iter_cases,
    list_cases,
    open_dataset,
    read_case,
)
from AutoCTVLib.dataset.hdf5 import FORMAT_VERSION, hu_to_int16
from AutoCTVLib.dataset.qc import case_qc, label_warnings
from AutoCTVLib.errors import CancelledError, InputError, OutputError
from AutoCTVLib.io.identity import sha256_of_file
from AutoCTVLib.volume import Geometry, Volume

SHAPE_ZYX = (6, 20, 24)
SPACING_XYZ_MM = (2.0, 2.0, 3.0)  # 12 mm³ voxels: the test CTVs are a few mL


def _geometry(grid_kind: str, **kwargs: object) -> Geometry:
    return make_geometry(grid_kind, shape_zyx=SHAPE_ZYX, spacing_xyz_mm=SPACING_XYZ_MM, **kwargs)


def _write(array: np.ndarray, geometry: Geometry, path: Path) -> Path:
    sitk.WriteImage(Volume(array, geometry).to_sitk(), str(path), useCompression=True)
    return path


def _ct_hu(geometry: Geometry, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ct_hu = np.full(geometry.shape_zyx, -1000.0, dtype=np.float32)
    ct_hu[:, 3:17, 3:21] = rng.normal(40.0, 30.0, size=(geometry.shape_zyx[0], 14, 18))
    return ct_hu.astype(np.float32)


def _ctv(geometry: Geometry, seed: int) -> np.ndarray:
    ctv = np.zeros(geometry.shape_zyx, dtype=np.uint8)
    ctv[1 + seed % 2 : 5, 6:14, 7 + seed : 17] = 1
    return ctv


def make_nifti_case(
    root: Path,
    name: str,
    grid_kind: str,
    seed: int,
    *,
    ct_name: str = "ct.nii.gz",
    label_name: str | None = "ctv.nii.gz",
    extra: dict[str, np.ndarray] | None = None,
) -> dict[str, object]:
    """A case folder with a CT and its CTV labelmap; returns what was written."""
    folder = root / name
    folder.mkdir(parents=True)
    geometry = _geometry(grid_kind)
    ct_hu, ctv = _ct_hu(geometry, seed), _ctv(geometry, seed)
    ct_path = _write(ct_hu, geometry, folder / ct_name)
    if label_name is not None:
        _write(ctv, geometry, folder / label_name)
    for extra_name, mask in (extra or {}).items():
        _write(mask, geometry, folder / f"{extra_name}.nii.gz")
    return {"geometry": geometry, "ct_hu": ct_hu, "ctv": ctv, "ct_path": ct_path}


@pytest.fixture
def four_cases(tmp_path: Path) -> tuple[Path, dict[str, dict[str, object]]]:
    """Three good NIfTI-pair cases (axial, flipped, oblique) and one without a CTV label."""
    root = tmp_path / "cases"
    written = {
        "case_a": make_nifti_case(root, "case_a", "axial", 0),
        "case_b": make_nifti_case(root, "case_b", "flipped", 1, ct_name="image.nii.gz"),
        "case_c": make_nifti_case(root, "case_c", "oblique", 2, label_name="label.nii.gz"),
    }
    make_nifti_case(root, "case_d_broken", "axial", 3, label_name=None)
    return root, written


def test_build_writes_good_cases_and_reports_the_broken_one(
    tmp_path: Path, four_cases: tuple[Path, dict[str, dict[str, object]]]
) -> None:
    root, written = four_cases
    output = tmp_path / "train.h5"
    calls: list[tuple[int, int, str]] = []
    report = build_dataset(root, output, progress=lambda *args: calls.append(args))

    assert [c.case_id for c in report.succeeded] == ["case_a", "case_b", "case_c"]
    (broken,) = report.failed
    assert broken.case_id == "case_d_broken" and "CTV" in broken.reason
    assert calls == [(i, 4, f) for i, f in enumerate([*sorted(written), "case_d_broken"], 1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cases", "train.h5"]

    assert list_cases(output) == ["case_a", "case_b", "case_c"]
    root_attrs = dataset_attrs(output)
    assert root_attrs["format"] == "autoctv-dataset"
    assert root_attrs["format_version"] == FORMAT_VERSION
    assert root_attrs["label_names"] == ["CTV"]
    assert root_attrs["roi_pattern"] == "CTV"
    assert list(root_attrs["skipped_cases"]) == ["case_d_broken"]

    for case_id, expected in written.items():
        ct, labels, attrs = read_case(output, case_id)
        geometry = expected["geometry"]
        assert ct.array.dtype == np.float32
        np.testing.assert_array_equal(ct.array, np.rint(expected["ct_hu"]))
        assert ct.geometry.is_close(geometry)  # NIfTI input: float32 precision
        assert list(labels) == ["CTV"]
        assert labels["CTV"].array.dtype == np.uint8
        np.testing.assert_array_equal(labels["CTV"].array, expected["ctv"])
        assert labels["CTV"].geometry == ct.geometry
        assert attrs["source_kind"] == "nifti"
        assert attrs["source"] == str(expected["ct_path"])
        assert attrs["identity"]["sha256"] == sha256_of_file(expected["ct_path"])
        assert attrs["roi_names"]["CTV"] in ("ctv.nii.gz", "label.nii.gz")
        ml = float(expected["ctv"].sum()) * geometry.voxel_volume_ml
        assert attrs["qc"]["volume_ml"]["CTV"] == pytest.approx(ml, abs=1e-3)
        assert attrs["qc"]["slice_count"] == SHAPE_ZYX[0]
        assert attrs["qc"]["shape_zyx"] == list(SHAPE_ZYX)
        hu = np.rint(expected["ct_hu"])
        assert attrs["qc"]["hu_range"] == [hu.min(), hu.max()]


def test_stored_layout_matches_the_schema(
    tmp_path: Path, four_cases: tuple[Path, dict[str, dict[str, object]]]
) -> None:
    root, _ = four_cases
    output = tmp_path / "train.h5"
    build_dataset(root, output)
    with h5py.File(output, "r") as h5file:
        ct = h5file["cases/case_c/ct"]
        label = h5file["cases/case_c/labels/CTV"]
        assert ct.dtype == np.int16 and ct.compression == "gzip" and ct.chunks is not None
        assert label.dtype == np.uint8 and label.compression == "gzip"
        attrs = h5file["cases/case_c"].attrs
        assert attrs["direction"].shape == (9,)
        np.testing.assert_allclose(attrs["direction"], _geometry("oblique").direction, atol=1e-6)
        assert json.loads(attrs["qc"])["warnings"] == []


def test_iter_cases_and_open_handle(
    tmp_path: Path, four_cases: tuple[Path, dict[str, dict[str, object]]]
) -> None:
    root, written = four_cases
    output = tmp_path / "train.h5"
    build_dataset(root, output)
    with open_dataset(output) as dataset:
        ids = [case_id for case_id, _, _, _ in iter_cases(dataset)]
        assert ids == sorted(written)
        assert case_attrs(dataset, "case_b")["source_kind"] == "nifti"
        with pytest.raises(InputError, match="no case 'nope'"):
            read_case(dataset, "nope")


def test_extra_rois_from_nifti_files(tmp_path: Path) -> None:
    root = tmp_path / "cases"
    geometry = _geometry("axial")
    bladder = np.zeros(geometry.shape_zyx, dtype=np.uint8)
    bladder[2:4, 8:12, 3:6] = 1
    make_nifti_case(root, "with_bladder", "axial", 0, extra={"bladder": bladder})
    make_nifti_case(root, "without_bladder", "axial", 1)
    output = tmp_path / "train.h5"
    report = build_dataset(root, output, extra_rois=["Bladder"])

    assert [c.case_id for c in report.succeeded] == ["with_bladder"]
    assert "Bladder" in report.failed[0].reason
    _, labels, attrs = read_case(output, "with_bladder")
    assert list(labels) == ["CTV", "Bladder"]
    np.testing.assert_array_equal(labels["Bladder"].array, bladder)
    assert attrs["roi_names"] == {"CTV": "ctv.nii.gz", "Bladder": "bladder.nii.gz"}
    assert dataset_attrs(output)["label_names"] == ["CTV", "Bladder"]


def test_label_on_another_grid_fails_only_that_case(tmp_path: Path) -> None:
    root = tmp_path / "cases"
    make_nifti_case(root, "good", "axial", 0)
    bad = make_nifti_case(root, "shifted_label", "axial", 1)
    shifted = _geometry("axial", origin_xyz_mm=(0.0, 0.0, 0.0))
    _write(bad["ctv"], shifted, root / "shifted_label" / "ctv.nii.gz")
    report = build_dataset(root, tmp_path / "train.h5")
    assert [c.case_id for c in report.succeeded] == ["good"]
    assert "grid" in report.failed[0].reason


def test_no_usable_case_raises_and_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "cases"
    make_nifti_case(root, "no_label", "axial", 0, label_name=None)
    (root / "empty_folder").mkdir()
    output = tmp_path / "train.h5"
    with pytest.raises(InputError, match="no usable case"):
        build_dataset(root, output)
    assert not output.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cases"]


def test_missing_or_empty_input_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        build_dataset(tmp_path / "nowhere", tmp_path / "train.h5")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "ct.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match="no case sub-folders"):
        build_dataset(tmp_path / "flat", tmp_path / "train.h5")


def test_existing_output_needs_overwrite(
    tmp_path: Path, four_cases: tuple[Path, dict[str, dict[str, object]]]
) -> None:
    root, _ = four_cases
    output = tmp_path / "train.h5"
    output.write_bytes(b"previous dataset")
    with pytest.raises(OutputError, match="already exists"):
        build_dataset(root, output)
    assert output.read_bytes() == b"previous dataset"
    build_dataset(root, output, overwrite=True)
    assert list_cases(output) == ["case_a", "case_b", "case_c"]


def test_cancel_leaves_no_file(
    tmp_path: Path, four_cases: tuple[Path, dict[str, dict[str, object]]]
) -> None:
    root, _ = four_cases
    cancel = threading.Event()
    output = tmp_path / "train.h5"

    def stop_after_first(done: int, total: int, case_id: str) -> None:
        cancel.set()

    with pytest.raises(CancelledError):
        build_dataset(root, output, progress=stop_after_first, cancel=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cases"]


def test_open_dataset_rejects_foreign_and_newer_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        open_dataset(tmp_path / "missing.h5")
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(InputError, match="not an HDF5 file"):
        open_dataset(text)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as h5file:
        h5file.create_dataset("images", data=np.zeros(3))
    with pytest.raises(InputError, match="not an AutoCTV dataset"):
        open_dataset(foreign)
    newer = tmp_path / "newer.h5"
    with h5py.File(newer, "w") as h5file:
        h5file.attrs["format"] = "autoctv-dataset"
        h5file.attrs["format_version"] = FORMAT_VERSION + 1
        h5file.create_group("cases")
    with pytest.raises(InputError, match="newer"):
        open_dataset(newer)


def test_hu_to_int16_rounds_clips_and_warns() -> None:
    values = np.array([-1024.4, 0.5, 12.6, 40000.0, -40000.0], dtype=np.float32)
    stored, warnings = hu_to_int16(values)
    assert stored.dtype == np.int16
    np.testing.assert_array_equal(stored, [-1024, 0, 13, 32767, -32768])
    assert len(warnings) == 1 and "2 CT voxel(s)" in warnings[0]
    _, no_warnings = hu_to_int16(np.array([-1000.5, 3.2, 99.0]))
    assert no_warnings == []
    with pytest.raises(InputError, match="not finite"):
        hu_to_int16(np.array([1.0, np.nan]))


def test_qc_flags_empty_tiny_and_border_labels() -> None:
    geometry = make_geometry("axial", shape_zyx=SHAPE_ZYX)  # 0.9×0.9×2.5 mm voxels
    empty = np.zeros(SHAPE_ZYX, dtype=np.uint8)
    assert label_warnings("CTV", empty, geometry) == ["CTV is empty"]
    tiny = empty.copy()
    tiny[2, 5, 5] = 1
    (warning,) = label_warnings("CTV", tiny, geometry)
    assert "tiny" in warning
    touching = empty.copy()
    touching[0:6, 5:15, 0:10] = 1  # whole z extent and the x = 0 edge; 50 mL
    (warning,) = label_warnings("CTV", touching, geometry)
    assert "first slice, last slice, image edge" in warning
    inside = empty.copy()
    inside[1:5, 5:15, 5:15] = 1
    assert label_warnings("CTV", inside, geometry, tiny_ml=0.5) == []

    qc = case_qc(np.zeros(SHAPE_ZYX, np.int16), {"CTV": inside}, geometry, ["reader note"], 0.5)
    assert qc["volume_ml"]["CTV"] == pytest.approx(400 * geometry.voxel_volume_ml)
    assert qc["label_slice_count"] == {"CTV": 4}
    assert qc["warnings"] == ["reader note"]


def test_label_values_other_than_one_give_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "cases"
    written = make_nifti_case(root, "multi", "axial", 0)
    _write(written["ctv"] * 2, written["geometry"], root / "multi" / "ctv.nii.gz")
    report = build_dataset(root, tmp_path / "train.h5")
    (case,) = report.succeeded
    assert any("other than 0/1" in w for w in case.warnings)
    _, labels, _ = read_case(tmp_path / "train.h5", "multi")
    np.testing.assert_array_equal(labels["CTV"].array, written["ctv"])


# --- command line -------------------------------------------------------------------------


def test_cli_build_prints_qc_table_and_exits_zero(
    tmp_path: Path,
    four_cases: tuple[Path, dict[str, dict[str, object]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, _ = four_cases
    output = tmp_path / "train.h5"
    assert cli_main.main(["dataset", "build", str(root), "-o", str(output)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0]
    for column in ("case", "source", "shape", "spacing", "ROI matched", "volume mL", "slices"):
        assert column in header
    rows = {line.split()[0]: line for line in lines[2:] if line.startswith("case_")}
    assert set(rows) == {"case_a", "case_b", "case_c", "case_d_broken"}
    assert "6×20×24" in rows["case_a"] and "ok" in rows["case_a"]
    assert "label.nii.gz" in rows["case_c"]
    assert "FAILED" in rows["case_d_broken"] and "CTV" in rows["case_d_broken"]
    # Columns are fixed-width: the shape column starts at the same place on every row.
    assert len({line.index("×") for line in rows.values() if "×" in line}) == 1
    assert lines[-1].startswith("3 of 4 case(s) written to")

    assert cli_main.main(["dataset", "info", str(output)]) == 0
    info = capsys.readouterr().out
    assert "format 1" in info and "case_b" in info and "case_d_broken" in info
    assert "3 case(s); 1 skipped" in info


def test_cli_missing_input_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main.main(["dataset", "build", str(tmp_path / "nowhere"), "-o", "x.h5"])
    assert code != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err


def test_cli_no_usable_case_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "cases"
    make_nifti_case(root, "no_label", "axial", 0, label_name=None)
    output = tmp_path / "train.h5"
    assert cli_main.main(["dataset", "build", str(root), "-o", str(output)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no usable case" in err
    assert not output.exists()


def test_cli_refuses_to_overwrite_without_flag(
    tmp_path: Path,
    four_cases: tuple[Path, dict[str, dict[str, object]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, _ = four_cases
    output = tmp_path / "train.h5"
    output.write_bytes(b"keep me")
    assert cli_main.main(["dataset", "build", str(root), "-o", str(output)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already exists" in err
    assert output.read_bytes() == b"keep me"
    argv = ["dataset", "build", str(root), "-o", str(output), "--overwrite"]
    assert cli_main.main(argv) == 0
    assert list_cases(output) == ["case_a", "case_b", "case_c"]


def test_cli_info_on_a_foreign_file_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as h5file:
        h5file.create_dataset("x", data=[1])
    assert cli_main.main(["dataset", "info", str(foreign)]) != 0
    assert "not an AutoCTV dataset" in capsys.readouterr().err


# --- DICOM-RT cases (CT series + RTSTRUCT written by the library's own DICOM writers) -------


def make_dicom_case(
    root: Path,
    name: str,
    grid_kind: str,
    seed: int,
    *,
    roi_names: tuple[str, ...] = ("CTV_45Gy", "Bladder"),
    second_series: bool = False,
    reference_elsewhere: bool = False,
) -> dict[str, object]:
    """A DICOM-RT export: a CT series (optionally two) and an RTSTRUCT on it."""
    from AutoCTVLib.io.dicom_ct_write import write_ct_series
    from AutoCTVLib.io.rtstruct_write import RoiSpec, write_rtstruct

    folder = root / name
    folder.mkdir(parents=True)
    geometry = _geometry(grid_kind)
    ct_hu, ctv = _ct_hu(geometry, seed), _ctv(geometry, seed)
    bladder = np.zeros(geometry.shape_zyx, dtype=bool)
    bladder[2:5, 14:18, 4:9] = True
    masks = {"CTV_45Gy": ctv.astype(bool), "Bladder": bladder}
    ct = Volume(ct_hu, geometry)
    seed_text = f"{name}-{seed}"
    identity = write_ct_series(ct, folder / "ct", uid_seed=seed_text)
    if second_series:
        other = Volume(ct_hu + 10.0, geometry)
        identity = write_ct_series(
            other,
            folder / "ct_second",
            uid_seed=seed_text + "-second",
            study_instance_uid=identity.study_instance_uid,
            frame_of_reference_uid=identity.frame_of_reference_uid,
            series_number=2,
        )
        ct_hu = other.array
    if reference_elsewhere:
        identity = write_ct_series(ct, root.parent / f"{name}_elsewhere", uid_seed="elsewhere")
    rois = [RoiSpec(n, masks.get(n, ctv.astype(bool)), (255, 0, 0), "CTV") for n in roi_names]
    write_rtstruct(
        rois,
        identity,
        geometry,
        folder / "rtstruct.dcm",
        series_description="test contours",
        structure_set_label="TEST",
        uid_seed=seed_text,
    )
    return {"geometry": geometry, "ct_hu": ct_hu, "ctv": ctv, "bladder": bladder}


def test_dicom_cases_are_paired_checked_and_stored(tmp_path: Path) -> None:
    root = tmp_path / "cases"
    written = {
        "rt_flipped": make_dicom_case(root, "rt_flipped", "flipped", 0),
        "rt_oblique": make_dicom_case(root, "rt_oblique", "oblique", 1),
        "rt_two_series": make_dicom_case(root, "rt_two_series", "axial", 2, second_series=True),
    }
    make_dicom_case(root, "rt_wrong_series", "axial", 3, reference_elsewhere=True)
    make_dicom_case(root, "rt_no_ctv", "axial", 4, roi_names=("Bladder", "Rectum"))
    nifti = make_nifti_case(root, "nifti_pair", "axial", 5)
    output = tmp_path / "train.h5"

    report = build_dataset(root, output, roi_pattern="CTV", extra_rois=["Bladder"])

    status = {case.case_id: case for case in report.cases}
    assert sorted(c.case_id for c in report.succeeded) == sorted(written)
    assert "series" in status["rt_wrong_series"].reason
    assert "no ROI matches 'CTV'" in status["rt_no_ctv"].reason
    assert "Bladder" in status["nifti_pair"].reason  # NIfTI pair has no bladder.nii.gz
    assert status["rt_two_series"].warnings[0].startswith("2 CT series in the folder")

    for case_id, expected in written.items():
        ct, labels, attrs = read_case(output, case_id)
        assert ct.geometry.is_close(expected["geometry"], atol_mm=1e-4, atol_dir=1e-6)
        np.testing.assert_array_equal(ct.array, np.rint(expected["ct_hu"]))
        np.testing.assert_array_equal(labels["CTV"].array, expected["ctv"])
        np.testing.assert_array_equal(labels["Bladder"].array, expected["bladder"])
        assert attrs["source_kind"] == "dicom"
        assert attrs["roi_names"] == {"CTV": "CTV_45Gy", "Bladder": "Bladder"}
        assert attrs["identity"]["kind"] == "dicom"
        assert attrs["identity"]["slice_count"] == SHAPE_ZYX[0]
    _, _, attrs = read_case(output, "rt_two_series")
    assert attrs["identity"]["series_number"] == 2

    nifti_only = build_dataset(root, tmp_path / "nifti.h5", source="nifti")
    assert [c.case_id for c in nifti_only.succeeded] == ["nifti_pair"]
    _, labels, _ = read_case(tmp_path / "nifti.h5", "nifti_pair")
    np.testing.assert_array_equal(labels["CTV"].array, nifti["ctv"])
