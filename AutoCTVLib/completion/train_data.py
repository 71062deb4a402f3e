"""Training examples for the completion network: cases, structures, random sparse annotations.

A training case is a CT with several full structure masks on its own grid (a synthetic phantom
generated on the fly, or a case of an AutoCTV HDF5 dataset). An example is drawn as inference
sees it: pick a structure, sample a sparse annotation on the *input* grid
(:func:`~AutoCTVLib.completion.sampling.sample_annotation`), and prepare the four input channels
with the very function inference uses (:func:`~AutoCTVLib.completion.grid.prepare_inputs`:
crop, model grid, slice-by-slice drawing). The target is the full structure on the model grid;
in this fully supervised setting the loss covers *every* voxel of the crop (the sparse label is
input only). Patches are padded to a common size with loss weight 0 on the padding.

Augmentation on the model grid, exact on its grid: random flips along each axis and random
permutations of the axes that share a spacing (in-plane y and x on the default 1.5 × 1.5 × 3 mm
grid), applied to every channel and the target together; and, on the CT channel alone, random
intensity changes (gamma, contrast, and now and then an inversion), so that the network follows
edges rather than the grey values of the structures it was trained on (bone, for one, is
brighter than anything it sees in training).

Held out from training, so benchmarks can test generalisation: the bladder, the rectum (and
every bowel structure) and every bone. Trained on: the CTV, the gynaecological organs, the
muscles, the nodal regions, the vessels and the spinal canal.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from AutoCTVLib.completion.grid import CompletionGridConfig, prepare_inputs
from AutoCTVLib.completion.sampling import AnnotationSampling, sample_annotation
from AutoCTVLib.phantom import STRUCTURES, PhantomConfig, generate_phantom
from AutoCTVLib.preprocess.resample import resample_to_geometry
from AutoCTVLib.volume import Volume

logger = logging.getLogger(__name__)

CTV = "CTV"
#: Phantom structures the completion network is trained on (besides the CTV).
TRAINING_STRUCTURES: tuple[str, ...] = (
    "uterus",
    "cervix",
    "vagina",
    "other_muscles",
    "psoas_left",
    "psoas_right",
    "iliacus_left",
    "iliacus_right",
    "obturator_internus_left",
    "obturator_internus_right",
    "piriformis_left",
    "piriformis_right",
    "nodes_common_iliac",
    "nodes_external_iliac",
    "nodes_internal_iliac",
    "nodes_obturator",
    "nodes_presacral",
    "aorta",
    "inferior_vena_cava",
    "common_iliac_artery_left",
    "common_iliac_artery_right",
    "common_iliac_vein_left",
    "common_iliac_vein_right",
    "external_iliac_artery_left",
    "external_iliac_artery_right",
    "external_iliac_vein_left",
    "external_iliac_vein_right",
    "internal_iliac_artery_left",
    "internal_iliac_artery_right",
    "internal_iliac_vein_left",
    "internal_iliac_vein_right",
    "femoral_artery_left",
    "femoral_artery_right",
    "femoral_vein_left",
    "femoral_vein_right",
    "spinal_canal",
)
#: Kinds of phantom structures never used in training (benchmarks test them).
HELD_OUT_KINDS: tuple[str, ...] = ("bladder", "bowel", "bone")
HELD_OUT_STRUCTURES: tuple[str, ...] = tuple(s.name for s in STRUCTURES if s.kind in HELD_OUT_KINDS)

_MIN_STRUCTURE_VOXELS = 50


@dataclass(frozen=True)
class TrainingCase:
    """A CT (int16 HU to save memory) and full structure masks on its grid, arrays (z, y, x).

    ``structures`` maps a name to a boolean mask; for phantoms it is a
    :class:`LabelmapStructures` that makes each mask from the label map when asked.
    """

    case_id: str
    ct: Volume
    structures: Mapping[str, np.ndarray]


class LabelmapStructures(Mapping[str, np.ndarray]):
    """Structure masks of a label map, made on access (a clinical-size phantom holds a dozen
    structures; as boolean arrays they would take ten times the label map's memory).

    Args:
        labelmap: uint8 (z, y, x) label map.
        values: structure name → label value (only these are offered).
        extra: masks kept as given (e.g. the CTV, which overlaps other structures).
    """

    def __init__(
        self,
        labelmap: np.ndarray,
        values: Mapping[str, int],
        extra: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self._labelmap = labelmap
        self._values = dict(values)
        self._extra = dict(extra or {})

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._extra:
            return self._extra[name]
        return self._labelmap == self._values[name]

    def __iter__(self) -> Iterator[str]:
        yield from self._extra
        yield from (name for name in self._values if name not in self._extra)

    def __len__(self) -> int:
        return len(set(self._extra) | set(self._values))


@dataclass(frozen=True)
class PhantomGrid:
    """Random training grid of a phantom: in-plane field of view and spacing ranges (mm).

    The default pixel range spans clinical pelvis CTs (0.9–1.6 mm) so that training drawings
    are as fine as the ones the network completes; the size in voxels follows from the field
    of view.
    """

    pixel_mm: tuple[float, float] = (0.9, 1.6)
    slice_mm: tuple[float, float] = (2.0, 5.0)
    field_of_view_mm: float = 380.0
    coverage_mm: float = 300.0

    def size_xy(self, pixel_mm: float) -> int:
        """In-plane size (voxels) for a pixel spacing."""
        return max(16, round(self.field_of_view_mm / pixel_mm))


def phantom_case(seed: int, grid: PhantomGrid, structures: Sequence[str]) -> TrainingCase:
    """A synthetic phantom with its CTV and the named structures (small ones left out)."""
    rng = np.random.default_rng([int(seed), 991])
    pixel = float(rng.uniform(*grid.pixel_mm))
    thickness = float(rng.uniform(*grid.slice_mm))
    slices = max(8, round(grid.coverage_mm / thickness))
    size = grid.size_xy(pixel)
    phantom = generate_phantom(
        PhantomConfig(
            seed=int(seed),
            size_xyz=(size, size, slices),
            spacing_xyz_mm=(pixel, pixel, thickness),
        )
    )
    labelmap = np.asarray(phantom.structures.array, dtype=np.uint8)
    counts = np.bincount(labelmap.ravel(), minlength=256)
    values = {
        name: value
        for value, name in phantom.structure_names.items()
        if name in structures and counts[value] >= _MIN_STRUCTURE_VOXELS
    }
    ctv = phantom.ctv.array > 0
    extra = {CTV: ctv} if int(ctv.sum()) >= _MIN_STRUCTURE_VOXELS else {}
    ct = phantom.ct.with_array(np.clip(phantom.ct.array, -32768, 32767).astype(np.int16))
    return TrainingCase(f"phantom-{seed}", ct, LabelmapStructures(labelmap, values, extra))


def hdf5_cases(path: str | Path, case_ids: Sequence[str] | None = None) -> list[TrainingCase]:
    """Cases of an AutoCTV HDF5 dataset; every stored label is a training structure."""
    from AutoCTVLib.dataset.hdf5 import list_cases, read_case

    cases = []
    for case_id in case_ids if case_ids is not None else list_cases(path):
        ct, labels, _ = read_case(path, case_id)
        masks = {name: volume.array > 0 for name, volume in labels.items()}
        masks = {k: v for k, v in masks.items() if int(v.sum()) >= _MIN_STRUCTURE_VOXELS}
        ct16 = ct.with_array(np.clip(ct.array, -32768, 32767).astype(np.int16))
        cases.append(TrainingCase(case_id=str(case_id), ct=ct16, structures=masks))
    return cases


@dataclass(frozen=True)
class Example:
    """One example on the model grid: input (3, z, y, x), target and weight (1, z, y, x)."""

    inputs: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    case_id: str
    structure: str


def choose_structure(
    case: TrainingCase,
    rng: np.random.Generator,
    ctv_fraction: float,
    exclude: Sequence[str] = (),
) -> str | None:
    """The CTV with probability ``ctv_fraction`` (when present), else another structure;
    never one in ``exclude`` (``None`` when nothing is left)."""
    names = [name for name in case.structures if name not in set(exclude)]
    others = sorted(name for name in names if name != CTV)
    if not names:
        return None
    if CTV in names and (not others or rng.random() < ctv_fraction):
        return CTV
    return others[int(rng.integers(len(others)))]


def make_example(
    case: TrainingCase,
    structure: str,
    rng: np.random.Generator,
    grid: CompletionGridConfig,
    sampling: AnnotationSampling,
) -> Example:
    """Sample an annotation of ``structure`` and prepare the network input and full target."""
    mask = case.structures[structure]
    annotation = sample_annotation(mask, rng, sampling)
    sparse = mask & annotation.known_mask(mask.shape)
    inputs = prepare_inputs(case.ct, sparse, annotation, grid)
    cropped = inputs.crop_box.crop(case.ct.with_array(mask.astype(np.uint8)))
    target = resample_to_geometry(cropped, inputs.model_geometry, "label_linear").array
    return Example(
        inputs=inputs.stacked(),
        target=target[None].astype(np.float32),
        weight=np.ones((1, *target.shape), dtype=np.float32),
        case_id=case.case_id,
        structure=structure,
    )


def augment(
    example: Example,
    rng: np.random.Generator,
    permute_probability: float,
    spacing_xyz_mm: Sequence[float] = (1.0, 1.0, 1.0),
    intensity_probability: float = 0.0,
) -> Example:
    """Random flips along each spatial axis and (with ``permute_probability``) a permutation
    of the axes that share the same model spacing (``spacing_xyz_mm``; all three when it is
    isotropic), applied to inputs, target and weight alike; then (with
    ``intensity_probability``) :func:`augment_intensity` on the CT channel."""
    arrays = [example.inputs, example.target, example.weight]
    if rng.random() < permute_probability:
        spacing_zyx = [float(v) for v in spacing_xyz_mm][::-1]
        order = [0, 1, 2]
        for value in sorted(set(spacing_zyx)):
            group = [axis for axis in range(3) if spacing_zyx[axis] == value]
            for axis, source in zip(group, rng.permutation(group)):
                order[axis] = int(source)
        arrays = [np.transpose(a, [0, *(1 + np.asarray(order))]) for a in arrays]
    for axis in (1, 2, 3):
        if rng.random() < 0.5:
            arrays = [np.flip(a, axis=axis) for a in arrays]
    arrays = [np.ascontiguousarray(a) for a in arrays]
    if rng.random() < intensity_probability:
        arrays[0][0] = augment_intensity(arrays[0][0], rng)
    return Example(*arrays, case_id=example.case_id, structure=example.structure)


def augment_intensity(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random monotone grey-value change of a [0, 1] image, inverted one time in four:
    gamma in [0.6, 1.7], then contrast × [0.7, 1.3] and shift ± 0.1 about the middle,
    clipped to [0, 1]. float32 (z, y, x) in, same out."""
    changed = np.power(np.clip(image, 0.0, 1.0), rng.uniform(0.6, 1.7))
    if rng.random() < 0.25:
        changed = 1.0 - changed
    changed = (changed - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.uniform(-0.1, 0.1)
    return np.clip(changed, 0.0, 1.0).astype(np.float32)


def fit_patch(example: Example, patch_zyx: Sequence[int], rng: np.random.Generator) -> Example:
    """Crop (randomly, keeping some of the structure when possible) or pad to ``patch_zyx``.

    Padding gets input 0 (air, no drawing, unknown) and loss weight 0.
    """
    shape = example.target.shape[1:]
    foreground = np.argwhere(example.target[0] > 0)
    window = []
    for axis, (size, length) in enumerate(zip(shape, patch_zyx)):
        if size <= length:
            window.append(slice(0, size))
            continue
        if len(foreground) and rng.random() < 0.7:
            centre = int(foreground[int(rng.integers(len(foreground))), axis])
            start = int(np.clip(centre - length // 2, 0, size - length))
        else:
            start = int(rng.integers(0, size - length + 1))
        window.append(slice(start, start + length))
    pads = [(0, 0)] + [
        (0, int(length) - (w.stop - w.start)) for w, length in zip(window, patch_zyx)
    ]

    def fit(array: np.ndarray) -> np.ndarray:
        return np.pad(array[(slice(None), *window)], pads)

    return Example(
        fit(example.inputs),
        fit(example.target),
        fit(example.weight),
        case_id=example.case_id,
        structure=example.structure,
    )


def collate(examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack equal-shape examples into (N, 3, …), (N, 1, …), (N, 1, …) float32 tensors."""
    return (
        torch.from_numpy(np.stack([e.inputs for e in examples])),
        torch.from_numpy(np.stack([e.target for e in examples])),
        torch.from_numpy(np.stack([e.weight for e in examples])),
    )
