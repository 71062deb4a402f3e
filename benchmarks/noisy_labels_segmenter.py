"""Noisy labels on the cascade's fine-grid stage 2: plain vs noise-robust Dice vs QAM+OCM.

The training phantoms are drawn by annotators of varied styles (:mod:`AutoCTVLib.phantom.style`:
"wide", "tight", "random"; the rest "standard", the guideline). Each case becomes a segmenter
crop (2 × 2 × 3 mm, the CTV's box grown by the crop margin and jitter, as
:mod:`AutoCTVLib.training.segmenter_data` makes them) holding its *delivered* label; the test
phantoms' crops hold the guideline CTV (``ctv_reference``), which every row is scored against.

Conditions: ``clean`` (every training label standard) and ``heavy`` (three quarters of the
training cases styled, the three styles in turn). Rows, on the same crops, seed, network,
patches and iterations:

* ``plain``: BCE + Dice, the plain mean over the batch;
* ``nr_dice``: the noise-robust Dice loss (Wang et al. 2020), plain mean;
* ``qam_ocm``: BCE + Dice weighted by QAM + OCM (λ = 2), thesis chapter 3;
* ``qam_ocm_labelled``: the same, with the weights shared only among patches that hold label
  (a patch without label says nothing of its annotator; it keeps the plain weight 1/N);
* ``qam_ocm_warmup``: the labelled variant, with plain training for the first quarter;
* ``qam_ocm_size``: QAM+OCM with the quality network trained by each patch's loss less the
  running mean loss of patches holding as much label (``quality_signal``
  ``"size_adjusted_loss"``, :mod:`AutoCTVLib.noisy.size_baseline`), so that "holds more CTV"
  no longer passes for "drawn better";
* ``qam_ocm_size_soft``: the same with the OCM's bound λ = 0.5 (weights within a factor e of
  each other), so the weights cannot concentrate on a few patches.

Every row draws the same batches: patches of different cases (``distinct_cases``) placed alike
in their crops (``aligned_patches``), as the quality network needs. Reported: test Dice and
HD95 (mm), predicted volume against the guideline's, and for the weighted rows what the weights
followed: mean N·Θ per annotator style, the within-batch correlation of N·Θ with each patch's
loss and labelled share, the weight left to patches without label, and the effective batch
(1 / Σ Θ², as a share of N).

Run (about 100 minutes on 2 CPU cores for all rows)::

    .venv/bin/python benchmarks/noisy_labels_segmenter.py --workers 2

``--quick`` is a one-minute smoke run (under benchmarks/out/ only). Each run's record is kept in
``--work-dir`` as it finishes, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from common import run_jobs, write_results
from noisy_labels_3d import volume_ratio, weight_by_style, weight_share_correlation

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results"


class Row(NamedTuple):
    """A row's training switches."""

    loss: str
    weighting: str
    labelled_only: bool = False
    warmup: float = 0.0  # share of the iterations trained with the plain mean first
    quality_signal: str = "loss"
    ocm_lambda: float = 2.0  # the OCM's bound (thesis: 2)


ROWS: dict[str, Row] = {
    "plain": Row("bce_dice", "none"),
    "nr_dice": Row("nr_dice", "none"),
    "qam_ocm": Row("bce_dice", "qam_ocm"),
    "qam_ocm_labelled": Row("bce_dice", "qam_ocm", labelled_only=True),
    "qam_ocm_warmup": Row("bce_dice", "qam_ocm", labelled_only=True, warmup=0.25),
    "qam_ocm_size": Row("bce_dice", "qam_ocm", quality_signal="size_adjusted_loss"),
    "qam_ocm_size_soft": Row(
        "bce_dice", "qam_ocm", quality_signal="size_adjusted_loss", ocm_lambda=0.5
    ),
}
ROW_TITLES = {
    "plain": "plain (BCE + Dice)",
    "nr_dice": "noise-robust Dice",
    "qam_ocm": "QAM+OCM (λ = 2)",
    "qam_ocm_labelled": "QAM+OCM, labelled patches only",
    "qam_ocm_warmup": "QAM+OCM, labelled only, plain first quarter",
    "qam_ocm_size": "QAM+OCM, size-adjusted quality signal",
    "qam_ocm_size_soft": "QAM+OCM (λ = 0.5), size-adjusted quality signal",
}
#: condition -> (share of styled training cases, styles in turn)
CONDITIONS: dict[str, tuple[float, tuple[str, ...]]] = {
    "clean": (0.0, ("wide",)),
    "heavy": (0.75, ("wide", "tight", "random")),
}
_TRAIN_SEED = 3000
_TEST_SEED = 53_000


@dataclass(frozen=True)
class Settings:
    n_train: int
    n_test: int
    phantom_size_xyz: tuple[int, int, int]
    phantom_spacing_xyz_mm: tuple[float, float, float]
    spacing_xyz_mm: tuple[float, float, float]
    margin_mm: float
    jitter_mm: float
    patch_size_zyx: tuple[int, int, int]
    batch_size: int
    iterations: int
    channels: tuple[int, ...]
    qam_channels: tuple[int, ...]
    lr: float
    seed: int
    threads: int
    precision: str


FULL = Settings(
    n_train=12,
    n_test=4,
    phantom_size_xyz=(256, 256, 96),
    phantom_spacing_xyz_mm=(1.95, 1.95, 3.0),
    spacing_xyz_mm=(2.0, 2.0, 3.0),
    margin_mm=20.0,
    jitter_mm=12.0,
    patch_size_zyx=(48, 64, 64),
    batch_size=4,
    iterations=1000,
    channels=(8, 16, 32, 64),
    qam_channels=(8, 16, 32, 32),
    lr=1e-3,
    seed=0,
    threads=1,
    precision="bf16",
)
QUICK = replace(
    FULL,
    n_train=4,
    n_test=1,
    phantom_size_xyz=(96, 96, 40),
    phantom_spacing_xyz_mm=(5.2, 5.2, 7.5),
    spacing_xyz_mm=(6.0, 6.0, 7.5),
    patch_size_zyx=(16, 16, 16),
    iterations=4,
    channels=(4, 8),
    qam_channels=(4, 8),
    precision="off",
)


def json_settings(settings: Settings) -> dict[str, Any]:
    """The settings as JSON stores them (to recognise finished runs)."""
    return json.loads(json.dumps(settings.__dict__))


def run_name(row: str, condition: str) -> str:
    return f"{row}__{condition}"


def train_config(settings: Settings, row: str) -> Any:
    """The segmenter training configuration of ``row`` (plain poly rate, no augmentation)."""
    from AutoCTVLib.training.config import TrainConfig

    loss, weighting, labelled_only, warmup, quality_signal, ocm_lambda = ROWS[row]
    return TrainConfig(
        stage="segmenter",
        cascade={"margin_mm": settings.margin_mm, "jitter_mm": settings.jitter_mm},
        iterations=settings.iterations,
        val_every=settings.iterations,
        log_every=1,
        batch_size=settings.batch_size,
        patch_size_zyx=settings.patch_size_zyx,
        foreground_fraction=0.67,
        boundary_fraction=0.0,
        lr=settings.lr,
        lr_schedule="poly",
        loss=loss,
        seed=settings.seed,
        augment=False,
        network={
            "channels": list(settings.channels),
            "residual": True,
            "se": True,
            "dropout_p": 0.1,
            "dropout_where": "decoder",
        },
        preprocess={"spacing_xyz_mm": list(settings.spacing_xyz_mm), "hu_window": [-300, 600]},
        loss_weighting=weighting,
        weight_labelled_only=labelled_only,
        weighting_warmup_iterations=round(warmup * settings.iterations),
        quality_signal=quality_signal,
        ocm_lambda=ocm_lambda,
        qam_channels=list(settings.qam_channels),
        distinct_cases=True,
        aligned_patches=True,
        mixed_precision=settings.precision,
        channels_last=settings.precision == "bf16",
    )


def build_cases(settings: Settings, condition: str) -> dict[str, Any]:
    """Training crops (delivered labels) and test crops (guideline labels)."""
    from AutoCTVLib.metrics import dice
    from AutoCTVLib.noisy.noise import annotator_style_plan
    from AutoCTVLib.phantom import PhantomConfig, generate_phantom
    from AutoCTVLib.training.segmenter_data import segmenter_case

    config = train_config(settings, "plain")
    preprocess_config, segmenter = config.preprocess_config(), config.segmenter_settings()
    share, styles = CONDITIONS[condition]
    plan = annotator_style_plan(
        settings.n_train, share, np.random.default_rng(settings.seed), styles=styles
    )
    jobs = [(f"train{i:02d}_{style}", _TRAIN_SEED + i, style) for i, style in enumerate(plan)]
    jobs += [(f"test{i:02d}", _TEST_SEED + i, "standard") for i in range(settings.n_test)]
    train, test, labels = [], [], {}
    for case_id, seed, style in jobs:
        phantom = generate_phantom(
            PhantomConfig(
                seed=seed,
                size_xyz=settings.phantom_size_xyz,
                spacing_xyz_mm=settings.phantom_spacing_xyz_mm,
                annotator_style=style,
            )
        )
        if case_id.startswith("train"):
            train.append(
                segmenter_case(case_id, phantom.ct, phantom.ctv, preprocess_config, segmenter)
            )
            labels[case_id] = {
                "style": style,
                "dice_vs_guideline": round(dice(phantom.ctv.array, phantom.ctv_reference.array), 4),
            }
        else:
            # the test crop: the guideline CTV's box grown by the inference margin only
            test_settings = replace(segmenter, jitter_mm=0.0)
            test.append(
                segmenter_case(
                    case_id, phantom.ct, phantom.ctv_reference, preprocess_config, test_settings
                )
            )
    return {"train": train, "test": test, "labels": labels}


def cases_path(work_dir: Path, settings: Settings, condition: str) -> Path:
    """Where the crops of ``condition`` are kept (named for the settings that make them)."""
    import hashlib

    keys = (
        "n_train",
        "n_test",
        "phantom_size_xyz",
        "phantom_spacing_xyz_mm",
        "spacing_xyz_mm",
        "margin_mm",
        "jitter_mm",
        "seed",
    )
    text = json.dumps({key: json_settings(settings)[key] for key in keys}, sort_keys=True)
    return work_dir / f"cases_{condition}_{hashlib.sha256(text.encode()).hexdigest()[:10]}.npz"


def save_cases(cases: dict[str, Any], path: Path) -> None:
    """The crops as one ``.npz`` (written atomically) for the runs of a condition."""
    arrays: dict[str, np.ndarray] = {}
    for part in ("train", "test"):
        for case in cases[part]:
            arrays[f"{part}/{case.case_id}/image"] = case.image
            arrays[f"{part}/{case.case_id}/label"] = case.label
            arrays[f"{part}/{case.case_id}/spacing"] = np.asarray(case.spacing_xyz_mm)
    arrays["labels"] = np.asarray(json.dumps(cases["labels"]))
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, **arrays)
    partial.replace(path)


def load_cases(path: Path) -> dict[str, Any]:
    from AutoCTVLib.training.data import TrainingCase

    cases: dict[str, Any] = {"train": [], "test": []}
    with np.load(path) as data:
        cases["labels"] = json.loads(str(data["labels"]))
        ids = sorted({tuple(key.split("/")[:2]) for key in data.files if "/" in key})
        for part, case_id in ids:
            spacing = tuple(float(v) for v in data[f"{part}/{case_id}/spacing"])
            cases[part].append(
                TrainingCase.from_arrays(
                    case_id,
                    data[f"{part}/{case_id}/image"],
                    data[f"{part}/{case_id}/label"],
                    spacing,
                )
            )
    return cases


def weight_diagnostics(history: list[dict[str, Any]]) -> dict[str, float | None]:
    """What the weights followed over the last half of the weighted steps.

    ``loss_r``: Pearson r of N·Θ with the patch's loss, both centred per batch (negative: the
    weights favour patches the network already fits); ``unlabelled_weight``: mean N·Θ of patches
    without label; ``effective_batch``: mean of 1 / (N Σ Θ²) (1: equal weights, 1/N: one patch).
    """
    rows = [row for row in history if row.get("sample_weights")]
    rows = rows[len(rows) // 2 :]
    if not rows:
        return {"loss_r": None, "unlabelled_weight": None, "effective_batch": None}
    unlabelled, effective = [], []
    for row in rows:
        theta = np.asarray(row["sample_weights"], dtype=float)
        shares = np.asarray(row["label_shares"], dtype=float)
        unlabelled.extend(theta[shares == 0] * len(theta))
        effective.append(1.0 / (len(theta) * float(np.sum(theta**2))))
    return {
        "loss_r": weight_share_correlation(rows, key="sample_losses"),
        "unlabelled_weight": round(float(np.mean(unlabelled)), 3) if unlabelled else None,
        "effective_batch": round(float(np.mean(effective)), 3),
    }


def run_one(job: tuple[Settings, str, str, str]) -> dict[str, Any]:
    settings, row, condition, work_dir_text = job
    import torch

    torch.set_num_threads(settings.threads)
    from AutoCTVLib.nn import build_network
    from AutoCTVLib.training.data import PatchSampler
    from AutoCTVLib.training.trainer import Trainer, adam_factory, make_loss_fn

    started = time.perf_counter()
    cases = load_cases(cases_path(Path(work_dir_text), settings, condition))
    prepared_s = time.perf_counter() - started
    config = train_config(settings, row)
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
    validation = trainer.fit().last_validation or {}
    history = trainer.state.train_history
    record: dict[str, Any] = {
        "settings": json_settings(settings),
        "row": row,
        "condition": condition,
        "config": config.to_dict(),
        "test_dice_mean": validation.get("dice_mean"),
        "test_hd95_mean_mm": validation.get("hd95_mean_mm"),
        "test_per_case": validation.get("per_case"),
        "training_labels": cases["labels"],
        "train_seconds": round(history[-1]["seconds"], 1) if history else None,
        "prepare_seconds": round(prepared_s, 1),
        "losses_every_10": [round(r["loss"], 5) for r in history[::10]],
    }
    if ROWS[row].weighting != "none":
        weighted = [r for r in history if r.get("sample_weights")]
        record["mean_weight_by_style"] = weight_by_style(weighted, cases["labels"], settings)
        record["weight_label_share_correlation"] = weight_share_correlation(weighted)
        record["weights"] = weight_diagnostics(history)
    out = Path(work_dir_text) / f"{run_name(row, condition)}.json"
    out.write_text(json.dumps(record, indent=1))
    print(
        f"{row:18s} {condition:6s} Dice {record['test_dice_mean']}, HD95 "
        f"{record['test_hd95_mean_mm']} mm ({record['train_seconds']} s)",
        flush=True,
    )
    return record


def _cell(value: float | None, form: str) -> str:
    return "—" if value is None else format(value, form)


def table_row(record: dict[str, Any]) -> list[Any]:
    weights = record.get("mean_weight_by_style") or {}
    diagnostics = record.get("weights") or {}
    styles = [s for s in ("wide", "tight", "random", "standard") if s in weights]
    by_style = ", ".join(f"{s} {weights[s]['last_quarter']:.2f}" for s in styles)
    per_case = ", ".join(f"{r['dice']:.3f}" for r in (record.get("test_per_case") or []))
    return [
        ROW_TITLES[record["row"]],
        record["condition"],
        _cell(record["test_dice_mean"], ".3f"),
        _cell(record["test_hd95_mean_mm"], ".1f"),
        _cell(volume_ratio(record), ".2f"),
        per_case,
        by_style or "—",
        _cell(diagnostics.get("loss_r"), ".2f"),
        _cell(record.get("weight_label_share_correlation"), ".2f"),
        _cell(diagnostics.get("unlabelled_weight"), ".2f"),
        _cell(diagnostics.get("effective_batch"), ".2f"),
        record["train_seconds"],
    ]


def write_table(records: dict[str, dict[str, Any]], settings: Settings, out_stem: Path) -> None:
    header = [
        "training",
        "labels",
        "test Dice (mean)",
        "test HD95 mm (mean)",
        "volume / guideline (median)",
        "per case Dice",
        "N·Θ by style (last quarter)",
        "N·Θ vs loss (r)",
        "N·Θ vs label share (r)",
        "N·Θ of unlabelled patches",
        "effective batch / N",
        "train s",
    ]
    order = [run_name(r, c) for c in CONDITIONS for r in ROWS]
    table = [table_row(records[name]) for name in order if name in records]
    agreement: dict[str, list[float]] = {}
    for record in records.values():
        for entry in record["training_labels"].values():
            agreement.setdefault(entry["style"], []).append(entry["dice_vs_guideline"])
    notes = [
        "Training labels against the guideline CTV (mean Dice per style): "
        + ", ".join(f"{s} {np.mean(v):.3f}" for s, v in sorted(agreement.items()))
        + ". clean: every training label standard; heavy: 9 of 12 styled (wide, tight, random "
        "in turn). Test Dice and HD95: against the guideline CTV of 4 unseen phantoms, on their "
        "segmenter crops (2 × 2 × 3 mm). Seed "
        f"{settings.seed}: which training cases carry which style, initial weights, patches.",
        "N·Θ is a patch's weight times the batch size (1 = the plain mean). The correlations are "
        "Pearson r with both centred within each batch, over the second half of training; "
        "effective batch: mean 1 / (N Σ Θ²).",
    ]
    data = {
        "settings": settings.__dict__,
        "runs": [records[name] for name in order if name in records],
    }
    write_results(
        out_stem,
        "Noisy labels on the fine-grid segmenter: plain vs noise-robust Dice vs QAM+OCM",
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
    parser.add_argument("--rows", nargs="+", choices=sorted(ROWS), default=list(ROWS))
    parser.add_argument(
        "--conditions", nargs="+", choices=sorted(CONDITIONS), default=list(CONDITIONS)
    )
    parser.add_argument("--iterations", type=int, help="override the iterations per training")
    parser.add_argument(
        "--seed",
        type=int,
        help="override the seed (which cases the styles fall on, weights, patches); "
        "use its own --work-dir and --out",
    )
    parser.add_argument("--work-dir", type=Path, help="per-run results")
    parser.add_argument("--out", type=Path, help="output stem (default benchmarks/results/...)")
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    if args.iterations:
        settings = replace(settings, iterations=args.iterations)
    if args.seed is not None:
        settings = replace(settings, seed=args.seed)
    name = "noisy_labels_segmenter" + ("_quick" if args.quick else "")
    work_dir = args.work_dir or BENCHMARKS / "out" / name
    work_dir.mkdir(parents=True, exist_ok=True)
    out_stem = args.out or (work_dir / name if args.quick else RESULTS / name)
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.threads))

    records: dict[str, dict[str, Any]] = {}
    jobs = []
    for condition in CONDITIONS:
        for row in ROWS:
            done = work_dir / f"{run_name(row, condition)}.json"
            saved = json.loads(done.read_text()) if done.is_file() else None
            if saved is not None and saved.get("settings") == json_settings(settings):
                records[run_name(row, condition)] = saved
            elif row in args.rows and condition in args.conditions:
                jobs.append((settings, row, condition, str(work_dir)))
    started = time.perf_counter()
    for condition in sorted({job[2] for job in jobs}):
        path = cases_path(work_dir, settings, condition)
        if not path.is_file():
            save_cases(build_cases(settings, condition), path)
    print(f"cases ready in {time.perf_counter() - started:.0f} s", flush=True)
    for record in run_jobs(run_one, jobs, args.workers):
        records[run_name(record["row"], record["condition"])] = record
    write_table(records, settings, out_stem)
    print(f"{len(jobs)} trainings in {time.perf_counter() - started:.0f} s; wrote {out_stem}.md")


if __name__ == "__main__":
    main()
