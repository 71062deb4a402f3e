"""(CT, label) pairs for training, read from an AutoCTV HDF5 dataset (:mod:`AutoCTVLib.dataset`)."""

from __future__ import annotations

import os

from AutoCTVLib.dataset.hdf5 import list_cases, read_case
from AutoCTVLib.errors import InputError
from AutoCTVLib.volume import Volume


def list_case_ids(path: str | os.PathLike[str]) -> list[str]:
    """Sorted case ids of the dataset at ``path``."""
    return list_cases(path)


def read_ct_and_label(
    path: str | os.PathLike[str], case_id: str, label_name: str
) -> tuple[Volume, Volume]:
    """The CT (``float32`` HU) and the named label (``uint8`` 0/1) of one case, on the CT grid."""
    ct, labels, _ = read_case(path, case_id)
    if label_name not in labels:
        present = ", ".join(labels) or "none"
        raise InputError(
            f"case {case_id!r} has no label {label_name!r} (labels present: {present})"
        )
    return ct, labels[label_name]
