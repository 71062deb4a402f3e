"""Synthetic female pelvic CT phantoms with structure labels and a guideline CTV.

``generate_phantom(PhantomConfig(seed=...)) -> Phantom`` builds one case in memory;
``write_phantom(phantom, out_dir)`` writes it (NIfTI or NRRD, optionally a DICOM CT series with
an RTSTRUCT). Synthetic data only: not patient data, not for clinical use.
"""

from __future__ import annotations

from AutoCTVLib.phantom.config import ANNOTATOR_STYLES, PhantomConfig, PhantomConfigError
from AutoCTVLib.phantom.ctv import CTVRules
from AutoCTVLib.phantom.generate import Phantom, generate_phantom
from AutoCTVLib.phantom.labels import STRUCTURES, StructureLabel
from AutoCTVLib.phantom.tissues import TISSUE_HU_RANGES
from AutoCTVLib.phantom.write import write_phantom

__all__ = [
    "ANNOTATOR_STYLES",
    "STRUCTURES",
    "TISSUE_HU_RANGES",
    "CTVRules",
    "Phantom",
    "PhantomConfig",
    "PhantomConfigError",
    "StructureLabel",
    "generate_phantom",
    "write_phantom",
]
