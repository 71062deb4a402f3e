"""AutoCTV's cascade against MONAI and nnU-Net v2: same data, same budget, same device, one run.

1. Training data: the segmenter's training phantoms (``train_segmenter.py``: seeds 1000..,
   varied clinical grids, standard annotator style) in one HDF5 dataset, generated once and
   reused (``WORK/train.h5``). The same cases are exported once as nnU-Net's raw dataset
   (``peers_nnunet.export_raw_dataset``); MONAI reads the very same NIfTI files. All three
   train on the training cases of AutoCTV's fold 0 (the committed config's split; nnU-Net gets
   it as its ``splits_final.json``); the held-out phantoms below are seen by none of them.
2. Training, one after the other, each in its own process with the same wall-clock budget
   (``--budget-s``, from the first iteration; data loading, caching and nnU-Net's
   planning/preprocessing come before and are reported apart) on the same device
   (``--device auto``: CUDA when present):

   * AutoCTV: ``train_segmenter.py`` (the code path of ``autoctv train --config`` with the
     committed ``configs/ctv_segmenter.json``; the locator is the bundled 6 mm model, as in the
     shipped cascade) with ``--max-train-seconds``;
   * MONAI: ``peers_monai.py train`` (UNet, MONAI's standard transforms; method ``monai`` in
     float32 as MONAI's tutorials train, ``monai_bf16`` in bf16 autocast as AutoCTV's bf16
     configurations train);
   * nnU-Net v2: ``nnUNetv2_plan_and_preprocess -c 3d_fullres``, then ``peers_nnunet.py
     train`` (nnU-Net's trainer with a budget).

   Each process's wall time, CPU time (user + system, with its waited-for workers) and peak RSS
   come from ``os.wait4`` (``peers_budget.measured_run``).
3. Evaluation on the held-out phantoms of ``heldout_phantoms.py`` (``--test-cases`` of the test
   seeds 5000.., ``--per-variant`` each of the default grid, ``--vary-grid``, ``--flip`` and
   ``--noise-hu 40``, seeds 9100..), each CT written once as NIfTI; every method predicts every
   case in a fresh process (``peers_case.py``) on the CT's own grid; Dice, HD95 and surface
   Dice at 2 mm against the phantom's CTV (``AutoCTVLib.metrics``), the predict time measured
   inside the process and its peak RSS from ``os.wait4``.
4. ``benchmarks/results/peers.{json,md}`` and ``peers_boxplot.png``.

Run (the peers need ``pip install -e .[peers]``)::

    .venv/bin/python benchmarks/peers.py --work runs/peers --budget-s 720
    # a dry run: --cases 6 --size 128,128,40 --budget-s 20 --test-cases 1 --per-variant 0 \
    #     --autoctv-patch 32,64,64 --out runs/peers/dry
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heldout_phantoms import held_out_cases, variant_seeds
from peers_budget import measured_run
from peers_monai import MONAI_PRECISION
from peers_report import METHOD_LABELS, box_plot, write_report

REPOSITORY = Path(__file__).resolve().parents[1]
BENCHMARKS = REPOSITORY / "benchmarks"
DATASET_NAME = "AutoCTVPhantomCTV"
VARIANTS = ("test", "default", "vary_grid", "flip", "noise40")


def _python() -> str:
    return sys.executable


def _tool(name: str) -> str:
    """An installed command of this Python's environment (nnU-Net's entry points)."""
    return str(Path(sys.executable).parent / name)


def nnunet_env(work: Path, workers: int, threads: int) -> dict[str, str]:
    """The environment of every child: nnU-Net's folders, worker and thread counts."""
    env = dict(os.environ)
    env.update(
        nnUNet_raw=str(work / "nnunet_raw"),
        nnUNet_preprocessed=str(work / "nnunet_preprocessed"),
        nnUNet_results=str(work / "nnunet_results"),
        nnUNet_n_proc_DA=str(workers),
        nnUNet_compile="false",
        OMP_NUM_THREADS=str(threads),
        PYTHONPATH=str(REPOSITORY),
    )
    return env


def training_split(dataset: Path) -> tuple[list[str], list[str]]:
    """AutoCTV's fold-0 split of the dataset's cases (the committed config's fold and seed)."""
    from train_segmenter import CONFIG

    from AutoCTVLib.dataset.hdf5 import list_cases
    from AutoCTVLib.training.config import load_train_config
    from AutoCTVLib.training.splits import fold_split

    config = load_train_config(CONFIG)
    return fold_split(list_cases(dataset), config.fold, config.n_folds, config.seed)


def prepare_training_data(work: Path, cases: int, workers: int, size: Any) -> dict[str, Any]:
    """The HDF5 dataset, nnU-Net's raw export and MONAI's file list (each made once)."""
    from peers_nnunet import dataset_name, export_raw_dataset
    from train_segmenter import TRAIN_SEED_START, write_training_dataset

    from AutoCTVLib.dataset.hdf5 import iter_cases

    work.mkdir(parents=True, exist_ok=True)
    dataset = work / "train.h5"
    record: dict[str, Any] = {
        "cases": cases,
        "seeds": [TRAIN_SEED_START, TRAIN_SEED_START + cases - 1],
    }
    if not dataset.exists():
        seeds = range(TRAIN_SEED_START, TRAIN_SEED_START + cases)
        partial = work / "train.h5.partial"
        record["generate_s"] = write_training_dataset(partial, seeds, workers, size)
        partial.rename(dataset)
    raw = work / "nnunet_raw"
    name = dataset_name(args_dataset_id(), DATASET_NAME)
    if not (raw / name / "dataset.json").exists():
        started = time.perf_counter()
        export_raw_dataset(
            raw,
            name,
            ((case_id, ct, labels["CTV"]) for case_id, ct, labels, _ in iter_cases(dataset)),
        )
        record["export_s"] = time.perf_counter() - started
    train_ids, validation_ids = training_split(dataset)
    files = [
        {
            "image": str(raw / name / "imagesTr" / f"{case_id}_0000.nii.gz"),
            "label": str(raw / name / "labelsTr" / f"{case_id}.nii.gz"),
        }
        for case_id in train_ids
    ]
    (work / "monai_train.json").write_text(json.dumps(files, indent=1) + "\n")
    record.update(train_ids=train_ids, validation_ids=validation_ids, dataset_name=name)
    return record


_DATASET_ID = [731]


def args_dataset_id() -> int:
    """nnU-Net's dataset id of this benchmark (``--nnunet-id``)."""
    return _DATASET_ID[0]


def nnunet_plan_and_preprocess(
    work: Path, dataset_id: int, workers: int, spacing_zyx: list[float] | None = None
) -> dict[str, Any]:
    """``nnUNetv2_plan_and_preprocess -c 3d_fullres`` once (its measured record is kept).

    ``spacing_zyx``: nnU-Net's ``-overwrite_target_spacing`` (mm, z, y, x), or its own plan.
    """
    stored = work / "nnunet_plan_and_preprocess.json"
    if stored.exists():
        return json.loads(stored.read_text())
    extra = [] if not spacing_zyx else ["-overwrite_target_spacing", *map(str, spacing_zyx)]
    record = measured_run(
        [
            _tool("nnUNetv2_plan_and_preprocess"),
            "-d",
            str(dataset_id),
            "-c",
            "3d_fullres",
            "-np",
            str(workers),
            "-npfp",
            str(workers),
            "--verify_dataset_integrity",
            *extra,
        ],
        work / "logs" / "nnunet_plan_and_preprocess.log",
        env=nnunet_env(work, workers, workers),
    )
    if record["returncode"] != 0:
        raise SystemExit(f"nnUNetv2_plan_and_preprocess failed; see {work / 'logs'}")
    record["target_spacing_zyx_mm"] = spacing_zyx or "nnU-Net's own plan"
    stored.write_text(json.dumps(record, indent=2) + "\n")
    return record


def train_all(args: argparse.Namespace, data: dict[str, Any], device: str) -> dict[str, Any]:
    """Train every method of ``args.methods`` (skipping those already trained); records."""
    work = args.work
    env = nnunet_env(work, args.workers, args.threads)
    records: dict[str, Any] = {}
    stored = work / "trainings.json"
    if stored.exists():
        records = json.loads(stored.read_text())
    for method in args.methods:
        if method in records:
            print(f"{method}: trained before, reused", flush=True)
            continue
        print(f"{method}: training for {args.budget_s:.0f} s on {device}", flush=True)
        if method == "autoctv":
            command = [
                _python(),
                str(BENCHMARKS / "train_segmenter.py"),
                "--data",
                str(work / "train.h5"),
                "--out",
                str(work / "autoctv"),
                "--workers",
                str(args.workers),
                "--device",
                device,
                "--max-train-seconds",
                str(args.budget_s),
                "--config",
                str(args.autoctv_config),
            ]
            if args.autoctv_patch:
                command += ["--patch", args.autoctv_patch]
            process = measured_run(command, work / "logs" / "train_autoctv.log", env=env)
            result = json.loads((work / "autoctv" / "train_segmenter.json").read_text())
            record = {
                "budget_s": args.budget_s,
                "iterations": result["iterations_run"],
                "loop_wall_s": result["loop_seconds"],
                "before_loop": "crops of the training cases loaded"
                + (
                    " (the locator run on every case: use_locator_probability is on)"
                    if result["config"]["cascade"].get("use_locator_probability")
                    else " (locator not run: use_locator_probability is off)"
                ),
                "config": args.autoctv_config.name,
                "mixed_precision": result["config"].get("mixed_precision", "off"),
                "best_validation_dice": result["best_validation_dice"],
                "model": str(work / "autoctv" / "run" / "model.json"),
            }
        elif method in MONAI_PRECISION:
            command = [
                _python(),
                str(BENCHMARKS / "peers_monai.py"),
                "train",
                "--data-list",
                str(work / "monai_train.json"),
                "--budget-s",
                str(args.budget_s),
                "--device",
                device,
                "--workers",
                str(args.workers),
                "--out",
                str(work / method),
                "--precision",
                MONAI_PRECISION[method],
            ]
            process = measured_run(command, work / "logs" / f"train_{method}.log", env=env)
            result = json.loads((work / method / "record.json").read_text())
            record = {
                "budget_s": args.budget_s,
                "iterations": result["iterations"],
                "loop_wall_s": result["loop_wall_s"],
                "before_loop": f"CacheDataset of the pre-transforms ({result['cache_s']:.0f} s)",
                "precision": result["precision"],
                "loss_first_10_mean": result["loss_first_10_mean"],
                "loss_last_10_mean": result["loss_last_10_mean"],
                "model": str(work / method / "model.pt"),
            }
        else:
            preprocess = nnunet_plan_and_preprocess(
                work, args.nnunet_id, args.workers, args.nnunet_spacing
            )
            from peers_nnunet import write_split

            preprocessed = work / "nnunet_preprocessed" / data["dataset_name"]
            write_split(preprocessed, data["train_ids"], data["validation_ids"])
            command = [
                _python(),
                str(BENCHMARKS / "peers_nnunet.py"),
                "train",
                "--preprocessed",
                str(preprocessed),
                "--budget-s",
                str(args.budget_s),
                "--device",
                device,
                "--record",
                str(work / "nnunet_record.json"),
            ]
            process = measured_run(command, work / "logs" / "train_nnunet.log", env=env)
            result = json.loads((work / "nnunet_record.json").read_text())
            record = {
                "budget_s": args.budget_s,
                "iterations": result["iterations"],
                "loop_wall_s": result["loop_wall_s"],
                "before_loop": f"nnUNetv2_plan_and_preprocess ({preprocess['wall_s']:.0f} s "
                f"wall, {preprocess['cpu_s']:.0f} s CPU), unpacking",
                "plan_and_preprocess": preprocess,
                "patch_size_zyx": result["patch_size_zyx"],
                "spacing_zyx_mm": result["spacing_zyx_mm"],
                "batch_size": result["batch_size"],
                "model": result["output_folder"],
            }
        if process["returncode"] != 0:
            raise SystemExit(f"{method} training failed; see {work / 'logs'}")
        record["process"] = process
        records[method] = record
        stored.write_text(json.dumps(records, indent=2) + "\n")
        print(f"{method}: {json.dumps(record)}", flush=True)
    return records


def heldout_files(work: Path, test_cases: int, per_variant: int) -> list[dict[str, Any]]:
    """Write (once) and list the held-out phantoms: CT and CTV NIfTI per case."""
    from AutoCTVLib.phantom.write import write_phantom

    cases = []
    for variant in VARIANTS:
        count = test_cases if variant == "test" else per_variant
        folder_of = {
            seed: work / "heldout" / f"{variant}_{seed}" for seed in variant_seeds(variant, count)
        }
        if not all((folder / "ct.nii.gz").exists() for folder in folder_of.values()):
            for seed, phantom in held_out_cases(variant, count):
                write_phantom(phantom, folder_of[seed])
        cases += [
            {
                "variant": variant,
                "seed": seed,
                "ct": folder / "ct.nii.gz",
                "ctv": folder / "ctv.nii.gz",
            }
            for seed, folder in folder_of.items()
        ]
    return cases


def interleaved(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first case of every variant, then the second of each, ...

    So that a run cut short (``--report-only`` on what is done) still covers every variant.
    """
    rank: dict[str, int] = {}
    order = []
    for case in cases:
        index = rank.get(case["variant"], 0)
        rank[case["variant"]] = index + 1
        order.append((index, VARIANTS.index(case["variant"]), case["seed"]))
    return [case for _, case in sorted(zip(order, cases), key=lambda pair: pair[0])]


def evaluate(
    args: argparse.Namespace, trainings: dict[str, Any], cases: list[dict[str, Any]], device: str
) -> list[dict[str, Any]]:
    """Every method on every case, a fresh process each; per-case rows."""
    import numpy as np

    from AutoCTVLib.io.image_files import read_labelmap
    from AutoCTVLib.metrics import dice, surface_distance_metrics

    env = nnunet_env(args.work, args.workers, args.threads)
    stored = args.work / "per_case.jsonl"
    done = {}
    if stored.exists():
        for line in stored.read_text().splitlines():
            row = json.loads(line)
            done[(row["method"], row["variant"], row["seed"])] = row
    rows = []
    for case in cases:
        reference = read_labelmap(case["ctv"])
        spacing = reference.geometry.spacing_xyz_mm
        voxel_ml = reference.geometry.voxel_volume_ml
        for method in args.methods:
            key = (method, case["variant"], case["seed"])
            if key in done:
                rows.append(done[key])
                continue
            if args.report_only:
                continue
            name = f"{method}_{case['variant']}_{case['seed']}"
            label_path = args.work / "predictions" / f"{name}.nii.gz"
            record_path = args.work / "predictions" / f"{name}.json"
            label_path.parent.mkdir(parents=True, exist_ok=True)
            command = [
                _python(),
                str(BENCHMARKS / "peers_case.py"),
                "--method",
                method,
                "--model",
                trainings[method]["model"],
                "--ct",
                str(case["ct"]),
                "--label",
                str(label_path),
                "--record",
                str(record_path),
                "--device",
                device,
                "--threads",
                str(args.threads),
                "--nnunet-step",
                str(args.nnunet_step),
            ]
            process = measured_run(command, args.work / "logs" / f"predict_{name}.log", env=env)
            if process["returncode"] != 0:
                raise SystemExit(f"{method} failed on {name}; see {args.work / 'logs'}")
            timing = json.loads(record_path.read_text())
            label = read_labelmap(label_path, reference.geometry).array
            metrics = {
                "dice": dice(label, reference.array),
                **surface_distance_metrics(label, reference.array, spacing, 2.0),
                "volume_pred_ml": float(np.count_nonzero(label)) * voxel_ml,
                "volume_ref_ml": float(np.count_nonzero(reference.array)) * voxel_ml,
            }
            metrics["surface_dice_2mm"] = metrics.pop("surface_dice")
            row = {
                "method": method,
                "variant": case["variant"],
                "seed": case["seed"],
                **metrics,
                "predict_s": timing["predict_s"],
                "load_s": timing["load_s"],
                "process_wall_s": process["wall_s"],
                "process_cpu_s": process["cpu_s"],
                "peak_rss_mib": process["peak_rss_mib"],
            }
            rows.append(row)
            with open(stored, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
            print(
                f"{name}: Dice {row['dice']:.3f}, HD95 {row['hd95_mm']:.1f} mm, SDice "
                f"{row['surface_dice_2mm']:.3f}, {row['predict_s']:.1f} s, "
                f"{row['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("runs/peers"), help="work folder")
    parser.add_argument("--budget-s", type=float, required=True, help="training budget, wall s")
    parser.add_argument("--cases", type=int, default=40, help="training phantoms (seeds 1000..)")
    parser.add_argument("--size", help="x,y,z voxels of small training phantoms (dry runs)")
    parser.add_argument(
        "--autoctv-config",
        type=Path,
        default=BENCHMARKS / "configs" / "ctv_segmenter.json",
        help="AutoCTV's training configuration (configs/ctv_segmenter_bf16.json: the same job "
        "in bf16 and channels-last, for CPUs that run bf16 natively)",
    )
    parser.add_argument("--autoctv-patch", help="z,y,x patch of AutoCTV's segmenter (dry runs)")
    parser.add_argument("--workers", type=int, default=2, help="data workers of every method")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of every process")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    parser.add_argument("--methods", default="autoctv,monai,nnunet")
    parser.add_argument("--test-cases", type=int, default=4)
    parser.add_argument("--per-variant", type=int, default=2)
    parser.add_argument("--nnunet-id", type=int, default=731)
    parser.add_argument(
        "--nnunet-spacing",
        type=float,
        nargs=3,
        metavar=("Z", "Y", "X"),
        help="nnU-Net's target spacing in mm (-overwrite_target_spacing; default its own plan)",
    )
    parser.add_argument(
        "--nnunet-step", type=float, default=0.5, help="nnU-Net's tile step (its default 0.5)"
    )
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "results" / "peers")
    parser.add_argument("--note", action="append", default=[], help="a paragraph for the table")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="no training or prediction: the report from what the work folder holds (cases not "
        "yet predicted by every method are left out)",
    )
    args = parser.parse_args()
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(args.methods) - set(METHOD_LABELS))
    if unknown:
        parser.error(f"unknown methods: {', '.join(unknown)}")
    _DATASET_ID[0] = args.nnunet_id
    args.work = args.work.resolve()
    sys.path.insert(0, str(REPOSITORY))
    from AutoCTVLib.device import select_device

    device = select_device(args.device).type
    size = tuple(int(v) for v in args.size.split(",")) if args.size else None
    started = time.perf_counter()
    data = prepare_training_data(args.work, args.cases, args.workers, size)
    if args.report_only:
        trainings = json.loads((args.work / "trainings.json").read_text())
    else:
        trainings = train_all(args, data, device)
    cases = interleaved(heldout_files(args.work, args.test_cases, args.per_variant))
    per_case = evaluate(args, trainings, cases, device)
    complete = {
        (c["variant"], c["seed"])
        for c in cases
        if all(
            any(
                r["method"] == m and (r["variant"], r["seed"]) == (c["variant"], c["seed"])
                for r in per_case
            )
            for m in args.methods
        )
    }
    per_case = [r for r in per_case if (r["variant"], r["seed"]) in complete]
    cases = [c for c in cases if (c["variant"], c["seed"]) in complete]
    budget_min = args.budget_s / 60.0
    setup = {
        "device": device,
        "budget_s": args.budget_s,
        "budget_clock": "wall clock from the first training iteration",
        "training_cases": len(data["train_ids"]),
        "validation_cases": len(data["validation_ids"]),
        "training_seeds": data["seeds"],
        "heldout_cases": [{"variant": c["variant"], "seed": c["seed"]} for c in cases],
        "workers": args.workers,
        "threads": args.threads,
        "finished_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "run_wall_s": time.perf_counter() - started,
        "data": {k: v for k, v in data.items() if k not in ("train_ids", "validation_ids")},
    }
    trained = " and ".join(METHOD_LABELS[m] for m in args.methods)
    notes = [
        f"Same data: {trained} train on the same {len(data['train_ids'])} training phantoms "
        f"(seeds {data['seeds'][0]}–{data['seeds'][1]} less AutoCTV's fold-0 validation cases, "
        "varied clinical grids"
        + ("; nnU-Net gets the split as its splits_final.json" if "nnunet" in args.methods else "")
        + ") with the same "
        f"budget of {budget_min:.0f} min of training each, wall clock from the first iteration, "
        f"one after the other on the same device ({device}), {args.workers} data workers and "
        f"{args.threads} torch threads each. Held-out: {len(cases)} phantoms no training saw "
        "(test seeds 5000.. on varied grids; seeds 9100.. on the default grid, --vary-grid, "
        "--flip and --noise-hu 40), each predicted by each method in a fresh process on the CT's "
        "own grid and compared with the phantom's CTV.",
        "Metrics: Dice, HD95 (mm; ∞ when a prediction is empty), surface Dice at 2 mm (share of "
        "the surface voxels of both masks within 2 mm of the other's surface; "
        "AutoCTVLib.metrics). predict s: CT file → label on the CT's grid inside the process "
        "(model loading and imports excluded); peak RSS: the process's peak resident set "
        "(os.wait4), model loading included.",
        *args.note,
    ]
    # The results name paths relative to the repository, never this machine's folders.
    trainings = json.loads(json.dumps(trainings).replace(str(REPOSITORY) + os.sep, ""))
    write_report(args.out, per_case, trainings, setup, notes)
    box_plot(
        per_case,
        args.out.parent / f"{args.out.name}_boxplot.png",
        f"Same data, {budget_min:.0f} min training each on {device}; "
        f"{len(cases)} held-out phantoms",
    )
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
