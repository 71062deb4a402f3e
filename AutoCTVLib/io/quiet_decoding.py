"""Keep pixel decoders from writing to the terminal while a DICOM image is decoded.

When compressed pixel data cannot be decoded, pydicom logs a traceback for every decoder plugin
it tried (at ERROR level) before it raises one exception naming them all, and the C libraries
behind the plugins (OpenJPEG, GDCM) print their own complaints straight to file descriptor 2.
The caller turns the exception into one clear message; :func:`quiet_decoding` keeps the rest
off the terminal: pydicom's log records are held back for the duration and what the C
libraries print is captured and logged at DEBUG level instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def quiet_decoding() -> Iterator[None]:
    """Silence pydicom's decoder log and the decoders' C-level stderr inside the block."""
    pydicom_logger = logging.getLogger("pydicom")
    level = pydicom_logger.level
    pydicom_logger.setLevel(logging.CRITICAL)
    try:
        with _captured_stderr_fd():
            yield
    finally:
        pydicom_logger.setLevel(level)


@contextlib.contextmanager
def _captured_stderr_fd() -> Iterator[None]:
    try:
        target = sys.__stderr__.fileno() if sys.__stderr__ is not None else 2
        saved = os.dup(target)
    except (AttributeError, OSError, ValueError):  # no real descriptor (embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile() as capture:
        with contextlib.suppress(OSError, ValueError):
            sys.__stderr__.flush()  # type: ignore[union-attr]
        os.dup2(capture.fileno(), target)
        try:
            yield
        finally:
            os.dup2(saved, target)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace").strip()
            if text:
                logger.debug("pixel decoder printed: %s", text)
