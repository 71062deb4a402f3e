"""Train the cascade's segmenter (stage 2) from scratch: phantoms → HDF5 → ``autoctv train``.

1. Generates the training phantoms in parallel (seeds 1000.., the bundled locator's training
   seeds, each on a varied clinical grid, standard annotator style, as
   ``benchmarks/ctv_data.py`` makes them) and writes them into one AutoCTV HDF5 dataset.
2. Trains with the committed configuration ``benchmarks/configs/ctv_segmenter.json`` (the same
   code path as ``autoctv train --config``), with the overrides given here (iterations, batch
   workers, device).
3. Leaves ``RUN/model.safetensors`` + ``RUN/model.json`` (one cascade: the bundled locator and
   the new segmenter) and ``RUN/train_segmenter.json`` (timings and settings).

Run on a GPU machine (16 cores)::

    python benchmarks/train_segmenter.py --out runs/segmenter --cases 40 --workers 14 \
        --iterations 3000 --device cuda

A dry run on a CPU: ``--cases 3 --size 96,96,40 --iterations 3 --device cpu``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
CONFIG = REPOSITORY / "benchmarks" / "configs" / "ctv_segmenter.json"
TRAIN_SEED_START = 1000


def _phantom_arrays(job: tuple[int, tuple[int, int, int] | None]) -> dict[str, Any]:
    from AutoCTVLib.phantom import PhantomConfig, generate_phantom

    seed, size = job
    options: dict[str, Any] = {"seed": seed, "annotator_style": "standard"}
    if size is None:
        options["vary_grid"] = True
    else:
        options.update(size_xyz=size, spacing_xyz_mm=(3.0, 3.0, 5.0))
    phantom = generate_phantom(PhantomConfig(**options))
    return {
        "seed": seed,
        "ct": np.clip(np.rint(phantom.ct.array), -32768, 32767).astype(np.int16),
        "ctv": phantom.ctv.array.astype(np.uint8),
        "geometry": phantom.ct.geometry,
    }


def write_training_dataset(
    path: Path, seeds: range, workers: int, size: tuple[int, int, int] | None
) -> float:
    """Generate the phantoms with ``workers`` processes and write one HDF5 dataset; seconds."""
    import h5py

    from AutoCTVLib.dataset.hdf5 import write_case, write_dataset_header

    started = time.perf_counter()
    jobs = [(seed, size) for seed in seeds]
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool, h5py.File(path, "w") as h5file:
        write_dataset_header(h5file, roi_pattern="CTV", label_names=["CTV"])
        for case in pool.imap(_phantom_arrays, jobs):
            write_case(
                h5file,
                f"phantom_{case['seed']:05d}",
                case["ct"],
                {"CTV": case["ctv"]},
                case["geometry"],
                source=f"phantom seed {case['seed']}",
                source_kind="nifti",
                identity={"synthetic": True, "seed": case["seed"]},
                roi_names={"CTV": "CTV"},
                qc={},
            )
    return time.perf_counter() - started


class TimeLimit:
    """A training callback: after ``seconds`` of training, validate once more and stop.

    ``loop_seconds``: wall seconds from the first iteration to the stop (the final validation
    not included), or to the end of training when the limit was not reached.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.started = time.perf_counter()
        self.loop_seconds: float | None = None

    def on_train_start(self, trainer: Any) -> None:
        self.started = time.perf_counter()

    def on_iteration_end(self, trainer: Any, record: dict[str, Any]) -> None:
        if time.perf_counter() - self.started < self.seconds or trainer.state.stopped_early:
            return
        iteration = record["iteration"]
        self.loop_seconds = time.perf_counter() - self.started
        if iteration % trainer.config.val_every and iteration != trainer.config.iterations:
            trainer.record_validation(trainer.validate(iteration))
        trainer.state.stopped_early = True
        print(f"time limit: stopped after iteration {iteration}", flush=True)

    def on_validation_end(self, trainer: Any, record: dict[str, Any]) -> None:
        print(f"validation at {record['iteration']}: Dice {record['dice_mean']:.4f}", flush=True)

    def on_train_end(self, trainer: Any) -> None:
        if self.loop_seconds is None:
            self.loop_seconds = time.perf_counter() - self.started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument(
        "--config",
        type=Path,
        default=CONFIG,
        help="training configuration (default: the committed from-scratch one)",
    )
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--val-every", type=int)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", help="x,y,z voxels of small phantoms (dry runs)")
    parser.add_argument("--patch", help="z,y,x patch size override (dry runs)")
    parser.add_argument("--data", type=Path, help="reuse this HDF5 dataset")
    parser.add_argument("--locator", help="locator model file (default: the config's)")
    parser.add_argument(
        "--max-train-seconds",
        type=float,
        help="validate and stop once training has run this long (a safety net for a fixed "
        "machine lease); a configuration with a time_budget_s gets this as its budget, so its "
        "learning rate decays over it",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPOSITORY))
    from AutoCTVLib.training.config import load_train_config
    from AutoCTVLib.training.run import run_training

    args.out.mkdir(parents=True, exist_ok=True)
    size = tuple(int(v) for v in args.size.split(",")) if args.size else None
    dataset = args.data or args.out / "train.h5"
    generate_s = 0.0
    if args.data is None:
        seeds = range(TRAIN_SEED_START, TRAIN_SEED_START + args.cases)
        generate_s = write_training_dataset(dataset, seeds, args.workers, size)  # type: ignore[arg-type]
        print(f"{args.cases} phantoms in {generate_s:.0f} s", flush=True)
    config = load_train_config(args.config)
    changes: dict[str, Any] = {"loader_workers": args.workers, "deterministic": False}
    if args.iterations:
        changes["iterations"] = args.iterations
        changes["val_every"] = args.val_every or max(1, args.iterations // 6)
    if args.patch:
        changes["patch_size_zyx"] = tuple(int(v) for v in args.patch.split(","))
    if args.locator:
        changes["cascade"] = {**config.cascade, "locator_model": args.locator}
    if args.max_train_seconds is not None and config.time_budget_s is not None:
        changes["time_budget_s"] = args.max_train_seconds  # the benchmark's budget is the run's
    config = config.replace(**changes)
    started = time.perf_counter()
    callbacks = [] if args.max_train_seconds is None else [TimeLimit(args.max_train_seconds)]
    summary = run_training(
        dataset,
        args.out / "run",
        config,
        device=args.device,
        model_name="ctv_pelvis_cascade",
        callbacks=callbacks,  # type: ignore[arg-type]
    )
    train_s = time.perf_counter() - started
    record = {
        "cases": args.cases,
        "generate_seconds": generate_s,
        "train_seconds": train_s,
        "device": args.device,
        "config_file": args.config.name,
        "config": config.to_dict(),
        "iterations_run": summary.result.iterations,
        "stopped_by_time_limit": summary.result.stopped_early,
        "time_limit_s": args.max_train_seconds,
        "loop_seconds": callbacks[0].loop_seconds if callbacks else None,
        "best_iteration": summary.result.best_iteration,
        "best_validation_dice": summary.result.best_dice,
        "train_cases": list(summary.train_case_ids),
        "validation_cases": list(summary.validation_case_ids),
    }
    (args.out / "train_segmenter.json").write_text(json.dumps(record, indent=2))
    print(json.dumps({k: v for k, v in record.items() if k != "config"}), flush=True)


if __name__ == "__main__":
    main()
