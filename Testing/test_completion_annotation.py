"""Sparse-slice completion: the input contract (annotated slices, label choice) and sampling."""

from __future__ import annotations

import numpy as np
import pytest

from AutoCTVLib.completion.annotation import (
    AXIS_NAMES,
    Annotation,
    infer_annotation,
    resolve_annotation,
    select_label,
)
from AutoCTVLib.completion.sampling import (
    AnnotationSampling,
    evenly_spread_slices,
    every_nth_slice,
    sample_annotation,
    structure_extent,
)
from AutoCTVLib.errors import InputError

SHAPE = (30, 34, 38)


def ellipsoid(shape=SHAPE, radii=(11.0, 12.0, 13.0)) -> np.ndarray:
    """A solid ellipsoid centred in a (z, y, x) grid."""
    grid = np.indices(shape, dtype=float)
    centre = [(n - 1) / 2.0 for n in shape]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0


def drawn(mask: np.ndarray, annotation: Annotation) -> np.ndarray:
    return mask & annotation.known_mask(mask.shape)


@pytest.mark.parametrize("axis", AXIS_NAMES)
def test_annotated_slices_are_inferred_along_each_axis(axis: str) -> None:
    mask = ellipsoid()
    first, last = structure_extent(mask, axis)
    truth = Annotation.from_mapping({axis: range(first + 1, last, 4)})
    sparse = drawn(mask, truth)
    assert infer_annotation(sparse, axis) == truth
    assert infer_annotation(sparse, "auto") == truth


def test_auto_finds_orthogonal_slices_of_several_axes() -> None:
    mask = ellipsoid()
    truth = evenly_spread_slices(mask, (3, 3, 2))
    assert truth.counts() == (3, 3, 2)
    assert infer_annotation(drawn(mask, truth), "auto") == truth
    assert infer_annotation(drawn(mask, truth), "zy") == Annotation(z=truth.z, y=truth.y)


def test_neighbouring_drawn_slices_need_the_axis_and_auto_falls_back_to_axial() -> None:
    mask = ellipsoid()
    truth = Annotation(z=(10, 11, 12, 20))  # touching slices: nothing is one voxel thick
    sparse = drawn(mask, truth)
    assert infer_annotation(sparse, "z") == truth
    # Slice 20 is one voxel thick along z, so "auto" picks z and takes every painted slice.
    assert infer_annotation(sparse, "auto").z == truth.z
    dense = mask.copy()  # every slice drawn: nothing is one voxel thick along any axis
    assert infer_annotation(dense, "auto") == Annotation(z=structure_extent_range(mask))


def structure_extent_range(mask: np.ndarray) -> tuple[int, ...]:
    first, last = structure_extent(mask, "z")
    return tuple(range(first, last + 1))


def test_empty_and_single_slice_drawings_give_clear_messages() -> None:
    mask = ellipsoid()
    with pytest.raises(InputError, match="no drawn voxels"):
        infer_annotation(np.zeros(SHAPE, dtype=bool))
    single = drawn(mask, Annotation(z=(15,)))
    with pytest.raises(InputError, match="only one slice is annotated"):
        resolve_annotation(single)
    with pytest.raises(InputError, match="none of the annotated slices holds any drawing"):
        resolve_annotation(single, Annotation(z=(2, 3)))
    with pytest.raises(InputError, match="outside the volume"):
        resolve_annotation(single, Annotation(z=(15, 40)))


def test_paint_off_the_annotated_slices_is_ignored() -> None:
    mask = ellipsoid()
    annotation = Annotation(z=(8, 15, 22))
    sparse = drawn(mask, annotation)
    noisy = sparse.copy()
    noisy[12, 10:20, 10:20] = True  # slice 12 is not annotated: unknown voxels
    kept, used = resolve_annotation(noisy, annotation)
    assert used == annotation
    np.testing.assert_array_equal(kept, sparse)


def test_empty_annotated_slices_count_as_known_background() -> None:
    mask = ellipsoid()
    first, last = structure_extent(mask, "z")
    annotation = Annotation(z=(first - 1, first + 5, last + 1))
    kept, used = resolve_annotation(drawn(mask, annotation), annotation)
    known = used.known_mask(SHAPE)
    assert known[first - 1].all() and known[last + 1].all()
    assert not kept[first - 1].any() and kept[first + 5].any()


def test_label_choice() -> None:
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[5, 5:9, 5:9] = 3
    mask, value = select_label(labels)
    assert value == 3 and mask.sum() == 16
    labels[9, 5:9, 5:9] = 7
    with pytest.raises(InputError, match="several labels"):
        select_label(labels)
    mask, value = select_label(labels, 7)
    assert value == 7 and mask[9].sum() == 16 and not mask[5].any()
    with pytest.raises(InputError, match="no voxels of label 4"):
        select_label(labels, 4)


def test_annotation_validation_and_known_mask() -> None:
    with pytest.raises(ValueError):
        Annotation(z=(-1, 3))
    with pytest.raises(ValueError):
        Annotation.from_mapping({"k": [1]})
    annotation = Annotation(z=(4, 2, 4), x=(7,))
    assert annotation.z == (2, 4) and annotation.slice_count == 3
    assert annotation.axes == ("z", "x")
    known = annotation.known_mask((6, 5, 9))
    assert known[2].all() and known[4].all() and known[:, :, 7].all()
    assert known.sum() == 2 * 5 * 9 + 6 * 5 - 2 * 5
    assert "2 axial (z) slices: 2, 4" in annotation.describe()


def test_every_nth_and_evenly_spread_slices() -> None:
    mask = ellipsoid()
    first, last = structure_extent(mask, "z")
    annotation = every_nth_slice(mask, "z", 5, phase=1)
    assert annotation.z[0] == first + 1 and annotation.z[-1] == last
    assert set(np.diff(annotation.z[:-1])) == {5}
    spread = evenly_spread_slices(mask, (1, 1, 1))
    centre = [(n - 1) // 2 for n in SHAPE]
    for axis, name in enumerate(AXIS_NAMES):
        assert abs(spread.slices(name)[0] - centre[axis]) <= 1


def test_sampled_annotations_follow_the_rules_and_the_seed() -> None:
    mask = ellipsoid()
    config = AnnotationSampling(empty_end_probability=0.0)
    axes_used = set()
    for seed in range(60):
        annotation = sample_annotation(mask, np.random.default_rng(seed), config)
        assert annotation.slice_count >= 2
        assert (mask & annotation.known_mask(SHAPE)).any()
        for name in annotation.axes:
            first, last = structure_extent(mask, name)
            assert first <= annotation.slices(name)[0] and annotation.slices(name)[-1] <= last
        axes_used.add(annotation.axes)
    assert len(axes_used) >= 4  # single axes and mixes both occur
    again = sample_annotation(mask, np.random.default_rng(7), config)
    assert again == sample_annotation(mask, np.random.default_rng(7), config)


def test_gap_mode_respects_the_gap_range() -> None:
    mask = ellipsoid()
    config = AnnotationSampling(
        gap_range=(3, 6),
        axis_count_weights=(1.0, 0.0, 0.0),
        few_slices_probability=0.0,
        ends_probability=0.0,
        empty_end_probability=0.0,
    )
    for seed in range(30):
        annotation = sample_annotation(mask, np.random.default_rng(seed), config)
        (name,) = annotation.axes
        gaps = set(np.diff(annotation.slices(name)).tolist())
        assert len(gaps) <= 1 and gaps <= {3, 4, 5, 6}
