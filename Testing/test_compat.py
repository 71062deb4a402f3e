"""The compatibility module: DICOM files and SEG support under pydicom 2.4 and 3.x alike."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid

from AutoCTVLib import compat

#: generate_uid(entropy_srcs=["autoctv", "stack"]) as pydicom 3.0.2 computes it.
EXPECTED_SEEDED_UID = "1.2.826.0.1.3680043.8.498.14568451253242295496535800128543993785"


def small_dataset() -> Dataset:
    uid = generate_uid(entropy_srcs=["compat-test"])
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = RTStructureSetStorage
    ds.SOPClassUID = RTStructureSetStorage
    ds.SOPInstanceUID = uid
    ds.PatientName = "Compat^Test"
    ds.ROIContourSequence = [Dataset()]
    ds.ROIContourSequence[0].ROIDisplayColor = [255, 0, 0]
    return ds


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.4.4", (2, 4, 4)),
        ("3.0.2", (3, 0, 2)),
        ("3.1.0.dev0", (3, 1, 0)),
        ("0.22.0rc1", (0, 22, 0)),
        ("2", (2,)),
        ("dev", ()),
    ],
)
def test_version_tuple(text: str, expected: tuple[int, ...]) -> None:
    assert compat.version_tuple(text) == expected


def test_installed_pydicom_version_is_read() -> None:
    assert compat.PYDICOM_VERSION[:2] == tuple(int(p) for p in pydicom.__version__.split(".")[:2])
    assert compat.PYDICOM_3 == (compat.PYDICOM_VERSION[0] >= 3)


@pytest.mark.parametrize("to_file", [True, False], ids=["path", "file-object"])
def test_save_dicom_file_writes_the_dicom_file_format(tmp_path: Path, to_file: bool) -> None:
    ds = small_dataset()
    if to_file:
        target = tmp_path / "out.dcm"
        compat.save_dicom_file(ds, target)
        data = target.read_bytes()
    else:
        buffer = io.BytesIO()
        compat.save_dicom_file(ds, buffer)
        data = buffer.getvalue()
    assert data[:128] == b"\0" * 128 and data[128:132] == b"DICM"
    back = pydicom.dcmread(io.BytesIO(data))
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert back.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert back.file_meta.MediaStorageSOPClassUID == RTStructureSetStorage
    assert str(back.PatientName) == "Compat^Test"
    assert list(back.ROIContourSequence[0].ROIDisplayColor) == [255, 0, 0]
    # Explicit VR: the VR "PN" follows the PatientName tag (0010,0010) in the byte stream.
    assert b"\x10\x00\x10\x00PN" in data


def test_save_dicom_file_rejects_a_dataset_without_file_meta(tmp_path: Path) -> None:
    ds = small_dataset()
    del ds.file_meta
    with pytest.raises((AttributeError, ValueError)):
        compat.save_dicom_file(ds, tmp_path / "bad.dcm")


def test_seeded_uids_match_between_pydicom_releases() -> None:
    """generate_uid(entropy_srcs=...) is the same derivation in pydicom 2.4 and 3.x: this value
    was computed with pydicom 3.0.2, and every stack must reproduce it."""
    assert generate_uid(entropy_srcs=["autoctv", "stack"]) == EXPECTED_SEEDED_UID


def test_dicom_seg_is_supported_on_every_tested_stack() -> None:
    """The SEG writer needs pydicom alone, so every supported stack can write SEG."""
    assert compat.dicom_seg_supported() == (True, "")


def test_dicom_seg_reason_on_a_too_old_pydicom(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "PYDICOM_VERSION", (2, 3, 0))
    supported, reason = compat.dicom_seg_supported()
    assert not supported
    assert "pydicom 2.4 or later" in reason


def test_compat_does_not_import_torch_or_highdicom() -> None:
    code = (
        "import sys, AutoCTVLib.compat, AutoCTVLib.io.dicom_seg_write; "
        "print(sorted({'torch', 'highdicom'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_seg_writer_refuses_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Where SEG export is unavailable, the writer says why before writing anything."""
    import numpy as np

    from AutoCTVLib.errors import OutputError
    from AutoCTVLib.io import dicom_seg_write

    reason = "DICOM SEG export is unavailable here, for a reason a user can act on"
    monkeypatch.setattr(dicom_seg_write, "dicom_seg_supported", lambda: (False, reason))
    with pytest.raises(OutputError, match="for a reason a user can act on"):
        dicom_seg_write.write_dicom_seg(
            np.ones((1, 2, 2), bool),
            [Dataset()],
            tmp_path / "seg.dcm",
            algorithm_name="AutoCTV",
            algorithm_version="1",
        )
    assert not (tmp_path / "seg.dcm").exists()
