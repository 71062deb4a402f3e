"""Importance maps that weight each sliding window's prediction before blending.

A network sees less context near the border of its input window, so its predictions there are
less reliable. Weighting every window with a map that is 1 in its centre and small at its edges
(a Gaussian) lets overlapping windows blend smoothly instead of leaving seams.

Maps are indexed (z, y, x) like the window and peak-normalised (maximum 1). A small floor keeps
every weight strictly positive, so a voxel covered only by window borders still gets a finite
weighted average.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: Smallest weight in a Gaussian map, relative to its peak of 1.
IMPORTANCE_FLOOR = 1e-3


def gaussian_importance_map(
    roi_size_zyx: Sequence[int],
    *,
    sigma_scale: float = 0.125,
    floor: float = IMPORTANCE_FLOOR,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A separable Gaussian over a window of ``roi_size_zyx`` voxels, float32, peak 1.

    Args:
        roi_size_zyx: window size (z, y, x) in voxels.
        sigma_scale: standard deviation along each axis as a fraction of the window size
            along that axis (0.125 = one eighth, the value nnU-Net and MONAI use).
        floor: weights below ``floor`` are raised to it (must be in (0, 1]).
        device: where the map is created.

    Returns:
        Tensor of shape ``roi_size_zyx``; its centre voxel(s) are the largest, 1.0 at most.
    """
    sizes = _check_roi(roi_size_zyx)
    if not sigma_scale > 0:
        raise ValueError(f"sigma_scale must be positive, got {sigma_scale}")
    if not 0 < floor <= 1:
        raise ValueError(f"floor must be in (0, 1], got {floor}")
    weights = torch.ones(sizes, dtype=torch.float64, device=device)
    for axis, size in enumerate(sizes):
        centre = (size - 1) / 2.0
        sigma = sigma_scale * size
        offsets = torch.arange(size, dtype=torch.float64, device=device) - centre
        profile = torch.exp(-0.5 * (offsets / sigma) ** 2)
        shape = [1, 1, 1]
        shape[axis] = size
        weights = weights * profile.reshape(shape)
    weights = weights / weights.max()
    return weights.clamp_(min=floor).to(torch.float32)


def constant_importance_map(
    roi_size_zyx: Sequence[int], *, device: torch.device | str | None = None
) -> torch.Tensor:
    """All-ones weights (plain averaging of overlapping windows), float32."""
    return torch.ones(_check_roi(roi_size_zyx), dtype=torch.float32, device=device)


def importance_map(
    kind: str,
    roi_size_zyx: Sequence[int],
    *,
    sigma_scale: float = 0.125,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The importance map named ``kind`` ("gaussian" or "constant")."""
    if kind == "gaussian":
        return gaussian_importance_map(roi_size_zyx, sigma_scale=sigma_scale, device=device)
    if kind == "constant":
        return constant_importance_map(roi_size_zyx, device=device)
    raise ValueError(f"importance must be 'gaussian' or 'constant', got {kind!r}")


def _check_roi(roi_size_zyx: Sequence[int]) -> tuple[int, int, int]:
    sizes = tuple(int(s) for s in roi_size_zyx)
    if len(sizes) != 3 or min(sizes) < 1:
        raise ValueError(f"roi_size_zyx must be three positive integers, got {roi_size_zyx}")
    return sizes  # type: ignore[return-value]
