"""Decoder noise (pydicom's per-plugin tracebacks, C libraries writing to stderr) stays off the
terminal while pixels are decoded; the caller's one-line error is all the user sees."""

from __future__ import annotations

import logging
import os

import pytest

from AutoCTVLib.io.quiet_decoding import quiet_decoding


def test_c_level_stderr_and_pydicom_errors_are_held_back(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        with quiet_decoding():
            os.write(2, b"Tile part length size inconsistent with stream length\n")
            logging.getLogger("pydicom.pixels").error("a decoder plugin failed")
        os.write(2, b"after\n")
    captured = capfd.readouterr()
    assert "Tile part" not in captured.err and "after" in captured.err
    messages = [record.getMessage() for record in caplog.records]
    assert not any("decoder plugin failed" in message for message in messages)
    assert any("Tile part length" in message for message in messages)  # kept at DEBUG
    assert logging.getLogger("pydicom").level != logging.CRITICAL  # restored


def test_errors_inside_still_propagate() -> None:
    with pytest.raises(ValueError, match="broken"), quiet_decoding():
        raise ValueError("broken")
