"""HDF5 training datasets: build one from DICOM-RT exports or NIfTI pairs, read it back.

``build_dataset`` (in :mod:`.build`) writes the file; :mod:`.hdf5` holds the schema and the
readers (``open_dataset``, ``list_cases``, ``read_case``, ``iter_cases``); :mod:`.qc` the
per-case quality checks; :mod:`.discovery` how case folders are recognised.
"""

from __future__ import annotations

from AutoCTVLib.dataset.build import BuildReport, CaseReport, build_dataset
from AutoCTVLib.dataset.hdf5 import (
    FORMAT_NAME,
    FORMAT_VERSION,
    case_attrs,
    dataset_attrs,
    iter_cases,
    list_cases,
    open_dataset,
    read_case,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "BuildReport",
    "CaseReport",
    "build_dataset",
    "case_attrs",
    "dataset_attrs",
    "iter_cases",
    "list_cases",
    "open_dataset",
    "read_case",
]
