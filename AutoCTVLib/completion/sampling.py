"""Sparse annotations: random ones for training the completion network, fixed ones for benchmarks.

All functions work on a full reference mask (boolean (z, y, x)) and return an
:class:`~AutoCTVLib.completion.annotation.Annotation` whose slices lie within the structure's
extent along their axis (an annotated slice just outside it may be added, left empty, as a
physician marking where the structure ends).

Random annotations (:func:`sample_annotation`) mix two kinds, per axis:

* regular gaps: every ``g``-th slice, ``g`` drawn from ``gap_range`` (2–15 slices), random phase,
  optionally with the structure's first and last slices;
* a few slices (paper style, Çiçek et al. 2016): ``n`` slices (1–5) spread over the extent
  with jitter.

One to three axes are used (axial alone most often), in random mixes of kinds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from AutoCTVLib.completion.annotation import AXIS_NAMES, Annotation, axis_index, painted_slices


@dataclass(frozen=True)
class AnnotationSampling:
    """Settings of :func:`sample_annotation`.

    Attributes:
        gap_range: smallest and largest gap between annotated slices (slices), inclusive.
        count_range: smallest and largest number of slices per axis in "few slices" mode.
        axis_count_weights: relative frequency of using 1, 2 or 3 axes.
        axial_weight: when one axis is used, the probability that it is the axial (z) axis
            (the other two share the rest).
        few_slices_probability: per axis, the probability of "few slices" mode.
        ends_probability: in gap mode, the probability of also annotating the first and last
            slice of the structure.
        empty_end_probability: probability of adding an empty annotated slice just beyond the
            structure's end along an axis.
    """

    gap_range: tuple[int, int] = (2, 15)
    count_range: tuple[int, int] = (1, 5)
    axis_count_weights: tuple[float, float, float] = (0.6, 0.2, 0.2)
    axial_weight: float = 0.6
    few_slices_probability: float = 0.3
    ends_probability: float = 0.5
    empty_end_probability: float = 0.1

    def __post_init__(self) -> None:
        low, high = (int(v) for v in self.gap_range)
        if not 1 <= low <= high:
            raise ValueError(f"gap_range must satisfy 1 <= low <= high, got {self.gap_range}")
        low, high = (int(v) for v in self.count_range)
        if not 1 <= low <= high:
            raise ValueError(f"count_range must satisfy 1 <= low <= high, got {self.count_range}")
        weights = tuple(float(w) for w in self.axis_count_weights)
        if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("axis_count_weights must be three non-negative weights")
        for name in (
            "axial_weight",
            "few_slices_probability",
            "ends_probability",
            "empty_end_probability",
        ):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")


def structure_extent(mask_zyx: np.ndarray, axis: str | int) -> tuple[int, int]:
    """First and last slice (inclusive) along ``axis`` that hold the structure."""
    painted = painted_slices(mask_zyx, axis)
    if not painted:
        raise ValueError("the reference mask is empty")
    return painted[0], painted[-1]


def every_nth_slice(
    mask_zyx: np.ndarray, axis: str | int = "z", step: int = 2, phase: int = 0
) -> Annotation:
    """Every ``step``-th slice along ``axis`` over the structure's extent.

    Slices ``first + phase, first + phase + step, ...`` up to the last slice; the last slice of
    the structure is added when the regular grid misses it (a physician closes the contour).
    """
    if step < 1 or not 0 <= phase < step:
        raise ValueError(f"need step >= 1 and 0 <= phase < step, got step {step}, phase {phase}")
    first, last = structure_extent(mask_zyx, axis)
    indices = list(range(first + phase, last + 1, step))
    if not indices or indices[-1] != last:
        indices.append(last)
    return Annotation.from_mapping({AXIS_NAMES[axis_index(axis)]: indices})


def evenly_spread_slices(mask_zyx: np.ndarray, counts_zyx: Sequence[int]) -> Annotation:
    """``counts_zyx[a]`` slices per axis, spread evenly inside the structure's extent.

    Slice ``s`` of ``n`` lies at fraction ``(s + 1) / (n + 1)`` of the extent (so one slice goes
    through the middle), as in the 3D U-Net paper's orthogonal-slice experiments.
    """
    slices: dict[str, list[int]] = {}
    for axis, count in enumerate(counts_zyx):
        if count <= 0:
            continue
        first, last = structure_extent(mask_zyx, axis)
        fractions = (np.arange(count) + 1.0) / (count + 1.0)
        slices[AXIS_NAMES[axis]] = [int(v) for v in np.rint(first + fractions * (last - first))]
    return Annotation.from_mapping(slices)


def _choose_axes(rng: np.random.Generator, config: AnnotationSampling) -> list[int]:
    weights = np.asarray(config.axis_count_weights, dtype=float)
    count = int(rng.choice(3, p=weights / weights.sum())) + 1
    if count == 1:
        side = (1.0 - config.axial_weight) / 2.0
        return [int(rng.choice(3, p=[config.axial_weight, side, side]))]
    return sorted(int(a) for a in rng.choice(3, size=count, replace=False))


def _axis_slices(
    first: int, last: int, size: int, rng: np.random.Generator, config: AnnotationSampling
) -> list[int]:
    if rng.random() < config.few_slices_probability:
        count = int(rng.integers(config.count_range[0], config.count_range[1] + 1))
        fractions = (np.arange(count) + 1.0) / (count + 1.0)
        jitter = rng.uniform(-0.5, 0.5, size=count) / (count + 1.0)
        positions = first + np.clip(fractions + jitter, 0.0, 1.0) * (last - first)
        indices = [int(v) for v in np.rint(positions)]
    else:
        gap = int(rng.integers(config.gap_range[0], config.gap_range[1] + 1))
        phase = int(rng.integers(0, gap))
        indices = list(range(first + phase, last + 1, gap))
        if rng.random() < config.ends_probability or not indices:
            indices += [first, last]
    if rng.random() < config.empty_end_probability:
        beyond = first - 1 if rng.random() < 0.5 else last + 1
        if 0 <= beyond < size:
            indices.append(beyond)
    return indices


def sample_annotation(
    mask_zyx: np.ndarray,
    rng: np.random.Generator,
    config: AnnotationSampling | None = None,
) -> Annotation:
    """A random sparse annotation of a structure (see the module docstring).

    The result always has at least two annotated slices, at least one of which holds the
    structure.
    """
    config = config or AnnotationSampling()
    mask = np.asarray(mask_zyx, dtype=bool)
    if not mask.any():
        raise ValueError("cannot sample an annotation of an empty mask")
    slices: dict[str, list[int]] = {}
    for axis in _choose_axes(rng, config):
        first, last = structure_extent(mask, axis)
        slices[AXIS_NAMES[axis]] = _axis_slices(first, last, mask.shape[axis], rng, config)
    annotation = Annotation.from_mapping(slices)
    if annotation.slice_count < 2:
        axis = annotation.axes[0]
        first, last = structure_extent(mask, axis)
        extra = [first, last] if first != last else []
        if not extra:
            other = next(a for a in AXIS_NAMES if a != axis)
            extra_axis, extra = other, [int(np.mean(structure_extent(mask, other)))]
            slices[extra_axis] = extra
        else:
            slices[axis] = list(slices[axis]) + extra
        annotation = Annotation.from_mapping(slices)
    if not (mask & annotation.known_mask(mask.shape)).any():
        axis = annotation.axes[0]
        painted = painted_slices(mask, axis)
        slices[axis] = [*annotation.slices(axis), painted[len(painted) // 2]]
        annotation = Annotation.from_mapping(slices)
    return annotation
