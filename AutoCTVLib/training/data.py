"""Training data: cases preprocessed once into memory, and seeded patch batches drawn from them.

Every case of an AutoCTV HDF5 dataset (``autoctv dataset build``) is read, preprocessed with the
model's :class:`~AutoCTVLib.preprocess.PreprocessConfig` (body crop, resampling, HU window) and
kept in memory on the network grid, with its label resampled onto the same grid.

Batches are drawn by :class:`PatchSampler` from a generator seeded by ``(seed, iteration)``, so
batch ``n`` is the same whether training ran straight through or was resumed, and does not
depend on earlier batches. With several processes (distributed training) the global batch of
``world_size × batch_size`` samples is planned once and each rank takes its own share: the
union over ranks is what a single process with the full batch would draw.

With ``distinct_cases`` the samples of a global batch come from different cases (a seeded
permutation of the cases per iteration, wrapping around when the batch is larger than the
number of cases): loss weighting (:mod:`AutoCTVLib.noisy.weighting`) then compares patches
drawn by different annotators rather than two patches of one case. With ``aligned_patches`` the
samples of a global batch also show the same anatomy: one plan per iteration places every
patch either at the same offset from its own case's label centroid or at the same relative
position in its case's grid. The quality network then compares labels of like regions; with
independently placed patches it can tell them apart by how much of each patch is labelled, which
says nothing about the annotator.

Arrays are (z, y, x); tensors (N, C, z, y, x).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from AutoCTVLib.augment import Sample
from AutoCTVLib.errors import InputError
from AutoCTVLib.preprocess import PreprocessConfig, preprocess
from AutoCTVLib.preprocess.padding import pad_array, pad_widths_to_shape
from AutoCTVLib.training.hdf5_cases import list_case_ids, read_ct_and_label

logger = logging.getLogger(__name__)

#: ``augment(sample, rng) -> sample`` (e.g. :func:`AutoCTVLib.augment.thesis_augmentation`);
#: the sample holds (z, y, x) image, label and a weight map of ones that the transform zeroes
#: where it brings in voxels from outside the field of view. It must not change the shape.
Augment = Callable[[Sample, np.random.Generator], Sample]
#: ``progress(done, total, case_id)`` while cases are loaded.
LoadProgress = Callable[[int, int, str], None]

_MAX_FOREGROUND_POINTS = 20000


@dataclass(frozen=True)
class TrainingCase:
    """One case on the network grid.

    Attributes:
        case_id: the dataset's case id.
        image: ``float32`` (z, y, x), windowed CT in [0, 1]; or (C, z, y, x) with more input
            channels (the CT first, e.g. a cascade locator's probability second).
        label: ``uint8`` (z, y, x) 0/1, same grid.
        spacing_xyz_mm: the network grid's spacing (for distances in mm).
        foreground_zyx: (n, 3) ``int32`` indices of label voxels (at most 20 000, an evenly
            spaced subset) used to centre foreground patches.
        boundary_zyx: (m, 3) ``int32`` indices of label voxels on the label's surface (at most
            20 000), used to centre boundary patches.
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray
    spacing_xyz_mm: tuple[float, float, float]
    foreground_zyx: np.ndarray
    boundary_zyx: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int32))

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        """The spatial size (z, y, x)."""
        return tuple(int(n) for n in self.label.shape)  # type: ignore[return-value]

    @classmethod
    def from_arrays(
        cls,
        case_id: str,
        image: np.ndarray,
        label: np.ndarray,
        spacing_xyz_mm: Sequence[float],
    ) -> TrainingCase:
        """Build a case from network-grid arrays (tests and in-memory data use this)."""
        if image.ndim not in (3, 4) or label.ndim != 3 or image.shape[-3:] != label.shape:
            raise ValueError(
                f"image {image.shape} ((z, y, x) or (C, z, y, x)) and label {label.shape} "
                "must have equal 3D spatial shapes"
            )
        inside = label > 0
        foreground = _subset(np.argwhere(inside).astype(np.int32))
        surface = inside & ~ndimage.binary_erosion(inside)
        return cls(
            case_id=str(case_id),
            image=np.ascontiguousarray(image, dtype=np.float32),
            label=np.ascontiguousarray(label > 0, dtype=np.uint8),
            spacing_xyz_mm=tuple(float(s) for s in spacing_xyz_mm),
            foreground_zyx=foreground,
            boundary_zyx=_subset(np.argwhere(surface).astype(np.int32)),
        )


def load_training_cases(
    dataset_path: str | Path,
    case_ids: Sequence[str] | None,
    config: PreprocessConfig,
    label_name: str = "CTV",
    progress: LoadProgress | None = None,
) -> list[TrainingCase]:
    """Read and preprocess cases of an HDF5 dataset (all of them when ``case_ids`` is None)."""
    ids = list(case_ids) if case_ids is not None else list_case_ids(dataset_path)
    cases = []
    for done, case_id in enumerate(ids):
        ct, label = read_ct_and_label(dataset_path, case_id, label_name)
        prepared = preprocess(ct, config)
        label_net = prepared.label_to_network(label)
        if not label_net.any():
            logger.warning(
                "case %s: the %s label is empty on the network grid", case_id, label_name
            )
        cases.append(
            TrainingCase.from_arrays(
                case_id, prepared.image, label_net, prepared.network_geometry.spacing_xyz_mm
            )
        )
        if progress is not None:
            progress(done + 1, len(ids), case_id)
    return cases


def _with_channel_axis(stacked: np.ndarray) -> np.ndarray:
    """(N, z, y, x) → (N, 1, z, y, x); (N, C, z, y, x) is returned as it is."""
    return stacked[:, None] if stacked.ndim == 4 else stacked


@dataclass(frozen=True)
class Batch:
    """A training batch of float32 (N, 1, z, y, x) tensors.

    ``weight`` is the per-voxel loss weight (0 = unknown, e.g. voxels an augmentation brought in
    from outside the field of view), or ``None`` when every voxel counts fully.
    """

    image: torch.Tensor
    label: torch.Tensor
    weight: torch.Tensor | None
    case_ids: tuple[str, ...]


def _subset(points: np.ndarray) -> np.ndarray:
    """At most ``_MAX_FOREGROUND_POINTS`` evenly spaced rows of ``points``."""
    if len(points) > _MAX_FOREGROUND_POINTS:
        keep = np.linspace(0, len(points) - 1, _MAX_FOREGROUND_POINTS).astype(int)
        return points[keep]
    return points


def _crop_or_pad(
    array: np.ndarray, start_zyx: Sequence[int], patch_zyx: Sequence[int], value: float
) -> np.ndarray:
    """The (…, z, y, x) patch at ``start_zyx`` (leading channel axes kept), padded to size."""
    spatial = [slice(int(start_zyx[a]), int(start_zyx[a]) + int(patch_zyx[a])) for a in range(3)]
    window = (Ellipsis, *spatial)
    part = array[window]
    return pad_array(part, pad_widths_to_shape(part.shape[-3:], patch_zyx), value)


def _patch_start(
    shape_zyx: Sequence[int],
    patch_zyx: Sequence[int],
    rng: np.random.Generator | None,
    centre_zyx: Sequence[int] | None,
) -> list[int]:
    start = []
    for axis, (size, patch) in enumerate(zip(shape_zyx, patch_zyx)):
        room = max(0, int(size) - int(patch))
        if centre_zyx is None:
            assert rng is not None, "a patch without a centre is placed at random"
            start.append(int(rng.integers(0, room + 1)))
        else:
            start.append(int(np.clip(int(centre_zyx[axis]) - int(patch) // 2, 0, room)))
    return start


class PatchSampler:
    """Draws seeded batches of patches (or whole crops) from in-memory training cases.

    Args:
        cases: the training cases.
        batch_size: samples per process and iteration.
        patch_size_zyx: patch shape in voxels, or ``None`` for each case's whole crop (a batch
            is then padded to its largest member).
        foreground_fraction: share of samples centred on a random label voxel (the rest are
            uniformly placed); cases with an empty label are always placed uniformly.
        augment: optional joint image/label transform, called with a generator derived from
            the sample's own seed.
        seed: base seed; sample ``s`` of iteration ``n`` uses ``default_rng([seed, n, s])``.
        pad_value: image value used where a case is smaller than the patch (0 = air after the
            default window).
        distinct_cases: draw the samples of a global batch from different cases (see the
            module docstring); ``False`` (default) draws each sample's case independently.
        boundary_fraction: share of samples centred on a voxel of the label's surface (cascade
            segmenter training; see :meth:`_cascade_start`).
        centre_jitter_voxels: largest shift (z, y, x voxels) of a patch centred on the label's
            bounding box (cascade segmenter training).
        aligned_patches: place all patches of a global batch alike (see the module docstring):
            foreground batches (share ``foreground_fraction``) centre each patch on its case's
            label centroid plus one shared offset of at most a quarter patch per axis; the
            other batches start every patch at the same fraction of its case's free room.
    """

    def __init__(
        self,
        cases: Sequence[TrainingCase],
        batch_size: int,
        patch_size_zyx: Sequence[int] | None,
        foreground_fraction: float = 0.33,
        augment: Augment | None = None,
        seed: int = 0,
        pad_value: float = 0.0,
        distinct_cases: bool = False,
        aligned_patches: bool = False,
        boundary_fraction: float = 0.0,
        centre_jitter_voxels: Sequence[int] | None = None,
    ) -> None:
        if not cases:
            raise InputError("there are no training cases")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if patch_size_zyx is not None and (
            len(patch_size_zyx) != 3 or min(int(p) for p in patch_size_zyx) < 1
        ):
            raise ValueError(f"patch_size_zyx must be three positive sizes, got {patch_size_zyx}")
        if not 0.0 <= foreground_fraction <= 1.0:
            raise ValueError(f"foreground_fraction must be in [0, 1], got {foreground_fraction}")
        self.cases = list(cases)
        self.batch_size = int(batch_size)
        self.patch_size_zyx = (
            None if patch_size_zyx is None else tuple(int(p) for p in patch_size_zyx)
        )
        self.foreground_fraction = float(foreground_fraction)
        self.augment = augment
        self.seed = int(seed)
        self.pad_value = float(pad_value)
        self.distinct_cases = bool(distinct_cases)
        self.aligned_patches = bool(aligned_patches)
        if not 0.0 <= boundary_fraction <= 1.0 - foreground_fraction + 1e-12:
            raise ValueError(
                "boundary_fraction must be in [0, 1 - foreground_fraction], got "
                f"{boundary_fraction}"
            )
        self.boundary_fraction = float(boundary_fraction)
        self.centre_jitter_voxels = (
            None if centre_jitter_voxels is None else tuple(int(v) for v in centre_jitter_voxels)
        )
        if self.distinct_cases and len(self.cases) < self.batch_size:
            logger.warning(
                "%d training cases for batches of %d: some batches repeat a case",
                len(self.cases),
                self.batch_size,
            )

    def case_order(self, iteration: int) -> np.ndarray:
        """The seeded permutation of case indices used by ``distinct_cases`` at ``iteration``."""
        sequence = np.random.SeedSequence([self.seed, int(iteration)], spawn_key=(1,))
        return np.random.default_rng(sequence).permutation(len(self.cases))

    def batch_plan(self, iteration: int) -> tuple[bool, np.ndarray, np.ndarray]:
        """The shared placement of ``aligned_patches`` at ``iteration``.

        Returns ``(foreground, offset_zyx, fraction_zyx)``: whether the batch centres on the
        label centroids, the shared offset from them (voxels, ``int``) and the shared start as a
        fraction of each case's free room (used otherwise, and for cases with empty labels).
        """
        sequence = np.random.SeedSequence([self.seed, int(iteration)], spawn_key=(2,))
        rng = np.random.default_rng(sequence)
        foreground = bool(rng.random() < self.foreground_fraction)
        patch = np.asarray(self.patch_size_zyx or (0, 0, 0))
        offset = rng.integers(-(patch // 4), patch // 4 + 1)
        fraction = rng.random(3)
        return foreground, offset, fraction

    def _aligned_start(self, case: TrainingCase, iteration: int) -> list[int]:
        assert self.patch_size_zyx is not None
        foreground, offset, fraction = self.batch_plan(iteration)
        if foreground and len(case.foreground_zyx):
            centre = np.rint(case.foreground_zyx.mean(axis=0) + offset).astype(int)
            return _patch_start(case.shape_zyx, self.patch_size_zyx, None, centre)
        room = np.maximum(0, np.asarray(case.shape_zyx) - np.asarray(self.patch_size_zyx))
        return [int(v) for v in np.rint(fraction * room)]

    def _cascade_start(self, case: TrainingCase, rng: np.random.Generator) -> list[int]:
        """Patch placement for a cascade's segmenter (``boundary_fraction`` or
        ``centre_jitter_voxels`` set): a share ``boundary_fraction`` centred on a label-surface
        voxel, a share ``foreground_fraction`` on a label voxel, the rest on the centre of the
        label's bounding box shifted by up to ``centre_jitter_voxels`` per axis (the box the
        locator would give, with its error); uniformly placed when the label is empty."""
        assert self.patch_size_zyx is not None
        draw = float(rng.random())
        centre = None
        if len(case.foreground_zyx):
            if draw < self.boundary_fraction and len(case.boundary_zyx):
                centre = case.boundary_zyx[int(rng.integers(len(case.boundary_zyx)))]
            elif draw < self.boundary_fraction + self.foreground_fraction:
                centre = case.foreground_zyx[int(rng.integers(len(case.foreground_zyx)))]
            else:
                points = case.foreground_zyx
                middle = (points.min(axis=0) + points.max(axis=0)) / 2.0
                jitter = np.asarray(self.centre_jitter_voxels or (0, 0, 0))
                centre = np.rint(middle + rng.integers(-jitter, jitter + 1)).astype(int)
        return _patch_start(case.shape_zyx, self.patch_size_zyx, rng, centre)

    def sample(
        self, iteration: int, sample_index: int
    ) -> tuple[str, np.ndarray, np.ndarray, np.ndarray | None]:
        """Sample ``sample_index`` of the global batch of ``iteration``.

        Returns ``(case_id, image, label, weight)``; ``weight`` is ``None`` without augmentation.
        """
        rng = np.random.default_rng([self.seed, int(iteration), int(sample_index)])
        case_index = int(rng.integers(len(self.cases)))
        if self.distinct_cases:
            case_index = int(self.case_order(iteration)[int(sample_index) % len(self.cases)])
        case = self.cases[case_index]
        wants_foreground = bool(rng.random() < self.foreground_fraction)
        if self.patch_size_zyx is None:
            image, label = case.image, case.label
        else:
            if self.aligned_patches:
                start = self._aligned_start(case, iteration)
            elif self.boundary_fraction > 0 or self.centre_jitter_voxels is not None:
                start = self._cascade_start(case, rng)
            else:
                centre = None
                if wants_foreground and len(case.foreground_zyx):
                    centre = case.foreground_zyx[int(rng.integers(len(case.foreground_zyx)))]
                start = _patch_start(case.shape_zyx, self.patch_size_zyx, rng, centre)
            image = _crop_or_pad(case.image, start, self.patch_size_zyx, self.pad_value)
            label = _crop_or_pad(case.label, start, self.patch_size_zyx, 0)
        weight = None
        if self.augment is not None:
            augmented = self.augment(
                Sample(
                    image=np.array(image, dtype=np.float32),
                    label=np.array(label, dtype=np.uint8),
                    weight=np.ones(label.shape, np.float32),
                ),
                rng,
            )
            if not augmented.image.shape == image.shape or augmented.label.shape != label.shape:
                raise ValueError("augmentation must keep the patch shape")
            image, label, weight = augmented.image, augmented.label, augmented.weight
        return case.case_id, image, label, weight

    def batch(self, iteration: int, rank: int = 0, world_size: int = 1) -> Batch:
        """The share of rank ``rank`` in the global batch of ``iteration``."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size}")
        first = rank * self.batch_size
        samples = [self.sample(iteration, s) for s in range(first, first + self.batch_size)]
        target = np.max([label.shape for _, _, label, _ in samples], axis=0)
        with_weight = any(weight is not None for *_, weight in samples)
        images, labels, weights = [], [], []
        for _, image, label, weight in samples:
            widths = pad_widths_to_shape(label.shape, target)
            images.append(pad_array(np.asarray(image, np.float32), widths, self.pad_value))
            labels.append(pad_array(np.asarray(label, np.float32), widths, 0.0))
            if with_weight:
                weight = np.ones(label.shape, np.float32) if weight is None else weight
                weights.append(pad_array(np.asarray(weight, np.float32), widths, 1.0))
        return Batch(
            image=torch.from_numpy(_with_channel_axis(np.stack(images)).copy()),
            label=torch.from_numpy((np.stack(labels)[:, None] > 0.5).astype(np.float32)),
            weight=torch.from_numpy(np.stack(weights)[:, None].copy()) if with_weight else None,
            case_ids=tuple(case_id for case_id, *_ in samples),
        )
