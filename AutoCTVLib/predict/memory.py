"""How much of a volume the network may process in one pass, from the device's free memory.

The estimate is empirical: a forward pass of the U-Net keeps, per network-grid voxel, a few
feature maps of the first level's width (skip connection, concatenation, conv outputs), about
``BYTES_PER_VOXEL_PER_CHANNEL × channels[0]`` bytes at the peak (about 530 bytes per voxel
measured for 16 channels in float32; the constant keeps a safety margin). A volume whose padded
network grid needs more than ``memory_fraction`` of the free memory is predicted with a
Gaussian-weighted sliding window instead (:func:`plan_inference`).

Sizes are voxel counts of the network grid; shapes are (z, y, x).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass

import torch

logger = logging.getLogger(__name__)

#: Peak bytes per voxel and first-level channel for one network pass (float32, measured ×1.5).
BYTES_PER_VOXEL_PER_CHANNEL = 48
#: Smallest sliding-window edge (voxels) before the window becomes useless for a U-Net.
MIN_WINDOW_EDGE = 32


@dataclass(frozen=True)
class InferencePlan:
    """Whole volume in one pass, or a sliding window of ``roi_size_zyx`` voxels.

    Attributes:
        mode: ``"whole"`` or ``"sliding_window"``.
        roi_size_zyx: window size (network-grid voxels); the whole grid for ``"whole"``.
        max_voxels: the largest pass the memory budget allows.
        overlap: window overlap fraction (sliding window only).
    """

    mode: str
    roi_size_zyx: tuple[int, int, int]
    max_voxels: int
    overlap: float = 0.25

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["roi_size_zyx"] = list(self.roi_size_zyx)
        return data


def available_memory_bytes(device: torch.device) -> int:
    """Free memory on ``device`` in bytes (CUDA: free GPU memory; otherwise the system's)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return _system_available_bytes()


def _system_available_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)
    except (ValueError, OSError, AttributeError):
        return 4 * 1024**3


def bytes_per_voxel(first_level_channels: int, batch: int = 1) -> int:
    """Estimated peak bytes per network-grid voxel of one pass of ``batch`` samples."""
    return BYTES_PER_VOXEL_PER_CHANNEL * max(1, int(first_level_channels)) * max(1, int(batch))


def padded_shape(shape_zyx: tuple[int, ...], multiple: int) -> tuple[int, int, int]:
    """``shape_zyx`` rounded up to a multiple of ``multiple`` per axis."""
    return tuple(math.ceil(int(n) / multiple) * multiple for n in shape_zyx)  # type: ignore[return-value]


def plan_inference(
    shape_zyx: tuple[int, int, int],
    *,
    first_level_channels: int,
    size_multiple: int,
    device: torch.device,
    memory_fraction: float = 0.5,
    max_voxels: int | None = None,
) -> InferencePlan:
    """Choose one pass or a sliding window for a network grid of ``shape_zyx`` voxels.

    Args:
        shape_zyx: the preprocessed image's shape.
        first_level_channels: ``channels[0]`` of the U-Net (memory scales with it).
        size_multiple: the U-Net's padding multiple (``2 ** (levels - 1)``).
        device: where the network runs.
        memory_fraction: share of the free memory one pass may use.
        max_voxels: override the memory-derived limit (voxels per pass).
    """
    if max_voxels is None:
        budget = available_memory_bytes(device) * float(memory_fraction)
        max_voxels = max(1, int(budget // bytes_per_voxel(first_level_channels)))
    padded = padded_shape(shape_zyx, size_multiple)
    if math.prod(padded) <= max_voxels:
        return InferencePlan("whole", tuple(int(n) for n in shape_zyx), int(max_voxels))  # type: ignore[arg-type]
    roi = window_size(padded, max_voxels, size_multiple)
    logger.info(
        "network grid %s exceeds %d voxels per pass: sliding window %s",
        shape_zyx,
        max_voxels,
        roi,
    )
    return InferencePlan("sliding_window", roi, int(max_voxels))


def window_size(
    padded_zyx: tuple[int, int, int], max_voxels: int, size_multiple: int
) -> tuple[int, int, int]:
    """The largest window (multiples of ``size_multiple``, within the grid) of at most
    ``max_voxels`` voxels: z first (slices are few), then a square in-plane patch."""
    floor_edge = max(size_multiple, math.ceil(MIN_WINDOW_EDGE / size_multiple) * size_multiple)

    def fit(limit: float, available: int) -> int:
        edge = int(limit) // size_multiple * size_multiple
        return max(min(floor_edge, available), min(edge, available))

    roi_z = fit(round(max_voxels ** (1 / 3)), padded_zyx[0])
    in_plane = math.sqrt(max_voxels / roi_z)
    roi_y = fit(in_plane, padded_zyx[1])
    roi_x = fit(max_voxels / (roi_z * roi_y), padded_zyx[2])
    return (roi_z, roi_y, roi_x)
