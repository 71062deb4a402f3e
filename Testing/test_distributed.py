"""Distributed training: torchrun environment, and a real 2-process DDP run on the CPU (gloo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from training_helpers import tiny_config, write_tiny_dataset

from AutoCTVLib.nn import build_network
from AutoCTVLib.training.checkpoint import load_checkpoint
from AutoCTVLib.training.distributed import DistributedContext, context_from_env
from AutoCTVLib.training.run import weights_sha256

REPOSITORY = Path(__file__).resolve().parents[1]


def test_context_from_torchrun_environment() -> None:
    assert context_from_env({}) == DistributedContext(0, 1, 0)
    context = context_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert (context.rank, context.world_size, context.local_rank) == (3, 4, 1)
    assert not context.is_main and not context.is_distributed  # no process group here
    with pytest.raises(ValueError, match="outside"):
        DistributedContext(rank=2, world_size=2)


def test_two_process_ddp_run_keeps_ranks_identical(tmp_path: Path) -> None:
    dataset = tmp_path / "tiny.h5"
    write_tiny_dataset(dataset, n_cases=4)
    config_path = tmp_path / "train.json"
    config = tiny_config(iterations=4, val_every=2, batch_size=1)
    config_path.write_text(config.to_json())
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
        "-m", "AutoCTVLib.cli.main", "train", "--data", str(dataset), "--out", str(run_dir),
        "--config", str(config_path), "--device", "cpu", "--progress", "none",
        "--debug-weight-hash",
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPOSITORY)}
    completed = subprocess.run(
        command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=240
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    hashes = [
        (run_dir / "debug" / f"weights_rank{rank}.sha256").read_text().strip() for rank in (0, 1)
    ]
    assert hashes[0] == hashes[1]
    # the weights were trained (not the seeded initial ones) and rank 0 checkpointed them
    initial = build_network(config.network_config(), seed=config.seed)
    assert weights_sha256(initial) != hashes[0]
    load_checkpoint(run_dir / "checkpoints" / "last", initial)
    assert weights_sha256(initial) == hashes[0]
    assert (run_dir / "model.safetensors").is_file() and (run_dir / "model.json").is_file()
    leftovers = [p.name for p in run_dir.rglob("*") if ".partial-" in p.name]
    assert leftovers == []
    assert "trained 4 iterations" in completed.stdout
    assert completed.stdout.count("trained 4 iterations") == 1  # rank 0 reports alone
