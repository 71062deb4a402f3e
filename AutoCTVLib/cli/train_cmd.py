"""``autoctv train``: train the CTV network on an HDF5 dataset and export the best model.

Single process::

    autoctv train --data cases.h5 --out runs/fold0 [--config train.json] [--fold 0]

Several processes (data parallel, one per GPU or CPU worker)::

    torchrun --nproc_per_node 2 -m AutoCTVLib.cli.main train --data cases.h5 --out runs/fold0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ORDER = 50


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train the CTV network on an HDF5 dataset",
        description=(
            "Train the CTV segmentation network on one cross-validation fold of an AutoCTV "
            "HDF5 dataset ('autoctv dataset build'). Writes checkpoints and logs to OUT and, "
            "at the end, the best model as OUT/model.safetensors with its card OUT/model.json. "
            "Run under torchrun for multi-process training."
        ),
    )
    parser.add_argument("--data", type=Path, required=True, help="the HDF5 dataset")
    parser.add_argument("--out", type=Path, required=True, help="run folder (RUN_DIR)")
    parser.add_argument("--config", type=Path, help="training settings (JSON)")
    parser.add_argument("--fold", type=int, help="validation fold, 0-based (overrides config)")
    parser.add_argument("--iterations", type=int, help="total iterations (overrides config)")
    parser.add_argument("--seed", type=int, help="random seed (overrides config)")
    parser.add_argument(
        "--time-budget-min",
        type=float,
        help="train for this many minutes at most, validations included (overrides config's "
        "time_budget_s); a poly learning rate then decays to zero as the time runs out",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps (default auto)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    parser.add_argument(
        "--progress",
        choices=("bar", "json", "none"),
        default="bar",
        help="progress display: a bar on stderr, JSON lines on stdout, or none (default bar)",
    )
    parser.add_argument("--name", default="autoctv-ctv", help="model name in the model card")
    parser.add_argument("--model-version", default="1.0.0", help="model version in the card")
    # Test aid: every rank writes the SHA-256 of its final weights to OUT/debug/.
    parser.add_argument("--debug-weight-hash", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(handler=run)


class _Progress:
    """Turns trainer events into a tqdm bar (stderr) or JSON lines (stdout)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._bar: Any = None

    def __call__(self, event: dict[str, Any]) -> None:
        if self.mode == "json":
            from AutoCTVLib.training.callbacks import json_safe

            print(json.dumps(json_safe(event)), flush=True)
        elif self.mode == "bar":
            self._show(event)

    def _show(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "start":
            try:
                from tqdm import tqdm
            except ImportError:  # tqdm is optional: no bar then
                return
            self._bar = tqdm(
                total=event["iterations"],
                initial=event["iteration"],
                unit="it",
                file=sys.stderr,
                dynamic_ncols=True,
            )
        elif kind == "iteration" and self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{event['loss']:.4f}", refresh=False)
        elif kind == "validation" and self._bar is not None:
            dice = event.get("dice_mean")
            hd95 = event.get("hd95_mean_mm")
            text = f"iteration {event['iteration']}: validation Dice "
            text += "n/a" if dice is None else f"{dice:.3f}"
            text += ", HD95 " + ("n/a" if hd95 is None else f"{hd95:.1f} mm")
            self._bar.write(text, file=sys.stderr)
        elif kind == "end" and self._bar is not None:
            self._bar.close()


def _load_message(done: int, total: int, case_id: str) -> None:
    print(f"\rpreparing cases {done}/{total}", end="\n" if done == total else "", file=sys.stderr)


def _load_json(done: int, total: int, case_id: str) -> None:
    print(json.dumps({"event": "prepare", "done": done, "total": total, "case_id": case_id}))


def run(args: argparse.Namespace) -> int:
    from AutoCTVLib.device import select_device
    from AutoCTVLib.errors import InputError
    from AutoCTVLib.training.callbacks import ProgressCallback
    from AutoCTVLib.training.config import TrainConfig, load_train_config
    from AutoCTVLib.training.distributed import init_distributed, shutdown_distributed
    from AutoCTVLib.training.run import run_training

    config = load_train_config(args.config) if args.config else TrainConfig()
    overrides = {
        name: value
        for name, value in (
            ("fold", args.fold),
            ("iterations", args.iterations),
            ("seed", args.seed),
            ("time_budget_s", None if args.time_budget_min is None else 60 * args.time_budget_min),
        )
        if value is not None
    }
    try:
        config = config.replace(**overrides) if overrides else config
        requested = select_device(args.device)
    except ValueError as error:
        raise InputError(str(error)) from error
    if requested.type == "cuda":
        # cuBLAS needs this for deterministic results; it must be set before cuBLAS starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    context, device = init_distributed(requested)
    try:
        callbacks = []
        if context.is_main and args.progress != "none":
            callbacks.append(ProgressCallback(_Progress(args.progress)))
        summary = run_training(
            args.data,
            args.out,
            config,
            device=device,
            context=context,
            resume=args.resume,
            callbacks=callbacks,
            load_progress=(
                {"bar": _load_message, "json": _load_json}.get(args.progress)
                if context.is_main
                else None
            ),
            model_name=args.name,
            model_version=args.model_version,
            weight_hash_dir=args.out / "debug" if args.debug_weight_hash else None,
        )
    finally:
        shutdown_distributed(context)
    if context.is_main and args.progress != "json":
        result = summary.result
        best = "n/a" if result.best_dice is None else f"{result.best_dice:.3f}"
        print(
            f"trained {result.iterations} iterations on {len(summary.train_case_ids)} cases "
            f"(fold {config.fold}); best validation Dice {best} at iteration "
            f"{result.best_iteration}" + (" (stopped early)" if result.stopped_early else "")
        )
        print(f"model: {summary.model_path}")
    return 0
