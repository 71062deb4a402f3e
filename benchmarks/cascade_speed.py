"""Wall time and peak memory of ``autoctv predict``: the cascade beside the bundled 6 mm model.

A 512×512×100 phantom at 0.98×0.98×3 mm (default grid, seed 9300: no training or test set
uses it) is written as NIfTI; each model then runs as the real command in a fresh process, plain
and with ``--uncertainty 20``, the models interleaved run by run so that both meet the same load
on a shared machine. Wall time is the process's, peak RSS comes from ``wait4`` (``ru_maxrss``);
the stage seconds come from ``report.json``.

Run: .venv/bin/python benchmarks/cascade_speed.py --cascade FILE [--runs 3]
Writes benchmarks/results/cascade_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import model_record, write_results

from AutoCTVLib.io.image_files import write_float_map
from AutoCTVLib.models.bundled import LOCATOR_MODEL_STEM, find_bundled_model
from AutoCTVLib.phantom import PhantomConfig, generate_phantom

COMMAND = [sys.executable, "-m", "AutoCTVLib.cli.main", "predict"]


def timed_predict(ct: Path, model: Path, out: Path, samples: int) -> dict[str, Any]:
    """One ``autoctv predict`` in a fresh process: wall seconds, peak RSS (MiB), stage times."""
    shutil.rmtree(out, ignore_errors=True)
    arguments = [*COMMAND, str(ct), "-o", str(out), "--model", str(model), "--device", "cpu"]
    arguments += ["--progress", "none", "--uncertainty", str(samples)]
    started = time.perf_counter()
    process = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"autoctv predict failed: {process.stderr.read().decode()[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    return {
        "wall_s": wall,
        "peak_rss_mib": usage.ru_maxrss / 1024.0,
        "timings_s": report["timings_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cascade", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results/cascade_speed")
    args = parser.parse_args()
    models = {"bundled 6 mm": find_bundled_model(LOCATOR_MODEL_STEM), "cascade": args.cascade}
    raw: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as work:
        phantom = generate_phantom(PhantomConfig(seed=9300))
        ct = write_float_map(phantom.ct.array, phantom.ct.geometry, Path(work) / "ct.nii.gz")
        for run in range(args.runs):
            for samples in (0, args.samples):
                for name, model in models.items():
                    key = f"{name}, {'plain' if samples == 0 else f'MC-{samples}'}"
                    result = timed_predict(ct, model, Path(work) / "out", samples)
                    raw.setdefault(key, []).append(result)
                    print(
                        f"run {run}: {key}: {result['wall_s']:.1f} s, "
                        f"{result['peak_rss_mib']:.0f} MiB",
                        flush=True,
                    )
    rows = []
    summary: dict[str, dict[str, float]] = {}
    for key, results in raw.items():
        stages = {
            stage: statistics.median(r["timings_s"].get(stage, 0.0) for r in results)
            for stage in ("read", "predict_total", "write")
        }
        summary[key] = {
            "wall_s": statistics.median(r["wall_s"] for r in results),
            "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in results),
            **stages,
        }
        rows.append(
            [
                key,
                len(results),
                f"{summary[key]['wall_s']:.1f}",
                f"{min(r['wall_s'] for r in results):.1f}",
                f"{summary[key]['peak_rss_mib']:.0f}",
                f"{stages['predict_total']:.1f}",
            ]
        )
    for name in models:
        plain, mc = summary[f"{name}, plain"], summary[f"{name}, MC-{args.samples}"]
        summary[name] = {"mc_over_plain": mc["wall_s"] / plain["wall_s"]}
    load = os.getloadavg()
    write_results(
        args.out,
        "autoctv predict on a 512×512×100 CT: cascade vs bundled 6 mm model",
        ["model, mode", "runs", "wall s (median)", "wall s (min)", "peak RSS MiB", "predict s"],
        rows,
        {
            "models": {name: model_record(Path(path), name) for name, path in models.items()},
            "summary": summary,
            "raw": raw,
            "load_average_at_end": load,
        },
        notes=[
            "Fresh process per run, models interleaved. MC over plain (wall): "
            + ", ".join(f"{name} {summary[name]['mc_over_plain']:.2f}×" for name in models)
            + f". Load average at the end: {load[0]:.1f} on 2 cores (other jobs shared the "
            "machine, so absolute times are upper bounds; the two models met the same load).",
        ],
    )
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
