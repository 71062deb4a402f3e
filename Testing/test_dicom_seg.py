"""DICOM SEG export: round trip through highdicom on axial, flipped and oblique CT series."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import make_geometry
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from AutoCTVLib.compat import dicom_seg_supported, save_dicom_file
from AutoCTVLib.errors import InputError, OutputError
from AutoCTVLib.io.dicom_seg_write import (
    CTV_TYPE,
    RT_TARGET_CATEGORY,
    make_content_label,
    write_dicom_seg,
)
from AutoCTVLib.io.identity import SeriesIdentity, SliceRef
from AutoCTVLib.volume import Geometry

SEG_SUPPORTED, SEG_REASON = dicom_seg_supported()
if not SEG_SUPPORTED:
    pytest.skip(SEG_REASON, allow_module_level=True)
import highdicom as hd  # noqa: E402 - only where SEG export works


def make_ct_datasets(geometry: Geometry, seed: str = "ct") -> list[Dataset]:
    """A CT series in memory, one dataset per slice in volume k order, with pixel data."""
    study_uid = generate_uid(entropy_srcs=[seed, "study"])
    series_uid = generate_uid(entropy_srcs=[seed, "series"])
    frame_uid = generate_uid(entropy_srcs=[seed, "frame"])
    n_slices, rows, columns = geometry.shape_zyx
    direction = geometry.direction_matrix
    spacing_i, spacing_j, spacing_k = geometry.spacing_xyz_mm
    rng = np.random.default_rng(0)
    datasets = []
    for k in range(n_slices):
        position = np.asarray(geometry.origin_xyz_mm) + k * spacing_k * direction[:, 2]
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        instance_uid = generate_uid(entropy_srcs=[seed, "image", str(k)])
        ds.file_meta.MediaStorageSOPInstanceUID = instance_uid
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = instance_uid
        ds.PatientID = "SEG-TEST"
        ds.PatientName = "Test^Seg"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "F"
        ds.StudyInstanceUID = study_uid
        ds.StudyDate = "20240102"
        ds.StudyTime = "101010"
        ds.StudyID = "1"
        ds.AccessionNumber = "A1"
        ds.ReferringPhysicianName = ""
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 3
        ds.InstanceNumber = k + 1
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.Manufacturer = "Test"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*direction[:, 0], *direction[:, 1])]
        ds.PixelSpacing = [f"{spacing_j:.6f}", f"{spacing_i:.6f}"]
        ds.SliceThickness = f"{spacing_k:.6f}"
        ds.Rows, ds.Columns = rows, columns
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "HU"
        ds.KVP = "120"
        pixels = rng.integers(-1000, 1000, size=(rows, columns)).astype(np.int16)
        ds.PixelData = pixels.tobytes()
        datasets.append(ds)
    return datasets


def ctv_mask(shape_zyx: tuple[int, int, int]) -> np.ndarray:
    """An asymmetric blob (so flips would show) that misses the first and last slices."""
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape_zyx], indexing="ij")
    n_z, n_y, n_x = shape_zyx
    mask = ((z - n_z / 2) / 4.0) ** 2 + ((y - n_y / 3) / 7.0) ** 2 + ((x - n_x / 2) / 11.0) ** 2
    mask = mask <= 1.0
    mask[:, : n_y // 3, : n_x // 2] &= z[:, : n_y // 3, : n_x // 2] % 2 == 0  # break symmetry
    mask[0] = mask[-1] = False
    return mask


def read_mask_back(seg: hd.seg.Segmentation, datasets: list[Dataset]) -> np.ndarray:
    uids = [str(ds.SOPInstanceUID) for ds in datasets]
    pixels = seg.get_pixels_by_source_instance(
        uids, segment_numbers=[1], assert_missing_frames_are_empty=True
    )
    return pixels[..., 0].astype(bool)


@pytest.fixture
def small_geometry(grid_kind: str) -> Geometry:
    return make_geometry(grid_kind, shape_zyx=(10, 24, 28), spacing_xyz_mm=(1.1, 1.1, 3.0))


def test_round_trip_on_every_grid(small_geometry: Geometry, tmp_path: Path) -> None:
    datasets = make_ct_datasets(small_geometry)
    mask = ctv_mask(small_geometry.shape_zyx)
    path = tmp_path / "ctv.seg.dcm"
    info = write_dicom_seg(
        mask,
        datasets,
        path,
        algorithm_name="AutoCTV-UNet",
        algorithm_version="1.2.0",
        algorithm_parameters={"mc_samples": 20, "threshold": 0.5, "device": "cpu"},
        uid_seed="case-1",
    )
    assert path.exists() and not list(tmp_path.glob(".*partial*"))
    seg = hd.seg.segread(path)
    assert np.array_equal(read_mask_back(seg, datasets), mask)

    # empty first and last slices are not stored
    assert int(seg.NumberOfFrames) == int(mask.any(axis=(1, 2)).sum()) == info.frame_count
    assert info.frame_count < mask.shape[0]

    # every frame sits where its source CT image is
    by_uid = {str(ds.SOPInstanceUID): ds for ds in datasets}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source_uid = (
            frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        )
        source = by_uid[str(source_uid)]
        position = frame.PlanePositionSequence[0].ImagePositionPatient
        np.testing.assert_allclose(
            [float(v) for v in position],
            [float(v) for v in source.ImagePositionPatient],
            atol=1e-4,
        )
    orientation = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
    np.testing.assert_allclose(
        [float(v) for v in orientation.ImageOrientationPatient],
        [float(v) for v in datasets[0].ImageOrientationPatient],
        atol=1e-6,
    )


def test_references_codes_and_provenance(tmp_path: Path) -> None:
    geometry = make_geometry("axial", shape_zyx=(6, 16, 20))
    datasets = make_ct_datasets(geometry, seed="prov")
    mask = ctv_mask(geometry.shape_zyx)
    path = tmp_path / "ctv.dcm"
    info = write_dicom_seg(
        mask,
        datasets,
        path,
        algorithm_name="AutoCTV-UNet",
        algorithm_version="1.2.0",
        segment_description="cervix CTV, automatic",
        algorithm_parameters={"model_sha256": "ab" * 32, "mc_samples": 20},
        color_rgb=(255, 0, 0),
    )
    seg = dcmread(path)
    ct = datasets[0]
    assert seg.Modality == "SEG"
    assert seg.StudyInstanceUID == ct.StudyInstanceUID
    assert seg.PatientID == ct.PatientID
    assert seg.FrameOfReferenceUID == ct.FrameOfReferenceUID == info.frame_of_reference_uid
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.SeriesInstanceUID
    assert info.referenced_series_instance_uid == ct.SeriesInstanceUID
    assert seg.SeriesInstanceUID == info.series_instance_uid != ct.SeriesInstanceUID
    assert seg.SOPInstanceUID == info.sop_instance_uid
    referenced = {
        str(item.ReferencedSOPInstanceUID)
        for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    assert referenced <= {str(ds.SOPInstanceUID) for ds in datasets}

    # the model name and version travel in the descriptive attributes
    assert "AutoCTV-UNet" in seg.SeriesDescription and "1.2.0" in seg.SeriesDescription
    assert seg.ContentLabel == make_content_label("AutoCTV-UNet_1.2.0") == "AUTOCTV_UNET_1_2"
    assert "1.2.0" in seg.ContentDescription
    assert seg.SegmentationType == "BINARY"

    segment = seg.SegmentSequence[0]
    assert segment.SegmentLabel == "CTV"
    assert segment.SegmentDescription == "cervix CTV, automatic"
    assert segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentAlgorithmName == "AutoCTV-UNet"
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "AutoCTV-UNet" and algorithm.AlgorithmVersion == "1.2.0"
    assert "model_sha256=" + "ab" * 32 in algorithm.AlgorithmParameters
    category = segment.SegmentedPropertyCategoryCodeSequence[0]
    assert (category.CodeValue, category.CodingSchemeDesignator) == (
        RT_TARGET_CATEGORY.value,
        RT_TARGET_CATEGORY.scheme,
    )
    kind = segment.SegmentedPropertyTypeCodeSequence[0]
    assert (kind.CodeValue, kind.CodingSchemeDesignator) == ("228792002", "SCT")
    assert kind.CodeMeaning == CTV_TYPE.meaning
    # sRGB red is L*a*b* (53.24, 80.09, 67.20) under D65, encoded as DICOM's 16-bit triple.
    red = hd.color.CIELabColor(53.2408, 80.0925, 67.2032).value
    assert np.abs(np.subtract(segment.RecommendedDisplayCIELabValue, red)).max() <= 2


def test_series_identity_and_folder(tmp_path: Path) -> None:
    geometry = make_geometry("oblique", shape_zyx=(7, 16, 18))
    datasets = make_ct_datasets(geometry, seed="folder")
    folder = tmp_path / "ct"
    (folder / "sub").mkdir(parents=True)
    for index, ds in enumerate(datasets):
        # files named out of slice order, some in a sub-folder, plus a non-DICOM file
        where = folder / "sub" if index % 2 else folder
        save_dicom_file(ds, where / f"img_{(index * 5) % 7}.dcm")
    (folder / "README.txt").write_text("not DICOM")
    identity = SeriesIdentity(
        patient_id="SEG-TEST",
        patient_name="Test^Seg",
        study_instance_uid=str(datasets[0].StudyInstanceUID),
        series_instance_uid=str(datasets[0].SeriesInstanceUID),
        frame_of_reference_uid=str(datasets[0].FrameOfReferenceUID),
        slices=tuple(
            SliceRef(
                str(ds.SOPClassUID),
                str(ds.SOPInstanceUID),
                tuple(float(v) for v in ds.ImagePositionPatient),
            )
            for ds in datasets
        ),
        source=str(folder),
    )
    mask = ctv_mask(geometry.shape_zyx)
    path = tmp_path / "out.dcm"
    write_dicom_seg(mask, identity, path, algorithm_name="AutoCTV", algorithm_version="0.1")
    assert np.array_equal(read_mask_back(hd.seg.segread(path), datasets), mask)

    # a slice missing from the folder is reported
    next(folder.glob("img_*.dcm")).unlink()
    with pytest.raises(InputError, match="missing"):
        write_dicom_seg(
            mask, identity, tmp_path / "x.dcm", algorithm_name="A", algorithm_version="1"
        )
    with pytest.raises(InputError, match="not found"):
        write_dicom_seg(
            mask,
            identity,
            tmp_path / "x.dcm",
            ct_folder=tmp_path / "nowhere",
            algorithm_name="A",
            algorithm_version="1",
        )


def test_uid_seed_repeats_and_overwrite_rules(tmp_path: Path) -> None:
    geometry = make_geometry("axial", shape_zyx=(4, 12, 12))
    datasets = make_ct_datasets(geometry, seed="uids")
    mask = ctv_mask(geometry.shape_zyx)
    mask[1, 5, 5] = True
    kwargs = {"algorithm_name": "AutoCTV", "algorithm_version": "0.1", "uid_seed": "s"}
    first = write_dicom_seg(mask, datasets, tmp_path / "a.dcm", **kwargs)
    second = write_dicom_seg(mask, datasets, tmp_path / "b.dcm", **kwargs)
    third = write_dicom_seg(mask, datasets, tmp_path / "c.dcm", **{**kwargs, "uid_seed": "t"})
    assert first.series_instance_uid == second.series_instance_uid
    assert first.sop_instance_uid == second.sop_instance_uid
    assert third.series_instance_uid != first.series_instance_uid
    with pytest.raises(OutputError, match="exists"):
        write_dicom_seg(mask, datasets, tmp_path / "a.dcm", overwrite=False, **kwargs)


def test_bad_inputs(tmp_path: Path) -> None:
    geometry = make_geometry("axial", shape_zyx=(4, 12, 12))
    datasets = make_ct_datasets(geometry, seed="bad")
    names = {"algorithm_name": "AutoCTV", "algorithm_version": "0.1"}
    with pytest.raises(InputError, match="shape"):
        write_dicom_seg(np.ones((4, 12, 11), bool), datasets, tmp_path / "a.dcm", **names)
    with pytest.raises(OutputError, match="empty"):
        write_dicom_seg(np.zeros((4, 12, 12), bool), datasets, tmp_path / "a.dcm", **names)
    other = make_ct_datasets(geometry, seed="other")
    with pytest.raises(InputError, match="series"):
        write_dicom_seg(
            np.ones((4, 12, 12), bool), datasets[:2] + other[:2], tmp_path / "a.dcm", **names
        )
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_content_label_rules() -> None:
    for text in ["AutoCTV-UNet v1.2.3 (cervix)", "ctv", "", "ünïcode ✓ model 2"]:
        label = make_content_label(text)
        assert 1 <= len(label) <= 16
        assert re.fullmatch(r"[A-Z0-9 _]+", label)
    assert make_content_label("autoctv 1") == "AUTOCTV 1"
    assert make_content_label("") == "SEGMENTATION"


def test_highdicom_volume_lies_on_the_ct_grid(small_geometry: Geometry, tmp_path: Path) -> None:
    """``Segmentation.get_volume`` voxels, mapped through patient space, land on the mask."""
    if not hasattr(hd.seg.Segmentation, "get_volume"):
        pytest.skip(
            f"highdicom {hd.__version__} (the release for pydicom 2.x) has no "
            "Segmentation.get_volume; test_round_trip_on_every_grid checks the frame positions"
        )
    datasets = make_ct_datasets(small_geometry)
    mask = ctv_mask(small_geometry.shape_zyx)
    path = tmp_path / "ctv.dcm"
    write_dicom_seg(mask, datasets, path, algorithm_name="AutoCTV", algorithm_version="0.1")
    volume = hd.seg.segread(path).get_volume()
    array = volume.array.reshape(volume.array.shape[:3])
    indices = np.argwhere(array > 0)  # (slice, row, column) in highdicom's own order
    homogeneous = np.c_[indices, np.ones(len(indices))]
    lps = (homogeneous @ volume.affine.T)[:, :3]
    ijk = small_geometry.physical_to_index(lps)
    np.testing.assert_allclose(ijk, np.round(ijk), atol=1e-3)
    i, j, k = np.round(ijk).astype(int).T
    recovered = np.zeros_like(mask)
    recovered[k, j, i] = True
    assert np.array_equal(recovered, mask)


@pytest.mark.parametrize("kind", ["axial", "oblique"])
def test_passes_dciodvfy(tmp_path: Path, kind: str) -> None:
    """The SEG is a valid Segmentation IOD, whichever highdicom release wrote it."""
    validator = shutil.which("dciodvfy")
    if validator is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed; install dicom3tools to run it")
    geometry = make_geometry(kind, shape_zyx=(8, 16, 20))
    path = tmp_path / "seg.dcm"
    write_dicom_seg(
        ctv_mask(geometry.shape_zyx),
        make_ct_datasets(geometry),
        path,
        algorithm_name="AutoCTV-UNet",
        algorithm_version="1.2.0",
        algorithm_parameters={"mc_samples": 20},
        segment_description="clinical target volume",
    )
    report = subprocess.run([validator, str(path)], capture_output=True, text=True, check=False)
    output = report.stdout + report.stderr
    assert "Segmentation" in output
    assert [line for line in output.splitlines() if line.startswith("Error")] == []
