"""RTSTRUCT export and import: exact mask round trips on any grid, references, ROI name matching."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import make_geometry
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid

from AutoCTVLib.compat import save_dicom_file
from AutoCTVLib.errors import InputError, OutputError, ReferenceMismatchError, ROINotFoundError
from AutoCTVLib.io.identity import SeriesIdentity, SliceRef
from AutoCTVLib.io.rtstruct_read import (
    Contour,
    StructureSet,
    match_roi,
    rasterise_roi,
    rasterise_roi_detailed,
    read_rtstruct,
)
from AutoCTVLib.io.rtstruct_write import RoiSpec, write_rtstruct
from AutoCTVLib.volume import Geometry

FIXED_TIME = datetime(2024, 5, 6, 7, 8, 9)


def ct_identity(geometry: Geometry, **overrides: object) -> SeriesIdentity:
    """An in-memory CT series identity whose slice k sits at the grid's slice k."""
    slices = tuple(
        SliceRef(CTImageStorage, generate_uid(), tuple(geometry.index_to_physical((0, 0, k))))
        for k in range(geometry.shape_zyx[0])
    )
    fields: dict[str, object] = {
        "patient_id": "PAT-001",
        "patient_name": "Test^Patient",
        "study_instance_uid": generate_uid(),
        "series_instance_uid": generate_uid(),
        "frame_of_reference_uid": generate_uid(),
        "slices": slices,
        "patient_sex": "F",
        "patient_birth_date": "19700101",
        "study_id": "S1",
        "study_date": "20240101",
        "study_time": "120000",
        "accession_number": "ACC1",
        "study_description": "Pelvis planning CT",
        "series_number": 3,
    }
    fields.update(overrides)
    return SeriesIdentity(**fields)  # type: ignore[arg-type]


def target_mask(geometry: Geometry) -> np.ndarray:
    """A CTV-like mask: a blob with a hole, a second island, a diagonal contact, a border touch."""
    nz, ny, nx = geometry.shape_zyx
    kk, jj, ii = np.mgrid[:nz, :ny, :nx]
    mask = ((ii - 20) / 12.0) ** 2 + ((jj - 18) / 9.0) ** 2 + ((kk - 5.5) / 4.0) ** 2 < 1
    mask &= ~(((ii - 20) ** 2 + (jj - 18) ** 2 < 9) & (kk == 5))  # a hole on slice 5
    mask[4, 33:37, 38:44] = True  # a second island on slice 4
    mask[6, 2, 2] = mask[6, 3, 3] = True  # diagonal contact on slice 6
    mask[8, 30:, 0:4] = True  # touches the grid's edge
    return mask


def write_case(
    tmp_path: Path, geometry: Geometry, ct: SeriesIdentity, rois: list[RoiSpec], **kwargs: object
) -> Path:
    path = tmp_path / "RS.dcm"
    options: dict[str, object] = {
        "series_description": "AutoCTV 0.1 CTV",
        "structure_set_label": "AutoCTV",
        "created": FIXED_TIME,
    }
    options.update(kwargs)
    write_rtstruct(rois, ct, geometry, path, **options)  # type: ignore[arg-type]
    return path


def ctv_and_bladder(geometry: Geometry) -> list[RoiSpec]:
    ctv = target_mask(geometry)
    bladder = np.zeros(geometry.shape_zyx, dtype=bool)
    bladder[2:5, 5:10, 30:40] = True
    return [
        RoiSpec("CTV_45Gy", ctv, (255, 0, 0), "CTV"),
        RoiSpec("Bladder", bladder, (255, 255, 0), "ORGAN"),
    ]


# --------------------------------------------------------------------------------------------
# Round trips


def test_round_trip_reproduces_the_masks_exactly(tmp_path: Path, grid_kind: str) -> None:
    geometry = make_geometry(grid_kind)
    ct = ct_identity(geometry)
    rois = ctv_and_bladder(geometry)
    path = write_case(tmp_path, geometry, ct, rois)

    structure_set = read_rtstruct(path)
    assert structure_set.roi_names == ["CTV_45Gy", "Bladder"]
    for roi in rois:
        result = rasterise_roi_detailed(structure_set, roi.name, geometry, ct)
        assert result.warnings == ()
        assert result.contours_skipped == 0
        np.testing.assert_array_equal(result.mask_zyx, roi.mask_zyx)
    # The alias "CTV" finds "CTV_45Gy".
    np.testing.assert_array_equal(
        rasterise_roi(structure_set, "CTV", geometry, ct), rois[0].mask_zyx
    )


def test_structure_set_reads_back_identity_and_roi_attributes(tmp_path: Path) -> None:
    geometry = make_geometry("oblique")
    ct = ct_identity(geometry)
    path = write_case(tmp_path, geometry, ct, ctv_and_bladder(geometry))
    structure_set = read_rtstruct(path)
    assert structure_set.frame_of_reference_uids == (ct.frame_of_reference_uid,)
    assert structure_set.referenced_series_uids == (ct.series_instance_uid,)
    assert structure_set.referenced_sop_instance_uids == tuple(
        s.sop_instance_uid for s in ct.slices
    )
    assert (structure_set.patient_id, structure_set.patient_name) == ("PAT-001", "Test^Patient")
    assert structure_set.study_instance_uid == ct.study_instance_uid
    assert structure_set.structure_set_label == "AutoCTV"
    ctv, bladder = structure_set.rois
    assert (ctv.number, ctv.interpreted_type, ctv.color_rgb) == (1, "CTV", (255, 0, 0))
    assert (bladder.number, bladder.interpreted_type) == (2, "ORGAN")
    assert ctv.frame_of_reference_uid == ct.frame_of_reference_uid
    assert ctv.generation_algorithm == "AUTOMATIC"
    assert all(c.points_lps_mm.shape[1] == 3 for c in ctv.contours)


def test_written_dataset_has_the_required_references(tmp_path: Path) -> None:
    geometry = make_geometry("flipped")
    ct = ct_identity(geometry)
    rois = ctv_and_bladder(geometry)
    path = write_case(tmp_path, geometry, ct, rois, provenance={"model": "ctv-unet 1.0"})
    ds = pydicom.dcmread(path)

    assert ds.file_meta.MediaStorageSOPClassUID == RTStructureSetStorage
    assert ds.SOPClassUID == RTStructureSetStorage and ds.Modality == "RTSTRUCT"
    assert ds.SeriesInstanceUID != ct.series_instance_uid
    assert (ds.PatientID, ds.StudyInstanceUID) == (ct.patient_id, ct.study_instance_uid)
    assert ds.FrameOfReferenceUID == ct.frame_of_reference_uid
    assert ds.SeriesDescription == "AutoCTV 0.1 CTV"
    assert "model=ctv-unet 1.0" in ds.StructureSetDescription

    (frame,) = ds.ReferencedFrameOfReferenceSequence
    assert frame.FrameOfReferenceUID == ct.frame_of_reference_uid
    (study,) = frame.RTReferencedStudySequence
    assert study.ReferencedSOPInstanceUID == ct.study_instance_uid
    (series,) = study.RTReferencedSeriesSequence
    assert series.SeriesInstanceUID == ct.series_instance_uid
    assert [i.ReferencedSOPInstanceUID for i in series.ContourImageSequence] == [
        s.sop_instance_uid for s in ct.slices
    ]

    assert [r.ROIName for r in ds.StructureSetROISequence] == ["CTV_45Gy", "Bladder"]
    for item in ds.StructureSetROISequence:
        assert item.ReferencedFrameOfReferenceUID == ct.frame_of_reference_uid
    assert [o.RTROIInterpretedType for o in ds.RTROIObservationsSequence] == ["CTV", "ORGAN"]
    assert [o.ROIInterpreter for o in ds.RTROIObservationsSequence] == ["", ""]

    roi_contour = ds.ROIContourSequence[0]
    assert list(roi_contour.ROIDisplayColor) == [255, 0, 0]
    uid_to_k = {s.sop_instance_uid: k for k, s in enumerate(ct.slices)}
    slices_with_contours = set()
    for contour in roi_contour.ContourSequence:
        assert contour.ContourGeometricType == "CLOSED_PLANAR"
        points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
        assert len(points) == contour.NumberOfContourPoints
        k = geometry.physical_to_index(points)[:, 2]
        np.testing.assert_allclose(k, k[0], atol=1e-3)
        (image,) = contour.ContourImageSequence
        assert image.ReferencedSOPClassUID == CTImageStorage
        assert uid_to_k[image.ReferencedSOPInstanceUID] == round(k[0])
        slices_with_contours.add(round(k[0]))
    occupied = set(np.flatnonzero(rois[0].mask_zyx.any(axis=(1, 2))).tolist())
    assert slices_with_contours == occupied
    # Slice 5 of the CTV has an island and a hole: two contours on that slice.
    per_slice = [
        uid_to_k[c.ContourImageSequence[0].ReferencedSOPInstanceUID]
        for c in roi_contour.ContourSequence
    ]
    assert per_slice.count(5) == 2


def test_passes_dciodvfy(tmp_path: Path) -> None:
    validator = shutil.which("dciodvfy")
    if validator is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    geometry = make_geometry("oblique")
    ct = ct_identity(geometry)
    rois = [
        *ctv_and_bladder(geometry),
        RoiSpec("Empty", np.zeros(geometry.shape_zyx, bool), (0, 0, 255)),
    ]
    path = write_case(tmp_path, geometry, ct, rois, provenance={"model": "x"})
    report = subprocess.run([validator, str(path)], capture_output=True, text=True, check=False)
    output = report.stdout + report.stderr
    assert "RTStructureSet" in output
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    assert errors == []


def test_seeded_uids_are_reproducible_and_content_dependent(tmp_path: Path) -> None:
    geometry = make_geometry("axial")
    ct = ct_identity(geometry)
    rois = ctv_and_bladder(geometry)
    for name in "abcd":
        (tmp_path / name).mkdir()
    first = write_case(tmp_path / "a", geometry, ct, rois, uid_seed="case-7")
    second = write_case(tmp_path / "b", geometry, ct, rois, uid_seed="case-7")
    assert first.read_bytes() == second.read_bytes()

    changed = [dataclasses.replace(rois[0], mask_zyx=~rois[0].mask_zyx), rois[1]]
    third = write_case(tmp_path / "c", geometry, ct, changed, uid_seed="case-7")
    unseeded = write_case(tmp_path / "d", geometry, ct, rois)
    uids = [pydicom.dcmread(p).SOPInstanceUID for p in (first, third, unseeded)]
    assert len(set(uids)) == 3


def test_empty_roi_is_written_without_contours(tmp_path: Path) -> None:
    geometry = make_geometry("axial")
    ct = ct_identity(geometry)
    empty = RoiSpec("Rectum", np.zeros(geometry.shape_zyx, dtype=bool), (0, 128, 0))
    path = write_case(tmp_path, geometry, ct, [empty])
    structure_set = read_rtstruct(path)
    assert structure_set.rois[0].contours == ()
    result = rasterise_roi_detailed(structure_set, "Rectum", geometry, ct)
    assert not result.mask_zyx.any()
    assert any("no contours" in w for w in result.warnings)


def test_end_to_end_with_a_written_ct_series(tmp_path: Path) -> None:
    """write_ct_series → write_rtstruct → read_ct + read_rtstruct + rasterise."""
    from AutoCTVLib.io.ct_reader import read_ct
    from AutoCTVLib.io.dicom_ct_write import write_ct_series
    from AutoCTVLib.volume import Volume

    geometry = make_geometry("oblique", shape_zyx=(10, 40, 48))
    ct_hu = np.full(geometry.shape_zyx, -1000.0, dtype=np.float32)
    ct_hu[:, 5:35, 5:45] = 40.0
    written = write_ct_series(Volume(ct_hu, geometry), tmp_path / "ct", uid_seed="e2e")
    mask = target_mask(geometry)
    rs_path = tmp_path / "RS.dcm"
    write_rtstruct(
        [RoiSpec("CTV", mask, (255, 0, 0), "CTV")],
        written,
        geometry,
        rs_path,
        series_description="AutoCTV",
        structure_set_label="AutoCTV",
    )
    loaded = read_ct(tmp_path / "ct")
    assert isinstance(loaded.identity, SeriesIdentity)
    assert loaded.volume.geometry.is_close(geometry)
    rasterised = rasterise_roi(
        read_rtstruct(rs_path), "CTV", loaded.volume.geometry, loaded.identity
    )
    np.testing.assert_array_equal(rasterised, mask)


# --------------------------------------------------------------------------------------------
# Off-slice contours, references


def shift_contours(structure_set: StructureSet, offset_lps_mm: np.ndarray) -> StructureSet:
    rois = tuple(
        dataclasses.replace(
            roi,
            contours=tuple(
                dataclasses.replace(c, points_lps_mm=c.points_lps_mm + offset_lps_mm)
                for c in roi.contours
            ),
        )
        for roi in structure_set.rois
    )
    return dataclasses.replace(structure_set, rois=rois)


@pytest.mark.parametrize("offset_mm", [0.3, -0.3, 1.2])
def test_contours_off_slice_centres_land_on_the_right_slice(
    tmp_path: Path, grid_kind: str, offset_mm: float
) -> None:
    geometry = make_geometry(grid_kind)  # slice spacing 2.5 mm
    ct = ct_identity(geometry)
    rois = ctv_and_bladder(geometry)
    structure_set = read_rtstruct(write_case(tmp_path, geometry, ct, rois))
    shifted = shift_contours(structure_set, offset_mm * geometry.slice_normal)
    result = rasterise_roi_detailed(shifted, "CTV_45Gy", geometry, ct)
    np.testing.assert_array_equal(result.mask_zyx, rois[0].mask_zyx)
    assert result.warnings == ()


def test_contours_beyond_the_tolerance_are_skipped_with_warnings(tmp_path: Path) -> None:
    geometry = make_geometry("oblique")
    ct = ct_identity(geometry)
    rois = ctv_and_bladder(geometry)
    structure_set = read_rtstruct(write_case(tmp_path, geometry, ct, rois))
    shifted = shift_contours(structure_set, 0.3 * geometry.slice_normal)
    with pytest.raises(InputError, match=r"none of the .* contours of ROI 'CTV_45Gy'"):
        rasterise_roi(shifted, "CTV_45Gy", geometry, ct, slice_tolerance=0.05)

    # One contour far outside the grid and one not parallel to the slices: both skipped.
    ctv = structure_set.rois[0]
    outside = dataclasses.replace(
        ctv.contours[0], points_lps_mm=ctv.contours[0].points_lps_mm + 100 * geometry.slice_normal
    )
    tilted_points = ctv.contours[0].points_lps_mm.copy()
    tilted_points[0] += 5.0 * geometry.slice_normal
    tilted = dataclasses.replace(ctv.contours[0], points_lps_mm=tilted_points)
    point = Contour(ctv.contours[0].points_lps_mm[:1], "POINT")
    extra = dataclasses.replace(ctv, contours=(*ctv.contours, outside, tilted, point))
    with_extra = dataclasses.replace(structure_set, rois=(extra, *structure_set.rois[1:]))
    result = rasterise_roi_detailed(with_extra, 1, geometry, ct)
    np.testing.assert_array_equal(result.mask_zyx, rois[0].mask_zyx)
    assert result.contours_skipped == 3
    text = " ".join(result.warnings)
    assert "outside the CT's slices" in text
    assert "not parallel" in text
    assert "POINT" in text


def test_reference_mismatch_names_both_uids(tmp_path: Path) -> None:
    geometry = make_geometry("axial")
    ct = ct_identity(geometry)
    structure_set = read_rtstruct(write_case(tmp_path, geometry, ct, ctv_and_bladder(geometry)))

    other_frame = dataclasses.replace(ct, frame_of_reference_uid=generate_uid())
    with pytest.raises(ReferenceMismatchError) as raised:
        rasterise_roi(structure_set, "CTV", geometry, other_frame)
    assert ct.frame_of_reference_uid in str(raised.value)
    assert other_frame.frame_of_reference_uid in str(raised.value)

    other_series = dataclasses.replace(ct, series_instance_uid=generate_uid())
    with pytest.raises(ReferenceMismatchError) as raised:
        rasterise_roi(structure_set, "CTV", geometry, other_series)
    assert ct.series_instance_uid in str(raised.value)
    assert other_series.series_instance_uid in str(raised.value)


def test_writer_refuses_a_ct_that_does_not_match_the_grid(tmp_path: Path) -> None:
    geometry = make_geometry("axial")
    ct = ct_identity(geometry)
    rois = ctv_and_bladder(geometry)
    short = dataclasses.replace(ct, slices=ct.slices[:-1])
    with pytest.raises(ReferenceMismatchError, match="11 images"):
        write_case(tmp_path, geometry, short, rois)
    moved = dataclasses.replace(geometry, origin_xyz_mm=(0.0, 0.0, 0.0))
    with pytest.raises(ReferenceMismatchError, match="do not belong together"):
        write_case(tmp_path, moved, ct, rois)
    assert not (tmp_path / "RS.dcm").exists()


def test_writer_validates_rois_and_respects_overwrite(tmp_path: Path) -> None:
    geometry = make_geometry("axial")
    ct = ct_identity(geometry)
    mask = target_mask(geometry)
    with pytest.raises(OutputError, match="used twice"):
        write_case(
            tmp_path,
            geometry,
            ct,
            [RoiSpec("CTV", mask, (1, 2, 3)), RoiSpec("ctv", mask, (1, 2, 3))],
        )
    with pytest.raises(OutputError, match="1–64 characters"):
        write_case(tmp_path, geometry, ct, [RoiSpec(" ", mask, (1, 2, 3))])
    with pytest.raises(ValueError, match="interpreted type"):
        write_case(tmp_path, geometry, ct, [RoiSpec("CTV", mask, (1, 2, 3), "TUMOUR")])
    with pytest.raises(ValueError, match="colour"):
        write_case(tmp_path, geometry, ct, [RoiSpec("CTV", mask, (1, 2, 300))])
    with pytest.raises(ValueError, match="shape"):
        write_case(tmp_path, geometry, ct, [RoiSpec("CTV", mask[1:], (1, 2, 3))])
    path = write_case(tmp_path, geometry, ct, [RoiSpec("CTV", mask, (1, 2, 3))])
    before = path.read_bytes()
    with pytest.raises(OutputError, match="already exists"):
        write_case(tmp_path, geometry, ct, [RoiSpec("GTV", mask, (1, 2, 3))], overwrite=False)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RS.dcm"]


# --------------------------------------------------------------------------------------------
# Reading other files


def test_reader_refuses_files_that_are_not_rtstructs(tmp_path: Path) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not DICOM at all")
    with pytest.raises(InputError, match="not a readable DICOM file"):
        read_rtstruct(text_file)
    with pytest.raises(InputError, match="does not exist"):
        read_rtstruct(tmp_path / "missing.dcm")

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ct_file = tmp_path / "CT.dcm"
    save_dicom_file(ds, ct_file)
    with pytest.raises(InputError, match="is a CT file, not an RTSTRUCT"):
        read_rtstruct(ct_file)


def test_reader_accepts_a_file_without_preamble(tmp_path: Path) -> None:
    geometry = make_geometry("axial")
    ct = ct_identity(geometry)
    rois = ctv_and_bladder(geometry)
    path = write_case(tmp_path, geometry, ct, rois)
    bare = tmp_path / "bare.dcm"
    bare.write_bytes(path.read_bytes()[132:])  # drop the preamble and "DICM"
    structure_set = read_rtstruct(bare)
    np.testing.assert_array_equal(
        rasterise_roi(structure_set, "Bladder", geometry, ct), rois[1].mask_zyx
    )


def test_reader_handles_a_minimal_third_party_file(tmp_path: Path) -> None:
    """No Referenced Frame of Reference Sequence, contours without image references."""
    geometry = make_geometry("axial")
    frame_uid = generate_uid()
    square_ij = np.array([[4.5, 4.5], [9.5, 4.5], [9.5, 7.5], [4.5, 7.5]])
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = RTStructureSetStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = RTStructureSetStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    roi = Dataset()
    roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = 7, "GTV", frame_uid
    ds.StructureSetROISequence = [roi]
    contour = Dataset()
    contour.ContourGeometricType = "CLOSED_PLANAR"
    points = geometry.index_to_physical(np.column_stack([square_ij, np.full(4, 2.0)]))
    contour.ContourData = [f"{v:.3f}" for v in points.ravel()]
    contour.NumberOfContourPoints = 4
    roi_contour = Dataset()
    roi_contour.ReferencedROINumber = 7
    roi_contour.ContourSequence = [contour]
    ds.ROIContourSequence = [roi_contour]
    path = tmp_path / "third_party.dcm"
    save_dicom_file(ds, path)

    structure_set = read_rtstruct(path)
    assert structure_set.frame_of_reference_uids == (frame_uid,)
    assert structure_set.referenced_series_uids == ()
    (gtv,) = structure_set.rois
    assert (gtv.number, gtv.name, gtv.color_rgb, gtv.interpreted_type) == (7, "GTV", None, "")
    mask = rasterise_roi(structure_set, np.int64(7), geometry)
    expected = np.zeros(geometry.shape_zyx, dtype=bool)
    expected[2, 5:8, 5:10] = True
    np.testing.assert_array_equal(mask, expected)
    ct = ct_identity(geometry, frame_of_reference_uid=frame_uid)
    np.testing.assert_array_equal(rasterise_roi(structure_set, "gtv", geometry, ct), expected)
    with pytest.raises(ROINotFoundError, match=r"no ROI number 1; .*7 'GTV'"):
        rasterise_roi(structure_set, 1, geometry)


# --------------------------------------------------------------------------------------------
# ROI name matching

CLINICAL_NAMES = ["BODY", "Bladder", "Rectum", "PTV_45Gy", "CTV_45Gy", "CTVn", "Femur_L"]


@pytest.mark.parametrize(
    ("names", "pattern", "expected"),
    [
        (CLINICAL_NAMES, "ctv_45gy", "CTV_45Gy"),  # exact, any case
        (CLINICAL_NAMES, "CTV", "CTV_45Gy"),  # alias: dose suffix; nodal CTVn is not an alias
        (["CTV1", "PTV1"], "CTV", "CTV1"),
        (["ctv 45", "ITV"], "CTV", "ctv 45"),
        (["CTVp", "CTV_N"], "CTV", "CTVp"),
        (["ctv_p", "zCTV"], "CTV", "ctv_p"),
        (["CTV_50.4Gy"], "CTV", "CTV_50.4Gy"),
        (["CTV", "CTV_45Gy", "CTV1"], "CTV", "CTV"),  # exact beats aliases
        (CLINICAL_NAMES, "CTV_N", "CTVn"),  # nodal target when asked for
        (["CTV N 45Gy", "CTV_45"], "CTVn", "CTV N 45Gy"),
        (CLINICAL_NAMES, "PTV*", "PTV_45Gy"),  # glob
        (CLINICAL_NAMES, "re:ctv_\\d+gy", "CTV_45Gy"),  # regex
    ],
)
def test_match_roi_finds_one_name(names: list[str], pattern: str, expected: str) -> None:
    assert match_roi(names, pattern) == expected


def test_match_roi_reports_ambiguity_with_the_candidates() -> None:
    with pytest.raises(ROINotFoundError, match="ambiguous") as raised:
        match_roi(["CTV1", "CTV2", "PTV"], "CTV")
    assert "'CTV1'" in str(raised.value) and "'CTV2'" in str(raised.value)
    assert "PTV" not in str(raised.value)
    with pytest.raises(ROINotFoundError, match="ambiguous"):
        match_roi(CLINICAL_NAMES, "*TV*")


def test_match_roi_lists_every_name_when_nothing_matches() -> None:
    with pytest.raises(ROINotFoundError) as raised:
        match_roi(["PTV", "Bladder", "CTVn"], "CTV")
    message = str(raised.value)
    assert "no ROI matches 'CTV'" in message
    for name in ("PTV", "Bladder", "CTVn"):
        assert repr(name) in message
    with pytest.raises(ROINotFoundError, match="not a valid regex"):
        match_roi(["CTV"], "re:(")
    with pytest.raises(ROINotFoundError, match="no ROI name"):
        match_roi(["CTV"], "  ")
