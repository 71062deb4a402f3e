"""``autoctv complete-train``: train the sparse-slice completion network.

::

    autoctv complete-train --out DIR [--cases N] [--iterations N] [--seed S] [--quick]
                           [--data DATASET.h5] [--device auto|cpu|cuda] [--resume]
                           [--stop-at N]

Trains on synthetic phantoms generated in memory (the CTV, gynaecological organs, muscles,
nodal regions, vessels and the spinal canal; bladder, bowel and bones are held out) or on an
AutoCTV HDF5 dataset, and writes DIR/completion.json +
DIR/completion.safetensors, DIR/train_log.jsonl and DIR/summary.json. ``--quick`` is a smoke
test of a minute or two that produces a model of no practical use. Every validation writes a
checkpoint to DIR/checkpoints; ``--resume`` (with the same options) continues an interrupted run
from the last one; ``--stop-at N`` ends a run after iteration N (``--resume --stop-at N``:
at once, if the interrupted run got there) and exports the best network so far.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

ORDER = 45


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "complete-train",
        help="train the sparse-slice completion network",
        description=(
            "Train the completion network on randomly sparsified structures of synthetic "
            "phantoms (or of an HDF5 dataset) and export the best model to OUT."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--cases", type=int, help="training phantoms (default 48)")
    parser.add_argument("--iterations", type=int, help="optimiser steps (default 20000)")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.add_argument("--batch-size", type=int, help="examples per step (default 2)")
    parser.add_argument("--data", type=Path, help="train on an AutoCTV HDF5 dataset instead")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: tiny phantoms, a few iterations"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--progress",
        choices=("bar", "json", "none"),
        default="bar",
        help="progress display: a bar on stderr, JSON lines on stdout, or none (default bar)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a model in OUT")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run in OUT (give the same options as when it started)",
    )
    parser.add_argument(
        "--stop-at",
        type=int,
        metavar="N",
        help="end the run after iteration N and export the best network so far",
    )
    parser.set_defaults(handler=run)


class _Progress:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._bar: Any = None

    def __call__(self, event: dict[str, Any]) -> None:
        if self.mode == "json":
            print(json.dumps(event), flush=True)
            return
        if self.mode != "bar":
            return
        kind = event["event"]
        if kind == "case":
            end = "\n" if event["done"] == event["total"] else ""
            print(f"\rgenerating cases {event['done']}/{event['total']}", end=end, file=sys.stderr)
        elif kind == "iteration":
            if self._bar is None:
                try:
                    from tqdm import tqdm
                except ImportError:  # tqdm is optional
                    self.mode = "none"
                    return
                self._bar = tqdm(total=event["iterations"], unit="it", file=sys.stderr)
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{event['loss']:.3f}", refresh=False)
            if "validation_dice" in event:
                self._bar.write(
                    f"iteration {event['iteration']}: validation Dice "
                    f"{event['validation_dice']:.3f}",
                    file=sys.stderr,
                )
        elif kind == "end" and self._bar is not None:
            self._bar.close()


def run(args: argparse.Namespace) -> int:
    from AutoCTVLib.completion.train import CompletionTrainConfig, quick_config, train_completion
    from AutoCTVLib.device import select_device
    from AutoCTVLib.errors import InputError

    config = quick_config() if args.quick else CompletionTrainConfig()
    overrides = {
        name: value
        for name, value in (
            ("cases", args.cases),
            ("iterations", args.iterations),
            ("seed", args.seed),
            ("batch_size", args.batch_size),
        )
        if value is not None
    }
    try:
        config = replace(config, **overrides)
        device = select_device(args.device)
    except ValueError as error:
        raise InputError(str(error)) from error
    summary = train_completion(
        config,
        args.out,
        dataset=args.data,
        device=device,
        progress=_Progress(args.progress),
        overwrite=args.overwrite,
        resume=args.resume,
        stop_at=args.stop_at,
    )
    if args.progress == "json":
        return 0
    best = "n/a" if summary.best_dice is None else f"{summary.best_dice:.3f}"
    print(
        f"trained {summary.iterations} iterations in {summary.seconds:.0f} s "
        f"({summary.seconds_per_iteration:.2f} s per iteration); best validation Dice {best} "
        f"at iteration {summary.best_iteration}"
    )
    print(f"model: {summary.model_path}")
    return 0
