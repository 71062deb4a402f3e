"""Wall time and peak memory of ``autoctv predict``: the cascade beside the bundled 6 mm model.

A 512×512×100 phantom at 0.98×0.98×3 mm (default grid, seed 9300: no training or test set
uses it) is written as NIfTI; each model then runs as the real command in a fresh process, plain
and with ``--uncertainty 20``, the models interleaved run by run so that both meet the same load
on a shared machine. Wall time is the process's, peak RSS comes from ``wait4`` (``ru_maxrss``);
the stage seconds come from ``report.json``.

``--before DIR`` adds a third contestant: the cascade run by the source tree in ``DIR`` (an
earlier revision, e.g. ``git archive REV | tar -x -C DIR``), interleaved with the others, so a
change is measured before and after under the same load. The load average (1 minute) is read
before every run and reported.

Run: .venv/bin/python benchmarks/cascade_speed.py --cascade FILE [--runs 3] [--before DIR]
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


def timed_predict(
    ct: Path, model: Path, out: Path, samples: int, source: Path | None = None
) -> dict[str, Any]:
    """One ``autoctv predict`` in a fresh process: wall seconds, peak RSS (MiB), stage times.

    ``source``: run the ``AutoCTVLib`` of that source tree (it becomes the working folder, which
    Python searches first) instead of the installed one.
    """
    shutil.rmtree(out, ignore_errors=True)
    arguments = [*COMMAND, str(ct), "-o", str(out), "--model", str(model), "--device", "cpu"]
    arguments += ["--progress", "none", "--uncertainty", str(samples)]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(
        arguments,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=None if source is None else str(source),
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"autoctv predict failed: {process.stderr.read().decode()[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    return {
        "wall_s": wall,
        "peak_rss_mib": usage.ru_maxrss / 1024.0,
        "timings_s": report["timings_s"],
        "load_average_before": load,
        "mc_sampled_fraction": report["settings"].get("mc_sampled_fraction"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cascade", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results/cascade_speed")
    parser.add_argument("--before", type=Path, help="source tree of an earlier revision")
    args = parser.parse_args()
    cascade = args.cascade.resolve()
    models: dict[str, tuple[Path, Path | None]] = {
        "bundled 6 mm": (find_bundled_model(LOCATOR_MODEL_STEM), None),
        "cascade": (cascade, None),
    }
    if args.before is not None:
        if not (args.before / "AutoCTVLib" / "cli" / "main.py").is_file():
            raise SystemExit(f"--before {args.before}: no AutoCTVLib source tree there")
        models["cascade (before)"] = (cascade, args.before.resolve())
    raw: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as work:
        phantom = generate_phantom(PhantomConfig(seed=9300))
        ct = write_float_map(phantom.ct.array, phantom.ct.geometry, Path(work) / "ct.nii.gz")
        for run in range(args.runs):
            for samples in (0, args.samples):
                for name, (model, source) in models.items():
                    key = f"{name}, {'plain' if samples == 0 else f'MC-{samples}'}"
                    result = timed_predict(ct, model, Path(work) / "out", samples, source)
                    raw.setdefault(key, []).append(result)
                    print(
                        f"run {run}: {key}: {result['wall_s']:.1f} s, "
                        f"{result['peak_rss_mib']:.0f} MiB, "
                        f"load {result['load_average_before']:.1f}",
                        flush=True,
                    )
    rows = []
    summary: dict[str, dict[str, float]] = {}
    for key, results in raw.items():
        stages = {
            stage: statistics.median(r["timings_s"].get(stage, 0.0) for r in results)
            for stage in ("read", "predict_total", "uncertainty", "resample", "summary", "write")
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
                f"{min(r['wall_s'] for r in results):.1f}–{max(r['wall_s'] for r in results):.1f}",
                f"{summary[key]['peak_rss_mib']:.0f}",
                f"{stages['predict_total']:.1f}",
                f"{stages['uncertainty']:.1f}" if stages["uncertainty"] else "–",
                f"{stages['write']:.1f}",
            ]
        )
    for name in models:
        plain, mc = summary[f"{name}, plain"], summary[f"{name}, MC-{args.samples}"]
        summary[name] = {"mc_over_plain": mc["wall_s"] / plain["wall_s"]}
    load = os.getloadavg()
    loads = [r["load_average_before"] for results in raw.values() for r in results]
    write_results(
        args.out,
        "autoctv predict on a 512×512×100 CT: cascade vs bundled 6 mm model",
        [
            "model, mode",
            "runs",
            "wall s (median)",
            "wall s (range)",
            "peak RSS MiB",
            "predict s",
            "MC sampling s",
            "write s",
        ],
        rows,
        {
            "models": {name: model_record(path, name) for name, (path, _) in models.items()},
            "summary": summary,
            "raw": raw,
            "load_average_at_end": load,
        },
        notes=[
            "Fresh process per run, models interleaved. MC over plain (wall): "
            + ", ".join(f"{name} {summary[name]['mc_over_plain']:.2f}×" for name in models)
            + f". Load average (1 min) before the runs: {min(loads):.1f}–{max(loads):.1f}, "
            f"median {statistics.median(loads):.1f}; at the end {load[0]:.1f}, on 2 cores (other "
            "jobs shared the machine, so absolute times are upper bounds; the contestants met "
            "the same load). Stage seconds are medians from report.json.",
        ]
        + (
            ["`cascade (before)`: the same cascade run by the source tree given as --before."]
            if args.before is not None
            else []
        ),
    )
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
