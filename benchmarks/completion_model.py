"""Train the bundled sparse-slice completion network within a laptop-CPU budget.

The library's default (`CompletionTrainConfig()`: 48 phantoms, 20 000 iterations of two
32×96×96 patches) takes days on a 2-core CPU. This script trains the configuration we bundle:
the same network, model grid (1.5 × 1.5 × 3 mm), sampling and augmentation, on fewer phantoms
and fewer iterations, then installs the best network as ``Resources/Models/completion_phantom.*``.
Trained on synthetic phantoms only.

Run: .venv/bin/python benchmarks/completion_model.py --out runs/completion [--iterations 1500]
     [--threads 2] [--resume] [--stop-at N]

An interrupted run continues from its last validation with ``--resume`` (same options);
``--resume --stop-at N`` ends it at iteration N (at once, if it is there) with the best so far.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from AutoCTVLib.completion.model import BUNDLED_MODEL_NAME
from AutoCTVLib.completion.train import MODEL_STEM, CompletionTrainConfig, train_completion
from AutoCTVLib.models import load_model, save_model

REPOSITORY = Path(__file__).resolve().parents[1]


def bundled_config(iterations: int, cases: int) -> CompletionTrainConfig:
    """The CPU-budget configuration of the bundled completion network."""
    return CompletionTrainConfig(
        cases=cases,
        validation_cases=3,
        validation_examples=4,
        iterations=iterations,
        batch_size=2,
        val_every=250,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/completion"))
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--cases", type=int, default=24, help="training phantoms")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    parser.add_argument("--stop-at", type=int, help="end the run after this iteration")
    parser.add_argument("--models", type=Path, default=REPOSITORY / "Resources" / "Models")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    def show(event: dict) -> None:
        if event.get("event") == "validation" or "validation_dice" in event:
            print(json.dumps(event), flush=True)
        elif event.get("event") == "iteration" and event["iteration"] % 50 == 0:
            print(f"{event['iteration']}: loss {event['loss']:.3f} ({event['seconds']:.0f} s)")

    summary = train_completion(
        bundled_config(args.iterations, args.cases),
        args.out,
        progress=show,
        overwrite=not args.resume,
        resume=args.resume,
        stop_at=args.stop_at,
    )
    print(json.dumps(summary.__dict__), flush=True)
    model, card = load_model(args.out / f"{MODEL_STEM}.json")
    args.models.mkdir(parents=True, exist_ok=True)
    save_model(model, card, args.models / BUNDLED_MODEL_NAME)
    print(f"installed {args.models / BUNDLED_MODEL_NAME}.safetensors")


if __name__ == "__main__":
    main()
