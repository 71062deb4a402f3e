"""Slicer ``.seg.nrrd`` files: read back by slicerio and by Slicer's own segmentation reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import slicerio
from conftest import make_geometry

from AutoCTVLib.errors import OutputError
from AutoCTVLib.io.seg_nrrd import (
    CTV_TERMINOLOGY,
    Code,
    Segment,
    Terminology,
    ijk_to_ras_matrix,
    write_seg_nrrd,
)
from AutoCTVLib.volume import Geometry

BLADDER_TERMINOLOGY = Terminology(
    category=Code("SCT", "123037004", "Anatomical Structure"),
    type=Code("SCT", "89837001", "Urinary bladder"),
    context_name="Segmentation category and type - DICOM master list",
)
CTV_COLOR = (0.9, 0.1, 0.2)
BLADDER_COLOR = (0.85, 0.8, 0.35)


def _box(geometry: Geometry, z: slice, y: slice, x: slice) -> np.ndarray:
    mask = np.zeros(geometry.shape_zyx, dtype=bool)
    mask[z, y, x] = True
    return mask


def _segments(geometry: Geometry, overlapping: bool) -> list[Segment]:
    ctv = _box(geometry, slice(2, 8), slice(5, 25), slice(8, 30))
    if overlapping:
        bladder = _box(geometry, slice(6, 11), slice(20, 35), slice(25, 45))
    else:
        bladder = _box(geometry, slice(9, 12), slice(26, 38), slice(31, 47))
    return [
        Segment("CTV", ctv, CTV_COLOR, CTV_TERMINOLOGY, status="inprogress"),
        Segment("Bladder", bladder, BLADDER_COLOR, BLADDER_TERMINOLOGY, tags={"Source": "test"}),
    ]


def _mask_zyx(segmentation: dict, name: str) -> np.ndarray:
    # slicerio gives voxels indexed (i, j, k); our masks are (z, y, x) = (k, j, i).
    return np.transpose(slicerio.segment_mask(segmentation, name), (2, 1, 0))


@pytest.mark.parametrize("overlapping", [False, True], ids=["one-layer", "two-layers"])
def test_slicerio_reads_segments_and_exact_geometry(
    tmp_path: Path, grid_kind: str, overlapping: bool
) -> None:
    geometry = make_geometry(grid_kind)
    segments = _segments(geometry, overlapping)
    path = write_seg_nrrd(
        segments,
        geometry,
        tmp_path / "result.seg.nrrd",
        provenance={"model_sha256": "ab12", "input_series_uid": "1.2.3"},
    )
    assert [p.name for p in tmp_path.iterdir()] == ["result.seg.nrrd"]

    segmentation = slicerio.read_segmentation(str(path))
    np.testing.assert_array_equal(segmentation["ijkToLPS"], geometry.index_to_physical_matrix())
    assert segmentation["voxels"].ndim == (4 if overlapping else 3)
    assert segmentation["masterRepresentation"] == "Binary labelmap"
    assert segmentation["containedRepresentationNames"] == ["Binary labelmap"]
    assert segmentation["referenceImageExtentOffset"] == [0, 0, 0]
    assert segmentation["AutoCTV.model_sha256"] == "ab12"
    assert segmentation["AutoCTV.input_series_uid"] == "1.2.3"

    ctv, bladder = segmentation["segments"]
    assert (ctv["name"], bladder["name"]) == ("CTV", "Bladder")
    assert ctv["color"] == pytest.approx(CTV_COLOR)
    assert bladder["color"] == pytest.approx(BLADDER_COLOR)
    assert (ctv["labelValue"], bladder["labelValue"]) == (1, 2)
    assert (ctv["layer"], bladder["layer"]) == ((0, 1) if overlapping else (0, 0))
    assert ctv["terminology"]["category"] == ["DCM", "130041", "RT Target"]
    assert ctv["terminology"]["type"] == ["SCT", "228792002", "Clinical Target Volume"]
    assert ctv["status"] == "inprogress"
    assert bladder["terminology"]["type"] == ["SCT", "89837001", "Urinary bladder"]
    assert bladder["tags"] == {"Source": "test"}
    x, y, z = geometry.size_xyz
    assert ctv["extent"] == [0, x - 1, 0, y - 1, 0, z - 1]
    for segment in segments:
        np.testing.assert_array_equal(_mask_zyx(segmentation, segment.name), segment.mask_zyx)


def test_reference_geometry_is_ijk_to_ras(tmp_path: Path) -> None:
    geometry = make_geometry("oblique")
    path = write_seg_nrrd(_segments(geometry, False), geometry, tmp_path / "s.seg.nrrd")
    segmentation = slicerio.read_segmentation(str(path), skip_voxels=True)
    (parameter,) = segmentation["conversionParameters"]
    assert parameter["name"] == "Reference image geometry"
    numbers = [float(v) for v in parameter["value"].strip(";").split(";")]
    np.testing.assert_array_equal(np.reshape(numbers[:16], (4, 4)), ijk_to_ras_matrix(geometry))
    x, y, z = geometry.size_xyz
    assert numbers[16:] == [0, x - 1, 0, y - 1, 0, z - 1]


def test_empty_segment_is_kept(tmp_path: Path) -> None:
    geometry = make_geometry("axial")
    empty = np.zeros(geometry.shape_zyx, dtype=bool)
    path = write_seg_nrrd([Segment("CTV", empty, CTV_COLOR)], geometry, tmp_path / "e.seg.nrrd")
    segmentation = slicerio.read_segmentation(str(path))
    assert [s["name"] for s in segmentation["segments"]] == ["CTV"]
    assert not _mask_zyx(segmentation, "CTV").any()


def test_bad_requests_are_refused_and_write_nothing(tmp_path: Path) -> None:
    geometry = make_geometry("axial")
    good = _segments(geometry, False)
    with pytest.raises(OutputError, match=r"\.seg\.nrrd"):
        write_seg_nrrd(good, geometry, tmp_path / "result.nrrd")
    with pytest.raises(ValueError, match="does not match grid"):
        write_seg_nrrd(
            [Segment("CTV", np.zeros((2, 2, 2), bool), CTV_COLOR)],
            geometry,
            tmp_path / "a.seg.nrrd",
        )
    with pytest.raises(ValueError, match="colour"):
        write_seg_nrrd(
            [Segment("CTV", good[0].mask_zyx, (255, 0, 0))], geometry, tmp_path / "b.seg.nrrd"
        )
    with pytest.raises(ValueError, match="share the ID"):
        write_seg_nrrd([good[0], good[0]], geometry, tmp_path / "c.seg.nrrd")
    with pytest.raises(ValueError, match="provenance key"):
        write_seg_nrrd(good, geometry, tmp_path / "d.seg.nrrd", provenance={"bad key:": "x"})
    with pytest.raises(ValueError, match="status"):
        write_seg_nrrd(
            [Segment("CTV", good[0].mask_zyx, CTV_COLOR, status="done")],
            geometry,
            tmp_path / "e.seg.nrrd",
        )
    with pytest.raises(ValueError, match="at least one"):
        write_seg_nrrd([], geometry, tmp_path / "f.seg.nrrd")
    assert list(tmp_path.iterdir()) == []


def test_existing_segmentation_is_kept_unless_overwrite(tmp_path: Path) -> None:
    geometry = make_geometry("axial")
    target = tmp_path / "result.seg.nrrd"
    target.write_bytes(b"edited by a physician")
    with pytest.raises(OutputError, match="already exists"):
        write_seg_nrrd(_segments(geometry, False), geometry, target)
    assert target.read_bytes() == b"edited by a physician"
    write_seg_nrrd(_segments(geometry, False), geometry, target, overwrite=True)
    assert slicerio.read_segmentation(str(target))["segments"][0]["name"] == "CTV"


def test_provenance_values_stay_on_one_line(tmp_path: Path) -> None:
    geometry = make_geometry("axial")
    path = write_seg_nrrd(
        _segments(geometry, False),
        geometry,
        tmp_path / "p.seg.nrrd",
        provenance={"note": "line one\nline two"},
    )
    segmentation = slicerio.read_segmentation(str(path), skip_voxels=True)
    # NRRD key/value pairs escape a newline as "\\n" (the format's rule), keeping one line.
    assert segmentation["AutoCTV.note"] == "line one\\nline two"
    assert len(segmentation["segments"]) == 2


@pytest.mark.mrml
def test_slicer_segmentation_reader_loads_the_file(tmp_path: Path, grid_kind: str) -> None:
    import slicer  # slicer-core: Slicer's real MRML scene and segmentation storage node
    import vtk

    geometry = make_geometry(grid_kind)
    segments = _segments(geometry, overlapping=True)
    path = write_seg_nrrd(segments, geometry, tmp_path / "result.seg.nrrd")

    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 2
    assert segmentation.GetNumberOfLayers() == 2
    for segment in segments:
        segment_id = segmentation.GetSegmentIdBySegmentName(segment.name)
        loaded = segmentation.GetSegment(segment_id)
        assert loaded.GetColor() == pytest.approx(segment.color_rgb)
        assert segment.terminology is not None
        assert loaded.GetTerminology() == segment.terminology.as_tag_value()
        labelmap = loaded.GetRepresentation("Binary labelmap")
        matrix = vtk.vtkMatrix4x4()
        labelmap.GetImageToWorldMatrix(matrix)
        image_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
        np.testing.assert_allclose(image_to_ras, ijk_to_ras_matrix(geometry), atol=1e-9)
        voxels = slicer.util.arrayFromSegmentInternalBinaryLabelmap(node, segment_id)
        np.testing.assert_array_equal(voxels == loaded.GetLabelValue(), segment.mask_zyx)
