"""Atomic outputs: nothing appears under a final name unless everything was written."""

from __future__ import annotations

from pathlib import Path

import pytest

from AutoCTVLib.errors import OutputError
from AutoCTVLib.io.atomic import OutputTransaction, atomic_path, temporary_sibling


def test_temporary_sibling_keeps_double_suffix(tmp_path: Path) -> None:
    tmp = temporary_sibling(tmp_path / "ctv.nii.gz")
    assert tmp.parent == tmp_path
    assert tmp.name.endswith(".nii.gz") and tmp.name.startswith(".ctv.partial-")
    assert temporary_sibling(tmp_path / "ctv.seg.nrrd").name.endswith(".seg.nrrd")


def test_atomic_path_publishes_on_success(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    with atomic_path(target) as tmp:
        tmp.write_text("{}")
        assert not target.exists()
    assert target.read_text() == "{}"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "ctv.nii.gz"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer crashed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_refuses_overwrite_when_asked(tmp_path: Path) -> None:
    target = tmp_path / "ctv.nii.gz"
    target.write_bytes(b"user data")
    with pytest.raises(OutputError, match="already exists"), atomic_path(target, overwrite=False):
        pass
    assert target.read_bytes() == b"user data"


def test_transaction_is_all_or_nothing(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), OutputTransaction() as outputs:
        outputs.path_for(tmp_path / "a.nii.gz").write_bytes(b"a")
        outputs.path_for(tmp_path / "b.json").write_text("b")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with OutputTransaction() as outputs:
        outputs.path_for(tmp_path / "a.nii.gz").write_bytes(b"a")
        outputs.path_for(tmp_path / "b.json").write_text("b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz", "b.json"]


def test_transaction_fails_when_an_output_is_missing(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="not written"), OutputTransaction() as outputs:
        outputs.path_for(tmp_path / "a.nii.gz").write_bytes(b"a")
        outputs.path_for(tmp_path / "never.json")
    assert list(tmp_path.iterdir()) == []
