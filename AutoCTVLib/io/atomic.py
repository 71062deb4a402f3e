"""Atomic output: write to a temporary name beside the target, then rename.

A crash, Ctrl-C or SIGTERM never leaves a half-written file under the final name. For jobs that
write several files, :class:`OutputTransaction` publishes all of them only after every one was
written, and removes the temporary files otherwise.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from AutoCTVLib.errors import OutputError

_MULTI_SUFFIXES = (".nii.gz", ".seg.nrrd", ".tar.gz")


def _split_suffix(path: Path) -> tuple[str, str]:
    """Split a file name into stem and (possibly double) suffix, e.g. 'ctv' + '.nii.gz'."""
    name = path.name
    for suffix in _MULTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return path.stem, path.suffix


def temporary_sibling(path: Path) -> Path:
    """A unique hidden name in the same folder that keeps the suffix (writers pick format by it)."""
    stem, suffix = _split_suffix(path)
    return path.with_name(f".{stem}.partial-{uuid.uuid4().hex[:8]}{suffix}")


def check_writable(path: Path, overwrite: bool) -> None:
    """Raise :class:`OutputError` when ``path`` exists and may not be replaced."""
    if path.exists() and not overwrite:
        raise OutputError(
            f"{path} already exists; choose another name or allow overwriting (--overwrite on "
            "the command line)"
        )
    if not path.parent.exists():
        raise OutputError(f"output folder {path.parent} does not exist; create it first")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it is renamed to ``path``.

    Example::

        with atomic_path("out/ctv.nii.gz") as tmp:
            sitk.WriteImage(image, str(tmp))
    """
    target = Path(path)
    check_writable(target, overwrite)
    tmp = temporary_sibling(target)
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError(f"nothing was written for {target}")
        os.replace(tmp, target)
    finally:
        # OSError, not only FileNotFoundError: on a read-only or vanished folder the clean-up
        # must not hide the error that stopped the writing.
        with contextlib.suppress(OSError):
            tmp.unlink()


class OutputTransaction:
    """Collect several outputs and publish them together.

    Use as a context manager: ``path_for(final)`` returns a temporary path to write; when the
    block ends without an exception every temporary file is renamed to its final name; on any
    exception (including KeyboardInterrupt) all temporary files are deleted and no final name
    is touched.
    """

    def __init__(self, overwrite: bool = True) -> None:
        self._overwrite = overwrite
        self._pending: list[tuple[Path, Path]] = []

    def path_for(self, final: str | os.PathLike[str]) -> Path:
        target = Path(final)
        check_writable(target, self._overwrite)
        tmp = temporary_sibling(target)
        self._pending.append((tmp, target))
        return tmp

    def __enter__(self) -> OutputTransaction:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            missing = [str(final) for tmp, final in self._pending if not tmp.exists()]
            if missing:
                self._discard()
                raise OutputError(f"outputs were not written: {', '.join(missing)}")
            for tmp, final in self._pending:
                os.replace(tmp, final)
            self._pending.clear()
        else:
            self._discard()

    def _discard(self) -> None:
        for tmp, _ in self._pending:
            with contextlib.suppress(OSError):  # never hide the error being handled
                tmp.unlink()
        self._pending.clear()
