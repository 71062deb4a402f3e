"""Does the MC-dropout uncertainty point where a physician will edit? Band and per-slice scores.

The whole-body figures of ``uncertainty_quality.py`` count every voxel with HU > −500; nearly all
of them are far from the CTV and trivially right, so they flatter any map. This benchmark scores
the uncertainty where the edits are, on phantoms no training used (``heldout_phantoms.py``):

* **band**: voxels within 7 voxels of the reference or the predicted CTV (the union of both
  masks dilated by a Euclidean ball of 7 voxels in index units of the CT's own grid: 7 pixels
  in-plane, 7 slices across; interiors included). A second band uses a 7 mm physical ball.
  In the band: voxel error-detection AUROC (error = predicted label ≠ reference) of the
  entropy and of the mutual information, and where the missed errors lie.
* **per slice**: Spearman correlation between the per-slice score the review list ranks by and
  the per-slice error area (mm²) over the *contour slices* (slices holding reference or
  predicted CTV); big slices have more of both, so also the partial Spearman with the contour
  length held fixed and the Spearman of score per contour length vs error per contour length
  (mm, a mean error width).
* **review list**: of the slices the list names (up to 5, ≥ 10 mm apart), how many are among the
  same number of slices with the largest error area (hit), or within one slice of one (near);
  and whether the slices of predicted components that do not touch the reference (stray
  islands) are listed.

Both models predict through ``Predictor.predict`` with the CLI's defaults (MC-20, seed 0,
default post-processing), on the CT's own grid. Per-slice scores and review lists are recomputed
from the saved maps with the library's ``summarise_uncertainty`` + ``slices_to_review`` (the
functions ``predict`` calls; the run checks they give the product's review list), so a score
definition can be compared on the ``validation`` seeds (7000..) without running the networks
again. Candidate definitions are chosen on validation seeds only; the held-out seeds are the
report.

Run:   .venv/bin/python benchmarks/uncertainty_band.py [--test-cases 20] [--per-variant 2]
           [--samples 20] [--cache DIR]
       .venv/bin/python benchmarks/uncertainty_band.py --validation 6 --cache DIR
       .venv/bin/python benchmarks/uncertainty_band.py --rescore --cache DIR  (no networks)
Quick: .venv/bin/python benchmarks/uncertainty_band.py --quick  (one small phantom, 4 samples)
Writes benchmarks/results/uncertainty_band.{json,md} (``--validation``: *_validation.*,
``--quick``: *_quick.*).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import model_record, write_results
from heldout_phantoms import variant_config, variant_seeds

REPOSITORY = Path(__file__).resolve().parents[1]
HELD_OUT_ORDER = ("test", "default", "vary_grid", "flip", "noise40")
BAND_VOXELS = 7.0
BAND_MM = 7.0
SILENT_BITS = 0.05
NEAR_TOLERANCE_SLICES = 1
CROP_MARGIN_VOXELS = 12
QUICK_GRID = {"size_xyz": (96, 96, 24), "spacing_xyz_mm": (3.5, 3.5, 8.0)}


# --------------------------------------------------------------------------- cases and models


def case_list(args: argparse.Namespace) -> list[tuple[str, int]]:
    """``(variant, seed)`` of every case this run measures."""
    if args.quick:
        return [("test", 5000)]
    if args.validation:
        return [("validation", seed) for seed in variant_seeds("validation", args.validation)]
    cases = []
    for variant in HELD_OUT_ORDER:
        count = args.test_cases if variant == "test" else args.per_variant
        cases += [(variant, seed) for seed in variant_seeds(variant, count)]
    return cases


def model_paths() -> dict[str, Path]:
    from AutoCTVLib.models.bundled import LOCATOR_MODEL_STEM, find_bundled_model

    models = REPOSITORY / "Resources" / "Models"
    return {
        "6 mm": find_bundled_model(LOCATOR_MODEL_STEM),
        "cascade": models / "ctv_pelvis_cascade.safetensors",
        "cascade-fp32": models / "ctv_pelvis_cascade.safetensors",
        "cascade-nomirror": models / "ctv_pelvis_cascade.safetensors",
    }


#: Keys that run their model with other speed settings than the product's defaults: the MC
#: decoder passes in float32 even where the CPU would run them in bf16 (``bf16_sampling``).
SPEED_OPTIONS = {"cascade-fp32": {"bf16_sampling": "off"}}
#: Keys that change the card's inference settings: all MC samples on the image as given, none
#: on its left-right mirror (``mirror_left_right``).
INFERENCE_OPTIONS = {"cascade-nomirror": {"mirror_left_right": False}}


def make_predictor(key: str, path: Path, threads: int) -> Any:
    """The predictor of a model key (its speed and inference options applied)."""
    from AutoCTVLib.models import load_model
    from AutoCTVLib.predict import Predictor, SpeedSettings

    model, card = load_model(path)
    card = card.replace(inference={**card.inference, **INFERENCE_OPTIONS.get(key, {})})
    speed = SpeedSettings(**SPEED_OPTIONS.get(key, {}))
    return Predictor(model, card, device="cpu", threads=threads, speed=speed)


def phantom_for(variant: str, seed: int, quick: bool):
    from AutoCTVLib.phantom import PhantomConfig, generate_phantom

    if quick:
        return generate_phantom(PhantomConfig(seed=seed, **QUICK_GRID))
    return generate_phantom(variant_config(variant, seed))


def predict_case(predictor, phantom, samples: int) -> dict[str, Any]:
    """Run the product (the CLI's call) and keep what the metrics need, cropped in-plane.

    Arrays keep every slice (so slice indices are the CT's) and the in-plane box of reference,
    prediction and every voxel with entropy > 1e-4 bits, grown by a margin.
    """
    from AutoCTVLib.predict import MCSettings

    started = time.perf_counter()
    prediction = predictor.predict(phantom.ct, mc=MCSettings(samples=samples, seed=0))
    seconds = time.perf_counter() - started
    maps = prediction.uncertainty
    label = prediction.label.array > 0
    reference = phantom.ctv.array > 0
    keep = label | reference | (maps.entropy > 1e-4)
    window = [slice(None)]
    for axis in (1, 2):
        others = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(keep.any(axis=others))
        size = keep.shape[axis]
        lo = max(0, int(present[0]) - CROP_MARGIN_VOXELS) if present.size else 0
        hi = min(size, int(present[-1]) + CROP_MARGIN_VOXELS + 1) if present.size else size
        window.append(slice(lo, hi))
    box = tuple(window)
    fine_box = (prediction.provenance["settings"].get("cascade") or {}).get("segmenter_box_mm")
    return {
        "mean_prob": maps.mean_prob[box],
        "entropy": maps.entropy[box],
        "mutual_information": maps.mutual_information[box],
        "label": label[box],
        "reference": reference[box],
        "spacing_xyz_mm": np.asarray(phantom.ct.geometry.spacing_xyz_mm, dtype=float),
        "product_review": np.asarray(prediction.slices_to_review, dtype=int),
        "product_per_slice": np.asarray(prediction.summary.per_slice_score, dtype=float),
        "seconds": np.asarray(seconds),
        "sampling_precision": np.asarray(
            prediction.provenance["settings"]["inference"]["sampling_precision"]
        ),
        "n_samples": np.asarray(samples),
        "fine_box": np.asarray(json.dumps(fine_box)),
    }


# --------------------------------------------------------------------------- metrics


def per_slice_candidates(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-slice score definitions compared on validation seeds (the product's is ``sum_R``)."""
    from AutoCTVLib.inference.review_quality import per_slice_perimeter_mm
    from AutoCTVLib.inference.uncertainty import (
        UncertaintyMaps,
        review_region,
        summarise_uncertainty,
    )

    spacing = tuple(float(v) for v in arrays["spacing_xyz_mm"])
    maps = _maps(arrays, UncertaintyMaps)
    pixel_mm2 = spacing[0] * spacing[1]
    prob = arrays["mean_prob"].astype(np.float64)
    entropy = arrays["entropy"].astype(np.float64)
    perimeter = per_slice_perimeter_mm(arrays["mean_prob"] >= 0.5, spacing)
    sum_r = summarise_uncertainty(maps, spacing).per_slice_score
    region = review_region(maps.mean_prob, spacing)
    return {
        "sum_R": sum_r,
        "mean_R": summarise_uncertainty(maps, spacing, reduction="mean").per_slice_score,
        "sum_R_mi": summarise_uncertainty(
            maps, spacing, measure="mutual_information"
        ).per_slice_score,
        "sum_R_5mm": summarise_uncertainty(maps, spacing, band_mm=5.0).per_slice_score,
        # the entropy raised to a power before the sum (> 1: the most doubtful voxels count more)
        **{
            f"sum_R_pow{power:g}": np.where(region, entropy**power, 0.0).sum(axis=(1, 2))
            * pixel_mm2
            for power in (1.5, 2.0)
        },
        "sum_slice": entropy.sum(axis=(1, 2)) * pixel_mm2,
        "expected_error": np.minimum(prob, 1.0 - prob).sum(axis=(1, 2)) * pixel_mm2,
        "max": entropy.max(axis=(1, 2)),
        "sum_R_per_mm": np.divide(sum_r, perimeter, out=np.zeros_like(sum_r), where=perimeter > 0),
    }


def evaluate(arrays: dict[str, np.ndarray], review_count: int = 5) -> dict[str, Any]:
    """Every metric of one case and model from the saved arrays (see the module docstring)."""
    from scipy import ndimage

    from AutoCTVLib.inference.calibration import error_detection_auroc
    from AutoCTVLib.inference.review import separation_in_slices, slices_to_review
    from AutoCTVLib.inference.review_quality import (
        contour_band,
        false_positive_components,
        partial_spearman,
        per_slice_error_area_mm2,
        per_slice_perimeter_mm,
        review_hits,
        spearman,
    )
    from AutoCTVLib.inference.uncertainty import (
        UncertaintyMaps,
        binary_entropy,
        summarise_uncertainty,
    )
    from AutoCTVLib.metrics import dice
    from AutoCTVLib.predict.predictor import REVIEW_SEPARATION_MM

    spacing = tuple(float(v) for v in arrays["spacing_xyz_mm"])
    label, reference = arrays["label"], arrays["reference"]
    entropy, mi = arrays["entropy"], arrays["mutual_information"]
    errors = label != reference
    result: dict[str, Any] = {
        "dice": round(dice(label, reference), 4),
        "seconds": round(float(arrays["seconds"]), 1),
        "sampling_precision": str(arrays.get("sampling_precision", "float32")),
        "spacing_xyz_mm": [round(s, 3) for s in spacing],
    }
    # Distance (mm) of every voxel from the predicted contour (inside and outside).
    inside = ndimage.distance_transform_edt(label, sampling=spacing[::-1])
    outside = ndimage.distance_transform_edt(~label, sampling=spacing[::-1])
    distance = np.where(label, inside, outside)
    # Diagnostics, not the product's map: the entropy of the mean probability on the CT grid
    # (the product interpolates the network grid's entropy) and a map that knows nothing but
    # the distance from the predicted contour.
    entropy_of_mean = binary_entropy(arrays["mean_prob"])
    for name, band in (
        ("band_7vox", contour_band(reference, label, BAND_VOXELS)),
        ("band_7mm", contour_band(reference, label, BAND_MM, spacing)),
    ):
        result[name] = {
            "voxels": int(band.sum()),
            "error_share": round(float(errors[band].mean()), 4),
            "auroc_entropy": _round(error_detection_auroc(entropy, label, reference, band)),
            "auroc_mi": _round(error_detection_auroc(mi, label, reference, band)),
            "auroc_entropy_of_mean_prob": _round(
                error_detection_auroc(entropy_of_mean, label, reference, band)
            ),
            "auroc_distance_only": _round(error_detection_auroc(-distance, label, reference, band)),
        }
    error_distance = distance[errors]
    silent = entropy[errors] < SILENT_BITS
    result["errors"] = {
        "voxels": int(errors.sum()),
        "false_negative_share": round(float((errors & reference).sum() / max(1, errors.sum())), 3),
        "silent_share": round(float(silent.mean()) if silent.size else 0.0, 3),
        "zero_entropy_share": round(float((entropy[errors] == 0).mean()) if silent.size else 0, 3),
        "distance_median_mm": round(float(np.median(error_distance)), 2) if silent.size else 0.0,
        "silent_distance_median_mm": (
            round(float(np.median(error_distance[silent])), 2) if silent.any() else None
        ),
        "share_beyond_3mm": round(float((error_distance > 3.0).mean()), 3) if silent.size else 0,
    }
    # Per slice: the product's score (recomputed from the maps) against the error area.
    maps = _maps(arrays, UncertaintyMaps)
    score = summarise_uncertainty(maps, spacing).per_slice_score
    separation = separation_in_slices(REVIEW_SEPARATION_MM, spacing[2])
    listed = slices_to_review(score, review_count, separation)
    product_review = [int(k) for k in arrays["product_review"]]
    area = per_slice_error_area_mm2(label, reference, spacing)
    perimeter = (
        per_slice_perimeter_mm(label, spacing) + per_slice_perimeter_mm(reference, spacing)
    ) / 2.0
    contour = (label | reference).any(axis=(1, 2))
    result["per_slice"] = {
        "contour_slices": int(contour.sum()),
        "spearman": _round(spearman(score[contour], area[contour])),
        "partial_spearman_perimeter": _round(
            partial_spearman(score[contour], area[contour], perimeter[contour])
        ),
        "spearman_per_perimeter": _round(
            spearman(
                score[contour] / np.maximum(perimeter[contour], 1e-6),
                area[contour] / np.maximum(perimeter[contour], 1e-6),
            )
        ),
        "spearman_perimeter_vs_error": _round(spearman(perimeter[contour], area[contour])),
        "candidates": {
            name: _round(spearman(values[contour], area[contour]))
            for name, values in per_slice_candidates(arrays).items()
        },
    }
    hits = review_hits(listed, area, NEAR_TOLERANCE_SLICES)
    places = review_hits(listed, area, separation - 1, separation)
    islands = false_positive_components(label, reference)
    result["review"] = {
        "listed": list(listed),
        "matches_product": listed == product_review,
        "top_error_slices": list(hits.top_error_slices),
        "hit_rate": _round(hits.hit_rate),
        "near_hit_rate": _round(hits.near_hit_rate),
        "top_error_places": list(places.top_error_slices),
        "place_hit_rate": _round(places.near_hit_rate),
        "error_area_listed_mm2": round(float(area[listed].sum()), 1) if listed else 0.0,
        "error_area_top_mm2": round(float(area[list(hits.top_error_slices)].sum()), 1),
        "stray_islands": [
            {
                "voxels": island.voxels,
                "slices": [island.slices[0], island.slices[-1]],
                "listed": any(
                    island.slices[0] - NEAR_TOLERANCE_SLICES
                    <= k
                    <= island.slices[-1] + NEAR_TOLERANCE_SLICES
                    for k in listed
                ),
                "score_rank": _island_rank(score, contour, island.slices),
            }
            for island in islands
        ],
    }
    return result


def _island_rank(score: np.ndarray, contour: np.ndarray, slices: tuple[int, ...]) -> int:
    """1-based rank of the island's highest-scoring slice among the contour slices."""
    best = max(float(score[k]) for k in slices)
    return int(np.sum(score[contour] > best)) + 1


def _maps(arrays: dict[str, np.ndarray], maps_type: Any) -> Any:
    entropy = arrays["entropy"].astype(np.float32)
    mi = arrays["mutual_information"].astype(np.float32)
    return maps_type(
        mean_prob=arrays["mean_prob"].astype(np.float32),
        entropy=entropy,
        expected_entropy=np.maximum(entropy - mi, 0.0),
        mutual_information=mi,
        variance=np.zeros_like(entropy),
        n_samples=int(arrays["n_samples"]),
    )


def _round(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


# --------------------------------------------------------------------------- summaries


def _stats(values: list[Any]) -> dict[str, float | None]:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return {"median": None, "min": None, "n": 0}
    return {
        "median": round(statistics.median(finite), 4),
        "min": round(min(finite), 4),
        "n": len(finite),
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and minimum of the headline figures, and pooled review-list counts."""
    summary: dict[str, Any] = {
        "cases": len(rows),
        "dice": _stats([r["dice"] for r in rows]),
        "band_7vox_auroc_entropy": _stats([r["band_7vox"]["auroc_entropy"] for r in rows]),
        "band_7vox_auroc_mi": _stats([r["band_7vox"]["auroc_mi"] for r in rows]),
        "band_7vox_auroc_entropy_of_mean_prob": _stats(
            [r["band_7vox"]["auroc_entropy_of_mean_prob"] for r in rows]
        ),
        "band_7vox_auroc_distance_only": _stats(
            [r["band_7vox"]["auroc_distance_only"] for r in rows]
        ),
        "band_7mm_auroc_entropy": _stats([r["band_7mm"]["auroc_entropy"] for r in rows]),
        "band_7mm_auroc_mi": _stats([r["band_7mm"]["auroc_mi"] for r in rows]),
        "slice_spearman": _stats([r["per_slice"]["spearman"] for r in rows]),
        "slice_partial_spearman_perimeter": _stats(
            [r["per_slice"]["partial_spearman_perimeter"] for r in rows]
        ),
        "slice_spearman_per_perimeter": _stats(
            [r["per_slice"]["spearman_per_perimeter"] for r in rows]
        ),
        "slice_spearman_perimeter_vs_error": _stats(
            [r["per_slice"]["spearman_perimeter_vs_error"] for r in rows]
        ),
        "review_hit_rate": _stats([r["review"]["hit_rate"] for r in rows]),
        "review_near_hit_rate": _stats([r["review"]["near_hit_rate"] for r in rows]),
        "review_place_hit_rate": _stats([r["review"]["place_hit_rate"] for r in rows]),
        "error_silent_share": _stats([r["errors"]["silent_share"] for r in rows]),
        "error_zero_entropy_share": _stats([r["errors"]["zero_entropy_share"] for r in rows]),
        "error_distance_median_mm": _stats([r["errors"]["distance_median_mm"] for r in rows]),
        "silent_error_distance_median_mm": _stats(
            [r["errors"]["silent_distance_median_mm"] for r in rows]
        ),
    }
    islands = [island for r in rows for island in r["review"]["stray_islands"]]
    summary["stray_islands"] = {
        "cases_with_islands": sum(bool(r["review"]["stray_islands"]) for r in rows),
        "islands": len(islands),
        "listed": sum(island["listed"] for island in islands),
    }
    summary["review_matches_product"] = all(r["review"]["matches_product"] for r in rows)
    names = rows[0]["per_slice"]["candidates"] if rows else {}
    summary["candidates_spearman"] = {
        name: _stats([r["per_slice"]["candidates"][name] for r in rows]) for name in names
    }
    return summary


def table_rows(results: dict[str, dict[str, Any]]) -> list[list[object]]:
    rows = []
    for model, by_group in results.items():
        for group, summary in by_group.items():
            s = summary
            rows.append(
                [
                    model,
                    group,
                    s["cases"],
                    _fmt(s["dice"]),
                    _fmt(s["band_7vox_auroc_entropy"]),
                    _fmt(s["band_7vox_auroc_mi"]),
                    _fmt(s["band_7mm_auroc_entropy"]),
                    _fmt(s["slice_spearman"]),
                    _fmt(s["slice_partial_spearman_perimeter"]),
                    _fmt(s["slice_spearman_per_perimeter"]),
                    _fmt(s["review_hit_rate"], 2),
                    _fmt(s["review_near_hit_rate"], 2),
                    _fmt(s["review_place_hit_rate"], 2),
                    f"{s['stray_islands']['listed']}/{s['stray_islands']['islands']}",
                ]
            )
    return rows


def _fmt(stat: dict[str, Any], digits: int = 3) -> str:
    if stat["median"] is None:
        return "–"
    return f"{stat['median']:.{digits}f} ({stat['min']:.{digits}f})"


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--test-cases", type=int, default=20, help="test phantoms (5000..)")
    parser.add_argument("--per-variant", type=int, default=2, help="cases of each other variant")
    parser.add_argument("--validation", type=int, default=0, help="validation seeds (7000..)")
    parser.add_argument("--samples", type=int, default=20, help="MC-dropout samples")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--cache", type=Path, help="folder for the saved maps (reused)")
    parser.add_argument("--rescore", action="store_true", help="only re-evaluate cached maps")
    parser.add_argument(
        "--models",
        default="6 mm,cascade",
        help="comma-separated model keys: 6 mm, cascade, cascade-fp32 (MC passes in float32), "
        "cascade-nomirror (no MC samples on the mirrored image)",
    )
    parser.add_argument("--quick", action="store_true", help="one small phantom, 4 samples")
    parser.add_argument("--out", type=Path, help="results stem")
    args = parser.parse_args()
    if args.quick:
        args.samples = min(args.samples, 4)
    suffix = "_quick" if args.quick else "_validation" if args.validation else ""
    stem = args.out or REPOSITORY / "benchmarks" / "results" / f"uncertainty_band{suffix}"
    with tempfile.TemporaryDirectory(prefix="autoctv-band-") as scratch:
        run(args, args.cache or Path(scratch), stem)


def run(args: argparse.Namespace, cache: Path, stem: Path) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    paths = {key: path for key, path in model_paths().items() if key in args.models.split(",")}
    predictors: dict[str, Any] = {}
    per_case: dict[str, list[dict[str, Any]]] = {key: [] for key in paths}
    for variant, seed in case_list(args):
        phantom = None
        for key, path in paths.items():
            file = cache / f"{key.replace(' ', '')}_{variant}_{seed}_n{args.samples}.npz"
            if not file.exists():
                if args.rescore:
                    raise SystemExit(f"--rescore: no saved maps for {key} {variant} {seed}")
                if phantom is None:
                    phantom = phantom_for(variant, seed, args.quick)
                if key not in predictors:
                    predictors[key] = make_predictor(key, path, args.threads)
                partial = file.with_name(file.stem + ".partial.npz")
                np.savez(partial, **predict_case(predictors[key], phantom, args.samples))
                partial.replace(file)
            with np.load(file) as saved:
                arrays = {name: saved[name] for name in saved.files}
            row = {"variant": variant, "seed": seed, **evaluate(arrays)}
            per_case[key].append(row)
            print(
                f"{key:<8} {variant:<10} {seed}: Dice {row['dice']:.3f} band AUROC H "
                f"{row['band_7vox']['auroc_entropy']} MI {row['band_7vox']['auroc_mi']} "
                f"slice rho {row['per_slice']['spearman']} hits {row['review']['hit_rate']} "
                f"({row['seconds']} s)",
                flush=True,
            )
    results: dict[str, dict[str, Any]] = {}
    for key, rows in per_case.items():
        groups = {"all": rows}
        if not args.validation and not args.quick:
            groups = {
                "test (5000–5019, varied grids)": [r for r in rows if r["variant"] == "test"],
                "new seeds (default, vary-grid, flip, noise 40)": [
                    r for r in rows if r["variant"] != "test"
                ],
                "all": rows,
            }
        results[key] = {group: summarise(chosen) for group, chosen in groups.items() if chosen}
    header = [
        "model",
        "cases",
        "n",
        "Dice",
        "band AUROC H",
        "band AUROC MI",
        "7 mm band AUROC H",
        "slice ρ",
        "slice ρ, length fixed",
        "ρ per length",
        "review hits",
        "near hits",
        "place hits",
        "islands listed",
    ]
    data = {
        "mode": "quick" if args.quick else "validation" if args.validation else "held-out",
        "models": {key: model_record(path, "bundled") for key, path in paths.items()},
        "samples": args.samples,
        "band": {
            "band_7vox": f"reference ∪ prediction dilated by a ball of {BAND_VOXELS:g} voxels "
            "(index units) of the CT's own grid",
            "band_7mm": f"reference ∪ prediction dilated by a ball of {BAND_MM:g} mm",
        },
        "summary": results,
        "cases": per_case,
    }
    notes = [
        "Cells: median (minimum) over cases. Band: reference ∪ predicted CTV dilated by a ball "
        "of 7 voxels of the CT's own grid (7 pixels in-plane, 7 slices across; e.g. 6.8 mm "
        "in-plane and 21 mm across slices on the default 0.98×0.98×3 mm grid); 7 mm band: a "
        "7 mm ball. AUROC: voxel error detection (label ≠ reference) in the band. Slice ρ: "
        "Spearman of the review list's per-slice score vs the per-slice error area (mm²) over "
        "the slices holding reference or predicted CTV; ρ, length fixed: partial Spearman with the "
        "contour length held fixed; ρ per length: both divided by the contour length. Review "
        "hits: share of listed slices (up to 5) among the same number of slices with the "
        "largest error area; near: within one slice of one; place hits: listed slices less than "
        "10 mm from one of as many error places (slices of largest error area picked 10 mm "
        "apart, as the list picks its slices). Islands listed: stray predicted "
        "components (not touching the reference) whose slices (±1) the list names, of all.",
        f"MC-{args.samples} (seed 0), default post-processing, CPU.",
    ]
    title = f"Uncertainty near the contour and per slice ({data['mode']}, MC-{args.samples})"
    write_results(stem, title, header, table_rows(results), data, notes)
    print(json.dumps({k: v.get("all") for k, v in results.items()}, indent=1)[:4000])


if __name__ == "__main__":
    main()
