"""Output problems are found before any work, every error is one line, and ``--overwrite``
replaces only what a run writes (``autoctv predict``, ``complete`` and ``demo``)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from predict_support import make_tiny_model, predict_command, tiny_phantom

from AutoCTVLib.cli.main import main as cli
from AutoCTVLib.io.image_files import write_float_map, write_labelmap

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("outputs")
    phantom = tiny_phantom(seed=4)
    geometry = phantom.ct.geometry
    full = phantom.ctv.array.astype(np.uint8)
    two_labels = np.zeros_like(full)
    two_labels[[8, 12]] = 1
    two_labels[[9, 13], 30:34, 30:34] = 2
    return {
        "root": root,
        "ct": write_float_map(phantom.ct.array, geometry, root / "ct.nii.gz"),
        "full": write_labelmap(full, geometry, root / "full.nii.gz"),
        "two_labels": write_labelmap(two_labels, geometry, root / "two.nii.gz"),
        "model": make_tiny_model(root / "model", phantom.ct),
    }


def predict(files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return predict_command(files, out, "--progress", "none", *extra)


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    error = capsys.readouterr().err.strip()
    assert error.startswith("autoctv: error:") and "\n" not in error, error
    return error


@pytest.fixture()
def ct_never_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make reading a CT fail loudly: a check that passes with it ran before the CT was read."""
    import AutoCTVLib.io.ct_reader as ct_reader

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the CT was read before the output problem was found")

    monkeypatch.setattr(ct_reader, "read_ct", fail)


@pytest.mark.parametrize(
    ("where", "extra", "message"),
    [
        ("missing/parent/out", [], "does not exist; create it or choose another -o/--out"),
        ("a_file", [], "exists and is not a folder"),
        ("existing", [], "add --overwrite"),
        ("fresh", ["--format", "nifti,pdf"], "unknown output format pdf"),
        ("fresh", ["--format", "rtstruct"], "--create-dicom-ct"),
        ("fresh", ["--uncertainty", "1"], "at least 2 samples"),
    ],
)
def test_output_problems_are_found_before_the_ct_is_read(
    files: dict[str, Path],
    capsys,
    ct_never_read,
    tmp_path: Path,
    where: str,
    extra: list[str],
    message: str,
) -> None:
    root = tmp_path
    (root / "a_file").write_text("not a folder")
    (root / "existing").mkdir()
    (root / "existing" / "ctv.nii.gz").write_bytes(b"earlier")
    code = cli(predict(files, root / where, *extra))
    assert code == 2
    assert message in one_line_error(capsys)
    assert not (root / "fresh").exists()
    assert (root / "existing" / "ctv.nii.gz").read_bytes() == b"earlier"


def test_an_unwritable_output_folder_is_found_before_the_ct_is_read(
    files: dict[str, Path], capsys, ct_never_read, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    locked = files["root"] / "locked"
    locked.mkdir()
    real_mkstemp = tempfile.mkstemp

    def read_only(*args: object, **kwargs: object):  # as a read-only mount answers
        if Path(str(kwargs.get("dir"))) == locked:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_mkstemp(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert cli(predict(files, locked)) == 2
    error = one_line_error(capsys)
    assert "cannot write into" in error and "Read-only file system" in error
    assert list(locked.iterdir()) == []
    # complete and demo check the same way
    completed = str(locked / "c.nii.gz")
    assert cli(["complete", str(files["ct"]), str(files["two_labels"]), "-o", completed]) == 2
    assert "cannot write into" in one_line_error(capsys)
    assert cli(["demo", "-o", str(locked / "demo"), "--model", str(files["model"])]) == 2
    assert "cannot write into" in one_line_error(capsys)


def test_a_failure_while_writing_is_not_hidden_by_the_clean_up(
    files: dict[str, Path], capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder turns read-only during the run: the error says so in one line, even though
    removing the temporary files fails as well."""
    import AutoCTVLib.io.image_files as image_files

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if ".partial-" in self.name:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(image_files, "_write", refuse)
    monkeypatch.setattr(Path, "unlink", unlink)
    out = files["root"] / "turns_read_only"
    assert cli(predict(files, out)) == 2
    error = one_line_error(capsys)
    assert "writing into" in error and "Permission denied" in error
    assert "nothing was written" in error


def test_overwrite_replaces_what_it_writes_and_leaves_the_rest(
    files: dict[str, Path], capsys
) -> None:
    out = files["root"] / "overwrite"
    assert cli(predict(files, out, "--uncertainty", "2")) == 0
    entropy = (out / "uncertainty_entropy.nii.gz").read_bytes()
    (out / "notes.txt").write_text("mine")
    assert cli(predict(files, out)) == 2
    assert "--overwrite" in one_line_error(capsys)
    assert cli(predict(files, out, "--overwrite", "--format", "nifti")) == 0
    report = json.loads((out / "report.json").read_text())
    assert "entropy" not in report["outputs"]
    assert (out / "uncertainty_entropy.nii.gz").read_bytes() == entropy  # left, not deleted
    assert (out / "ctv.seg.nrrd").exists() and (out / "notes.txt").read_text() == "mine"


def test_complete_messages_name_the_flag_that_fixes_them(files: dict[str, Path], capsys) -> None:
    root = files["root"] / "complete"
    root.mkdir()
    out = root / "done.nii.gz"
    out.write_bytes(b"earlier")
    base = ["complete", str(files["ct"])]
    options = ["--method", "interpolate", "--progress", "none"]
    assert cli([*base, str(files["two_labels"]), "-o", str(out), *options]) == 2
    assert "add --overwrite" in one_line_error(capsys)
    assert out.read_bytes() == b"earlier"
    fresh = root / "fresh.nii.gz"
    assert cli([*base, str(files["two_labels"]), "-o", str(fresh), *options]) == 2
    assert "--label VALUE" in one_line_error(capsys)
    assert cli([*base, str(files["full"]), "-o", str(fresh), *options]) == 2
    assert "--axes z, y or x" in one_line_error(capsys)
    assert cli([*base, str(files["full"]), "-o", str(root / "no" / "x.nii.gz"), *options]) == 2
    assert "does not exist" in one_line_error(capsys)
    assert not fresh.exists()


def test_demo_size_takes_the_phantom_form(files: dict[str, Path], capsys) -> None:
    out = files["root"] / "demo_size"
    assert cli(["demo", "-o", str(out), "--size", "40,40", "--model", str(files["model"])]) == 2
    assert "--size must have three values X,Y,Z" in one_line_error(capsys)
    assert not out.exists()


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """``autoctv ... | head -1``: no traceback, the exit code a closed pipe gives."""
    command = [sys.executable, "-m", "AutoCTVLib.cli.main", "phantom", "-o", str(tmp_path / "p")]
    command += ["--size", "24,24,8", "--spacing", "10,10,10", "--cases", "3"]
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the first line
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
