"""Cascade ablation at a fixed budget: one switch of the segmenter's configuration per row.

Every row trains AutoCTV's segmenter with ``train_segmenter.py`` (one configuration file,
``--max-train-seconds``) on the peer benchmark's training data (``peers.py``: the same HDF5
dataset, fold-0 split and held-out phantoms) and predicts every held-out phantom in a fresh
process (``peers_case.py``), exactly as ``peers.py`` does for AutoCTV. A row's work folder that
already holds a trained model and its predictions is reused, so the peer run's AutoCTV row
(``--baseline-work``: the same configuration and budget) is the baseline without training again.

For each row: Dice mean (min), HD95 median (max), surface Dice at 2 mm, the paired change of Dice
and HD95 from the baseline (mean over cases, and on how many cases Dice went up), training
steps in the budget and the validation Dice at the stop. ``--pair ROW=OTHER`` pairs a row with
another row instead of the baseline (a switch repeated with another seed is compared with the
baseline trained with that seed).

Run (after ``peers.py``; rows are ``NAME=CONFIG``)::

    CONFIGS=benchmarks/configs
    .venv/bin/python benchmarks/cascade_ablation.py --baseline-work runs/peers \\
        --work runs/cascade_ablation --budget-s 900 \\
        --row "locator probability as input=$CONFIGS/ctv_segmenter_bf16_locator_probability.json"

Writes ``benchmarks/results/cascade_ablation.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_results
from peers import evaluate, heldout_files, interleaved
from peers_budget import measured_run

BENCHMARKS = Path(__file__).resolve().parent
REPOSITORY = BENCHMARKS.parent
BASELINE = "baseline (the committed configuration, bf16)"


def link_shared_inputs(baseline: Path, work: Path) -> None:
    """The baseline's training dataset and held-out phantoms, linked into ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    for name in ("train.h5", "heldout"):
        target = work / name
        if not target.exists():
            os.symlink((baseline / name).resolve(), target)


def train_row(work: Path, config: Path, budget_s: float, workers: int) -> dict[str, Any]:
    """Train one row's segmenter (once; a finished run is reused); its training record."""
    record_path = work / "autoctv" / "train_segmenter.json"
    if not record_path.exists():
        command = [
            sys.executable,
            str(BENCHMARKS / "train_segmenter.py"),
            *("--data", str(work / "train.h5"), "--out", str(work / "autoctv")),
            *("--workers", str(workers), "--device", "cpu"),
            *("--max-train-seconds", str(budget_s), "--config", str(config)),
        ]
        process = measured_run(command, work / "logs" / "train_autoctv.log")
        if process["returncode"] != 0:
            raise SystemExit(f"training failed; see {work / 'logs'}")
    return json.loads(record_path.read_text())


def summary(rows: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy of one row and its paired change from the baseline (same cases)."""
    before = {(r["variant"], r["seed"]): r for r in baseline}
    paired = [(r, before[(r["variant"], r["seed"])]) for r in rows]
    return {
        "cases": len(rows),
        "dice_mean": statistics.fmean(r["dice"] for r in rows),
        "dice_min": min(r["dice"] for r in rows),
        "hd95_median_mm": statistics.median(r["hd95_mm"] for r in rows),
        "hd95_max_mm": max(r["hd95_mm"] for r in rows),
        "surface_dice_mean": statistics.fmean(r["surface_dice_2mm"] for r in rows),
        "dice_change_mean": statistics.fmean(r["dice"] - b["dice"] for r, b in paired),
        "hd95_change_median_mm": statistics.median(r["hd95_mm"] - b["hd95_mm"] for r, b in paired),
        "cases_dice_up": sum(r["dice"] > b["dice"] for r, b in paired),
    }


def row_pairs(row_specs: list[str], pair_specs: list[str]) -> dict[str, str]:
    """Each row's comparison row: ``ROW=OTHER`` specs, OTHER the baseline or an earlier row.

    Raises:
        ValueError: a pair names a row that is not given, or one given after it.
    """
    names = [spec.partition("=")[0] for spec in row_specs]
    pairs = {}
    for spec in pair_specs:
        row, _, other = spec.partition("=")
        if row not in names or other not in {BASELINE, *names[: names.index(row)]}:
            raise ValueError(f"--pair {spec}: both must be rows, {other!r} listed before {row!r}")
        pairs[row] = other
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline-work", type=Path, required=True, help="peers.py's work folder")
    parser.add_argument("--work", type=Path, required=True, help="work folder of the rows")
    parser.add_argument("--budget-s", type=float, required=True, help="training budget, wall s")
    parser.add_argument("--row", action="append", required=True, help="NAME=CONFIG (repeatable)")
    parser.add_argument(
        "--pair",
        action="append",
        default=[],
        help="ROW=OTHER: compare ROW with the row OTHER instead of the baseline (repeatable)",
    )
    parser.add_argument("--test-cases", type=int, default=4)
    parser.add_argument("--per-variant", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "results" / "cascade_ablation")
    args = parser.parse_args()
    try:
        pairs = row_pairs(args.row, args.pair)
    except ValueError as error:
        parser.error(str(error))
    baseline_work = args.baseline_work.resolve()
    trainings = json.loads((baseline_work / "trainings.json").read_text())
    if trainings["autoctv"]["budget_s"] != args.budget_s:
        parser.error(f"the baseline was trained for {trainings['autoctv']['budget_s']:.0f} s")
    cases = interleaved(heldout_files(baseline_work, args.test_cases, args.per_variant))
    options = {
        "methods": ["autoctv"],
        "report_only": False,
        "threads": args.threads,
        "workers": args.workers,
        "nnunet_step": 0.5,  # (peers.evaluate passes it on; AutoCTV ignores it)
    }
    baseline_run = json.loads((baseline_work / "autoctv" / "train_segmenter.json").read_text())
    baseline_rows = evaluate(
        argparse.Namespace(work=baseline_work, **options), trainings, cases, "cpu"
    )
    results = {BASELINE: (baseline_run, baseline_rows, trainings["autoctv"]["config"])}
    for spec in args.row:
        name, _, config = spec.partition("=")
        work = args.work.resolve() / name.replace(" ", "_")
        link_shared_inputs(baseline_work, work)
        run = train_row(work, Path(config), args.budget_s, args.workers)
        model = {"autoctv": {"model": str(work / "autoctv" / "run" / "model.json")}}
        rows = evaluate(argparse.Namespace(work=work, **options), model, cases, "cpu")
        results[name] = (run, rows, Path(config).name)
    header = (
        "row",
        "config",
        "steps",
        "validation Dice",
        "Dice mean (min)",
        "HD95 median (max) mm",
        "SDice@2mm",
        "paired against",
        "Dice change (cases up)",
        "HD95 change mm (median)",
    )
    table, data = [], {}
    for name, (run, rows, config) in results.items():
        against = pairs.get(name, BASELINE)
        numbers = summary(rows, results[against][1])
        data[name] = {
            "config": config,
            "paired_against": against,
            "iterations": run["iterations_run"],
            "best_validation_dice": run["best_validation_dice"],
            **numbers,
            "per_case": rows,
        }
        table.append(
            (
                name,
                f"`{config}`",
                run["iterations_run"],
                f"{run['best_validation_dice']:.3f}",
                f"{numbers['dice_mean']:.3f} ({numbers['dice_min']:.3f})",
                f"{numbers['hd95_median_mm']:.1f} ({numbers['hd95_max_mm']:.1f})",
                f"{numbers['surface_dice_mean']:.3f}",
                "" if name == BASELINE else ("baseline" if against == BASELINE else against),
                ""
                if name == BASELINE
                else f"{numbers['dice_change_mean']:+.4f} "
                f"({numbers['cases_dice_up']}/{numbers['cases']})",
                "" if name == BASELINE else f"{numbers['hd95_change_median_mm']:+.1f}",
            )
        )
    notes = [
        f"Each row: AutoCTV's segmenter trained for {args.budget_s / 60:.0f} minutes (wall clock "
        "from the first step) on this CPU from its configuration file, on the peer benchmark's "
        f"training phantoms, and tested on its {len(cases)} held-out phantoms (test seeds on "
        "varied grids; the default grid, --vary-grid, --flip and --noise-hu 40), each predicted "
        "in a fresh process on the CT's own grid. Changes are paired (same cases) against the "
        "row named (the baseline is the peer run's AutoCTV row).",
    ]
    data = json.loads(json.dumps(data).replace(str(REPOSITORY) + os.sep, ""))
    write_results(
        args.out,
        "Cascade ablation: one switch per row, the same budget and held-out phantoms",
        header,
        table,
        {"budget_s": args.budget_s, "rows": data},
        notes,
    )
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
