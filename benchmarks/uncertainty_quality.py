"""How good the MC-dropout uncertainty is, and whether the cheap sampling loses anything.

Cases: ``--cases`` held-out phantoms (seeds from ``--first-seed``, far from the training seeds)
and four perturbed copies of each:

* ``noise``: Gaussian noise of 60 HU standard deviation added to the CT;
* ``metal``: a 3000 HU hip-prosthesis-like ball at the left femoral head with bright and dark
  streaks through it on every slice it touches;
* ``truncated``: the field of view cut to the central 70 % of the image width (the body is cut
  off at both sides; the grid shrinks accordingly);
* ``annotator``: the same CT, with the reference CTV drawn in the "wide" annotator style.

For each case the model predicts with the cheap MC path (``--samples`` samples, default 20) and
with naive full MC (the same number of full passes, every recurrent step sampled). Measured
inside the body (HU > −500): Dice, expected calibration error (10 bins), Brier score, voxel
error-detection AUROC of the entropy and of the mutual information, uncertainty–error overlap
(entropy > 0.5 bit), the per-case score, and the seconds each method took.

Summary: cheap vs naive AUROC (the cheap path must stay within 0.02), the correlation between
per-case score and Dice, and per perturbation how often the score is higher than on the clean
case. The score sees only the image, so the ``annotator`` copy (same image) gets the clean
case's score by construction; it measures how errors in the reference show up in Dice only.

Run:   .venv/bin/python benchmarks/uncertainty_quality.py [--cases 20] [--samples 20]
       [--device auto] [--model FILE] [--naive-cases N]
Quick: .venv/bin/python benchmarks/uncertainty_quality.py --quick   (3 small cases, 4 samples)
Writes benchmarks/results/uncertainty_quality.{json,md} (``--quick``: *_quick.*). Without a
trained model (``--model`` or the bundled one) a random-weight model is used and the numbers
only show that the script runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import choose_model, model_label, model_record, write_results

REPOSITORY = Path(__file__).resolve().parents[1]
PERTURBATIONS = ("noise", "metal", "truncated", "annotator")
FULL_GRID = {"size_xyz": (512, 512, 100), "spacing_xyz_mm": (0.977, 0.977, 3.0)}
QUICK_GRID = {"size_xyz": (96, 96, 24), "spacing_xyz_mm": (3.5, 3.5, 8.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=20, help="held-out phantoms (≥ 20)")
    parser.add_argument("--first-seed", type=int, default=90_000, help="seed of the first case")
    parser.add_argument("--samples", type=int, default=20, help="MC samples per method")
    parser.add_argument("--naive-cases", type=int, help="run naive MC on this many cases only")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--model", type=Path, help="model file (default: bundled, else random)")
    parser.add_argument("--quick", action="store_true", help="3 small cases, 4 samples")
    parser.add_argument("--out", type=Path, help="results stem")
    args = parser.parse_args()
    if args.quick:
        args.cases, args.samples = min(args.cases, 3), min(args.samples, 4)
    stem = args.out or REPOSITORY / "benchmarks" / "results" / (
        "uncertainty_quality_quick" if args.quick else "uncertainty_quality"
    )
    with tempfile.TemporaryDirectory(prefix="autoctv-uq-") as scratch:
        run(args, Path(scratch), stem)


def run(args: argparse.Namespace, scratch: Path, stem: Path) -> None:
    from AutoCTVLib.predict import MCSettings, Predictor

    model_path, model_note = choose_model(
        args.model, scratch, quick=args.quick, allow_random=args.quick
    )
    predictor = Predictor.from_file(model_path, device=args.device, threads=args.threads)
    grid = QUICK_GRID if args.quick else FULL_GRID
    naive_cases = args.cases if args.naive_cases is None else args.naive_cases
    records = []
    for index in range(args.cases):
        seed = args.first_seed + index
        for variant, ct, reference in case_variants(seed, grid):
            record = {"seed": seed, "variant": variant}
            methods = ["cheap"] + (["naive"] if index < naive_cases else [])
            for method in methods:
                settings = MCSettings(samples=args.samples, method=method, seed=seed)
                started = time.perf_counter()
                prediction = predictor.predict(ct, mc=settings)
                record[method] = evaluate(prediction, ct, reference)
                record[method]["seconds"] = round(time.perf_counter() - started, 2)
            records.append(record)
            cheap = record["cheap"]
            print(
                f"seed {seed} {variant:<10} Dice {cheap['dice']:.3f} score "
                f"{cheap['case_score']:.3f} AUROC {cheap['auroc_entropy']:.3f}"
                + (f" (naive {record['naive']['auroc_entropy']:.3f})" if "naive" in record else ""),
                flush=True,
            )
    summary = summarise(records)
    rows = summary_rows(records)
    header = [
        "variant",
        "method",
        "cases",
        "Dice",
        "ECE",
        "Brier",
        "AUROC H",
        "AUROC MI",
        "U-E overlap",
        "case score",
        "s / case",
    ]
    data = {
        "mode": "quick" if args.quick else "full",
        "model": model_record(model_path, model_note),
        "samples": args.samples,
        "grid": {key: list(value) for key, value in grid.items()},
        "summary": summary,
        "cases": records,
    }
    title = f"MC-dropout uncertainty quality ({data['mode']}, N = {args.samples})"
    write_results(stem, title, header, rows, data)
    with open(stem.with_suffix(".md"), "a", encoding="utf-8") as handle:
        handle.write("\n" + "\n".join(summary_lines(summary, model_label(data["model"]))) + "\n")
    print(json.dumps(summary, indent=1))


# --------------------------------------------------------------------------- cases


def case_variants(seed: int, grid: dict):
    """(variant name, CT volume, reference CTV array) for the clean case and its copies."""
    from AutoCTVLib.phantom import PhantomConfig, generate_phantom

    phantom = generate_phantom(PhantomConfig(seed=seed, **grid))
    ct, reference = phantom.ct, phantom.ctv.array
    rng = np.random.default_rng(seed)
    yield "clean", ct, reference
    noisy = ct.array + rng.normal(0.0, 60.0, ct.array.shape).astype(np.float32)
    yield "noise", ct.with_array(noisy), reference
    head = phantom.anatomy["landmarks_lps_mm"]["femoral_head_left"]
    yield "metal", ct.with_array(add_metal(ct, np.asarray(head, dtype=float), rng)), reference
    cut_ct, cut_reference = truncate(ct, reference, keep=0.7)
    yield "truncated", cut_ct, cut_reference
    wide = generate_phantom(PhantomConfig(seed=seed, annotator_style="wide", **grid))
    yield "annotator", ct, wide.ctv.array


def add_metal(ct, centre_lps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 3000 HU ball of 12 mm radius at ``centre_lps`` and ±600 HU streaks through it."""
    geometry = ct.geometry
    hu = ct.array.copy()
    centre_ijk = geometry.physical_to_index(centre_lps)
    spacing_ijk = np.asarray(geometry.spacing_xyz_mm, dtype=float)
    radius_mm = 12.0
    rows, columns = geometry.shape_zyx[1], geometry.shape_zyx[2]
    j, i = np.indices((rows, columns), dtype=float)
    for k in range(geometry.shape_zyx[0]):
        dz_mm = (k - centre_ijk[2]) * spacing_ijk[2]
        if abs(dz_mm) > radius_mm:
            continue
        in_plane_mm2 = ((i - centre_ijk[0]) * spacing_ijk[0]) ** 2 + (
            (j - centre_ijk[1]) * spacing_ijk[1]
        ) ** 2
        ball = in_plane_mm2 + dz_mm**2 <= radius_mm**2
        if not ball.any():
            continue
        for angle in rng.uniform(0.0, np.pi, 6):
            across = (i - centre_ijk[0]) * np.sin(angle) - (j - centre_ijk[1]) * np.cos(angle)
            hu[k][np.abs(across) < 1.0] += rng.choice([-600.0, 600.0])
        hu[k][ball] = 3000.0
    return np.clip(hu, -1024.0, 3071.0).astype(np.float32)


def truncate(ct, reference: np.ndarray, keep: float):
    """Keep the central ``keep`` share of the columns (x): a narrower field of view."""
    from AutoCTVLib.volume import Geometry, Volume

    geometry = ct.geometry
    columns = geometry.shape_zyx[2]
    start = int(np.rint(columns * (1 - keep) / 2))
    stop = columns - start
    origin = geometry.index_to_physical(np.array([start, 0, 0], dtype=float))
    cut = Geometry(
        (geometry.shape_zyx[0], geometry.shape_zyx[1], stop - start),
        geometry.spacing_xyz_mm,
        tuple(float(v) for v in origin),
        geometry.direction,
    )
    array = np.ascontiguousarray(ct.array[:, :, start:stop])
    return Volume(array, cut, dict(ct.metadata)), np.ascontiguousarray(reference[:, :, start:stop])


# --------------------------------------------------------------------------- metrics


def evaluate(prediction, ct, reference: np.ndarray) -> dict:
    from AutoCTVLib.inference.calibration import (
        brier_score,
        error_detection_auroc,
        expected_calibration_error,
        uncertainty_error_overlap,
    )
    from AutoCTVLib.metrics import dice
    from AutoCTVLib.preprocess import body_mask

    maps = prediction.uncertainty
    body = body_mask(ct.array)
    label = prediction.label.array
    target = reference > 0
    return {
        "dice": round(dice(label, target), 4),
        "ece": round(expected_calibration_error(maps.mean_prob, target, region=body), 5),
        "brier": round(brier_score(maps.mean_prob, target, region=body), 5),
        "auroc_entropy": _round(error_detection_auroc(maps.entropy, label, target, region=body)),
        "auroc_mi": _round(
            error_detection_auroc(maps.mutual_information, label, target, region=body)
        ),
        "ue_overlap": round(
            uncertainty_error_overlap(maps.entropy, label, target, 0.5, region=body), 4
        ),
        "case_score": round(prediction.summary.case_score, 5),
        "slices_to_review": list(prediction.slices_to_review),
        "sampled_fraction": prediction.provenance["settings"].get("mc_sampled_fraction"),
    }


def _round(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 4)


def _mean(values: list) -> float | None:
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    return round(float(np.mean(finite)), 4) if finite else None


def summarise(records: list[dict]) -> dict:
    from scipy import stats

    both = [r for r in records if "naive" in r]
    differences = [
        r["cheap"]["auroc_entropy"] - r["naive"]["auroc_entropy"]
        for r in both
        if r["cheap"]["auroc_entropy"] is not None and r["naive"]["auroc_entropy"] is not None
    ]
    scores = [r["cheap"]["case_score"] for r in records]
    dices = [r["cheap"]["dice"] for r in records]
    summary: dict = {
        "auroc_entropy_cheap_minus_naive_mean": _mean(differences),
        "auroc_entropy_cheap_minus_naive_max_abs": (
            round(float(np.max(np.abs(differences))), 4) if differences else None
        ),
        "cheap_within_0.02_of_naive": (
            bool(abs(np.mean(differences)) <= 0.02) if differences else None
        ),
        "cheap_over_naive_seconds": (
            round(
                float(np.mean([r["cheap"]["seconds"] for r in both]))
                / float(np.mean([r["naive"]["seconds"] for r in both])),
                3,
            )
            if both
            else None
        ),
    }
    if len(records) >= 3 and np.std(scores) > 0 and np.std(dices) > 0:
        summary["score_dice_pearson"] = round(float(stats.pearsonr(scores, dices)[0]), 3)
        summary["score_dice_spearman"] = round(float(stats.spearmanr(scores, dices)[0]), 3)
    clean = {r["seed"]: r["cheap"]["case_score"] for r in records if r["variant"] == "clean"}
    for variant in PERTURBATIONS:
        pairs = [
            (r["cheap"]["case_score"], clean[r["seed"]])
            for r in records
            if r["variant"] == variant and r["seed"] in clean
        ]
        if pairs:
            summary[f"score_higher_than_clean_{variant}"] = round(
                float(np.mean([score > base for score, base in pairs])), 3
            )
            summary[f"score_mean_{variant}"] = _mean([score for score, _ in pairs])
    summary["score_mean_clean"] = _mean(list(clean.values()))
    return summary


def summary_rows(records: list[dict]) -> list[list[object]]:
    rows = []
    for variant in ("clean", *PERTURBATIONS):
        for method in ("cheap", "naive"):
            chosen = [r[method] for r in records if r["variant"] == variant and method in r]
            if not chosen:
                continue
            rows.append(
                [
                    variant,
                    method,
                    len(chosen),
                    *(
                        _mean([c[key] for c in chosen])
                        for key in (
                            "dice",
                            "ece",
                            "brier",
                            "auroc_entropy",
                            "auroc_mi",
                            "ue_overlap",
                            "case_score",
                            "seconds",
                        )
                    ),
                ]
            )
    return rows


def summary_lines(summary: dict, model_note: str) -> list[str]:
    lines = ["Summary:", ""]
    lines += [f"* {key}: {value}" for key, value in summary.items()]
    lines += ["", f"Model: {model_note}."]
    return lines


if __name__ == "__main__":
    main()
