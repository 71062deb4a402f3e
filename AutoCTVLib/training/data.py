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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

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
        image: ``float32`` (z, y, x), windowed CT in [0, 1].
        label: ``uint8`` (z, y, x) 0/1, same grid.
        spacing_xyz_mm: the network grid's spacing (for distances in mm).
        foreground_zyx: (n, 3) ``int32`` indices of label voxels (at most 20 000, an evenly
            spaced subset) used to centre foreground patches.
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray
    spacing_xyz_mm: tuple[float, float, float]
    foreground_zyx: np.ndarray

    @classmethod
    def from_arrays(
        cls,
        case_id: str,
        image: np.ndarray,
        label: np.ndarray,
        spacing_xyz_mm: Sequence[float],
    ) -> TrainingCase:
        """Build a case from network-grid arrays (tests and in-memory data use this)."""
        if image.shape != label.shape or image.ndim != 3:
            raise ValueError(f"image {image.shape} and label {label.shape} must be equal 3D shapes")
        foreground = np.argwhere(label > 0).astype(np.int32)
        if len(foreground) > _MAX_FOREGROUND_POINTS:
            keep = np.linspace(0, len(foreground) - 1, _MAX_FOREGROUND_POINTS).astype(int)
            foreground = foreground[keep]
        return cls(
            case_id=str(case_id),
            image=np.ascontiguousarray(image, dtype=np.float32),
            label=np.ascontiguousarray(label > 0, dtype=np.uint8),
            spacing_xyz_mm=tuple(float(s) for s in spacing_xyz_mm),
            foreground_zyx=foreground,
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


def _crop_or_pad(
    array: np.ndarray, start_zyx: Sequence[int], patch_zyx: Sequence[int], value: float
) -> np.ndarray:
    window = tuple(slice(int(s), int(s) + int(p)) for s, p in zip(start_zyx, patch_zyx))
    part = array[window]
    return pad_array(part, pad_widths_to_shape(part.shape, patch_zyx), value)


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
            return _patch_start(case.image.shape, self.patch_size_zyx, None, centre)
        room = np.maximum(0, np.asarray(case.image.shape) - np.asarray(self.patch_size_zyx))
        return [int(v) for v in np.rint(fraction * room)]

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
            else:
                centre = None
                if wants_foreground and len(case.foreground_zyx):
                    centre = case.foreground_zyx[int(rng.integers(len(case.foreground_zyx)))]
                start = _patch_start(case.image.shape, self.patch_size_zyx, rng, centre)
            image = _crop_or_pad(case.image, start, self.patch_size_zyx, self.pad_value)
            label = _crop_or_pad(case.label, start, self.patch_size_zyx, 0)
        weight = None
        if self.augment is not None:
            augmented = self.augment(
                Sample(
                    image=np.array(image, dtype=np.float32),
                    label=np.array(label, dtype=np.uint8),
                    weight=np.ones(image.shape, np.float32),
                ),
                rng,
            )
            if not augmented.image.shape == augmented.label.shape == image.shape:
                raise ValueError("augmentation must keep the patch shape")
            image, label, weight = augmented.image, augmented.label, augmented.weight
        return case.case_id, image, label, weight

    def batch(self, iteration: int, rank: int = 0, world_size: int = 1) -> Batch:
        """The share of rank ``rank`` in the global batch of ``iteration``."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size}")
        first = rank * self.batch_size
        samples = [self.sample(iteration, s) for s in range(first, first + self.batch_size)]
        target = np.max([image.shape for _, image, _, _ in samples], axis=0)
        with_weight = any(weight is not None for *_, weight in samples)
        images, labels, weights = [], [], []
        for _, image, label, weight in samples:
            widths = pad_widths_to_shape(image.shape, target)
            images.append(pad_array(np.asarray(image, np.float32), widths, self.pad_value))
            labels.append(pad_array(np.asarray(label, np.float32), widths, 0.0))
            if with_weight:
                weight = np.ones(image.shape, np.float32) if weight is None else weight
                weights.append(pad_array(np.asarray(weight, np.float32), widths, 1.0))
        return Batch(
            image=torch.from_numpy(np.stack(images)[:, None].copy()),
            label=torch.from_numpy((np.stack(labels)[:, None] > 0.5).astype(np.float32)),
            weight=torch.from_numpy(np.stack(weights)[:, None].copy()) if with_weight else None,
            case_ids=tuple(case_id for case_id, *_ in samples),
        )
