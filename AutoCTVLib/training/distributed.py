"""Multi-process (data-parallel) training with ``torchrun``.

Launch::

    torchrun --nproc_per_node 2 -m AutoCTVLib.cli.main train --data DATA.h5 --out RUN_DIR

``torchrun`` sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` (and the rendezvous address). When
``WORLD_SIZE > 1``, :func:`init_distributed` joins the process group (``nccl`` on CUDA, ``gloo``
on the CPU), each process takes GPU ``LOCAL_RANK``, and the network is wrapped in
``DistributedDataParallel`` (gradients averaged over processes every step, so all ranks keep
identical weights). Each rank draws its own share of the global batch
(:meth:`AutoCTVLib.training.data.PatchSampler.batch`); only rank 0 writes checkpoints and logs.
Without ``torchrun`` everything runs in one process and these helpers do nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly one-process) training job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside a world of {self.world_size}")

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and shows progress."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """True when a process group with more than one member is running."""
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()


def context_from_env(env: Mapping[str, str] | None = None) -> DistributedContext:
    """Read ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` as set by ``torchrun`` (defaults: 1, 0, 0)."""
    env = os.environ if env is None else env
    try:
        world_size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as error:
        raise ValueError(f"torchrun environment variables are not integers ({error})") from error
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank)


def init_distributed(
    device: torch.device, env: Mapping[str, str] | None = None
) -> tuple[DistributedContext, torch.device]:
    """Join the process group when launched by ``torchrun`` with several processes.

    Args:
        device: the device chosen for this run (``cuda`` means "this process' GPU").
        env: environment to read (default ``os.environ``).

    Returns:
        The context and the device this process uses (``cuda:LOCAL_RANK`` on CUDA).
    """
    context = context_from_env(env)
    if context.world_size == 1:
        return context, device
    if device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=context.rank, world_size=context.world_size)
    logger.info(
        "rank %d of %d joined (%s on %s)", context.rank, context.world_size, backend, device
    )
    return context, device


def wrap_model(model: nn.Module, context: DistributedContext, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)`` in a distributed run, ``model`` itself otherwise."""
    if not context.is_distributed:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def barrier(context: DistributedContext) -> None:
    """Wait for every rank (no-op in a single process)."""
    if context.is_distributed:
        dist.barrier()


def all_gather_objects(value: Any, context: DistributedContext) -> list[Any]:
    """Every rank's ``value``, in rank order (``[value]`` in a single process)."""
    if not context.is_distributed:
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def shutdown_distributed(context: DistributedContext) -> None:
    """Leave the process group (no-op in a single process)."""
    if context.is_distributed:
        dist.destroy_process_group()
