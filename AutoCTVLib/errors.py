"""The exceptions a user can cause. Each carries a message a physicist can act on.

The command line prints ``str(error)`` on one line and exits non-zero; the Slicer module shows
it with ``slicer.util.errorDisplay``. Programming errors stay ordinary Python exceptions.
"""

from __future__ import annotations


class AutoCTVError(Exception):
    """Base class of every error a user can cause (bad input, missing ROI, out of memory, ...)."""

    exit_code: int = 2


class InputError(AutoCTVError):
    """An input file or folder cannot be read or is not what the command expects."""


class NotCTError(InputError):
    """The input is an image, but not a CT (MR, RTDOSE, secondary capture, ...)."""


class GeometryError(InputError):
    """The image geometry is unusable: too few slices, gaps, non-uniform spacing, shifted images,
    2D."""


class SeriesSelectionError(InputError):
    """A DICOM folder holds several CT series and none was chosen."""


class MemoryBudgetError(InputError):
    """The volume would exceed the stated memory budget."""


class ROINotFoundError(InputError):
    """No ROI in an RTSTRUCT matches the requested name or pattern."""


class ReferenceMismatchError(InputError):
    """An RTSTRUCT does not reference the CT series it is paired with."""


class ModelFileError(AutoCTVError):
    """A model file is missing, tampered with, of an unknown format, or does not match its card."""


class OutputError(AutoCTVError):
    """An output cannot be written (exists and overwrite not allowed, folder not writable, ...)."""


class DeviceError(AutoCTVError):
    """The requested compute device (CUDA GPU, Apple MPS) is not available on this computer."""


class CancelledError(AutoCTVError):
    """The user cancelled a running job; no partial output was left behind."""

    exit_code = 130
