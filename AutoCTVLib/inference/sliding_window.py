"""Sliding-window inference: run any predictor over a volume too large for one pass.

::

    image (N, C, Z, Y, X)                           output (N, C_out, Z, Y, X), float32
    ┌───────────────┐   windows of roi_size_zyx     ┌───────────────┐
    │ ┌────┬┬────┐  │   (overlapping, last one      │               │
    │ │    ││    │  │ ─ aligned to the far edge) ─► │  Σ w·pred / Σ w
    │ └────┴┴────┘  │   predictor(window batch)     │               │
    └───────────────┘   × importance map w          └───────────────┘

The predictor is any callable mapping a batch of windows ``(B, C, z, y, x)`` to predictions
``(B, C_out, z, y, x)`` of the same spatial size: a network in eval mode, the same network in
Monte-Carlo dropout mode, a sigmoid wrapped around either. Blending uses an importance map
(:mod:`AutoCTVLib.inference.gaussian`); accumulation is float32 on the output device.

Window placement along one axis of ``size`` voxels with window ``roi`` voxels: one window when
``size <= roi``; otherwise ``n = ceil((size - roi) / step) + 1`` windows with
``step = max(1, floor(roi * (1 - overlap)))``, their starts spread evenly from 0 to
``size - roi`` (so the first window touches the near edge, the last one the far edge, and
neighbours overlap by at least ``overlap``). A volume smaller than the window along an axis is
padded symmetrically on that axis and the result is cropped back, so the output always has the
input's spatial shape.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from itertools import product

import torch
import torch.nn.functional as F

from AutoCTVLib.errors import CancelledError
from AutoCTVLib.inference.gaussian import importance_map

logger = logging.getLogger(__name__)

Predictor = Callable[[torch.Tensor], torch.Tensor]

_PADDING_MODES = ("constant", "replicate", "reflect")


def needs_sliding_window(shape_zyx: Sequence[int], max_voxels: int) -> bool:
    """True when a volume of ``shape_zyx`` voxels exceeds ``max_voxels`` for one whole pass.

    ``max_voxels`` is the largest number of voxels the predictor may process at once (derived
    by the caller from the device's free memory and the network's size).
    """
    if max_voxels < 1:
        raise ValueError(f"max_voxels must be positive, got {max_voxels}")
    return math.prod(int(n) for n in shape_zyx) > int(max_voxels)


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """First voxel of each window along one axis (see the module docstring for the rule)."""
    if size < 1 or roi < 1:
        raise ValueError(f"size and roi must be positive, got size={size}, roi={roi}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if size <= roi:
        return [0]
    step = max(1, math.floor(roi * (1.0 - overlap)))
    count = math.ceil((size - roi) / step) + 1
    span = size - roi
    # floor(i · span / (count − 1) + ½) in integers: evenly spread, first 0, last span.
    return [(2 * i * span + count - 1) // (2 * (count - 1)) for i in range(count)]


def window_slices(
    shape_zyx: Sequence[int], roi_size_zyx: Sequence[int], overlap: float | Sequence[float]
) -> list[tuple[slice, slice, slice]]:
    """The (z, y, x) slices of every window over a volume of ``shape_zyx`` (already padded to at
    least ``roi_size_zyx``), in raster order (x fastest)."""
    overlaps = _per_axis(overlap, "overlap")
    starts_per_axis = [
        window_starts(int(size), int(roi), ov)
        for size, roi, ov in zip(shape_zyx, roi_size_zyx, overlaps)
    ]
    return [
        tuple(
            slice(start, start + min(int(roi), int(size)))
            for start, roi, size in zip(starts, roi_size_zyx, shape_zyx)
        )  # type: ignore[misc]
        for starts in product(*starts_per_axis)
    ]


def sliding_window_inference(
    image: torch.Tensor,
    roi_size_zyx: Sequence[int],
    predictor: Predictor,
    *,
    overlap: float | Sequence[float] = 0.5,
    sw_batch_size: int = 1,
    importance: str = "gaussian",
    sigma_scale: float = 0.125,
    padding_mode: str = "constant",
    padding_value: float = 0.0,
    window_device: torch.device | str | None = None,
    output_device: torch.device | str | None = None,
    progress: Callable[[float], None] | None = None,
    cancel: threading.Event | None = None,
) -> torch.Tensor:
    """Predict ``image`` window by window and blend the windows into one output.

    Args:
        image: input batch, shape (N, C, Z, Y, X).
        roi_size_zyx: window size (z, y, x) in voxels, what the predictor accepts.
        predictor: maps windows (B, C, z, y, x) to predictions (B, C_out, z, y, x); B is
            ``N × (windows in this batch)``, windows stacked one after the other.
        overlap: fraction of a window shared with its neighbour, in [0, 1); one value or one
            per axis (z, y, x).
        sw_batch_size: windows passed to the predictor in one call.
        importance: "gaussian" (centre-weighted, no seams) or "constant" (plain average).
        sigma_scale: Gaussian standard deviation as a fraction of the window size.
        padding_mode: how axes shorter than the window are padded: "constant" (with
            ``padding_value``), "replicate" or "reflect".
        padding_value: fill value for ``padding_mode="constant"``, in the image's units.
        window_device: device the windows are moved to before calling the predictor
            (default: the image's device).
        output_device: device of the accumulated output (default: the image's device).
        progress: called with the fraction of windows done (0–1) after each predictor call;
            the last call passes 1.0.
        cancel: when set, the run stops before the next predictor call.

    Returns:
        float32 tensor (N, C_out, Z, Y, X) on ``output_device``.

    Raises:
        CancelledError: ``cancel`` was set.
        ValueError: bad arguments, or a predictor output of the wrong shape.
    """
    if image.ndim != 5:
        raise ValueError(f"image must have shape (N, C, Z, Y, X), got {tuple(image.shape)}")
    roi = tuple(int(r) for r in roi_size_zyx)
    if len(roi) != 3 or min(roi) < 1:
        raise ValueError(f"roi_size_zyx must be three positive integers, got {roi_size_zyx}")
    if sw_batch_size < 1:
        raise ValueError(f"sw_batch_size must be at least 1, got {sw_batch_size}")
    if padding_mode not in _PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
    overlaps = _per_axis(overlap, "overlap")
    if not all(0.0 <= value < 1.0 for value in overlaps):
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")

    batch = image.shape[0]
    padded, crop = _pad_to_roi(image, roi, padding_mode, padding_value)
    padded_shape = tuple(int(n) for n in padded.shape[2:])
    out_device = torch.device(output_device) if output_device is not None else image.device
    weights = importance_map(importance, roi, sigma_scale=sigma_scale, device=out_device)

    windows = window_slices(padded_shape, roi, overlaps)
    total = len(windows)
    logger.debug("sliding window: %d windows of %s over %s", total, roi, padded_shape)

    output: torch.Tensor | None = None
    weight_sum = torch.zeros((1, 1, *padded_shape), dtype=torch.float32, device=out_device)
    done = 0
    with torch.no_grad():
        for first in range(0, total, sw_batch_size):
            if cancel is not None and cancel.is_set():
                raise CancelledError("inference was cancelled")
            group = windows[first : first + sw_batch_size]
            crops = torch.cat([padded[(slice(None), slice(None), *win)] for win in group])
            if window_device is not None:
                crops = crops.to(window_device)
            prediction = predictor(crops)
            _check_prediction(prediction, len(group) * batch, roi)
            prediction = prediction.to(device=out_device, dtype=torch.float32)
            if output is None:
                channels = prediction.shape[1]
                output = torch.zeros(
                    (batch, channels, *padded_shape), dtype=torch.float32, device=out_device
                )
            for index, win in enumerate(group):
                part = prediction[index * batch : (index + 1) * batch]
                output[(slice(None), slice(None), *win)] += part * weights
                weight_sum[(slice(None), slice(None), *win)] += weights
            done += len(group)
            if progress is not None:
                progress(done / total)
    assert output is not None  # at least one window always exists
    output /= weight_sum
    return output[(slice(None), slice(None), *crop)]


def _pad_to_roi(
    image: torch.Tensor, roi: tuple[int, int, int], mode: str, value: float
) -> tuple[torch.Tensor, tuple[slice, slice, slice]]:
    """Pad axes shorter than the window symmetrically; return the padded image and the crop."""
    spatial = image.shape[2:]
    before = [max(0, r - int(n)) // 2 for r, n in zip(roi, spatial)]
    after = [max(0, r - int(n)) - b for r, n, b in zip(roi, spatial, before)]
    crop = tuple(slice(b, b + int(n)) for b, n in zip(before, spatial))
    if not any(before) and not any(after):
        return image, crop  # type: ignore[return-value]
    if mode == "reflect" and any(max(b, a) >= int(n) for b, a, n in zip(before, after, spatial)):
        raise ValueError(
            f"reflect padding needs the volume {tuple(spatial)} to be more than half the "
            f"window {roi} along every axis; use 'replicate' or 'constant'"
        )
    # F.pad lists pads from the last axis backwards: (x_before, x_after, y_before, ...).
    pads: list[int] = []
    for b, a in zip(reversed(before), reversed(after)):
        pads += [b, a]
    if mode == "constant":
        padded = F.pad(image, pads, mode="constant", value=value)
    else:
        padded = F.pad(image, pads, mode=mode)
    return padded, crop  # type: ignore[return-value]


def _check_prediction(prediction: object, expected_batch: int, roi: tuple[int, ...]) -> None:
    if not isinstance(prediction, torch.Tensor):
        raise ValueError(f"the predictor must return a tensor, got {type(prediction).__name__}")
    if (
        prediction.ndim != 5
        or prediction.shape[0] != expected_batch
        or tuple(prediction.shape[2:]) != roi
    ):
        raise ValueError(
            f"the predictor returned shape {tuple(prediction.shape)}; expected "
            f"({expected_batch}, C_out, {roi[0]}, {roi[1]}, {roi[2]})"
        )


def _per_axis(value: float | Sequence[float], name: str) -> tuple[float, float, float]:
    if isinstance(value, (int, float)):
        return (float(value),) * 3  # type: ignore[return-value]
    values = tuple(float(v) for v in value)
    if len(values) != 3:
        raise ValueError(f"{name} must be one number or three (z, y, x), got {value}")
    return values  # type: ignore[return-value]
