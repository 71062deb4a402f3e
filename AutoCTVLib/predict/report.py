"""``report.json``: what was done to which input with which model, how long it took, and how
sure the model was.

Layout (``report_version`` 1)::

    {
      "report_version": 1,
      "software": {"autoctv": "0.1.0", "torch": "2.13.0"},
      "model": {"name", "version", "sha256", "file", "disclaimer"},
      "input": {... identity of the CT: DICOM series UIDs or file path + sha256 ...,
                "geometry": {"shape_zyx", "spacing_xyz_mm", "origin_xyz_mm", "direction"}},
      "settings": {... device, threads, threshold, MC, post-processing, preprocessing ...},
      "timings_s": {"read", "preprocess", "network", "uncertainty", "resample",
                    "postprocess", "summary", "write", "total"},     # seconds
      "result": {"ctv_volume_ml", "ctv_voxels", "threshold"},
      "uncertainty": null | {"case_score", "slices_to_review", "per_slice_score",
                             "measure", "unit", "n_samples", "region_voxels", ...},
      "outputs": {"labelmap": "ctv.nii.gz", ...},                    # names inside OUT_DIR
      "warnings": [...],
      "provenance": {... the full provenance record of the prediction ...}
    }

``slices_to_review`` are axial slice indices k of the *input* CT (the z index of its
(z, y, x) array), most doubtful first.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from AutoCTVLib.predict.predictor import Prediction
from AutoCTVLib.volume import Geometry

REPORT_VERSION = 1


def geometry_summary(geometry: Geometry) -> dict[str, list[float] | list[int]]:
    """The grid as JSON lists (shape (z, y, x); spacing, origin in LPS mm; direction row-major)."""
    return {
        "shape_zyx": list(geometry.shape_zyx),
        "spacing_xyz_mm": list(geometry.spacing_xyz_mm),
        "origin_xyz_mm": list(geometry.origin_xyz_mm),
        "direction": list(geometry.direction),
    }


def build_report(
    prediction: Prediction,
    *,
    model_file: str = "",
    disclaimer: str = "",
    timings_s: Mapping[str, float] | None = None,
    outputs: Mapping[str, str] | None = None,
    warnings: tuple[str, ...] | list[str] = (),
) -> dict[str, Any]:
    """The report of one prediction.

    Args:
        prediction: the result (its provenance holds model, settings and input identity).
        model_file: the weights file used.
        disclaimer: the model card's disclaimer.
        timings_s: stage timings measured outside the predictor ("read", "write", "total"),
            merged with the prediction's own (seconds).
        outputs: output kind → file name inside the output folder.
        warnings: extra notes (reader warnings, skipped outputs) after the prediction's own.
    """
    provenance = prediction.provenance
    settings = provenance.get("settings", {})
    timings = {key: round(float(value), 4) for key, value in prediction.timings_s.items()}
    for key, value in (timings_s or {}).items():
        timings[key] = round(float(value), 4)
    uncertainty = None
    if prediction.summary is not None and prediction.uncertainty is not None:
        summary = prediction.summary
        uncertainty = {
            "case_score": _finite(summary.case_score),
            "slices_to_review": [int(k) for k in prediction.slices_to_review],
            "per_slice_score": [_finite(v) for v in summary.per_slice_score],
            "per_slice_score_unit": "bits·mm²" if summary.reduction == "sum" else "bits",
            "measure": summary.measure,
            "unit": prediction.uncertainty.unit,
            "n_samples": prediction.uncertainty.n_samples,
            "region_voxels": summary.region_voxels,
            "band_mm": summary.band_mm,
            "prob_range": list(summary.prob_range),
            "method": (settings.get("mc") or {}).get("method"),
            "sampled_fraction": settings.get("mc_sampled_fraction"),
        }
    input_identity = dict(provenance.get("input", {}))
    input_identity["geometry"] = geometry_summary(prediction.label.geometry)
    return {
        "report_version": REPORT_VERSION,
        "software": {
            "autoctv": provenance.get("software_version", ""),
            "torch": settings.get("torch", ""),
        },
        "model": {
            "name": provenance.get("model_name", ""),
            "version": provenance.get("model_version", ""),
            "sha256": provenance.get("model_sha256", ""),
            "file": str(model_file),
            "disclaimer": disclaimer,
        },
        "input": input_identity,
        "settings": settings,
        "timings_s": timings,
        "result": {
            "ctv_volume_ml": round(prediction.ctv_volume_ml, 3),
            "ctv_voxels": int(prediction.label.array.astype(bool).sum()),
            "threshold": settings.get("threshold"),
        },
        "uncertainty": uncertainty,
        "outputs": dict(outputs or {}),
        "warnings": [*prediction.warnings, *warnings],
        "provenance": provenance,
    }


def write_report(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``report`` as indented UTF-8 JSON to ``path`` (a temporary name of a transaction)."""
    target = Path(path)
    target.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return target


def _finite(value: float) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None
