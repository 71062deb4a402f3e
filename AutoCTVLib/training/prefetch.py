"""Prepare training batches ahead in worker processes (augmentation is CPU work; a GPU waits).

Batch ``n`` of a :class:`~AutoCTVLib.training.data.PatchSampler` depends only on the seed and
``n``, so workers can draw batches ahead of the training loop and the result is the same as
drawing them in the loop. Workers are started with ``spawn`` (safe after CUDA started) and get
the sampler once, pickled, when they start.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.pool import AsyncResult
from typing import Any

from AutoCTVLib.training.data import Batch, PatchSampler

_WORKER_SAMPLER: PatchSampler | None = None


def _start_worker(sampler: PatchSampler) -> None:
    global _WORKER_SAMPLER
    import torch

    torch.set_num_threads(1)
    _WORKER_SAMPLER = sampler


def _draw(iteration: int, rank: int, world_size: int) -> Batch:
    assert _WORKER_SAMPLER is not None
    return _WORKER_SAMPLER.batch(iteration, rank, world_size)


class PrefetchingSampler:
    """Wraps a sampler: ``batch(n, rank, world)`` returns batch ``n`` drawn by a worker, while
    the workers already draw the next ``ahead`` batches.

    Args:
        sampler: the sampler to draw from (pickled to every worker).
        workers: worker processes (≥ 1).
        ahead: batches prepared ahead of the one asked for.
        last_iteration: no batch beyond this one is prepared.
    """

    def __init__(
        self, sampler: PatchSampler, workers: int, ahead: int, last_iteration: int
    ) -> None:
        if workers < 1 or ahead < 1:
            raise ValueError(f"workers and ahead must be at least 1, got {workers}, {ahead}")
        self.sampler = sampler
        self.ahead = int(ahead)
        self.last_iteration = int(last_iteration)
        context = multiprocessing.get_context("spawn")
        self.pool = context.Pool(int(workers), initializer=_start_worker, initargs=(sampler,))
        self.pending: dict[tuple[int, int, int], AsyncResult[Any]] = {}

    def batch(self, iteration: int, rank: int = 0, world_size: int = 1) -> Batch:
        """Batch ``iteration`` (the share of ``rank``), as :meth:`PatchSampler.batch` gives it."""
        last = min(self.last_iteration, iteration + self.ahead)
        for upcoming in range(iteration, last + 1):
            key = (upcoming, rank, world_size)
            if key not in self.pending:
                self.pending[key] = self.pool.apply_async(_draw, key)
        return self.pending.pop((iteration, rank, world_size)).get()

    def close(self) -> None:
        """Stop the workers once the batches already asked of them are drawn (at most
        ``ahead`` + 1; they are dropped). Terminating a pool with tasks in flight can fail in
        CPython's own clean-up ("Cannot have cache with result_hander not alive"), so the pool
        is closed and joined instead."""
        self.pending.clear()
        self.pool.close()
        self.pool.join()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sampler, name)
