"""Thesis table 3.1 on our 2D phantom dataset: training on noisy labels with and without QAM/OCM.

Rows: clean training, then 25 / 50 / 75 % of the training labels dilated or eroded by n pixels,
n uniform in the thesis' "low" (1–8 px) and "high" (5–13 px) ranges, given for 256-pixel
images and scaled to our image size (at 96 px: 1–3 px and 2–4 px; at 128 px: 1–4 and 3–6).
Columns: baseline (plain mean of the per-image BCE), QAM, QAM + OCM (λ = 2), and the
noise-robust Dice loss (Wang et al. 2020) as a published baseline. Test labels are clean.
Dice per structure (body, bladder, hip bone; the analogues of lung, heart, clavicle) and their
mean, with the thesis' numbers beside.
Also the weights given to clean and noisy images over training (thesis figure 3.4), from the
50 % / high-noise row, as ``noisy_weights_trajectory.png``.

Budget: 96 × 96 images (3.9 mm pixels; the thesis had 256 px), 1200 iterations of batches of 8
(thesis: batch 32, up to 100 000 iterations): 28 trainings of 3–5 minutes on one core each.
At 400 iterations (on 128 px images) the baseline had converged but the quality-weighted runs
had not: the weights shrink the effective batch, and the thesis notes that the QAM first
over-fits a few samples and only later takes in more of them.
``--image-size 128 --iterations 400 --out ...`` reproduces that shorter table.

Run (full table, 59 minutes on 2 CPU cores, plus 3 minutes to build the dataset)::

    .venv/bin/python benchmarks/noisy_labels_2d.py --workers 2

Smoke test (a minute): ``--quick`` (tiny images and runs; writes under benchmarks/out/ only).
Each training's result is kept in ``--work-dir`` as it finishes, so an interrupted run resumes
where it stopped (and several processes may share the rows with ``--rows``).
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

# Thesis table 3.1 (JSRT, batch 32, QAM lr 1e-4, λ = 2): (lung, heart, clavicle, mean).
THESIS_TABLE = {
    ("clean", "baseline"): (0.943, 0.941, 0.862, 0.915),
    ("clean", "qam"): (0.939, 0.923, 0.831, 0.898),
    ("clean", "qam_ocm"): (0.941, 0.940, 0.852, 0.911),
    ("25_low", "baseline"): (0.868, 0.888, 0.538, 0.765),
    ("25_low", "qam"): (0.925, 0.926, 0.748, 0.866),
    ("25_low", "qam_ocm"): (0.936, 0.925, 0.823, 0.895),
    ("50_low", "baseline"): (0.873, 0.884, 0.539, 0.765),
    ("50_low", "qam"): (0.922, 0.925, 0.726, 0.857),
    ("50_low", "qam_ocm"): (0.936, 0.929, 0.828, 0.895),
    ("75_low", "baseline"): (0.820, 0.828, 0.512, 0.720),
    ("75_low", "qam"): (0.898, 0.825, 0.536, 0.753),
    ("75_low", "qam_ocm"): (0.937, 0.939, 0.809, 0.895),
    ("25_high", "baseline"): (0.865, 0.857, 0.422, 0.715),
    ("25_high", "qam"): (0.893, 0.835, 0.615, 0.781),
    ("25_high", "qam_ocm"): (0.935, 0.935, 0.801, 0.890),
    ("50_high", "baseline"): (0.755, 0.807, 0.393, 0.652),
    ("50_high", "qam"): (0.828, 0.853, 0.491, 0.714),
    ("50_high", "qam_ocm"): (0.942, 0.942, 0.853, 0.912),
    ("75_high", "baseline"): (0.745, 0.738, 0.381, 0.621),
    ("75_high", "qam"): (0.770, 0.772, 0.366, 0.636),
    ("75_high", "qam_ocm"): (0.938, 0.937, 0.801, 0.892),
}


@dataclass(frozen=True)
class Row:
    name: str
    share: float
    level: str | None  # "low" | "high" | None (clean)


ROWS = (
    Row("clean", 0.0, None),
    Row("25_low", 0.25, "low"),
    Row("50_low", 0.50, "low"),
    Row("75_low", 0.75, "low"),
    Row("25_high", 0.25, "high"),
    Row("50_high", 0.50, "high"),
    Row("75_high", 0.75, "high"),
)
#: column → (loss, loss weighting)
COLUMNS = {
    "baseline": ("bce", "none"),
    "qam": ("bce", "qam"),
    "qam_ocm": ("bce", "qam_ocm"),
    "nr_dice": ("nr_dice", "none"),
}
COLUMN_TITLES = {
    "baseline": "baseline",
    "qam": "QAM",
    "qam_ocm": "QAM+OCM",
    "nr_dice": "NR-Dice",
}
TRAJECTORY_ROW = "50_high"


@dataclass(frozen=True)
class Settings:
    image_size: int
    n_train: int
    n_test: int
    iterations: int
    batch_size: int
    lr: float
    channels: tuple[int, ...]
    qam_channels: tuple[int, ...]
    seed: int
    threads: int
    ocm_lambda: float = 2.0


FULL = Settings(
    image_size=96,
    n_train=165,
    n_test=82,
    iterations=1200,
    batch_size=8,
    lr=1e-3,
    channels=(8, 16, 32, 64),
    qam_channels=(8, 16, 32, 32),
    seed=0,
    threads=1,
)
QUICK = Settings(
    image_size=64,
    n_train=24,
    n_test=8,
    iterations=40,
    batch_size=4,
    lr=1e-3,
    channels=(4, 8, 16),
    qam_channels=(4, 8, 8),
    seed=0,
    threads=1,
)
QUICK_ROWS = ("clean", "50_high")


def json_settings(settings: Settings) -> dict[str, Any]:
    """The settings as JSON would store them (to recognise finished runs)."""
    return json.loads(json.dumps(settings.__dict__))


def noise_range_px(level: str, image_size: int) -> tuple[int, int]:
    from AutoCTVLib.noisy.noise import THESIS_NOISE_RANGES_PX, scaled_noise_range

    return scaled_noise_range(THESIS_NOISE_RANGES_PX[level], image_size)


def load_or_build_dataset(settings: Settings, work_dir: Path) -> Any:
    from AutoCTVLib.noisy.dataset2d import (
        Dataset2DConfig,
        build_dataset2d,
        load_dataset2d,
        save_dataset2d,
    )

    config = Dataset2DConfig(
        image_size=settings.image_size, n_train=settings.n_train, n_test=settings.n_test
    )
    path = work_dir / "dataset.npz"
    if path.is_file():
        try:
            return load_dataset2d(path, config)
        except Exception as error:  # a stale cache from other settings: rebuild
            print(f"rebuilding the dataset ({error})", flush=True)
    started = time.perf_counter()
    dataset = build_dataset2d(config)
    save_dataset2d(dataset, path)
    print(f"built the 2D dataset in {time.perf_counter() - started:.0f} s", flush=True)
    return dataset


def noisy_labels(dataset: Any, row: Row, settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """The training labels of a row (same for every column) and the noisy flags."""
    from AutoCTVLib.noisy.noise import simulate_label_noise

    if row.level is None:
        return dataset.train_labels, np.zeros(len(dataset.train_labels), dtype=bool)
    rng = np.random.default_rng([settings.seed, ROWS.index(row)])
    noise = simulate_label_noise(
        dataset.train_labels, row.share, noise_range_px(row.level, settings.image_size), rng
    )
    return noise.labels, noise.noisy


def run_one(job: tuple[Settings, str, str, str]) -> dict[str, Any]:
    """Train one (row, column) and return its record (also written to the work folder)."""
    settings, row_name, column, work_dir_text = job
    import torch

    torch.set_num_threads(settings.threads)
    from AutoCTVLib.noisy.train2d import (
        Train2DConfig,
        dice_per_structure,
        predict_2d,
        train_2d,
        weight_trajectory,
    )

    work_dir = Path(work_dir_text)
    dataset = load_or_build_dataset(settings, work_dir)
    row = next(r for r in ROWS if r.name == row_name)
    labels, noisy = noisy_labels(dataset, row, settings)
    loss, weighting = COLUMNS[column]
    config = Train2DConfig(
        iterations=settings.iterations,
        batch_size=settings.batch_size,
        lr=settings.lr,
        loss=loss,
        loss_weighting=weighting,
        channels=settings.channels,
        qam_channels=settings.qam_channels,
        ocm_lambda=settings.ocm_lambda,
        seed=settings.seed,
    )
    started = time.perf_counter()
    result = train_2d(dataset.train_images, labels, config)
    prediction = predict_2d(result.network, dataset.test_images)
    dice = dice_per_structure(prediction, dataset.test_labels)
    record: dict[str, Any] = {
        "settings": json_settings(settings),
        "row": row_name,
        "column": column,
        "config": config.to_dict(),
        "noise_range_px": None
        if row.level is None
        else noise_range_px(row.level, settings.image_size),
        "noisy_training_images": int(noisy.sum()),
        "dice_per_structure": dice.mean(axis=0).round(4).tolist(),
        "dice_mean": round(float(dice.mean()), 4),
        "dice_std_per_structure": dice.std(axis=0).round(4).tolist(),
        # predicted / reference area over the test set, per structure (1 = right size)
        "area_ratio_per_structure": (
            prediction.sum(axis=(0, 2, 3)) / np.maximum(dataset.test_labels.sum(axis=(0, 2, 3)), 1)
        )
        .round(3)
        .tolist(),
        "train_seconds": round(result.seconds, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "loss_first_last": [
            float(np.mean(result.losses[:20])),
            float(np.mean(result.losses[-20:])),
        ],
        "losses_every_10": [round(v, 5) for v in result.losses[::10]],
    }
    if weighting != "none" and noisy.any():
        trajectory = weight_trajectory(
            result.batch_indices,
            result.batch_weights,
            noisy,
            window=max(1, settings.iterations // 40),
        )
        record["weight_trajectory"] = {
            key: [None if not np.isfinite(v) else round(float(v), 5) for v in values]
            for key, values in trajectory.items()
        }
    path = work_dir / f"{row_name}__{column}.json"
    path.write_text(json.dumps(record, indent=1))
    print(
        f"{row_name:8s} {column:8s} Dice {record['dice_per_structure']} mean "
        f"{record['dice_mean']:.3f} ({record['seconds']:.0f} s)",
        flush=True,
    )
    return record


def plot_trajectory(records: dict[tuple[str, str], dict[str, Any]], path: Path) -> bool:
    """Thesis figure 3.4: mean and variance of N·Θ for clean and noisy images over training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [
        (column, records.get((TRAJECTORY_ROW, column)))
        for column in ("qam_ocm", "qam")
        if records.get((TRAJECTORY_ROW, column), {}).get("weight_trajectory")
    ]
    if not runs:
        return False
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for column, record in runs:
        trajectory = record["weight_trajectory"]
        iteration = trajectory["iteration"]
        style = "-" if column == "qam_ocm" else ":"
        for group, colour in (("clean", "tab:green"), ("noisy", "tab:red")):
            mean = [np.nan if v is None else v for v in trajectory[f"{group}_mean"]]
            variance = [np.nan if v is None else v for v in trajectory[f"{group}_var"]]
            label = f"{group} ({COLUMN_TITLES[column]})"
            axes[0].plot(iteration, mean, style, color=colour, label=label)
            axes[1].plot(iteration, variance, style, color=colour, label=label)
    axes[0].axhline(1.0, color="grey", linewidth=0.8)
    axes[0].set_title("mean weight N·Θ (1 = plain mean)")
    axes[1].set_title("variance of N·Θ within the group")
    for axis in axes:
        axis.set_xlabel("iteration")
        axis.legend(fontsize=8)
    row = next(r for r in ROWS if r.name == TRAJECTORY_ROW)
    figure.suptitle(
        f"weights given to clean and noisy training images ({int(row.share * 100)} % noisy, "
        "high noise)"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def write_table(
    records: dict[tuple[str, str], dict[str, Any]],
    settings: Settings,
    out_stem: Path,
    rows: list[Row],
) -> None:
    header = [
        "noisy share",
        "noise (thesis px → ours)",
        "method",
        "body",
        "bladder",
        "hip bone",
        "mean",
        "thesis lung / heart / clavicle",
        "thesis mean",
        "train s",
    ]
    table = []
    for row in rows:
        share = "none" if row.level is None else f"{int(row.share * 100)} %"
        if row.level is None:
            noise = "–"
        else:
            from AutoCTVLib.noisy.noise import THESIS_NOISE_RANGES_PX

            low, high = THESIS_NOISE_RANGES_PX[row.level]
            ours = noise_range_px(row.level, settings.image_size)
            noise = f"{low}–{high} → {ours[0]}–{ours[1]} px"
        for column in COLUMNS:
            record = records.get((row.name, column))
            thesis = THESIS_TABLE.get((row.name, column))
            cells = (
                ["—"] * 4
                if record is None
                else [f"{v:.3f}" for v in (*record["dice_per_structure"], record["dice_mean"])]
            )
            table.append(
                [
                    share,
                    noise,
                    COLUMN_TITLES[column],
                    *cells,
                    "—" if thesis is None else " / ".join(f"{v:.3f}" for v in thesis[:3]),
                    "—" if thesis is None else f"{thesis[3]:.3f}",
                    "—" if record is None else f"{record['train_seconds']:.0f}",
                ]
            )
    data = {
        "settings": settings.__dict__,
        "dataset": {
            "structures": ["body", "bladder", "hip_bone"],
            "thesis_counterparts": ["lung", "heart", "clavicle"],
            "pixel_mm": 371.0 / settings.image_size,
        },
        "runs": [records[key] for key in sorted(records)],
        "thesis_table_3_1": {f"{r}/{c}": v for (r, c), v in THESIS_TABLE.items()},
    }
    notes = [
        f"{settings.n_train} training and {settings.n_test} test images of "
        f"{settings.image_size} × {settings.image_size} pixels "
        f"({371.0 / settings.image_size:.1f} mm); {settings.iterations} iterations of batches "
        f"of {settings.batch_size}, Adam lr {settings.lr:g} (QAM lr 1e-4), λ = "
        f"{settings.ocm_lambda:g}; seed {settings.seed}. Within a row every column trains on the "
        "same noisy labels; test labels are clean. Dice is the mean over test images.",
        "The thesis used JSRT radiographs (256 px, batch 32); its numbers are beside ours for "
        'the pattern, not as a target for the same data. "train s" is wall time with two '
        "trainings sharing the two cores.",
    ]
    write_results(
        out_stem,
        "Training on noisy labels in 2D: baseline, QAM, QAM+OCM, noise-robust Dice "
        "(thesis table 3.1)",
        header,
        table,
        data,
        notes=notes,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny data and runs")
    parser.add_argument("--workers", type=int, default=1, help="trainings run in parallel")
    parser.add_argument("--rows", nargs="*", help="only these rows (e.g. clean 50_high)")
    parser.add_argument("--image-size", type=int, help="override the image size in px (96)")
    parser.add_argument("--iterations", type=int, help="override the iterations per training")
    parser.add_argument("--batch-size", type=int, help="override the batch size (thesis: 32)")
    parser.add_argument("--ocm-lambda", type=float, help="override λ of the OCM (thesis: 2)")
    parser.add_argument("--work-dir", type=Path, help="per-run results and the dataset cache")
    parser.add_argument("--out", type=Path, help="output stem (default benchmarks/results/...)")
    args = parser.parse_args()

    settings = QUICK if args.quick else FULL
    overrides = {
        "image_size": args.image_size,
        "iterations": args.iterations,
        "batch_size": args.batch_size,
        "ocm_lambda": args.ocm_lambda,
    }
    settings = Settings(
        **{**settings.__dict__, **{k: v for k, v in overrides.items() if v is not None}}
    )
    default_work = (
        BENCHMARKS / "out" / ("noisy_labels_2d_quick" if args.quick else "noisy_labels_2d")
    )
    work_dir = args.work_dir or default_work
    work_dir.mkdir(parents=True, exist_ok=True)
    if args.quick:
        out_stem = args.out or work_dir / "noisy_labels_2d"
        plot_path = work_dir / "noisy_weights_trajectory.png"
    elif args.out is None:
        out_stem = RESULTS / "noisy_labels_2d"
        plot_path = RESULTS / "noisy_weights_trajectory.png"
    else:
        out_stem = args.out
        plot_path = out_stem.with_name(f"{out_stem.name}_weights_trajectory.png")
    names = args.rows or (list(QUICK_ROWS) if args.quick else [row.name for row in ROWS])
    unknown = sorted(set(names) - {row.name for row in ROWS})
    if unknown:
        parser.error(f"unknown rows: {', '.join(unknown)}")
    rows = [row for row in ROWS if row.name in names]

    os.environ.setdefault("OMP_NUM_THREADS", str(settings.threads))
    load_or_build_dataset(settings, work_dir)  # once, before the workers start
    records: dict[tuple[str, str], dict[str, Any]] = {}
    jobs = []
    for row in rows:
        for column in COLUMNS:
            done = work_dir / f"{row.name}__{column}.json"
            saved = json.loads(done.read_text()) if done.is_file() else None
            if saved is not None and saved.get("settings") == json_settings(settings):
                records[(row.name, column)] = saved
            else:
                jobs.append((settings, row.name, column, str(work_dir)))
    started = time.perf_counter()
    for record in run_jobs(run_one, jobs, args.workers):
        records[(record["row"], record["column"])] = record
    elapsed = time.perf_counter() - started
    write_table(records, settings, out_stem, rows)
    plotted = plot_trajectory(records, plot_path)
    trained = [records[(j[1], j[2])]["train_seconds"] for j in jobs]
    if trained:
        per_iteration = float(np.mean(trained)) / settings.iterations
        print(
            f"{len(jobs)} trainings in {elapsed:.0f} s; {per_iteration:.3f} s per iteration "
            f"({settings.image_size} px, batch {settings.batch_size}, {settings.threads} thread)"
        )
    print(f"wrote {out_stem.with_suffix('.md')}" + (f" and {plot_path}" if plotted else ""))


if __name__ == "__main__":
    main()
