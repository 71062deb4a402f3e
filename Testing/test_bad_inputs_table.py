"""The committed table of bad inputs (docs/bad_inputs.md) still says what the command prints.

A few representative rows run on every test run (one per kind: image file, DICOM folder,
option, output folder, completion, a repaired input accepted with a warning); ``-m slow`` runs
every row of ``scripts/bad_inputs.py``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
REPRESENTATIVE = (
    "truncated .nii.gz (30 % of the bytes)",
    "NaN voxel in a NIfTI CT",
    "labelmap given as the CT",
    "folder with two CT series",
    "--uncertainty 1",
    "outputs exist, no --overwrite",
    "complete: several labels drawn",
    "DICOM images shifted in a way no gantry tilt explains",
    "DICOM series with blank UIDs",
)


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bad_inputs_script", REPOSITORY / "scripts" / "bad_inputs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


SCRIPT = load_script()
RECORDED = SCRIPT.read_table()


def _variable(message: str) -> str:
    """The message without what changes from run to run (generated UIDs)."""
    import re

    message = re.sub(r"CT\.[\d.]+\.dcm", "CT.UID.dcm", message)
    return re.sub(r"\b(2\.25\.\d+|\d+(\.\d+){5,})\b", "UID", message)


def test_the_table_lists_every_class_once_with_a_one_line_error_or_a_warning() -> None:
    names = [case.name for case in SCRIPT.CASES]
    assert len(names) == len(set(names))
    assert sum(not case.accepted for case in SCRIPT.CASES) >= 25
    assert sorted(RECORDED) == sorted(names), "run scripts/bad_inputs.py to update the table"
    for case in SCRIPT.CASES:
        accepted, answer = RECORDED[case.name]
        assert accepted == case.accepted, case.name
        if case.accepted:  # contoured, and the user is told what was repaired
            assert answer.exit_code == 0, case.name
            lines = answer.message.splitlines()
            assert lines and all(line.startswith("warning: ") for line in lines), case.name
        else:
            assert answer.exit_code != 0, case.name
            assert answer.message.startswith("autoctv: error: "), case.name
            assert "\n" not in answer.message, case.name


def _check(name: str, tmp_path: Path) -> None:
    case = next(case for case in SCRIPT.CASES if case.name == name)
    answer = SCRIPT.run_case(case, tmp_path / "case")
    _, recorded = RECORDED[name]
    assert answer.exit_code == recorded.exit_code, answer.message
    assert _variable(answer.message) == _variable(recorded.message)


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_representative_rows_match_what_the_command_prints(name: str, tmp_path: Path) -> None:
    _check(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", [case.name for case in SCRIPT.CASES])
def test_every_row_matches_what_the_command_prints(name: str, tmp_path: Path) -> None:
    _check(name, tmp_path)
