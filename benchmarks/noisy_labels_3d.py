"""QAM + OCM on the 3D CTV task: half the training cases drawn by a wider or tighter annotator.

The thesis could not use the QAM for its 3D model (batch size 1 leaves nothing to compare). Here
the trainer draws batches of patches from different cases (``distinct_cases``, batch ≥ 4), so
the quality network compares annotators. Training phantoms: half "standard" (the guideline
CTV), a quarter "wide" and a quarter "tight" (:mod:`AutoCTVLib.phantom.style`); the network
learns each case's delivered ``ctv``. Test phantoms are scored against the guideline CTV
(``ctv_reference``).

Four runs on the same data, seed and budget: plain training (``"none"``) and ``"qam_ocm"``, each
with patches placed independently (a random CTV voxel or a random place per patch) and with
``aligned_patches`` (every patch of a batch at the same offset from its case's CTV centroid, or
at the same relative place). Independent patches differ in how much CTV they hold, and the
quality network can key on that instead of on the annotator; aligned patches compare like with
like. Reported: test Dice and HD95 (mm) per case and mean, predicted volume against the
reference, how far the styled labels are from the guideline (Dice), the mean weight N·Θ each
annotator style received, and the within-batch correlation of N·Θ with each patch's labelled
share.

Run (about 40 minutes on 2 CPU cores)::

    .venv/bin/python benchmarks/noisy_labels_3d.py --workers 2

Smoke test (a minute): ``--quick`` (writes under benchmarks/out/ only). Each run's record is
kept in ``--work-dir`` as it finishes, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from common import run_jobs, write_results

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results"
#: (loss weighting, patch placement) of each run, in table order
RUNS = (
    ("none", "independent"),
    ("qam_ocm", "independent"),
    ("none", "aligned"),
    ("qam_ocm", "aligned"),
)
RUN_TITLES = {"none": "plain", "qam_ocm": "QAM+OCM (λ = 2)"}
_TEST_SEED_OFFSET = 50_000


@dataclass(frozen=True)
class Settings:
    n_train: int
    n_test: int
    styled_share: float
    phantom_size_xyz: tuple[int, int, int]
    phantom_spacing_xyz_mm: tuple[float, float, float]
    network_spacing_xyz_mm: tuple[float, float, float]
    patch_size_zyx: tuple[int, int, int]
    batch_size: int
    iterations: int
    channels: tuple[int, ...]
    qam_channels: tuple[int, ...]
    lr: float
    seed: int
    threads: int


FULL = Settings(
    n_train=12,
    n_test=4,
    styled_share=0.5,
    phantom_size_xyz=(128, 128, 64),
    phantom_spacing_xyz_mm=(3.9, 3.9, 5.0),
    network_spacing_xyz_mm=(4.0, 4.0, 5.0),
    patch_size_zyx=(32, 48, 48),
    batch_size=4,
    iterations=1000,
    channels=(8, 16, 32, 64),
    qam_channels=(8, 16, 32, 32),
    lr=1e-3,
    seed=0,
    threads=1,
)
QUICK = Settings(
    n_train=4,
    n_test=1,
    styled_share=0.5,
    phantom_size_xyz=(64, 64, 32),
    phantom_spacing_xyz_mm=(7.8, 7.8, 10.0),
    network_spacing_xyz_mm=(8.0, 8.0, 10.0),
    patch_size_zyx=(16, 16, 16),
    batch_size=4,
    iterations=4,
    channels=(4, 8),
    qam_channels=(4, 8),
    lr=1e-3,
    seed=0,
    threads=1,
)


def json_settings(settings: Settings) -> dict[str, Any]:
    """The settings as JSON would store them (to recognise finished runs)."""
    return json.loads(json.dumps(settings.__dict__))


def run_name(strategy: str, placement: str) -> str:
    return f"{strategy}__{placement}"


def train_config(settings: Settings, strategy: str, placement: str = "independent") -> Any:
    from AutoCTVLib.training.config import TrainConfig

    return TrainConfig(
        iterations=settings.iterations,
        val_every=settings.iterations,
        log_every=1,
        batch_size=settings.batch_size,
        patch_size_zyx=settings.patch_size_zyx,
        foreground_fraction=0.5,
        lr=settings.lr,
        loss="bce_dice",
        seed=settings.seed,
        augment=False,
        network={"channels": list(settings.channels)},
        preprocess={
            "spacing_xyz_mm": list(settings.network_spacing_xyz_mm),
            "hu_window": [-160.0, 240.0],
        },
        loss_weighting=strategy,
        qam_channels=list(settings.qam_channels),
        distinct_cases=True,
        aligned_patches=placement == "aligned",
    )


def build_cases(settings: Settings) -> dict[str, Any]:
    """Training cases (styled labels) and test cases (guideline labels), on the network grid."""
    from AutoCTVLib.metrics import dice
    from AutoCTVLib.noisy.noise import annotator_style_plan
    from AutoCTVLib.phantom import PhantomConfig, generate_phantom
    from AutoCTVLib.preprocess import preprocess
    from AutoCTVLib.training.data import TrainingCase

    preprocess_config = train_config(settings, "none").preprocess_config()
    styles = annotator_style_plan(
        settings.n_train, settings.styled_share, np.random.default_rng(settings.seed)
    )
    plan = [(f"train{i:02d}_{style}", 3000 + i, style) for i, style in enumerate(styles)]
    plan += [
        (f"test{i:02d}", 3000 + _TEST_SEED_OFFSET + i, "standard") for i in range(settings.n_test)
    ]
    train, test, label_agreement = [], [], {}
    for case_id, seed, style in plan:
        phantom = generate_phantom(
            PhantomConfig(
                seed=seed,
                size_xyz=settings.phantom_size_xyz,
                spacing_xyz_mm=settings.phantom_spacing_xyz_mm,
                annotator_style=style,
            )
        )
        prepared = preprocess(phantom.ct, preprocess_config)
        spacing = prepared.network_geometry.spacing_xyz_mm
        if case_id.startswith("train"):
            label = prepared.label_to_network(phantom.ctv)
            train.append(TrainingCase.from_arrays(case_id, prepared.image, label, spacing))
            label_agreement[case_id] = {
                "style": style,
                "dice_vs_guideline": round(dice(phantom.ctv.array, phantom.ctv_reference.array), 4),
            }
        else:
            reference = prepared.label_to_network(phantom.ctv_reference)
            test.append(TrainingCase.from_arrays(case_id, prepared.image, reference, spacing))
    return {"train": train, "test": test, "labels": label_agreement}


def run_one(job: tuple[Settings, str, str, str]) -> dict[str, Any]:
    settings, strategy, placement, work_dir_text = job
    import torch

    torch.set_num_threads(settings.threads)
    from AutoCTVLib.nn import build_network
    from AutoCTVLib.training.data import PatchSampler
    from AutoCTVLib.training.trainer import Trainer, adam_factory, make_loss_fn

    work_dir = Path(work_dir_text)
    started = time.perf_counter()
    cases = build_cases(settings)
    prepared_s = time.perf_counter() - started
    config = train_config(settings, strategy, placement)
    sampler = PatchSampler(
        cases["train"],
        config.batch_size,
        config.patch_size_zyx,
        config.foreground_fraction,
        seed=config.seed,
        distinct_cases=config.distinct_cases,
        aligned_patches=config.aligned_patches,
    )
    trainer = Trainer(
        build_network(config.network_config(), seed=config.seed),
        make_loss_fn(config.loss),
        adam_factory(config.lr, config.weight_decay),
        sampler,
        cases["test"],
        config=config,
    )
    result = trainer.fit()
    history = trainer.state.train_history
    validation = result.last_validation or {}
    record: dict[str, Any] = {
        "settings": json_settings(settings),
        "strategy": strategy,
        "placement": placement,
        "config": config.to_dict(),
        "test_dice_mean": validation.get("dice_mean"),
        "test_hd95_mean_mm": validation.get("hd95_mean_mm"),
        "test_per_case": validation.get("per_case"),
        "training_labels": cases["labels"],
        "train_seconds": round(history[-1]["seconds"], 1) if history else None,
        "prepare_seconds": round(prepared_s, 1),
        "losses_every_10": [round(row["loss"], 5) for row in history[::10]],
    }
    if strategy != "none":
        record["mean_weight_by_style"] = weight_by_style(history, cases["labels"], settings)
        record["weight_label_share_correlation"] = weight_share_correlation(history)
    (work_dir / f"{run_name(strategy, placement)}.json").write_text(json.dumps(record, indent=1))
    print(
        f"{strategy:8s} {placement:11s} test Dice {record['test_dice_mean']}, HD95 "
        f"{record['test_hd95_mean_mm']} mm ({record['train_seconds']} s)",
        flush=True,
    )
    return record


def weight_by_style(
    history: list[dict[str, Any]], labels: dict[str, dict[str, Any]], settings: Settings
) -> dict[str, dict[str, float]]:
    """Mean N·Θ per annotator style over all iterations and over the last quarter."""
    quarter = max(1, len(history) // 4)
    summary: dict[str, dict[str, float]] = {}
    for part, rows in (("all", history), ("last_quarter", history[-quarter:])):
        values: dict[str, list[float]] = {}
        for row in rows:
            scale = len(row["sample_weights"])
            for case_id, weight in zip(row["case_ids"], row["sample_weights"]):
                values.setdefault(labels[case_id]["style"], []).append(weight * scale)
        for style, weights in values.items():
            summary.setdefault(style, {})[part] = round(float(np.mean(weights)), 4)
    return summary


def weight_share_correlation(
    history: list[dict[str, Any]], key: str = "label_shares"
) -> float | None:
    """Pearson correlation of N·Θ with a per-patch record (default: the patch's labelled
    share), both centred per batch; ``None`` when a row lacks the record.

    Near 0: the quality network's weights do not follow how much of a patch is labelled; a
    clear positive value means it favours patches holding more CTV, whatever the annotator.
    With ``key="sample_losses"`` a negative value means it favours patches already fitted.
    """
    weights, shares = [], []
    for row in history:
        if not row.get(key):
            return None
        w = np.asarray(row["sample_weights"]) * len(row["sample_weights"])
        share = np.asarray(row[key])
        weights.append(w - w.mean())
        shares.append(share - share.mean())
    if not weights:
        return None
    w, share = np.concatenate(weights), np.concatenate(shares)
    if w.std() == 0 or share.std() == 0:
        return None
    return round(float(np.corrcoef(w, share)[0, 1]), 3)


def volume_ratio(record: dict[str, Any]) -> float | None:
    """Median predicted / reference CTV volume over the test cases."""
    rows = record.get("test_per_case") or []
    ratios = [r["volume_pred_ml"] / r["volume_ref_ml"] for r in rows if r.get("volume_ref_ml")]
    return round(float(np.median(ratios)), 2) if ratios else None


def _cell(value: float | None, form: str) -> str:
    return "—" if value is None else format(value, form)


def write_table(records: dict[str, dict[str, Any]], settings: Settings, out_stem: Path) -> None:
    header = [
        "training",
        "patches",
        "test Dice (mean)",
        "test HD95 mm (mean)",
        "volume / reference (median)",
        "per case Dice",
        "N·Θ wide / standard / tight (last quarter)",
        "N·Θ vs label share (r)",
        "train s",
    ]
    table = []
    for strategy, placement in RUNS:
        record = records.get(run_name(strategy, placement))
        if record is None:
            continue
        per_case = ", ".join(f"{row['dice']:.3f}" for row in (record.get("test_per_case") or []))
        weights = record.get("mean_weight_by_style") or {}
        by_style = " / ".join(
            _cell(weights.get(style, {}).get("last_quarter"), ".2f")
            for style in ("wide", "standard", "tight")
        )
        table.append(
            [
                RUN_TITLES[strategy],
                placement,
                _cell(record["test_dice_mean"], ".3f"),
                _cell(record["test_hd95_mean_mm"], ".1f"),
                _cell(volume_ratio(record), ".2f"),
                per_case,
                by_style if weights else "—",
                _cell(record.get("weight_label_share_correlation"), ".2f")
                if strategy != "none"
                else "—",
                record["train_seconds"],
            ]
        )
    any_record = next(iter(records.values()))
    agreement: dict[str, list[float]] = {}
    for entry in any_record["training_labels"].values():
        agreement.setdefault(entry["style"], []).append(entry["dice_vs_guideline"])
    notes = [
        "Training labels against the guideline CTV (mean Dice per style): "
        + ", ".join(f"{style} {np.mean(v):.3f}" for style, v in sorted(agreement.items()))
        + ". Test Dice and HD95 are against the guideline CTV of held-out phantoms.",
        "N·Θ is a patch's weight times the batch size (1 = the plain mean); r is its Pearson "
        "correlation with the patch's labelled share, both centred within each batch.",
    ]
    if any(
        strategy != "none"
        and run_name(strategy, placement) in records
        and records[run_name(strategy, placement)].get("weight_label_share_correlation") is None
        for strategy, placement in RUNS
    ):
        notes.append(
            "An r of — for a weighted run: that run predates the per-patch label-share record "
            "(delete its record in the work folder and rerun to fill it in)."
        )
    data = {
        "settings": settings.__dict__,
        "training_labels": any_record["training_labels"],
        "runs": [records[run_name(*run)] for run in RUNS if run_name(*run) in records],
    }
    write_results(
        out_stem,
        "Noisy labels in 3D: plain training vs QAM+OCM, half the training CTVs wide or tight",
        header,
        table,
        data,
        notes=notes,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny phantoms and runs")
    parser.add_argument("--workers", type=int, default=1, help="trainings run in parallel (≤ 2)")
    parser.add_argument("--iterations", type=int, help="override the iterations per training")
    parser.add_argument("--work-dir", type=Path, help="per-run results")
    parser.add_argument("--out", type=Path, help="output stem (default benchmarks/results/...)")
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    if args.iterations:
        settings = Settings(**{**settings.__dict__, "iterations": args.iterations})
    default_work = (
        BENCHMARKS / "out" / ("noisy_labels_3d_quick" if args.quick else "noisy_labels_3d")
    )
    work_dir = args.work_dir or default_work
    work_dir.mkdir(parents=True, exist_ok=True)
    out_stem = args.out or (
        work_dir / "noisy_labels_3d" if args.quick else RESULTS / "noisy_labels_3d"
    )
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.threads))

    records: dict[str, dict[str, Any]] = {}
    jobs = []
    for strategy, placement in RUNS:
        name = run_name(strategy, placement)
        done = work_dir / f"{name}.json"
        saved = json.loads(done.read_text()) if done.is_file() else None
        if saved is not None and saved.get("settings") == json_settings(settings):
            records[name] = saved
        else:
            jobs.append((settings, strategy, placement, str(work_dir)))
    started = time.perf_counter()
    for record in run_jobs(run_one, jobs, args.workers):
        records[run_name(record["strategy"], record["placement"])] = record
    elapsed = time.perf_counter() - started
    write_table(records, settings, out_stem)
    for job in jobs:
        record = records[run_name(job[1], job[2])]
        print(
            f"{job[1]}: {record['train_seconds'] / settings.iterations:.3f} s per iteration, "
            f"{record['prepare_seconds']:.0f} s to prepare the cases"
        )
    print(f"{len(jobs)} trainings in {elapsed:.0f} s; wrote {out_stem.with_suffix('.md')}")


if __name__ == "__main__":
    main()
