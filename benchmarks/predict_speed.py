"""Speed and peak memory of ``autoctv predict`` on a clinical-size CT, on the CPU.

Input: a seeded phantom of 512×512×100 voxels at 0.98×0.98×3 mm written as NIfTI. Each
configuration runs as the real command in a fresh process (so every run pays start-up, imports
and the allocator's first use, as a user does):

* plain prediction and MC dropout with 20 samples (``--uncertainty 20``);
* each with ``THP_MEM_ALLOC_ENABLE=0`` and ``=1`` (the command sets 1 unless the variable is set);
* ``--runs`` times (default 3); medians are reported.

Measured: process wall time, peak RSS of the process (``ru_maxrss`` from ``wait4``, the same
number as ``VmHWM``), and the per-stage seconds the command writes into ``report.json`` (read,
preprocess, network, uncertainty, resample, postprocess, summary, write, total).

Speed settings (network stage only, in fresh processes): float32 contiguous, float32
channels-last (the default), and with ``--bf16`` bfloat16 autocast; the labels are compared
with the default's (Dice) and, for a trained model, with the phantom's reference CTV.

The model is ``--model FILE``, else the bundled model, else a random-weight model with the
thesis architecture (timings only: its Dice numbers mean nothing). Re-run with the trained model
to get the bf16 Dice check.

Run:   .venv/bin/python benchmarks/predict_speed.py [--runs 3] [--threads N] [--bf16]
Quick: .venv/bin/python benchmarks/predict_speed.py --quick     (small phantom, 1 run, MC-4)
Writes benchmarks/results/predict_speed.{json,md} (``--quick``: predict_speed_quick.*).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import choose_model, median, model_label, model_record, write_results

REPOSITORY = Path(__file__).resolve().parents[1]
STAGES = ("read", "preprocess", "network", "uncertainty", "resample", "postprocess", "write")
FULL = {"size_xyz": (512, 512, 100), "spacing_xyz_mm": (0.977, 0.977, 3.0)}
QUICK = {"size_xyz": (160, 160, 40), "spacing_xyz_mm": (2.5, 2.5, 6.0)}
VARIANTS = {
    "float32 contiguous": {"channels_last": False, "bf16_autocast": False},
    "float32 channels-last (default)": {"channels_last": True, "bf16_autocast": False},
    "bfloat16 autocast, channels-last": {"channels_last": True, "bf16_autocast": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per configuration (median)")
    parser.add_argument("--samples", type=int, default=20, help="MC samples of the MC run")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--model", type=Path, help="model file (default: bundled, else random)")
    parser.add_argument("--bf16", action="store_true", help="also time bfloat16 autocast")
    parser.add_argument("--quick", action="store_true", help="small phantom, one run, MC-4")
    parser.add_argument("--work", type=Path, help="folder for inputs and outputs (default: temp)")
    parser.add_argument("--out", type=Path, help="results stem (default benchmarks/results/...)")
    parser.add_argument("--child-variant", help=argparse.SUPPRESS)
    parser.add_argument("--child-ct", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_variant:
        child_variant(args)
        return
    if args.quick:
        args.runs, args.samples = 1, min(args.samples, 4)
    stem = args.out or REPOSITORY / "benchmarks" / "results" / (
        "predict_speed_quick" if args.quick else "predict_speed"
    )
    with tempfile.TemporaryDirectory(prefix="autoctv-speed-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        run_benchmark(args, work, stem)


def run_benchmark(args: argparse.Namespace, work: Path, stem: Path) -> None:
    grid = QUICK if args.quick else FULL
    ct_path, reference_path, geometry_text = make_inputs(work, grid)
    model_path, model_note = choose_model(args.model, work, quick=args.quick, allow_random=True)
    print(f"input {geometry_text}; model {model_path.name} ({model_note})", flush=True)

    configurations = [("plain", 0), (f"MC-{args.samples}", args.samples)]
    rows, raw = [], {}
    for label, samples in configurations:
        for thp in ("0", "1"):
            runs = [
                run_cli(ct_path, model_path, work / f"out-{label}-{thp}-{run}", samples, thp, args)
                for run in range(args.runs)
            ]
            key = f"{label}, THP_MEM_ALLOC_ENABLE={thp}"
            raw[key] = runs
            stages = {
                stage: median([r["timings_s"].get(stage, 0.0) for r in runs]) for stage in STAGES
            }
            rows.append(
                [
                    label,
                    thp,
                    len(runs),
                    f"{median([r['wall_s'] for r in runs]):.1f}",
                    f"{median([r['peak_rss_mib'] for r in runs]):.0f}",
                    *(f"{stages[stage]:.2f}" for stage in STAGES),
                    f"{median([r['timings_s'].get('total', 0.0) for r in runs]):.1f}",
                ]
            )
            print(" | ".join(str(cell) for cell in rows[-1]), flush=True)

    ratios = {}
    for thp in ("0", "1"):
        plain = median([r["wall_s"] for r in raw[f"plain, THP_MEM_ALLOC_ENABLE={thp}"]])
        mc = median([r["wall_s"] for r in raw[f"MC-{args.samples}, THP_MEM_ALLOC_ENABLE={thp}"]])
        ratios[f"MC-{args.samples} / plain, THP={thp}"] = round(mc / plain, 2)
    thp_gain = {
        label: round(
            median([r["wall_s"] for r in raw[f"{label}, THP_MEM_ALLOC_ENABLE=0"]])
            / median([r["wall_s"] for r in raw[f"{label}, THP_MEM_ALLOC_ENABLE=1"]]),
            2,
        )
        for label, _ in configurations
    }

    variants = run_variants(args, work, ct_path, reference_path, model_path)
    header = [
        "configuration",
        "THP",
        "runs",
        "wall s",
        "peak RSS MiB",
        *(f"{stage} s" for stage in STAGES),
        "in-process total s",
    ]
    data = {
        "mode": "quick" if args.quick else "full",
        "input": geometry_text,
        "model": model_record(model_path, model_note),
        "threads": args.threads,
        "runs": raw,
        "mc_over_plain_wall": ratios,
        "thp_speedup_wall": thp_gain,
        "variants": variants,
    }
    write_results(stem, f"autoctv predict speed ({data['mode']})", header, rows, data)
    append_notes(stem.with_suffix(".md"), ratios, thp_gain, variants, model_label(data["model"]))
    print(json.dumps({"mc_over_plain": ratios, "thp_speedup": thp_gain}, indent=1))


def make_inputs(work: Path, grid: dict) -> tuple[Path, Path, str]:
    from AutoCTVLib.io.image_files import write_float_map, write_labelmap
    from AutoCTVLib.phantom import PhantomConfig, generate_phantom

    phantom = generate_phantom(PhantomConfig(seed=1, **grid))
    geometry = phantom.ct.geometry
    ct_path = write_float_map(phantom.ct.array, geometry, work / "ct.nii.gz", overwrite=True)
    reference = write_labelmap(
        phantom.ctv.array, geometry, work / "ctv_reference.nii.gz", overwrite=True
    )
    return ct_path, reference, geometry.describe()


def run_cli(
    ct_path: Path, model_path: Path, out: Path, samples: int, thp: str, args: argparse.Namespace
) -> dict:
    command = [sys.executable, "-m", "AutoCTVLib.cli.main", "predict", str(ct_path)]
    command += ["-o", str(out), "--model", str(model_path), "--device", "cpu"]
    command += ["--format", "nifti", "--progress", "none", "--overwrite"]
    if samples:
        command += ["--uncertainty", str(samples)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    environment = {**os.environ, "THP_MEM_ALLOC_ENABLE": thp, "PYTHONPATH": str(REPOSITORY)}
    log = out.with_name(out.name + ".stderr.txt")
    with open(log, "wb") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=stderr, env=environment
        )
        _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage (peak RSS)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        message = log.read_text(errors="replace").strip()
        raise SystemExit(f"predict failed ({process.returncode}): {message}")
    report = json.loads((out / "report.json").read_text())
    return {
        "wall_s": wall,
        "peak_rss_mib": usage.ru_maxrss / 1024.0,  # Linux: KiB
        "timings_s": report["timings_s"],
        "device": report["settings"]["device"],
        "threads": report["settings"]["threads"],
        "sampled_fraction": report["settings"].get("mc_sampled_fraction"),
    }


def run_variants(
    args: argparse.Namespace, work: Path, ct_path: Path, reference_path: Path, model_path: Path
) -> dict:
    import numpy as np
    import SimpleITK as sitk

    from AutoCTVLib.metrics import dice

    names = [name for name in VARIANTS if args.bf16 or "bfloat16" not in name]
    results: dict[str, dict] = {}
    labels = {}
    for name in names:
        result_path = work / f"variant-{len(results)}.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--child-variant", name]
        command += ["--child-ct", str(ct_path), "--child-result", str(result_path)]
        command += ["--model", str(model_path)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        times = []
        for _ in range(args.runs):
            subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(REPOSITORY)})
            child = json.loads(result_path.read_text())
            times.append(child["network_s"])
        labels[name] = np.load(child["label_file"])
        results[name] = {"network_s": times, "network_s_median": median(times)}
        print(f"{name}: network {median(times):.2f} s", flush=True)
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(reference_path)))
    default = labels["float32 channels-last (default)"]
    for name, label in labels.items():
        results[name]["dice_vs_default"] = round(dice(label, default), 4)
        results[name]["dice_vs_phantom_reference"] = round(dice(label, reference), 4)
    return results


def child_variant(args: argparse.Namespace) -> None:
    """One network-stage measurement in this fresh process (called by :func:`run_variants`)."""
    from AutoCTVLib.predict.speed import prepare_process_environment

    prepare_process_environment()
    import numpy as np

    from AutoCTVLib.io.ct_reader import read_ct
    from AutoCTVLib.predict import Predictor, SpeedSettings

    speed = SpeedSettings(**VARIANTS[args.child_variant])
    predictor = Predictor.from_file(args.model, device="cpu", threads=args.threads, speed=speed)
    prediction = predictor.predict(read_ct(args.child_ct).volume, postprocess=None)
    label_file = args.child_result.with_suffix(".npy")
    np.save(label_file, prediction.label.array)
    args.child_result.write_text(
        json.dumps({"network_s": prediction.timings_s["network"], "label_file": str(label_file)})
    )


def append_notes(
    markdown: Path, ratios: dict, thp_gain: dict, variants: dict, model_note: str
) -> None:
    lines = ["", "Wall time ratios (process wall, medians):", ""]
    lines += [f"* {name}: {value}×" for name, value in ratios.items()]
    lines += [f"* THP off / on, {name}: {value}×" for name, value in thp_gain.items()]
    lines += [
        "",
        "| speed setting (network stage only) | network s (median) | Dice vs default "
        "| Dice vs phantom reference |",
        "|---|---|---|---|",
    ]
    for name, result in variants.items():
        lines.append(
            f"| {name} | {result['network_s_median']:.2f} | {result['dice_vs_default']:.4f} "
            f"| {result['dice_vs_phantom_reference']:.4f} |"
        )
    lines += ["", f"Model: {model_note}."]
    with open(markdown, "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
