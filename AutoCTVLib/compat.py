"""The one place where the library stacks the core runs on differ.

The core runs on the stacks 3D Slicer bundles: CPython 3.9–3.12, pydicom 2.4 and 3.x, numpy
1.26 and 2.x (Slicer 5.8: Python 3.9, pydicom 2.4.4, numpy 1.26.4; Slicer 5.10: Python 3.12,
pydicom 2.4.4, numpy 2.0.2; Slicer 5.12: pydicom 3, numpy 2). Every version-dependent call goes
through this module, so the rest of the library reads as if there were one stack.

What differs, and what does not:

* Writing a DICOM file in the DICOM File Format (128-byte preamble, ``DICM``, File Meta
  Information): ``save_as(..., enforce_file_format=True)`` in pydicom 3, ``save_as(...,
  write_like_original=False)`` in pydicom 2.4 (pydicom 3 deprecates that keyword, pydicom 2.4
  does not know the new one). Both take the dataset encoding from
  ``file_meta.TransferSyntaxUID``: :func:`save_dicom_file`.
* DICOM SEG: highdicom 0.23 and later need pydicom 3; highdicom 0.22 is the last release for
  pydicom 2.x. :func:`dicom_seg_supported` says whether SEG writing works with what is installed,
  :func:`highdicom_requirement` which highdicom to install beside the installed pydicom.
* The same in both pydicom versions (no shim needed): ``dcmread`` with ``stop_before_pixels``
  and ``force``; ``Dataset.pixel_array`` for native pixel data; ``generate_uid(prefix,
  entropy_srcs)`` (the same SHA-512 derivation, so seeded UIDs are identical);
  ``format_number_as_ds``; ``Dataset.set_original_encoding``; ``RawDataElement``; building a
  ``FileMetaDataset`` by hand; setting ``PixelData`` from ``ndarray.tobytes()``.
* numpy 1.26 and 2.x: nothing the core calls differs.
* Python 3.9: no ``zip(strict=)``, no ``match``, no runtime ``X | Y`` unions, no parenthesised
  context managers (``Testing/test_python_versions.py`` checks the sources).

This module imports neither torch nor highdicom at import time.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from typing import IO, Union

import numpy as np
import pydicom
from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

#: The highdicom release line that still works with pydicom 2.x (0.23 requires pydicom 3).
HIGHDICOM_FOR_PYDICOM2 = "highdicom>=0.22,<0.23"
#: highdicom for pydicom 3 (any release from 0.22 on works there).
HIGHDICOM_FOR_PYDICOM3 = "highdicom>=0.22"

PathOrFile = Union[str, os.PathLike, IO[bytes]]


def version_tuple(text: str) -> tuple[int, ...]:
    """The leading numeric release of a version string: ``"2.4.4"`` → ``(2, 4, 4)``,
    ``"3.1.0.dev0"`` → ``(3, 1, 0)``, ``"0.22.0rc1"`` → ``(0, 22, 0)``."""
    numbers = []
    for piece in str(text).split("."):
        match = re.match(r"\d+", piece)
        if match is None:
            break
        numbers.append(int(match.group()))
        if match.end() != len(piece):
            break
    return tuple(numbers)


#: Installed pydicom release, e.g. ``(2, 4, 4)``.
PYDICOM_VERSION: tuple[int, ...] = version_tuple(pydicom.__version__)
#: True under pydicom 3.x or later.
PYDICOM_3: bool = PYDICOM_VERSION >= (3,)
#: True under numpy 2.x or later.
NUMPY_2: bool = version_tuple(np.__version__) >= (2,)


def save_dicom_file(dataset: Dataset, target: PathOrFile) -> None:
    """Write ``dataset`` to ``target`` in the DICOM File Format (Part 10).

    The file gets the 128-byte preamble, ``DICM`` and the File Meta Information group; the
    dataset is encoded as ``dataset.file_meta.TransferSyntaxUID`` says (the caller sets it,
    usually Explicit VR Little Endian). Works under pydicom 2.4 and 3.x alike.

    Args:
        dataset: a dataset with ``file_meta`` holding at least the Transfer Syntax UID and the
            Media Storage SOP Class UID; the Media Storage SOP Instance UID is taken from
            ``SOPInstanceUID`` when it is missing.
        target: a file path or a writable binary file object.

    Raises:
        OSError: the file cannot be written.
        ValueError, AttributeError: pydicom rejects the dataset (missing file meta elements).
    """
    if PYDICOM_3:
        dataset.save_as(target, enforce_file_format=True)
    else:
        dataset.save_as(target, write_like_original=False)


def highdicom_requirement(pydicom_version: tuple[int, ...] = PYDICOM_VERSION) -> str:
    """The pip requirement for a highdicom that works beside ``pydicom_version`` (default: the
    installed one): installing the newest highdicom next to pydicom 2.x would upgrade pydicom."""
    return HIGHDICOM_FOR_PYDICOM3 if pydicom_version >= (3,) else HIGHDICOM_FOR_PYDICOM2


def dicom_seg_supported() -> tuple[bool, str]:
    """Whether DICOM SEG export works with the installed packages, and why not.

    Returns:
        ``(True, "")`` when highdicom is importable and compatible with the installed pydicom;
        otherwise ``(False, reason)`` with a one-sentence reason a user can act on (which package
        to install), for a tooltip or a CLI error.
    """
    if not PYDICOM_3 and NUMPY_2:
        return False, (
            f"DICOM SEG export is unavailable with pydicom {pydicom.__version__} and numpy "
            f"{np.__version__}: highdicom 0.22, the last release for pydicom 2.x, does not run "
            "on numpy 2, and later releases need pydicom 3"
        )
    try:
        highdicom = importlib.import_module("highdicom")
    except ImportError as error:
        if getattr(error, "name", None) not in (None, "highdicom"):
            # highdicom is there, but it needs something the installed stack lacks.
            return False, (
                f"DICOM SEG export is unavailable: highdicom cannot be imported ({error}); "
                f"install {highdicom_requirement()!r} to match pydicom {pydicom.__version__}"
            )
        return False, (
            "DICOM SEG export needs the highdicom package; install "
            f"{highdicom_requirement()!r} (it matches pydicom {pydicom.__version__})"
        )
    except Exception as error:  # a broken highdicom install fails in many ways
        return False, f"DICOM SEG export is unavailable: highdicom fails to import ({error})"
    version = version_tuple(getattr(highdicom, "__version__", "0"))
    if version < (0, 22):
        return False, (
            f"DICOM SEG export needs highdicom 0.22 or later (found {highdicom.__version__}); "
            f"install {highdicom_requirement()!r}"
        )
    if version >= (0, 23) and not PYDICOM_3:
        return False, (
            f"highdicom {highdicom.__version__} needs pydicom 3 but pydicom "
            f"{pydicom.__version__} is installed; install {HIGHDICOM_FOR_PYDICOM2!r}"
        )
    return True, ""
