"""Run the network over a preprocessed image: one pass or a sliding window, with or without
Monte-Carlo dropout sampling, on the chosen device with a CPU fallback when a GPU runs out of
memory.

Input: the preprocessed image, float32 (z, y, x) in [0, 1] on the network grid. Output:
probabilities (and MC moments) on the same grid as float32 numpy arrays.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from AutoCTVLib.errors import MemoryBudgetError
from AutoCTVLib.inference.sliding_window import sliding_window_inference
from AutoCTVLib.predict.mc import (
    MCMoments,
    MCSettings,
    naive_moments,
    run_last_step,
    sample_last_step,
    sample_moments,
    supports_cheap_sampling,
)
from AutoCTVLib.predict.memory import (
    InferencePlan,
    available_memory_bytes,
    bytes_per_voxel,
    padded_shape,
    plan_inference,
)
from AutoCTVLib.predict.speed import (
    SpeedSettings,
    inference_context,
    memory_format,
    sampling_context,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
StageProgress = Callable[[str, float, str], None]

#: Most MC samples decoded in one batch on a GPU; on the CPU batching brings no speed.
GPU_DECODE_BATCH_CAP = 8
#: Most MC batches decoded at once in threads on the CPU (each with its share of the threads).
CPU_SAMPLING_WORKERS_CAP = 2
#: torch's out-of-memory exception (``torch.cuda.OutOfMemoryError`` in older releases).
OutOfMemoryError: type[Exception] = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


@dataclass(frozen=True)
class NetworkResult:
    """What the network stage produced (network grid, (z, y, x), float32).

    Attributes:
        plain_prob: the prediction with dropout off.
        moments: ``(mean p, mean p², mean H(p) in bits)`` of the MC samples, or ``None``.
        n_samples: MC samples (0 without uncertainty).
        sampled_fraction: share of network-grid voxels that were sampled (cheap path).
        plan: one pass or sliding window.
        device: the device that actually ran the network.
        decode_batch: MC samples per decoder batch.
        sampling_workers: MC batches decoded at once in threads (CPU).
        sampling_precision: the decoder passes' autocast dtype (``"bfloat16"`` or
            ``"float32"``; see :class:`~AutoCTVLib.predict.speed.SpeedSettings`).
        network_s: seconds for the plain prediction.
        sampling_s: seconds for MC sampling (inside ``network_s`` for sliding windows).
    """

    plain_prob: np.ndarray
    moments: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    n_samples: int
    sampled_fraction: float | None
    plan: InferencePlan
    device: torch.device
    decode_batch: int
    network_s: float
    sampling_s: float
    sampling_workers: int = 1
    sampling_precision: str = "float32"


def is_out_of_memory(error: BaseException) -> bool:
    """True for torch's out-of-memory errors (CUDA, MPS or the CPU allocator)."""
    if isinstance(error, OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def with_cpu_fallback(
    attempt: Callable[[torch.device], T], device: torch.device
) -> tuple[T, torch.device, str | None]:
    """Run ``attempt(device)``; if a GPU runs out of memory, warn and run it on the CPU.

    Returns:
        ``(result, device used, warning or None)``. The caller keeps using the device returned
        (the predictor stays on the CPU after a fallback).

    Raises:
        MemoryBudgetError: the CPU ran out of memory as well.
    """
    try:
        return attempt(device), device, None
    except (RuntimeError, OutOfMemoryError) as error:
        if not is_out_of_memory(error):
            raise
        if device.type == "cpu":
            raise MemoryBudgetError(
                "not enough memory to run the network on this computer; close other programs "
                "or use a computer with more memory"
            ) from error
        warning = (
            f"the {device.type.upper()} device ran out of memory; the prediction ran on the CPU"
        )
        logger.warning(warning)
        _release_device_memory(device)
    cpu = torch.device("cpu")
    try:
        return attempt(cpu), cpu, warning
    except (RuntimeError, OutOfMemoryError) as error:
        if is_out_of_memory(error):
            raise MemoryBudgetError(
                "not enough memory to run the network, neither on the GPU nor on the CPU"
            ) from error
        raise


def run_network(
    network: nn.Module,
    image_zyx: np.ndarray,
    spacing_zyx_mm: Sequence[float],
    *,
    device: torch.device,
    speed: SpeedSettings,
    mc: MCSettings | None = None,
    max_voxels: int | None = None,
    memory_fraction: float = 0.5,
    progress: StageProgress | None = None,
    cancel: threading.Event | None = None,
) -> NetworkResult:
    """Predict ``image_zyx`` on ``device`` (the network is moved there and left there).

    Args:
        network: the model (eval mode is set here).
        image_zyx: preprocessed image (z, y, x), float32, or (C, z, y, x) for a network with
            several input channels.
        spacing_zyx_mm: the network grid's spacing (z, y, x) in mm.
        device: where to run.
        speed: memory layout and autocast settings.
        mc: Monte-Carlo settings, or ``None`` for a plain prediction.
        max_voxels: voxels per network pass (``None``: from the free memory).
        memory_fraction: share of the free memory one pass may use.
        progress: ``(stage, fraction, message)`` with stages "network" and "uncertainty".
        cancel: checked between windows and MC batches.
    """
    report = progress or (lambda stage, fraction, message: None)
    config = getattr(network, "config", None)
    first_channels = int(config.channels[0]) if config is not None else 16
    multiple = int(config.size_multiple) if config is not None else 16
    spatial_shape = tuple(image_zyx.shape[-3:])
    plan = plan_inference(
        spatial_shape,  # type: ignore[arg-type]
        first_level_channels=first_channels,
        size_multiple=multiple,
        device=device,
        memory_fraction=memory_fraction,
        max_voxels=max_voxels,
    )
    layout = memory_format(device, speed)
    network.to(device=device, memory_format=layout).eval()
    batch = _decode_batch(mc, device, spatial_shape, first_channels, multiple, memory_fraction)
    workers = _sampling_workers(
        mc, batch, device, spatial_shape, first_channels, multiple, memory_fraction
    )
    image = torch.from_numpy(np.ascontiguousarray(image_zyx, dtype=np.float32))
    image = image[None, None] if image.ndim == 3 else image[None]
    with inference_context(device, speed):
        if plan.mode == "whole":
            raw = _whole(
                network,
                image,
                spacing_zyx_mm,
                (device, layout, speed),
                mc,
                (batch, workers),
                report,
                cancel,
            )
        else:
            raw = _windows(
                network,
                image,
                spacing_zyx_mm,
                plan,
                device,
                layout,
                mc,
                (batch, workers),
                report,
                cancel,
            )
    moments = None
    if raw.moments is not None:
        moments = (
            _to_numpy(raw.moments.mean_prob),
            _to_numpy(raw.moments.mean_sq_prob),
            _to_numpy(raw.moments.mean_entropy),
        )
    return NetworkResult(
        plain_prob=_to_numpy(raw.plain),
        moments=moments,
        n_samples=0 if mc is None else mc.samples,
        sampled_fraction=raw.sampled_fraction,
        plan=plan,
        device=device,
        decode_batch=batch,
        network_s=raw.network_s,
        sampling_s=raw.sampling_s,
        sampling_workers=workers,
        sampling_precision=raw.sampling_precision,
    )


@dataclass(frozen=True)
class _RawResult:
    plain: torch.Tensor
    moments: MCMoments | None
    sampled_fraction: float | None
    network_s: float
    sampling_s: float
    sampling_precision: str = "float32"


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy().astype(np.float32, copy=False)


def _whole(
    network: nn.Module,
    image: torch.Tensor,
    spacing_zyx_mm: Sequence[float],
    placement: tuple[torch.device, torch.memory_format, SpeedSettings],
    mc: MCSettings | None,
    batching: tuple[int, int],
    report: StageProgress,
    cancel: threading.Event | None,
) -> _RawResult:
    device, layout, speed = placement
    batch, workers = batching
    image = image.to(device).contiguous(memory_format=layout)
    report("network", 0.0, "running the network")
    started = time.perf_counter()
    if mc is not None and (mc.method == "naive" or not supports_cheap_sampling(network)):
        moments = naive_moments(
            network,
            image,
            mc.samples,
            mc.seed,
            progress=lambda f, m: report("uncertainty", f, m),
            cancel=cancel,
        )
        report("network", 1.0, "network done")
        elapsed = time.perf_counter() - started
        return _RawResult(moments.plain_prob, moments, 1.0, 0.0, elapsed)
    if supports_cheap_sampling(network):
        last_step = run_last_step(network, image)
        plain = last_step.plain_prob
    else:
        plain = torch.sigmoid(network(image).float())[0, 0]
    network_s = time.perf_counter() - started
    report("network", 1.0, "network done")
    if mc is None:
        return _RawResult(plain, None, None, network_s, 0.0)
    started = time.perf_counter()
    report("uncertainty", 0.0, f"MC dropout, {mc.samples} samples")
    with sampling_context(device, speed) as in_bf16:
        moments = sample_last_step(
            last_step,
            mc,
            spacing_zyx_mm,
            decode_batch=batch,
            workers=workers,
            progress=lambda f, m: report("uncertainty", f, m),
            cancel=cancel,
        )
    sampling_s = time.perf_counter() - started
    fraction = moments.sampled_voxels / max(1, plain.numel())
    precision = "bfloat16" if in_bf16 else "float32"
    return _RawResult(plain, moments, fraction, network_s, sampling_s, precision)


def _windows(
    network: nn.Module,
    image: torch.Tensor,
    spacing_zyx_mm: Sequence[float],
    plan: InferencePlan,
    device: torch.device,
    layout: torch.memory_format,
    mc: MCSettings | None,
    batching: tuple[int, int],
    report: StageProgress,
    cancel: threading.Event | None,
) -> _RawResult:
    batch, workers = batching
    counter = {"windows": 0, "sampled": 0}

    def plain_window(window: torch.Tensor) -> torch.Tensor:
        window = window.contiguous(memory_format=layout)
        if supports_cheap_sampling(network):
            return run_last_step(network, window).plain_prob[None, None]
        return torch.sigmoid(network(window).float())

    def mc_window(window: torch.Tensor) -> torch.Tensor:
        assert mc is not None
        window = window.contiguous(memory_format=layout)
        # A different seed per window: equal-sized windows must not share dropout masks.
        settings = dataclasses.replace(mc, seed=mc.seed + 7919 * counter["windows"])
        counter["windows"] += 1
        moments = sample_moments(
            network, window, settings, spacing_zyx_mm, decode_batch=batch, workers=workers
        )
        counter["sampled"] += moments.sampled_voxels
        return moments.stacked()[None]

    stage = "network" if mc is None else "uncertainty"
    report(stage, 0.0, f"sliding window {plan.roi_size_zyx}")
    started = time.perf_counter()
    output = sliding_window_inference(
        image,
        plan.roi_size_zyx,
        plain_window if mc is None else mc_window,
        overlap=plan.overlap,
        importance="gaussian",
        padding_mode="replicate",
        window_device=device,
        output_device=torch.device("cpu"),
        progress=lambda f: report(stage, f, "sliding window"),
        cancel=cancel,
    )[0]
    elapsed = time.perf_counter() - started
    if mc is None:
        return _RawResult(output[0], None, None, elapsed, 0.0)
    moments = MCMoments.from_stacked(output, mc.samples, counter["sampled"])
    fraction = min(1.0, counter["sampled"] / max(1, output[0].numel()))
    return _RawResult(output[3], moments, fraction, elapsed, 0.0)


def _decode_batch(
    mc: MCSettings | None,
    device: torch.device,
    shape_zyx: Sequence[int],
    first_channels: int,
    multiple: int,
    memory_fraction: float,
) -> int:
    """MC samples per decoder batch: the setting, else 1 on the CPU, else what memory allows."""
    if mc is None:
        return 1
    if mc.decode_batch:
        return min(mc.decode_batch, mc.samples)
    if device.type == "cpu":
        return 1
    voxels = int(np.prod(padded_shape(tuple(shape_zyx), multiple)))
    budget = available_memory_bytes(device) * memory_fraction
    fits = int(budget // max(1, voxels * bytes_per_voxel(first_channels)))
    return max(1, min(GPU_DECODE_BATCH_CAP, fits, mc.samples))


def _sampling_workers(
    mc: MCSettings | None,
    batch: int,
    device: torch.device,
    shape_zyx: Sequence[int],
    first_channels: int,
    multiple: int,
    memory_fraction: float,
) -> int:
    """MC batches decoded at once on the CPU: one per CPU thread, at most
    :data:`CPU_SAMPLING_WORKERS_CAP`, as many as the memory budget holds (1 on a GPU)."""
    if mc is None or device.type != "cpu":
        return 1
    batches = -(-mc.samples // max(1, batch))
    voxels = int(np.prod(padded_shape(tuple(shape_zyx), multiple)))
    budget = available_memory_bytes(device) * memory_fraction
    fits = int(budget // max(1, voxels * bytes_per_voxel(first_channels, batch)))
    return max(1, min(torch.get_num_threads(), CPU_SAMPLING_WORKERS_CAP, fits, batches))


def _release_device_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()
