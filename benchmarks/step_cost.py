"""What one training step of the segmenter costs, per network, on this machine.

For each configuration file (and MONAI's tutorial UNet of ``peers_monai.py`` when MONAI is
installed, in float32 as the peer benchmark trains it and, for comparison, in bf16 autocast as
AutoCTV's rows): one optimiser step of the network alone on a batch of the configuration's patches
(random CT values, a random binary label; (N, 1, z, y, x) = (batch, 1, *patch_size_zyx)),
forward under the configuration's mixed precision (bf16 autocast where it asks for it and the CPU
has it), the configuration's loss (BCE + Dice; MONAI's ``DiceCELoss`` for MONAI), backward and
Adam, in the configuration's memory layout. The networks take turns, round after round, so a
change in the shared machine's speed reaches all of them alike; the table gives the median over
rounds (the first round, warm-up, is left out) and each network's cost relative to the first.
Data loading and augmentation are not included: they are the same for every AutoCTV row.

Run::

    .venv/bin/python benchmarks/step_cost.py --rounds 6 \\
        benchmarks/configs/ctv_segmenter_bf16.json \\
        benchmarks/configs/ctv_segmenter_bf16_narrow_level0.json \\
        benchmarks/configs/ctv_segmenter_bf16_half_width.json

Writes ``benchmarks/results/step_cost.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import median, write_results

from AutoCTVLib.nn import build_network
from AutoCTVLib.training.config import TrainConfig, load_train_config
from AutoCTVLib.training.trainer import autocast_dtype, make_loss_fn

BENCHMARKS = Path(__file__).resolve().parent
Step = Callable[[], None]
#: MONAI's rows: name -> bf16 autocast (the peer benchmark trains MONAI in float32)
MONAI_ROWS = {
    "MONAI UNet, float32 (as peers_monai.py trains it)": False,
    "MONAI UNet, bf16 (not used by the peer benchmark)": True,
}


def autoctv_step(config: TrainConfig, seed: int) -> tuple[Step, nn.Module]:
    """One training step of ``config``'s network on random data, and the network it trains."""
    network = build_network(config.network_config(), seed=seed)
    layout = torch.channels_last_3d if config.channels_last else torch.contiguous_format
    network.to(memory_format=layout).train()
    assert config.patch_size_zyx is not None, "a step needs patches (patch_size_zyx)"
    shape = (config.batch_size, 1, *config.patch_size_zyx)
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(shape, generator=generator).contiguous(memory_format=layout)
    label = (torch.rand(shape, generator=generator) > 0.5).float()
    loss_fn = make_loss_fn(config.loss)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr)
    dtype = autocast_dtype(config, torch.device("cpu"))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            steps = network.forward_steps(image)
        loss_fn([logits.float() for logits in steps], label, None).backward()
        optimizer.step()

    return step, network


def monai_step(
    batch: int, patch_zyx: tuple[int, ...], seed: int, bf16: bool
) -> tuple[Step, nn.Module]:
    """One step of MONAI's tutorial UNet (``peers_monai.network``): float32 in the default
    layout as ``peers_monai.train`` runs it, or (``bf16``) bf16 autocast and channels-last."""
    from monai.losses import DiceCELoss
    from peers_monai import network as monai_network

    torch.manual_seed(seed)
    layout = torch.channels_last_3d if bf16 else torch.contiguous_format
    network = monai_network().to(memory_format=layout).train()
    shape = (batch, 1, *patch_zyx)
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(shape, generator=generator).contiguous(memory_format=layout)
    label = (torch.rand(shape, generator=generator) > 0.5).long()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = network(image)
        loss_fn(logits.float(), label).backward()
        optimizer.step()

    return step, network


def parameter_count(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


def measure(steps: dict[str, Step], rounds: int) -> dict[str, list[float]]:
    """Seconds of each step per round, the networks taking turns; round 0 is warm-up."""
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for round_index in range(rounds + 1):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            if round_index:
                seconds[name].append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+", type=Path, help="segmenter configuration files")
    parser.add_argument("--rounds", type=int, default=6, help="measured rounds (after warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--no-monai", action="store_true", help="leave MONAI's UNet out")
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "results" / "step_cost")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    torch.set_num_threads(args.threads)
    steps: dict[str, Step] = {}
    described: dict[str, dict[str, Any]] = {}
    configs = {path: load_train_config(path) for path in args.configs}
    for path, config in configs.items():
        network = config.network_config()
        steps[path.name], module = autoctv_step(config, seed=0)
        described[path.name] = {
            "channels": list(network.channels),
            "parameters": parameter_count(module),
            "mixed_precision": config.mixed_precision,
            "batch": config.batch_size,
            "patch_zyx": list(config.patch_size_zyx or ()),
        }
    first = configs[args.configs[0]]
    if not args.no_monai:
        try:
            import monai  # noqa: F401
        except ImportError:
            print("MONAI is not installed: its row is left out (pip install -e .[peers])")
        else:
            patch = tuple(first.patch_size_zyx or ())
            for name, bf16 in MONAI_ROWS.items():
                steps[name], module = monai_step(first.batch_size, patch, seed=0, bf16=bf16)
                described[name] = {
                    "channels": [16, 32, 64, 128, 256],
                    "parameters": parameter_count(module),
                    "mixed_precision": "bf16" if bf16 else "off",
                    "batch": first.batch_size,
                    "patch_zyx": list(patch),
                }
    seconds = measure(steps, args.rounds)
    reference = median(seconds[next(iter(steps))])
    rows = []
    for name, times in seconds.items():
        info = described[name]
        info["seconds"] = times
        info["median_s"] = median(times)
        rows.append(
            [
                f"`{name}`" if name.endswith(".json") else name,
                "–".join(str(c) for c in info["channels"]),
                f"{info['parameters'] / 1e6:.2f} M",
                f"{info['median_s']:.2f}",
                f"{min(times):.2f}–{max(times):.2f}",
                f"{info['median_s'] / reference:.2f}",
            ]
        )
    patch_text = " × ".join(str(v) for v in first.patch_size_zyx or ())
    write_results(
        args.out,
        "Cost of one training step of the segmenter's network",
        ["network", "channels", "parameters", "s a step (median)", "range", "relative"],
        rows,
        {"rounds": args.rounds, "threads": args.threads, "networks": described},
        [
            f"One optimiser step of the network alone (forward, loss, backward, Adam) on a batch "
            f"of {first.batch_size} patches of {patch_text} voxels (z × y × x), bf16 autocast "
            f"and channels-last as the configurations ask (MONAI: as its row says; the peer "
            f"benchmark trains it in float32), {args.threads} torch threads; the "
            f"networks take turns for {args.rounds} rounds after a warm-up round and the median "
            "is given. Data loading and augmentation are not included. Relative: to the first row."
        ],
    )
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
