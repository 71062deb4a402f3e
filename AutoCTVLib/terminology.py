"""The coded meaning of what AutoCTV segments: one source for every writer.

The clinical target volume is coded as DICOM recommends for radiotherapy segmentations:

* category ``(130041, DCM, "RT Target")`` — DICOM CID 9580, RT Segmentation Property Category;
* type ``(228792002, SCT, "Clinical Target Volume")`` — DICOM CID 9534, Radiotherapy Target
  (the SNOMED CT concept "Clinical target volume").

Slicer's own terminology lists carry no radiotherapy targets, so the ``.seg.nrrd`` writer names
its own context; DICOM SEG, the model card and the Slicer segment tag use the same codes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CodedConcept:
    """A DICOM coded concept: code value, coding scheme designator and code meaning."""

    value: str
    scheme: str
    meaning: str


RT_TARGET_CATEGORY = CodedConcept("130041", "DCM", "RT Target")
CTV_TYPE = CodedConcept("228792002", "SCT", "Clinical Target Volume")
CTV_SEGMENT_NAME = "CTV"
CTV_COLOR_RGB = (255, 170, 0)
"""Display colour of the CTV segment, 8-bit RGB (orange, distinct from Slicer's organ colours)."""
