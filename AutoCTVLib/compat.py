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
* DICOM SEG: highdicom 0.23 and later need pydicom 3, and highdicom 0.22 (the last release
  for pydicom 2.x) does not run on numpy 2, so no highdicom serves Slicer 5.10. The SEG writer
  therefore builds the object with pydicom alone (:mod:`AutoCTVLib.io.dicom_seg_dataset`);
  :func:`dicom_seg_supported` tells front ends whether SEG export works, and why not.
* The same in both pydicom versions (no shim needed): ``dcmread`` with ``stop_before_pixels``
  and ``force``; ``Dataset.pixel_array`` for native pixel data; ``generate_uid(prefix,
  entropy_srcs)`` (the same SHA-512 derivation, so seeded UIDs are identical);
  ``format_number_as_ds``; ``Dataset.set_original_encoding``; ``RawDataElement``; building a
  ``FileMetaDataset`` by hand; setting ``PixelData`` from ``ndarray.tobytes()``.
* numpy 1.26 and 2.x: nothing the core calls differs.
* Python 3.9: no ``zip(strict=)``, no ``match``, no runtime ``X | Y`` unions, no parenthesised
  context managers (``Testing/test_python_versions.py`` checks the sources).

This module imports neither torch nor highdicom.
"""

from __future__ import annotations

import os
import re
from typing import IO, Union

import pydicom
from pydicom.dataset import Dataset

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


#: The oldest pydicom the core is tested with (Slicer 5.8 and 5.10 bundle 2.4.4).
MINIMUM_PYDICOM = (2, 4)


def dicom_seg_supported() -> tuple[bool, str]:
    """Whether DICOM SEG export works with the installed packages, and why not.

    The SEG writer needs pydicom alone (no highdicom), so this holds on every supported stack;
    front ends still ask, to offer SEG only where it works and to say why in a tooltip or a CLI
    error when it does not.

    Returns:
        ``(True, "")``, or ``(False, reason)`` with a sentence a user can act on.
    """
    if PYDICOM_VERSION < MINIMUM_PYDICOM:
        return False, (
            f"DICOM SEG export needs pydicom 2.4 or later; pydicom {pydicom.__version__} is "
            "installed"
        )
    return True, ""
