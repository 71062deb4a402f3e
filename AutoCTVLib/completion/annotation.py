"""The input contract of sparse-slice completion: which slices of a volume the user drew on.

Axes are the volume's *index* axes, named after the array axis they index (arrays are (z, y, x)):

* ``"z"``: k, array axis 0 — axial slices for an axial scan;
* ``"y"``: j, array axis 1 — coronal slices;
* ``"x"``: i, array axis 2 — sagittal slices.

A slice listed in an :class:`Annotation` is annotated *in full*: its drawn voxels are inside the
structure and every other voxel of that slice is outside. Voxels on no annotated slice are
unknown (loss weight 0 when the network is fine-tuned on them).

The annotation is either given explicitly or inferred from the sparse labelmap
(:func:`infer_annotation`): along one chosen axis, every slice holding paint is annotated; with
``"auto"``, the axes are found from the paint itself (a drawn slice is one voxel thick along
its axis, so its voxels have no painted neighbour along that axis).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from AutoCTVLib.errors import InputError

logger = logging.getLogger(__name__)

AXIS_NAMES: tuple[str, str, str] = ("z", "y", "x")
"""Index axis names in array-axis order (z = k = 0, y = j = 1, x = i = 2)."""
AXIS_WORDS = {"z": "axial", "y": "coronal", "x": "sagittal"}
"""Plane names for an axial scan (used in messages only)."""
AXES_CHOICES = ("auto", "z", "y", "x")

#: "auto": an axis counts as drawn on when its isolated-voxel count reaches this share of the
#: largest axis' count (a few thin protrusions of slices drawn on another axis stay below it).
_AXIS_SHARE = 0.2
#: With several drawn axes, a slice is annotated when at least this share of its paint is
#: isolated along the slice's own axis.
_SLICE_SHARE = 0.5


def axis_index(axis: str | int) -> int:
    """Array axis (0, 1, 2) of an axis name ``"z"``/``"y"``/``"x"`` (or of 0, 1, 2 itself)."""
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) and 0 <= axis <= 2:
        return int(axis)
    if axis in AXIS_NAMES:
        return AXIS_NAMES.index(str(axis))
    raise ValueError(f"axis must be one of z, y, x (or 0, 1, 2), got {axis!r}")


def _clean_indices(values: Iterable[int], name: str) -> tuple[int, ...]:
    cleaned = set()
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} slice indices must be whole numbers, got {value!r}")
        if value < 0:
            raise ValueError(f"{name} slice indices must be non-negative, got {value}")
        cleaned.add(int(value))
    return tuple(sorted(cleaned))


@dataclass(frozen=True)
class Annotation:
    """The annotated slices: sorted, unique slice indices along each index axis.

    Attributes:
        z: k indices (array axis 0) of annotated slices.
        y: j indices (array axis 1).
        x: i indices (array axis 2).
    """

    z: tuple[int, ...] = ()
    y: tuple[int, ...] = ()
    x: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in AXIS_NAMES:
            object.__setattr__(self, name, _clean_indices(getattr(self, name), name))

    @classmethod
    def from_mapping(cls, slices: Mapping[str, Iterable[int]]) -> Annotation:
        """Build from ``{"z": [...], "y": [...], "x": [...]}`` (missing axes: none)."""
        unknown = sorted(set(slices) - set(AXIS_NAMES))
        if unknown:
            raise ValueError(f"unknown axis name(s) {', '.join(unknown)}; use z, y, x")
        return cls(**{name: tuple(slices.get(name, ())) for name in AXIS_NAMES})

    def slices(self, axis: str | int) -> tuple[int, ...]:
        """Annotated slice indices along ``axis``."""
        return getattr(self, AXIS_NAMES[axis_index(axis)])

    @property
    def axes(self) -> tuple[str, ...]:
        """Names of the axes that have annotated slices, in z, y, x order."""
        return tuple(name for name in AXIS_NAMES if getattr(self, name))

    @property
    def slice_count(self) -> int:
        """Total number of annotated slices over all axes."""
        return sum(len(getattr(self, name)) for name in AXIS_NAMES)

    def counts(self) -> tuple[int, int, int]:
        """Number of annotated slices along (z, y, x)."""
        return (len(self.z), len(self.y), len(self.x))

    def to_dict(self) -> dict[str, list[int]]:
        """JSON-ready ``{"z": [...], "y": [...], "x": [...]}``."""
        return {name: list(getattr(self, name)) for name in AXIS_NAMES}

    def check_fits(self, shape_zyx: Sequence[int]) -> None:
        """:class:`InputError` when a slice index lies outside a volume of ``shape_zyx``."""
        for axis, name in enumerate(AXIS_NAMES):
            indices = getattr(self, name)
            if indices and indices[-1] >= int(shape_zyx[axis]):
                raise InputError(
                    f"annotated {name} slice {indices[-1]} lies outside the volume, which has "
                    f"{shape_zyx[axis]} slices along {name}"
                )

    def known_mask(self, shape_zyx: Sequence[int]) -> np.ndarray:
        """Boolean (z, y, x) mask: True on every voxel of every annotated slice."""
        self.check_fits(shape_zyx)
        known = np.zeros(tuple(int(s) for s in shape_zyx), dtype=bool)
        known[list(self.z), :, :] = True
        known[:, list(self.y), :] = True
        known[:, :, list(self.x)] = True
        return known

    def describe(self) -> str:
        """One line for logs and messages, e.g. ``"3 axial (z) slices: 4, 9, 14"``."""
        parts = []
        for name in AXIS_NAMES:
            indices = getattr(self, name)
            if not indices:
                continue
            shown = ", ".join(str(i) for i in indices[:12])
            if len(indices) > 12:
                shown += f", … ({len(indices) - 12} more)"
            noun = "slice" if len(indices) == 1 else "slices"
            parts.append(f"{len(indices)} {AXIS_WORDS[name]} ({name}) {noun}: {shown}")
        return "; ".join(parts) if parts else "no annotated slices"


def painted_slices(mask_zyx: np.ndarray, axis: str | int) -> tuple[int, ...]:
    """Indices of the slices along ``axis`` that hold at least one painted voxel."""
    array_axis = axis_index(axis)
    other = tuple(a for a in range(3) if a != array_axis)
    return tuple(int(i) for i in np.flatnonzero(np.asarray(mask_zyx, dtype=bool).any(axis=other)))


def isolated_along(mask_zyx: np.ndarray, axis: int) -> np.ndarray:
    """Painted voxels whose two neighbours along array ``axis`` are unpainted (or off the grid)."""
    mask = np.asarray(mask_zyx, dtype=bool)
    before = np.zeros_like(mask)
    after = np.zeros_like(mask)
    lead = [slice(None)] * 3
    lag = [slice(None)] * 3
    lead[axis], lag[axis] = slice(1, None), slice(None, -1)
    before[tuple(lead)] = mask[tuple(lag)]
    after[tuple(lag)] = mask[tuple(lead)]
    return mask & ~before & ~after


def _drawn_axes(mask: np.ndarray) -> tuple[list[int], list[np.ndarray]]:
    isolated = [isolated_along(mask, axis) for axis in range(3)]
    counts = [int(iso.sum()) for iso in isolated]
    best = max(counts)
    if best == 0:
        return [], isolated
    return [a for a in range(3) if counts[a] >= _AXIS_SHARE * best], isolated


def infer_annotation(mask_zyx: np.ndarray, axes: str | Sequence[str] = "auto") -> Annotation:
    """The annotated slices of a sparse label (see the module docstring).

    Args:
        mask_zyx: the drawn structure, boolean (z, y, x).
        axes: ``"auto"``; one axis name (``"z"``, ``"y"`` or ``"x"``): every slice along it
            that holds paint is annotated; or several names (e.g. ``"zy"`` or ``["z", "y"]``):
            slices drawn along each of them.

    With one axis (given, or the only one found by ``"auto"``) every painted slice along it is
    annotated. With several, a slice along axis ``a`` is annotated when most of its paint is
    one voxel thick along ``a``; slices drawn on neighbouring positions of the same axis cannot
    be told apart from a thick drawing then, so give such annotations explicitly. When
    ``"auto"`` finds no one-voxel-thick paint at all (every slice drawn, or drawn slices
    touching), it falls back to the axial (z) axis.

    Raises:
        InputError: the mask holds no paint.
    """
    mask = np.asarray(mask_zyx, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"the sparse label must be 3D (z, y, x), got shape {mask.shape}")
    if not mask.any():
        raise InputError(
            "the sparse label holds no drawn voxels; draw the structure on at least two slices"
        )
    if isinstance(axes, str) and axes == "auto":
        chosen, isolated = _drawn_axes(mask)
        if not chosen:
            logger.info("no one-voxel-thick drawings found; taking the painted axial slices")
            chosen = [0]
    else:
        names = list(axes)
        if not names or any(name not in AXIS_NAMES for name in names):
            raise ValueError(f"axes must be 'auto' or made of z, y, x; got {axes!r}")
        chosen = sorted({AXIS_NAMES.index(name) for name in names})
        isolated = [isolated_along(mask, axis) for axis in range(3)]
    if len(chosen) == 1:
        return Annotation(**{AXIS_NAMES[chosen[0]]: painted_slices(mask, chosen[0])})
    slices: dict[str, tuple[int, ...]] = {}
    for axis in chosen:
        other = tuple(a for a in range(3) if a != axis)
        paint = mask.sum(axis=other)
        thin = isolated[axis].sum(axis=other)
        keep = np.flatnonzero((paint > 0) & (thin >= _SLICE_SHARE * paint))
        slices[AXIS_NAMES[axis]] = tuple(int(i) for i in keep)
    return Annotation.from_mapping(slices)


def select_label(labelmap_zyx: np.ndarray, label: int | None = None) -> tuple[np.ndarray, int]:
    """The drawn structure of a sparse labelmap: ``(mask (z, y, x) bool, label value)``.

    Args:
        labelmap_zyx: the sparse labelmap, integer (z, y, x); 0 is background.
        label: the structure's value; ``None`` takes the only non-zero value present.

    Raises:
        InputError: the labelmap is empty, holds several values and none was chosen, or does
            not hold ``label``.
    """
    values = np.asarray(labelmap_zyx)
    present = [int(v) for v in np.unique(values) if v != 0]
    if not present:
        raise InputError(
            "the sparse label holds no drawn voxels; draw the structure on at least two slices"
        )
    if label is None:
        if len(present) > 1:
            shown = ", ".join(str(v) for v in present[:10])
            raise InputError(
                f"the sparse labelmap holds several labels ({shown}); choose the structure to "
                "complete by its label value with --label VALUE"
            )
        label = present[0]
    elif int(label) not in present:
        shown = ", ".join(str(v) for v in present[:10])
        raise InputError(f"the sparse labelmap has no voxels of label {label} (it holds {shown})")
    return values == int(label), int(label)


def resolve_annotation(
    mask_zyx: np.ndarray,
    annotation: Annotation | None = None,
    axes: str | Sequence[str] = "auto",
) -> tuple[np.ndarray, Annotation]:
    """Check a sparse drawing and settle which slices are annotated.

    Args:
        mask_zyx: the drawn structure, boolean (z, y, x).
        annotation: the annotated slices when known; otherwise inferred with ``axes``.
        axes: see :func:`infer_annotation` (ignored when ``annotation`` is given).

    Returns:
        ``(sparse, annotation)``: the drawing restricted to the annotated slices (paint off
        them is ignored, with a logged warning: those voxels are unknown by definition) and
        the annotation.

    Raises:
        InputError: nothing drawn, fewer than two annotated slices, a slice index outside the
            volume, or no annotated slice holds any paint.
    """
    mask = np.asarray(mask_zyx, dtype=bool)
    if annotation is None:
        annotation = infer_annotation(mask, axes)
    annotation.check_fits(mask.shape)
    if annotation.slice_count == 0:
        raise InputError(
            "no drawn slice found: every painted slice touches the next, as in a structure "
            "drawn in full; if it is complete there is nothing to complete, otherwise name the "
            "axis the slices were drawn along with --axes z, y or x"
        )
    if annotation.slice_count < 2:
        raise InputError(
            f"only one slice is annotated ({annotation.describe()}); a single slice cannot "
            "define a 3D shape: draw the structure on at least two slices"
        )
    known = annotation.known_mask(mask.shape)
    sparse = mask & known
    ignored = int(mask.sum() - sparse.sum())
    if ignored:
        logger.warning(
            "%d painted voxels lie on no annotated slice and are ignored (%s)",
            ignored,
            annotation.describe(),
        )
    if not sparse.any():
        raise InputError(
            f"none of the annotated slices holds any drawing ({annotation.describe()}); draw "
            "the structure on at least one of them"
        )
    return sparse, annotation
