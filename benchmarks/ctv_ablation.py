"""The thesis ablation (table 2.1) on synthetic phantoms: each row adds one part to the last.

Rows: UNet3D (BCE); + residual blocks; + SE blocks; + recurrent refinement; + Dice loss
(BCE + Dice). Every row uses the same data, split, seed, preprocessing, augmentation and number
of iterations; only the network switches and the loss differ. Training goes through
``run_training`` (what ``autoctv train`` runs); the test metrics are computed on each held-out
case's own CT grid by ``evaluate_dataset`` with the exported model.

Run (after benchmarks/ctv_data.py):
    .venv/bin/python benchmarks/ctv_ablation.py --data data/ctv_v1 --runs runs/ablation
Writes benchmarks/results/ctv_ablation.{json,md}. A finished row (its model.json exists) is not
trained again, so the script can be re-run to continue.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_results

from AutoCTVLib.evaluation import evaluate_dataset
from AutoCTVLib.models import load_model
from AutoCTVLib.predict import Predictor
from AutoCTVLib.training.config import TrainConfig
from AutoCTVLib.training.run import run_training

THESIS_DICE = {
    "UNet3D": 0.747,
    "+ residual blocks": 0.753,
    "+ SE blocks": 0.755,
    "+ recurrent refinement": 0.757,
    "+ Dice loss (BCE + Dice)": 0.763,
}

ROWS: list[tuple[str, dict[str, Any], str]] = [
    ("UNet3D", {}, "bce"),
    ("+ residual blocks", {"residual": True}, "bce"),
    ("+ SE blocks", {"residual": True, "se": True}, "bce"),
    ("+ recurrent refinement", {"residual": True, "se": True, "recurrent_steps": 2}, "bce"),
    ("+ Dice loss (BCE + Dice)", {"residual": True, "se": True, "recurrent_steps": 2}, "bce_dice"),
]


def row_config(network: dict[str, Any], loss: str, args: argparse.Namespace) -> TrainConfig:
    """The shared budget and settings with one row's network switches and loss."""
    return TrainConfig(
        iterations=args.iterations,
        val_every=args.val_every,
        log_every=10,
        batch_size=1,
        patch_size_zyx=tuple(args.patch) if args.patch else None,
        foreground_fraction=0.5,
        lr=1e-4,
        loss=loss,
        seed=args.seed,
        fold=0,
        n_folds=5,
        augment=True,
        network={"channels": [16, 32, 64, 96, 128], **network},
        preprocess={
            "spacing_xyz_mm": list(args.spacing),
            "hu_window": [-1000, 1600],
            "body_crop": True,
            "crop_margin_mm": 10.0,
        },
    )


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/ctv_v1"))
    parser.add_argument("--runs", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--val-every", type=int, default=200)
    parser.add_argument("--spacing", type=float, nargs=3, default=(6.0, 6.0, 6.0))
    parser.add_argument(
        "--patch", type=int, nargs=3, default=None, help="z y x; whole crop if omitted"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, nargs="*", default=None, help="row indices to run")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results/ctv_ablation")
    args = parser.parse_args()
    train_h5, test_h5 = args.data / "train.h5", args.data / "test.h5"
    selected = range(len(ROWS)) if args.rows is None else args.rows
    results: dict[str, Any] = {}
    for index in selected:
        name, network, loss = ROWS[index]
        run_dir = args.runs / f"{index}_{slug(name)}"
        config = row_config(network, loss, args)
        model_json = run_dir / "model.json"
        train_seconds = None
        if not model_json.exists():
            started = time.perf_counter()
            resume = (run_dir / "checkpoints" / "last").exists()
            run_training(train_h5, run_dir, config, resume=resume, model_name=slug(name))
            train_seconds = time.perf_counter() - started
            (run_dir / "train_seconds.json").write_text(json.dumps(train_seconds))
        elif (run_dir / "train_seconds.json").exists():
            train_seconds = json.loads((run_dir / "train_seconds.json").read_text())
        model, card = load_model(model_json)
        predictor = Predictor(model, card, device="cpu")
        evaluation = evaluate_dataset(lambda ct, p=predictor: p.predict(ct).label, test_h5)
        results[name] = {
            "config": config.to_dict(),
            "train_seconds": train_seconds,
            "parameters": card.parameter_count,
            "summary": evaluation.summary,
            "per_case": evaluation.per_case,
        }
        print(f"{name}: {evaluation.summary}", flush=True)
    rows = []
    for name, result in results.items():
        summary = result["summary"]
        hd95 = (
            f"{summary['hd95_mean_mm']:.1f} ± {summary['hd95_sd_mm']:.1f}"
            if summary["hd95_sd_mm"] is not None
            else "n/a"
        )
        rows.append(
            [
                name,
                f"{THESIS_DICE[name]:.3f}",
                f"{summary['dice_mean']:.3f} ± {summary['dice_sd']:.3f}",
                hd95,
                f"{result['parameters']:,}",
                f"{result['train_seconds'] / 60:.0f}" if result["train_seconds"] else "n/a",
            ]
        )
    write_results(
        args.out,
        "CTV ablation (thesis table 2.1) on synthetic phantoms",
        [
            "model",
            "thesis Dice (real CTs, 3-fold)",
            "our test Dice (mean ± sd)",
            "our test HD95 mm (mean ± sd)",
            "parameters",
            "training minutes",
        ],
        rows,
        {
            "iterations": args.iterations,
            "spacing_xyz_mm": list(args.spacing),
            "patch_zyx": args.patch,
            "results": results,
        },
    )
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
