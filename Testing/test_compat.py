"""The compatibility module: DICOM files and SEG support under pydicom 2.4 and 3.x alike."""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
import types
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


@pytest.mark.parametrize(
    ("version", "requirement"),
    [((2, 4, 4), "highdicom>=0.22,<0.23"), ((3, 0, 2), "highdicom>=0.22")],
)
def test_highdicom_requirement(version: tuple[int, ...], requirement: str) -> None:
    assert compat.highdicom_requirement(version) == requirement


def test_dicom_seg_support_on_this_stack() -> None:
    """Every tested stack but pydicom 2.x with numpy 2 (Slicer 5.10) installs a highdicom that
    matches its pydicom; that one reports why SEG export is unavailable."""
    supported, reason = compat.dicom_seg_supported()
    if not compat.PYDICOM_3 and compat.NUMPY_2:
        assert not supported and "numpy 2" in reason
    else:
        assert (supported, reason) == (True, "")


def _fake_import(
    monkeypatch: pytest.MonkeyPatch, module: types.ModuleType | None, error: Exception | None
) -> None:
    real = importlib.import_module

    def fake(name: str, package: str | None = None) -> types.ModuleType:
        if name == "highdicom":
            if error is not None:
                raise error
            assert module is not None
            return module
        return real(name, package)

    monkeypatch.setattr(compat.importlib, "import_module", fake)


def test_dicom_seg_reason_when_highdicom_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "NUMPY_2", False)
    _fake_import(monkeypatch, None, ModuleNotFoundError("no highdicom", name="highdicom"))
    supported, reason = compat.dicom_seg_supported()
    assert not supported
    assert "needs the highdicom package" in reason
    assert compat.highdicom_requirement() in reason


def test_dicom_seg_reason_when_highdicom_needs_a_newer_pydicom(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(compat, "NUMPY_2", False)
    _fake_import(monkeypatch, None, ImportError("cannot import pixels", name="pydicom.pixels"))
    supported, reason = compat.dicom_seg_supported()
    assert not supported and "cannot be imported" in reason and "pydicom" in reason


@pytest.mark.parametrize(
    ("highdicom_version", "pydicom_3", "expected"),
    [
        ("0.28.2", False, "needs pydicom 3"),
        ("0.28.2", True, ""),
        ("0.22.0", False, ""),
        ("0.22.0", True, ""),
        ("0.21.1", True, "0.22 or later"),
    ],
)
def test_dicom_seg_checks_the_highdicom_release(
    monkeypatch: pytest.MonkeyPatch, highdicom_version: str, pydicom_3: bool, expected: str
) -> None:
    fake = types.ModuleType("highdicom")
    fake.__version__ = highdicom_version  # type: ignore[attr-defined]
    _fake_import(monkeypatch, fake, None)
    monkeypatch.setattr(compat, "PYDICOM_3", pydicom_3)
    monkeypatch.setattr(compat, "NUMPY_2", False)
    supported, reason = compat.dicom_seg_supported()
    assert supported == (expected == "")
    assert expected in reason


def test_compat_does_not_import_torch_or_highdicom() -> None:
    code = "import sys, AutoCTVLib.compat; print(sorted({'torch', 'highdicom'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_seg_writer_refuses_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Where SEG export is unavailable, the writer says why instead of failing inside highdicom."""
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
