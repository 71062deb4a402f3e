"""What post-processing does to Dice and HD95: the same predictions, cleaned in different ways.

Each held-out phantom (default: the bundled model's 20 test phantoms, seeds 5000–5019, each on
its own varied clinical grid) is predicted once without post-processing; the thresholded mask
is then cleaned by every rule below and scored against the phantom's CTV on the CT's own grid:

* ``threshold only``: no clean-up;
* ``islands < 1 mL, fill 3D``: the rule before this benchmark (the CLI's default then);
* ``largest only, fill 3D``;
* ``largest + parts within D mm, fill 3D``: the CTV as one connected volume, keeping parts that
  come within D mm of the largest component (D = 5, 10, 15, 20).

Run: .venv/bin/python benchmarks/postprocess_islands.py [--model FILE] [--cases 20]
Writes benchmarks/results/postprocess_islands.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from common import model_record, write_results
from heldout_phantoms import VARIANTS, held_out_cases

from AutoCTVLib.inference.postprocess import PostprocessConfig, postprocess_mask
from AutoCTVLib.metrics import segmentation_metrics, summarize
from AutoCTVLib.models.bundled import find_bundled_model
from AutoCTVLib.predict import Predictor

RULES: dict[str, PostprocessConfig | None] = {
    "threshold only": None,
    "islands < 1 mL, fill 3D": PostprocessConfig(min_component_ml=1.0, fill_holes="3d"),
    "largest only, fill 3D": PostprocessConfig(keep_largest=1, fill_holes="3d"),
    "largest + parts within 5 mm, fill 3D": PostprocessConfig(near_largest_mm=5.0),
    "largest + parts within 10 mm, fill 3D": PostprocessConfig(near_largest_mm=10.0),
    "largest + parts within 15 mm, fill 3D": PostprocessConfig(near_largest_mm=15.0),
    "largest + parts within 20 mm, fill 3D": PostprocessConfig(near_largest_mm=20.0),
}


def _common_box(masks: list[np.ndarray], pad: int = 2) -> tuple[slice, ...]:
    """The bounding box of every mask plus ``pad`` background voxels per side (clipped): the
    metrics on this box equal those on the whole grid, because no surface touches its edge
    unless it touched the grid's edge already."""
    union = np.logical_or.reduce(masks)
    if not union.any():
        return tuple(slice(None) for _ in range(3))
    box = []
    for axis in range(3):
        present = np.flatnonzero(union.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(max(0, present[0] - pad), min(union.shape[axis], present[-1] + 1 + pad)))
    return tuple(box)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="model file (default: the bundled model)")
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--variant", choices=VARIANTS, default="test")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results/postprocess_islands"
    )
    args = parser.parse_args()
    model_path = args.model or find_bundled_model()
    predictor = Predictor.from_file(model_path, device="cpu", threads=args.threads)
    per_case: dict[str, list[dict[str, object]]] = {name: [] for name in RULES}
    for seed, phantom in held_out_cases(args.variant, args.cases):
        started = time.perf_counter()
        prediction = predictor.predict(phantom.ct, postprocess=None)
        mask = prediction.prob_ctv.array >= predictor.threshold
        geometry = phantom.ct.geometry
        cleaned = {
            name: mask if rule is None else postprocess_mask(mask, geometry, rule)
            for name, rule in RULES.items()
        }
        window = _common_box([*cleaned.values(), phantom.ctv.array > 0])
        scored: dict[bytes, dict[str, float]] = {}
        for name, candidate in cleaned.items():
            key = np.packbits(candidate).tobytes()
            if key not in scored:  # rules that give the same mask are scored once
                scored[key] = segmentation_metrics(
                    candidate[window], phantom.ctv.array[window], geometry.spacing_xyz_mm
                )
            per_case[name].append({"seed": seed, **scored[key]})
        line = ", ".join(f"{per_case[n][-1]['hd95_mm']:.1f}" for n in RULES)
        print(
            f"seed {seed}: HD95 by rule {line} ({time.perf_counter() - started:.0f} s)", flush=True
        )
    summaries = {name: summarize(rows) for name, rows in per_case.items()}
    baseline = per_case["islands < 1 mL, fill 3D"]
    rows = []
    for name in RULES:
        summary = summaries[name]
        changed = sum(
            abs(float(per_case[name][i]["hd95_mm"]) - float(baseline[i]["hd95_mm"])) > 1e-6
            for i in range(len(baseline))
        )
        worst = max(per_case[name], key=lambda row: row["hd95_mm"])  # type: ignore[arg-type,return-value]
        rows.append(
            [
                name,
                f"{summary['dice_mean']:.4f}",
                f"{summary['hd95_median_mm']:.2f}",
                f"{summary['hd95_mean_mm']:.2f}",
                f"{worst['hd95_mm']:.1f} (seed {worst['seed']})",
                changed,
            ]
        )
    record = model_record(Path(model_path), "given" if args.model else "bundled")
    write_results(
        args.out,
        f"Post-processing and HD95: {args.cases} held-out phantoms ({args.variant}), "
        f"model {record['name']} {record['version']}",
        [
            "rule",
            "Dice mean",
            "HD95 median mm",
            "HD95 mean mm",
            "HD95 max mm",
            "cases whose HD95 differs from the 1 mL rule",
        ],
        rows,
        {"model": record, "variant": args.variant, "summaries": summaries, "per_case": per_case},
        notes=[
            "Same predictions for every row (probability thresholded at the card's threshold "
            "on each CT's own grid); only the clean-up differs. Reference: the phantom's CTV."
        ],
    )
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
