"""A JSRT-like 2D dataset cut from the synthetic pelvis phantoms.

The thesis' noisy-label experiment (table 3.1) uses JSRT chest radiographs, 256 × 256, with
three structures of very different size: lungs (large), heart (medium) and clavicles (small and
thin); 165 images for training and 82 for testing. We build its analogue from axial slices of
our phantoms through the bladder, with three labels:

==========  ========================================  ==================================
channel     structure                                 JSRT counterpart
==========  ========================================  ==================================
0 body      the whole body outline (label map > 0)    lungs: large, high contrast
1 bladder   the bladder (with its wall)               heart: medium, rounded, soft edge
2 hip bone  left and right hip bones (pubic rami,     clavicles: small, thin, elongated
            acetabula)
==========  ========================================  ==================================

The structures overlap (the bladder and the hip bones lie inside the body), as the clavicles
overlap the lung fields in JSRT, so the labels are three independent binary channels.

Every image comes from a different phantom by default (as every JSRT image comes from a
different patient; images of one phantom look alike, and a quality network could learn to pick
phantoms rather than labels): each phantom (its own seed) gives ``slices_per_phantom`` slices
(default 1), drawn (seeded) among those where the bladder shows at least 40 % of its largest
cross-section and the hip bones at least ``min_hip_bone_px`` pixels, so the level varies from
the acetabula to the pubic rami. Training and test phantoms never share a seed. Images are
the CT windowed to ``hu_window`` and scaled to [0, 1]. Arrays: images (N, y, x) ``float32``;
labels (N, 3, y, x) ``uint8``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from AutoCTVLib.errors import InputError
from AutoCTVLib.io.atomic import atomic_path
from AutoCTVLib.phantom import PhantomConfig, generate_phantom
from AutoCTVLib.phantom.labels import label_value

logger = logging.getLogger(__name__)

STRUCTURES_2D = ("body", "bladder", "hip_bone")
#: Field of view (mm) across the image, about JSRT's (2048 × 0.175 mm).
FIELD_OF_VIEW_MM = 371.0
_BLADDER_FRACTION = 0.4
_TEST_SEED_OFFSET = 100_000

#: ``progress(done, total)`` while phantoms are generated.
BuildProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class Dataset2DConfig:
    """How the 2D dataset is made.

    Attributes:
        image_size: pixels per side (thesis: 256).
        n_train, n_test: number of training and test images (thesis: 165 and 82).
        slices_per_phantom: at most this many slices per phantom (1: every image from its own
            phantom).
        slice_spacing_mm: distance between candidate slices.
        hu_window: (lo, hi) HU mapped to [0, 1] (soft-tissue window by default).
        min_hip_bone_px: a slice needs at least this many hip-bone pixels.
        seed: phantom seeds are ``seed, seed + 1, ...`` (training) and
            ``seed + 100000, ...`` (test).
    """

    image_size: int = 128
    n_train: int = 165
    n_test: int = 82
    slices_per_phantom: int = 1
    slice_spacing_mm: float = 4.0
    hu_window: tuple[float, float] = (-160.0, 240.0)
    min_hip_bone_px: int = 12
    seed: int = 2000

    def __post_init__(self) -> None:
        for name in ("image_size", "n_train", "n_test", "slices_per_phantom", "min_hip_bone_px"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.image_size < 32:
            raise ValueError(f"image_size must be at least 32 pixels, got {self.image_size}")
        if not self.slice_spacing_mm > 0:
            raise ValueError(f"slice_spacing_mm must be positive, got {self.slice_spacing_mm}")
        low, high = (float(v) for v in self.hu_window)
        if not low < high:
            raise ValueError(f"hu_window must be (low, high) with low < high, got {self.hu_window}")
        object.__setattr__(self, "hu_window", (low, high))

    @property
    def pixel_mm(self) -> float:
        """In-plane pixel size (mm)."""
        return FIELD_OF_VIEW_MM / self.image_size


@dataclass(frozen=True, eq=False)
class Dataset2D:
    """Training and test images with clean labels.

    Attributes:
        train_images, test_images: (N, y, x) ``float32`` in [0, 1].
        train_labels, test_labels: (N, 3, y, x) ``uint8`` 0/1 (channels :data:`STRUCTURES_2D`).
        train_sources, test_sources: (N, 2) ``int64``: phantom seed and slice index of each image.
        pixel_mm: in-plane pixel size.
        config: what it was built from.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    train_sources: np.ndarray
    test_sources: np.ndarray
    pixel_mm: float
    config: Dataset2DConfig

    @property
    def structure_names(self) -> tuple[str, ...]:
        return STRUCTURES_2D


def _structure_masks(structures: np.ndarray) -> np.ndarray:
    """(z, y, x) label map → (z, 3, y, x) uint8 masks in :data:`STRUCTURES_2D` order."""
    body = structures > 0
    bladder = structures == label_value("bladder")
    hip = np.isin(structures, (label_value("hip_left"), label_value("hip_right")))
    return np.stack([body, bladder, hip], axis=1).astype(np.uint8)


def _pick_slices(masks: np.ndarray, config: Dataset2DConfig, seed: int) -> list[int]:
    bladder_area = masks[:, 1].sum(axis=(1, 2))
    hip_area = masks[:, 2].sum(axis=(1, 2))
    if bladder_area.max() == 0:
        return []
    usable = np.flatnonzero(
        (bladder_area >= _BLADDER_FRACTION * bladder_area.max())
        & (hip_area >= config.min_hip_bone_px)
    )
    if len(usable) <= config.slices_per_phantom:
        return [int(z) for z in usable]
    rng = np.random.default_rng([int(seed), 7])
    return sorted(int(z) for z in rng.choice(usable, config.slices_per_phantom, replace=False))


def phantom_slices(seed: int, config: Dataset2DConfig) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Images (k, y, x), labels (k, 3, y, x) and slice indices of one phantom's chosen slices."""
    n_slices = round(300.0 / config.slice_spacing_mm)
    phantom = generate_phantom(
        PhantomConfig(
            seed=int(seed),
            size_xyz=(config.image_size, config.image_size, n_slices),
            spacing_xyz_mm=(config.pixel_mm, config.pixel_mm, config.slice_spacing_mm),
        )
    )
    masks = _structure_masks(phantom.structures.array)
    chosen = _pick_slices(masks, config, seed)
    low, high = config.hu_window
    ct = phantom.ct.array[chosen]
    images = np.clip((ct - low) / (high - low), 0.0, 1.0).astype(np.float32)
    return images, masks[chosen], chosen


def _collect(
    first_seed: int, count: int, config: Dataset2DConfig, progress: BuildProgress | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    images, labels, sources = [], [], []
    seed = first_seed
    while sum(len(part) for part in images) < count:
        if seed - first_seed > 10 * count:
            raise InputError("the phantoms give too few usable slices for the 2D dataset")
        slice_images, slice_labels, chosen = phantom_slices(seed, config)
        images.append(slice_images)
        labels.append(slice_labels)
        sources.append(np.array([[seed, z] for z in chosen], dtype=np.int64).reshape(-1, 2))
        seed += 1
        if progress is not None:
            progress(min(count, sum(len(part) for part in images)), count)
    return (
        np.concatenate(images)[:count],
        np.concatenate(labels)[:count],
        np.concatenate(sources)[:count],
    )


def build_dataset2d(
    config: Dataset2DConfig | None = None, progress: BuildProgress | None = None
) -> Dataset2D:
    """Generate the phantoms and cut the dataset (about a second per phantom at 128 px)."""
    config = config or Dataset2DConfig()
    train = _collect(config.seed, config.n_train, config, progress)
    test = _collect(config.seed + _TEST_SEED_OFFSET, config.n_test, config, progress)
    logger.info(
        "2D dataset: %d training and %d test images of %d px (%.2f mm pixels)",
        len(train[0]),
        len(test[0]),
        config.image_size,
        config.pixel_mm,
    )
    return Dataset2D(
        train_images=train[0],
        train_labels=train[1],
        test_images=test[0],
        test_labels=test[1],
        train_sources=train[2],
        test_sources=test[2],
        pixel_mm=config.pixel_mm,
        config=config,
    )


def save_dataset2d(dataset: Dataset2D, path: str | Path) -> None:
    """Write the dataset to one ``.npz`` file (atomically)."""
    settings = asdict(dataset.config)
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(
            handle,
            train_images=dataset.train_images,
            train_labels=dataset.train_labels,
            test_images=dataset.test_images,
            test_labels=dataset.test_labels,
            train_sources=dataset.train_sources,
            test_sources=dataset.test_sources,
            config=np.array(repr(sorted(settings.items()))),
        )


def load_dataset2d(path: str | Path, config: Dataset2DConfig) -> Dataset2D:
    """Read a dataset written by :func:`save_dataset2d`; it must have been built from ``config``
    (``InputError`` otherwise, so a stale cache is never used by mistake)."""
    with np.load(Path(path), allow_pickle=False) as data:
        if str(data["config"]) != repr(sorted(asdict(config).items())):
            raise InputError(f"{path} was built with other 2D dataset settings")
        arrays = {name: data[name] for name in data.files if name != "config"}
    return Dataset2D(pixel_mm=config.pixel_mm, config=config, **arrays)
