"""The ``autoctv`` entry point: help, discovery, one-line user errors, exit codes."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from AutoCTVLib.cli import main as cli_main
from AutoCTVLib.errors import InputError


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "phantom", "dataset"):
        assert command in out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main([]) == 2
    assert "usage: autoctv" in capsys.readouterr().out


def test_user_error_is_one_line(monkeypatch, capsys: pytest.CaptureFixture[str]) -> None:
    def failing_handler(args: argparse.Namespace) -> int:
        raise InputError("the folder\n  /nowhere does not exist")

    def fake_parser() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog="autoctv")
        parser.add_argument("-v", "--verbose", action="store_true")
        parser.set_defaults(handler=failing_handler)
        return parser

    monkeypatch.setattr(cli_main, "build_parser", fake_parser)
    assert cli_main.main([]) == InputError.exit_code != 0
    err = capsys.readouterr().err
    assert err == "autoctv: error: the folder /nowhere does not exist\n"


def test_console_script_runs_in_a_fresh_process() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "AutoCTVLib.cli.main", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("autoctv ")
