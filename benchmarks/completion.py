"""Sparse-slice completion accuracy and speed on held-out phantoms, per method and annotation.

For each held-out phantom (seeds never used in training) and structure (the CTV, and the
bladder, rectum and sacrum, which the completion network never saw), the reference is sparsified
by fixed schedules and completed by each method:

* axial slices every 2nd, 3rd, 5th, 8th and 12th slice over the structure (the last slice
  always included, as a physician closes a contour);
* orthogonal slices (axial, coronal, sagittal) = (1,1,1), (2,2,1), (3,3,2), (5,5,3), spread
  evenly over the structure, as in the 3D U-Net paper (Çiçek et al. 2016), whose
  semi-automatic IoU ranges are shown beside ours.

Dice, IoU and HD95 (mm) are measured against the full reference on the whole grid (annotated
slices included: they are exact for every method); wall time per completion. "interpolate" needs
two slices along one axis, so (1,1,1) has no interpolation result.

Run: .venv/bin/python benchmarks/completion.py [--cases 20] [--model FILE] [--quick]
Writes benchmarks/results/completion.{json,md} (``--quick``: completion_quick.* unless --out).

Each completion is appended to a records file as it finishes; a rerun skips those, so an
interrupted run resumes, and ``--shard K/N`` (phantoms whose index is K modulo N) lets N
processes share the work on one records file. The table committed was made so, on 2 cores::

    benchmarks/completion.py --methods interpolate,learned --threads 1 --shard 0/2 &
    benchmarks/completion.py --methods interpolate,learned --threads 1 --shard 1/2
    benchmarks/completion.py --threads 2     # fine-tuning alone, then the whole table
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_results

from AutoCTVLib.completion import FinetuneConfig, complete
from AutoCTVLib.completion.model import bundled_model_available, resolve_model
from AutoCTVLib.completion.sampling import evenly_spread_slices, every_nth_slice
from AutoCTVLib.errors import InputError
from AutoCTVLib.metrics import dice, hd95
from AutoCTVLib.phantom import PhantomConfig, generate_phantom
from AutoCTVLib.volume import Volume

#: Phantom seeds from here on are used by no training or validation run.
BENCHMARK_SEED = 5_000_000
AXIAL_STEPS = (2, 3, 5, 8, 12)
ORTHOGONAL_COUNTS = ((1, 1, 1), (2, 2, 1), (3, 3, 2), (5, 5, 3))
#: Semi-automatic IoU ranges of the 3D U-Net paper per orthogonal slice counts.
PAPER_IOU = {
    (1, 1, 1): "0.33–0.48",
    (2, 2, 1): "0.58–0.74",
    (3, 3, 2): "0.76–0.84",
    (5, 5, 3): "0.85–0.87",
}
STRUCTURES = ("CTV", "bladder", "rectum", "sacrum")
METHODS = ("interpolate", "learned", "finetune")


def iou(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Intersection over union; 1.0 when both are empty."""
    union = int(np.count_nonzero(prediction | reference))
    return 1.0 if union == 0 else int(np.count_nonzero(prediction & reference)) / union


def structure_mask(phantom, name: str) -> np.ndarray:
    if name == "CTV":
        return phantom.ctv.array > 0
    values = {label: value for value, label in phantom.structure_names.items()}
    return phantom.structures.array == values[name]


#: ``(name, orthogonal counts or None, axial step or None)`` in table order.
SCHEDULES = [(f"axial every {step}", None, step) for step in AXIAL_STEPS] + [
    (f"orthogonal {counts}", counts, None) for counts in ORTHOGONAL_COUNTS
]
#: Fine-tuning costs its whole time budget per completion, so by default it runs on a sparse
#: axial and the paper's semi-automatic orthogonal setting only (``--finetune-schedules all``).
FINETUNE_SCHEDULES = ("axial every 5", "orthogonal (3, 3, 2)")


def annotation_for(reference: np.ndarray, counts: tuple | None, step: int | None):
    """The annotation of one schedule (see the module docstring)."""
    if counts is not None:
        return evenly_spread_slices(reference, counts)
    return every_nth_slice(reference, "z", step)


def run_one(ct, reference, annotation, method, model, budget_s) -> dict[str, object]:
    sparse = reference & annotation.known_mask(reference.shape)
    started = time.perf_counter()
    try:
        result = complete(
            ct,
            Volume(sparse.astype(np.uint8), ct.geometry),
            method=method,
            annotation=annotation,
            model=model if method != "interpolate" else None,
            finetune=FinetuneConfig(time_budget_s=budget_s),
        )
    except InputError as error:
        return {"method": method, "skipped": str(error)}
    mask = result.mask.array > 0
    distance = hd95(mask, reference, ct.geometry.spacing_xyz_mm)
    return {
        "method": method,
        "dice": dice(mask, reference),
        "iou": iou(mask, reference),
        "hd95_mm": distance if math.isfinite(distance) else None,  # None: empty result
        "seconds": time.perf_counter() - started,
        "finetune_steps": result.details.get("finetune_steps"),
    }


def record_key(record: dict) -> tuple:
    """What identifies one completion: phantom seed, structure, schedule, method."""
    return (record["seed"], record["structure"], record["schedule"], record["method"])


def load_records(path: Path, settings: dict) -> list[dict]:
    """The completions an earlier, interrupted run kept in ``path`` (none if it is missing).

    The file's first line holds the settings it was made with; other settings are refused.
    """
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    if not rows or rows[0].get("settings") != settings:
        raise SystemExit(
            f"{path} holds completions made with other settings (model, grid or budget); "
            "delete it or pass another --records file"
        )
    return rows[1:]


def summarise(records: list[dict], key: str) -> float | None:
    values = [r[key] for r in records if key in r and r[key] is not None]
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    return statistics.median(finite) if key == "hd95_mm" else statistics.fmean(finite)


#: The issue's target: "learned" beats "interpolate" by this much Dice at these schedules.
TARGET_MARGIN = 0.03
TARGET_SCHEDULES = ("axial every 5", "axial every 8", "axial every 12")


def paired_differences(records: list[dict], structure: str, schedule: str, method: str) -> list:
    """Per-phantom Dice of ``method`` minus that of "interpolate" (phantoms with both)."""
    by_seed: dict[int, dict[str, float]] = {}
    for r in records:
        if r["structure"] == structure and r["schedule"] == schedule and "dice" in r:
            by_seed.setdefault(r["seed"], {})[r["method"]] = r["dice"]
    return [
        v[method] - v["interpolate"] for v in by_seed.values() if {method, "interpolate"} <= set(v)
    ]


def comparison_paragraphs(records: list[dict], structures: list[str], methods: list[str]) -> list:
    """A Markdown table of the paired Dice gain over interpolation, with the target."""
    network_methods = [m for m in methods if m != "interpolate"]
    if "interpolate" not in methods or not network_methods:
        return []
    lines = [
        "Gain over interpolation (paired per phantom: mean Dice difference, phantoms better / "
        f"compared); target: learned ≥ +{TARGET_MARGIN:.2f} at every 5th axial slice and wider.",
        "",
        "| structure | annotation | "
        + " | ".join(f"{m} − interpolate" for m in network_methods)
        + " | learned target met |",
        "|---|---|" + "---|" * len(network_methods) + "---|",
    ]
    for structure in structures:
        for schedule, _, _ in SCHEDULES:
            cells, met = [], ""
            for method in network_methods:
                diffs = paired_differences(records, structure, schedule, method)
                if not diffs:
                    cells.append("n/a")
                    continue
                mean = statistics.fmean(diffs)
                better = sum(d > 0 for d in diffs)
                cells.append(f"{mean:+.3f} ({better}/{len(diffs)})")
                if method == "learned" and schedule in TARGET_SCHEDULES:
                    met = "yes" if mean >= TARGET_MARGIN else "no"
            if all(c == "n/a" for c in cells):
                continue
            lines.append(f"| {structure} | {schedule} | " + " | ".join(cells) + f" | {met} |")
    return ["\n".join(lines)]


def timing_paragraphs(records: list[dict], methods: list[str]) -> list:
    """Median and largest wall time per completion of each method."""
    parts = []
    for method in methods:
        seconds = [r["seconds"] for r in records if r["method"] == method and "seconds" in r]
        if seconds:
            threads = sorted({r.get("threads") for r in records if r["method"] == method} - {None})
            used = f", {'/'.join(map(str, threads))} thread(s)" if threads else ""
            parts.append(
                f"{method} {statistics.median(seconds):.1f} s (largest {max(seconds):.1f} s, "
                f"{len(seconds)} completions{used})"
            )
    if not parts:
        return []
    return [
        "Wall time per completion on the CT grid (the grid above), median: "
        + "; ".join(parts)
        + ". Targets: learned ≤ 10 s, finetune ≤ 60 s on 512×512×100."
    ]


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=20, help="held-out phantoms")
    parser.add_argument("--finetune-cases", type=int, default=3, help="phantoms for finetune")
    parser.add_argument(
        "--finetune-schedules",
        default=";".join(FINETUNE_SCHEDULES),
        help="annotation schedules fine-tuned on ('; '-separated table names, or 'all')",
    )
    parser.add_argument("--model", type=Path, help="completion model (default: bundled)")
    parser.add_argument("--structures", default=",".join(STRUCTURES))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--time-budget", type=float, default=40.0, help="finetune seconds")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 small phantom")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--shard", default="0/1", help="K/N: only phantoms with index %% N == K")
    parser.add_argument("--out", type=Path, help="output stem (default results/completion)")
    parser.add_argument(
        "--records",
        type=Path,
        help="JSON-lines file keeping each completion as it finishes; a rerun with the same file "
        "skips those (default benchmarks/out/<out name>.records.jsonl)",
    )
    args = parser.parse_args()
    try:
        shard, shards = (int(part) for part in args.shard.split("/"))
        if not 0 <= shard < shards:
            raise ValueError
    except ValueError:
        parser.error(f"--shard takes K/N with 0 <= K < N, got {args.shard!r}")
    if args.threads:
        torch.set_num_threads(args.threads)
    results_dir = Path(__file__).parent / "results"
    out = args.out or results_dir / ("completion_quick" if args.quick else "completion")
    grid: dict[str, object] = {}  # default: 512×512×100 at 0.98×0.98×3 mm
    cases, finetune_cases, budget = args.cases, args.finetune_cases, args.time_budget
    structures = [s for s in args.structures.split(",") if s]
    if args.quick:
        grid = {"size_xyz": (160, 160, 60), "spacing_xyz_mm": (2.6, 2.6, 5.0)}
        cases, finetune_cases, budget = 1, 1, min(budget, 3.0)
        structures = structures[:2]
    methods = [m for m in args.methods.split(",") if m]
    known = [name for name, _, _ in SCHEDULES]
    finetune_schedules = (
        known
        if args.finetune_schedules == "all"
        else [n.strip() for n in args.finetune_schedules.split(";")]
    )
    for name in finetune_schedules:
        if name not in known:
            parser.error(f"unknown schedule {name!r}; choose from {', '.join(known)} or 'all'")
    notes = []
    model = None
    if any(m != "interpolate" for m in methods):
        if args.model is None and not bundled_model_available():
            notes.append("no completion model available: only 'interpolate' was run")
            methods = [m for m in methods if m == "interpolate"]
        else:
            model = resolve_model(args.model)
            notes.append(f"model: {model.provenance()}")
    records_path = args.records or Path(__file__).parent / "out" / f"{out.name}.records.jsonl"
    settings = {
        "model": None if model is None else str(model.provenance()),
        "grid": {k: list(v) for k, v in grid.items()},
        "finetune_time_budget_s": budget,
    }
    records = load_records(records_path, settings)
    done = {record_key(r) for r in records}
    records_path.parent.mkdir(parents=True, exist_ok=True)
    try:  # exclusive creation: a shard started at the same moment never truncates the file
        with records_path.open("x", encoding="utf-8") as stream:
            stream.write(json.dumps({"settings": settings}) + "\n")
    except FileExistsError:
        pass
    for index in range(shard, cases, shards):
        seed = BENCHMARK_SEED + index
        phantom = generate_phantom(PhantomConfig(seed=seed, **grid))
        for name in structures:
            reference = structure_mask(phantom, name)
            if reference.sum() < 50:
                continue
            for schedule, counts, step in SCHEDULES:
                annotation = annotation_for(reference, counts, step)
                fraction = float((reference & annotation.known_mask(reference.shape)).sum())
                fraction /= float(reference.sum())
                for method in methods:
                    if method == "finetune" and (
                        index >= finetune_cases or schedule not in finetune_schedules
                    ):
                        continue
                    if (seed, name, schedule, method) in done:
                        continue
                    record = run_one(phantom.ct, reference, annotation, method, model, budget)
                    record.update(
                        seed=seed,
                        structure=name,
                        schedule=schedule,
                        annotated=fraction,
                        threads=torch.get_num_threads(),
                    )
                    records.append(record)
                    with records_path.open("a", encoding="utf-8") as stream:
                        stream.write(json.dumps(record) + "\n")
                    print(
                        f"seed {seed} {name} {schedule} {method}: "
                        f"Dice {fmt(record.get('dice'))} ({fmt(record.get('seconds'), 1)} s)",
                        flush=True,
                    )
    header = ["structure", "annotation", "annotated % of structure", "3D U-Net IoU (paper)"]
    for method in methods:
        header += [f"{method} Dice", f"{method} IoU", f"{method} HD95 mm", f"{method} s"]
    rows = []
    for name in structures:
        for schedule, counts, _ in SCHEDULES:
            group = [r for r in records if r["structure"] == name and r["schedule"] == schedule]
            if not group:
                continue
            row: list[object] = [
                name,
                schedule,
                fmt(100 * statistics.fmean(r["annotated"] for r in group), 1),
                PAPER_IOU.get(counts, "") if counts else "",
            ]
            for method in methods:
                mine = [r for r in group if r["method"] == method]
                row += [
                    fmt(summarise(mine, "dice")),
                    fmt(summarise(mine, "iou")),
                    fmt(summarise(mine, "hd95_mm"), 1),
                    fmt(summarise(mine, "seconds"), 1),
                ]
            rows.append(row)
    data = {
        "cases": cases,
        "finetune_cases": finetune_cases,
        "finetune_time_budget_s": budget,
        "finetune_schedules": finetune_schedules,
        "grid": {k: list(v) for k, v in grid.items()} or "phantom default",
        "structures": structures,
        "methods": methods,
        "notes": notes,
        "records": records,
    }
    title = "Sparse-slice completion on held-out phantoms" + (
        " (quick smoke test)" if args.quick else ""
    )
    paragraphs = [
        "Means over phantoms (HD95: median); Dice/IoU/HD95 on the whole grid against the full "
        "reference. 'n/a': not applicable (interpolation needs two slices on one axis) or not "
        f"run. Finetune on the first {finetune_cases} phantom(s) and the schedules "
        f"{', '.join(finetune_schedules)}, {budget:g} s each.",
        *comparison_paragraphs(records, structures, methods),
        *timing_paragraphs(records, methods),
        *notes,
    ]
    write_results(out, title, header, rows, data, notes=paragraphs)
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
